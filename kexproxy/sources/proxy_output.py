"""The proxy's outputs other than the store: JSON lines and a human line per session.

Both write to stdout, which may be a pipe whose reader stalls; a write there must never
hold up the relay, so `BackgroundSink` runs a sink in a thread of its own behind a bounded
queue, and drops (and says so once on stderr) what does not fit.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import TextIO

from kexproxy.core.record import SessionRecord
from kexproxy.core.textsafe import printable
from kexproxy.sinks.base import Sink

#: Final records waiting for a slow stdout: a session's record is a few KiB, a hostile
#: one (the largest name-lists a record keeps) a few hundred.
MAX_QUEUED = 1_000
#: Seconds `close` waits for a reader that has stopped reading before giving up on it.
CLOSE_TIMEOUT = 5.0


class BackgroundSink:
    """Runs `sink.update` in a worker thread so that the caller (the event loop) never waits."""

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
        self._queue: queue.Queue[tuple[SessionRecord, bool] | None] = queue.Queue(max_queued)
        self._dropped = 0
        self._failed = False
        self._thread = threading.Thread(target=self._run, name=f"kexproxy-{name}", daemon=True)
        self._thread.start()

    def update(self, record: SessionRecord, *, final: bool) -> None:
        if self._finals_only and not final:
            return
        try:
            self._queue.put_nowait((record, final))
        except queue.Full:
            self._dropped += 1
            if self._dropped == 1:
                self._warn(f"kexproxy: {self._name} output is not keeping up; records dropped")

    def close(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Writes what is queued; False when the reader stalled and records were left."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._queue.put(None, timeout=0.05)
                break
            except queue.Full:
                if time.monotonic() >= deadline:
                    break
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._warn(
                f"kexproxy: {self._name} output is not being read; "
                f"{self._queue.qsize()} records were not written"
            )
            return False
        return True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            record, final = item
            if self._failed:
                continue
            try:
                self._sink.update(record, final=final)
            except (OSError, ValueError) as exc:
                # A closed pipe (`| head`): stop writing there, the proxy goes on.
                self._failed = True
                self._warn(f"kexproxy: {self._name} output stopped: {exc}")
        with contextlib.suppress(OSError, ValueError):
            self._sink.close()


class SummarySink:
    """One plain line per finished session, and each side's rejection message under it."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def update(self, record: SessionRecord, *, final: bool) -> None:
        if not final:
            return
        from kexproxy.present import endpoint, software, summary, verdict_line

        detail = summary(record)
        verdict = verdict_line(record)
        detail = f"{detail}  {verdict}" if detail and verdict else detail or verdict
        line = (
            f"{record.ended or record.started or '-'}  {record.id}  "
            f"{endpoint(record.client)} -> {endpoint(record.server)}  "
            f"{software(record.client_banner)} / {software(record.server_banner)}  "
            f"{record.outcome}" + (f"  {detail}" if detail else "")
        )
        lines = [printable(line)]
        for role in ("client", "server"):
            rejection = record.rejections.get(role)
            if isinstance(rejection, dict):
                lines.append(f"    {role}: {printable(str(rejection.get('message')))}")
        judged = record.policy or {}
        if judged.get("compliant") is False:
            lines += [
                f"    policy {printable(str(judged.get('name')))}: "
                f"{printable(str(v.get('message')))}"
                for v in judged.get("violations", [])
                if isinstance(v, dict)
            ]
        self._stream.write("\n".join(lines) + "\n")
        self._stream.flush()

    def close(self) -> None:
        self._stream.flush()


class Fanout:
    """Hands every record to each sink; each sink is responsible for not blocking."""

    def __init__(
        self,
        sinks: list[Sink],
        *,
        judge: Callable[[SessionRecord], SessionRecord] | None = None,
    ) -> None:
        self.sinks = sinks
        self._judge = judge
        #: Sessions ended so far, and how many of those failed to negotiate.
        self.finished = 0
        self.failed = 0

    def __call__(self, record: SessionRecord, final: bool) -> None:
        if final:
            self.finished += 1
            self.failed += record.outcome == "failed"
        if self._judge is not None:
            record = self._judge(record)
        for sink in self.sinks:
            sink.update(record, final=final)

    def close(self) -> bool:
        """Closes every sink; False when one could not finish (a reader that stalled)."""
        finished = True
        for sink in self.sinks:
            if sink.close() is False:
                finished = False
        return finished
