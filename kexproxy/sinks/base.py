"""The one small interface every sink implements."""

from __future__ import annotations

from typing import Protocol

from kexproxy.core.record import SessionRecord


class Sink(Protocol):
    """Takes records; `update` may be called again for the same id as a live session moves on."""

    def update(self, record: SessionRecord, *, final: bool) -> None: ...

    def close(self) -> bool | None:
        """Flushes and closes; False means it could not finish (its records are lost)."""
