"""A sink run in a thread of its own, so that whoever hands it records never waits.

stdout may be a pipe whose reader stalls (``kexproxy proxy --json | slow``); a write there
must never hold up the relay, so `BackgroundSink` puts a `Worker` in front of any sink and
drops (and says so once, and counts) what does not fit.
"""

from __future__ import annotations

from collections.abc import Callable

from kexproxy.core.record import SessionRecord
from kexproxy.sinks.base import Sink
from kexproxy.worker import Worker

#: Final records waiting for a slow stdout: a session's record is a few KiB, a hostile
#: one (the largest name-lists a record keeps) a few hundred.
MAX_QUEUED = 1_000
#: Seconds `close` waits for a reader that has stopped reading before giving up on it.
CLOSE_TIMEOUT = 5.0

_Item = tuple[SessionRecord, bool]


class BackgroundSink:
    """Runs `sink.update` in a worker thread; `finals_only` passes on ended sessions only."""

    def __init__(
        self,
        sink: Sink,
        *,
        warn: Callable[[str], None],
        name: str,
        finals_only: bool = True,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self._sink = sink
        self._warn = warn
        self._name = name
        self._finals_only = finals_only
        self._failed = False
        self._worker: Worker[_Item] = Worker(
            self._write, name=name, max_queued=max_queued, on_drop=self._dropped
        )

    @property
    def dropped(self) -> int:
        return self._worker.dropped

    def update(self, record: SessionRecord, *, final: bool) -> None:
        if self._finals_only and not final:
            return
        self._worker.put((record, final))

    def close(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Writes what is queued; False when the reader stalled and records were left."""
        if not self._worker.close(timeout):
            self._warn(
                f"kexproxy: {self._name} output is not being read; "
                f"{self._worker.pending} records were not written"
            )
            return False
        if not self._failed:
            try:
                self._sink.close()
            except (OSError, ValueError):
                return False
        return True

    def _dropped(self, item: _Item) -> None:
        if self._worker.dropped == 1:
            self._warn(f"kexproxy: {self._name} output is not keeping up; records dropped")

    def _write(self, batch: list[_Item]) -> None:
        for record, final in batch:
            if self._failed:
                return
            try:
                self._sink.update(record, final=final)
            except (OSError, ValueError) as exc:
                # A closed pipe (`| head`): stop writing there, the rest goes on.
                self._failed = True
                self._warn(f"kexproxy: {self._name} output stopped: {exc}")
