"""kexproxy: see, on the wire, why an SSH handshake fails and what would fix it."""

from __future__ import annotations

__version__ = "0.1.0"
