"""Where sessions come from: captures, a store another process writes, a proxy, or a list.

A feed's `run` is called once, in a thread worker, and reports only by posting messages
(`kexproxy_tui.messages`), so that reading a capture or polling a database never blocks
typing or scrolling and never touches a widget. `stop` is set when the app exits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from textual.message import Message

from kexproxy.core.record import SessionRecord
from kexproxy.pipeline import Pipeline, Stage
from kexproxy.pipeline import stages as default_stages
from kexproxy_tui.messages import FeedFinished, FeedProblem, FeedStatus, SessionsArrived

Post = Callable[[Message], object]

#: Seconds between two polls of a store: new sessions show within about half a second.
STORE_POLL_INTERVAL = 0.5
#: Seconds a wait for a store's notice lasts at most before the app's stop is looked at.
STOP_CHECK = 0.2
#: Seconds between two progress reports while reading a capture.
PROGRESS_INTERVAL = 0.2


class Feed(Protocol):
    """A source of sessions for the dashboard, run in a thread."""

    #: Names the input in the status line and the title.
    label: str

    def run(self, post: Post, stop: threading.Event) -> None: ...


@runtime_checkable
class RecordLoader(Protocol):
    """What a feed that sends summaries (``partial``) also offers: the whole records.

    Called from any thread (the app's, an export worker's), so it opens what it needs itself.
    """

    def load(self, ids: Sequence[str]) -> list[SessionRecord]: ...


@runtime_checkable
class Relay(Protocol):
    """What a feed that relays connections itself also has: closing the app cuts them.

    Such a feed sends its open sessions as `live`; without a `store` its sessions exist only
    in the app's memory.
    """

    listen: tuple[str, int]
    store: str | None

    def stop_accepting(self) -> None:
        """Takes no new connection; the open ones are relayed on."""


class MessageSink:
    """The bridge from the pipeline to the app: a `kexproxy.sinks.base.Sink` that posts messages.

    Safe to call from any thread or event loop: posting only queues the message, so the
    relay that calls it is never held up by the UI.
    """

    def __init__(self, post: Post) -> None:
        self._post = post

    def update(self, record: SessionRecord, *, final: bool) -> None:
        self._post(SessionsArrived((record,), live=not final))

    def close(self) -> None:
        pass


class RecordsFeed:
    """Records already in memory: tests, snapshots, and anything that has its list at hand."""

    def __init__(self, records: Iterable[SessionRecord], label: str = "sessions") -> None:
        self.records = tuple(records)
        self.label = label

    def run(self, post: Post, stop: threading.Event) -> None:
        post(SessionsArrived(self.records))
        post(FeedFinished(f"{len(self.records)} sessions"))


class _Stopped(Exception):
    """Raised inside the capture reader's callbacks to abandon a read when the app exits."""


class CaptureFeed:
    """Reads capture files one after the other, showing each session as soon as it is found."""

    def __init__(self, paths: Sequence[str], *, stages: Sequence[Stage] | None = None) -> None:
        """`stages` default to the pipeline's own (the diagnosis)."""
        self.paths = tuple(paths)
        self.stages = tuple(default_stages() if stages is None else stages)
        names = [Path(p).name for p in self.paths]
        self.label = names[0] if len(names) == 1 else f"{len(names)} captures"

    def run(self, post: Post, stop: threading.Event) -> None:
        from kexproxy.sources.capfile import CaptureError
        from kexproxy.sources.captures import analyse_capture

        pipeline = Pipeline([MessageSink(post)], stages=self.stages)
        found = 0
        problems = 0
        for path in self.paths:
            name = Path(path).name
            last = 0.0

            def emit(record: SessionRecord) -> None:
                nonlocal found
                if stop.is_set():
                    raise _Stopped
                found += 1
                pipeline.publish(record, final=True)

            def progress(done: int, total: int | None, name: str = name) -> None:
                nonlocal last
                if stop.is_set():
                    raise _Stopped
                now = time.monotonic()
                if now - last >= PROGRESS_INTERVAL:
                    last = now
                    share = f" {100 * done // total}%" if total else ""
                    post(FeedStatus(f"reading {name}{share}"))

            try:
                analyse_capture(path, emit, progress=progress)
            except _Stopped:
                return
            except CaptureError as exc:
                problems += 1
                post(FeedProblem(str(exc)))
            except OSError as exc:
                problems += 1
                post(FeedProblem(f"{path}: {exc.strerror or exc}"))
        tail = f", {problems} unreadable" if problems else ""
        post(FeedFinished(f"{found} sessions from {self.label}{tail}"))


class SessionSource(Protocol):
    """A store seen from the dashboard: what changed since the last look.

    A source whose store tells it of changes also has `wait` (see `Notifying`).
    """

    #: True when `changes` gives summaries (enough for the table and the filter).
    partial: bool
    #: Stored records skipped so far because they could not be read.
    damaged: int
    #: True after `changes` when it left new sessions for the next call.
    more: bool
    #: What the reader should know about how the store was opened (a read-only mount).
    note: str | None

    def changes(self) -> list[SessionRecord]:
        """Sessions added or updated since the previous call; everything on the first."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Notifying(Protocol):
    """What a `SessionSource` that the store tells of changes (LISTEN/NOTIFY) also has."""

    def wait(self, timeout: float) -> bool:
        """True as soon as the store changed; False after `timeout` seconds without."""
        ...


class StoreFeed:
    """Watches a store that another process writes, so new and updated sessions appear live.

    Between two looks it sleeps `interval`, or, for a `Notifying` source, waits for the
    store's notice with `interval` as the fallback poll for notices that were lost.
    """

    def __init__(
        self,
        label: str,
        open_source: Callable[[], SessionSource],
        interval: float = STORE_POLL_INTERVAL,
        *,
        loader: Callable[[Sequence[str]], list[SessionRecord]] | None = None,
    ) -> None:
        self.label = label
        self._open = open_source
        self.interval = interval
        self._loader = loader

    def load(self, ids: Sequence[str]) -> list[SessionRecord]:
        """Whole records by id, for sessions the store sent as summaries."""
        return self._loader(ids) if self._loader is not None else []

    def run(self, post: Post, stop: threading.Event) -> None:
        try:
            # Opened here: an SQLite connection belongs to the thread that made it.
            source = self._open()
        except Exception as exc:  # the store's own errors are not known here
            post(FeedProblem(f"{self.label}: {exc}"))
            post(FeedFinished(f"{self.label}: not opened"))
            return
        post(FeedStatus(f"watching {self.label}"))
        if source.note:
            post(FeedProblem(source.note))
        last_problem: str | None = None
        damaged = 0
        notifying = source if isinstance(source, Notifying) else None
        try:
            while not stop.is_set():
                try:
                    records = source.changes()
                    if last_problem is not None:
                        post(FeedStatus(f"watching {self.label}"))
                    last_problem = None
                except Exception as exc:
                    # Said once per kind of trouble, not every poll.
                    problem = f"{self.label}: {exc}"
                    if problem != last_problem:
                        post(FeedProblem(problem))
                    last_problem = problem
                    records = []
                if records:
                    post(SessionsArrived(tuple(records), partial=source.partial))
                if source.damaged > damaged:
                    damaged = source.damaged
                    post(FeedProblem(f"{self.label}: {damaged} damaged records skipped"))
                if source.more:
                    continue
                if notifying is None:
                    stop.wait(self.interval)
                else:
                    _wait_for_notice(notifying, self.interval, stop)
        finally:
            source.close()


def _wait_for_notice(source: Notifying, fallback: float, stop: threading.Event) -> None:
    """Until the store's notice, `fallback` seconds, or the app's stop, whichever is first."""
    deadline = time.monotonic() + fallback
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0 or source.wait(min(left, STOP_CHECK)):
            return
