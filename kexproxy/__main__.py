"""``python -m kexproxy`` runs the command line."""

from __future__ import annotations

import sys

from kexproxy.cli import main

sys.exit(main())
