"""One background thread behind a bounded queue: how work leaves a loop that must never wait.

The relay's event loop hands records to outputs (a store on a slow disk, a stdout nobody
reads) and record building to a thread; each of those is a `Worker`. Feeding one never
blocks: a full queue drops its oldest item and counts it, so what was lost can be said.
Items may be coalesced by key (a store keeps only the newest row of a session), and a
worker may let items gather for a moment so that one wake-up handles a burst.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")

#: Items waiting in a worker: a record is a few KiB, a hostile one a few hundred.
DEFAULT_MAX_QUEUED = 10_000


class Worker(Generic[T]):
    """Runs `handle(batch)` in a thread of its own on what `put` queued, oldest first.

    `handle` raising is the handler's failure, not the worker's: the exception goes to
    `on_error` and the worker goes on with the next batch.
    """

    def __init__(
        self,
        handle: Callable[[list[T]], None],
        *,
        name: str,
        max_queued: int = DEFAULT_MAX_QUEUED,
        key: Callable[[T], Hashable] | None = None,
        gather: float = 0.0,
        on_drop: Callable[[T], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._handle = handle
        self._max_queued = max_queued
        self._key = key
        self._gather = gather
        self._on_drop = on_drop
        self._on_error = on_error
        self._items: dict[Hashable, T] = {}
        self._serial = 0
        self._cond = threading.Condition()
        self._closing = False
        self._busy = False
        #: Items dropped because the queue was full.
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"kexproxy-{name}", daemon=True)
        self._thread.start()

    def put(self, item: T) -> bool:
        """Queues `item` (replacing a queued one with the same key); False if one was dropped."""
        return self._put(item, replace=True)

    def put_if_absent(self, item: T) -> bool:
        """Queues `item` unless one with its key waits already (that one is newer)."""
        return self._put(item, replace=False)

    def _put(self, item: T, *, replace: bool) -> bool:
        dropped: list[T] = []
        with self._cond:
            if self._key is not None:
                slot = self._key(item)
            else:
                self._serial += 1
                slot = self._serial
            if slot in self._items:
                if replace:
                    self._items[slot] = item
                return True
            if len(self._items) >= self._max_queued:
                # Dicts keep insertion order: the oldest waiting item goes.
                dropped.append(self._items.pop(next(iter(self._items))))
                self.dropped += 1
            if not self._items:
                self._cond.notify()
            self._items[slot] = item
        if dropped and self._on_drop is not None:
            self._on_drop(dropped[0])
        return not dropped

    @property
    def pending(self) -> int:
        """Items queued or being handled."""
        with self._cond:
            return len(self._items) + self._busy

    def close(self, timeout: float | None = None) -> bool:
        """Handles what is queued, then stops; False when `timeout` ran out first."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _take(self) -> tuple[list[T], bool]:
        with self._cond:
            while not self._items and not self._closing:
                self._cond.wait()
            if self._gather and not self._closing:
                self._cond.wait(self._gather)
            batch = list(self._items.values())
            self._items.clear()
            self._busy = bool(batch)
            return batch, self._closing and not self._items

    def _run(self) -> None:
        while True:
            batch, last = self._take()
            if batch:
                try:
                    self._handle(batch)
                except Exception as exc:
                    if self._on_error is not None:
                        self._on_error(exc)
                with self._cond:
                    self._busy = False
            # Not held while the next batch is awaited: an idle worker kept its last batch
            # (up to hundreds of records and their trackers: 200 seen after a busy burst).
            del batch
            if last:
                return
