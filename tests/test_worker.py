"""The background worker: order, coalescing, bounds, errors and close."""

from __future__ import annotations

import threading
import time
from typing import Any

from kexproxy.worker import Worker


def wait_idle(worker: Worker[Any], timeout: float) -> bool:
    """Waits until `worker` has nothing queued or in hand; False after `timeout`."""
    deadline = time.monotonic() + timeout
    while worker.pending:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


def test_items_are_handled_in_order_and_close_waits_for_them() -> None:
    seen: list[int] = []
    worker: Worker[int] = Worker(seen.extend, name="t")
    for i in range(1000):
        assert worker.put(i)
    assert worker.close(5) is True
    assert seen == list(range(1000))
    assert worker.dropped == 0


def test_a_keyed_worker_keeps_the_newest_item_per_key_in_its_first_place() -> None:
    gate = threading.Event()
    seen: list[tuple[str, int]] = []

    def handle(batch: list[tuple[str, int]]) -> None:
        gate.wait(5)
        seen.extend(batch)

    worker: Worker[tuple[str, int]] = Worker(handle, name="t", key=lambda item: item[0])
    worker.put(("busy", 0))  # taken at once; the handler waits on the gate
    while worker.pending != 1 or worker._items:
        pass
    for item in [("a", 1), ("b", 1), ("a", 2)]:
        worker.put(item)
    worker.put_if_absent(("b", 0))  # older than the waiting ("b", 1): ignored
    worker.put_if_absent(("c", 0))
    gate.set()
    assert worker.close(5)
    assert seen == [("busy", 0), ("a", 2), ("b", 1), ("c", 0)]


def test_a_full_worker_drops_its_oldest_item_and_says_which() -> None:
    gate = threading.Event()
    dropped: list[int] = []
    seen: list[int] = []

    def handle(batch: list[int]) -> None:
        gate.wait(5)
        seen.extend(batch)

    worker: Worker[int] = Worker(handle, name="t", max_queued=3, on_drop=dropped.append)
    worker.put(-1)
    while worker._items:
        pass
    results = [worker.put(i) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert dropped == [0, 1] and worker.dropped == 2
    gate.set()
    assert worker.close(5)
    assert seen == [-1, 2, 3, 4]


def test_a_failing_handler_is_reported_and_the_worker_goes_on() -> None:
    errors: list[BaseException] = []
    seen: list[int] = []

    def handle(batch: list[int]) -> None:
        if 0 in batch:
            raise RuntimeError("boom")
        seen.extend(batch)

    worker: Worker[int] = Worker(handle, name="t", on_error=errors.append)
    worker.put(0)
    assert wait_idle(worker, 5)
    worker.put(1)
    assert worker.close(5)
    assert [str(e) for e in errors] == ["boom"] and seen == [1]


def test_close_gives_up_on_a_stuck_handler_after_its_timeout() -> None:
    gate = threading.Event()
    worker: Worker[int] = Worker(lambda batch: gate.wait(10) and None, name="t")
    worker.put(1)
    assert worker.close(0.2) is False
    assert worker.pending == 1
    gate.set()


def test_an_idle_worker_holds_nothing_it_handled() -> None:
    """Once handled, a batch is let go while the worker waits for the next (an idle proxy's
    recorder kept its last batch of records and their trackers alive)."""
    import gc
    import weakref

    class Item:
        pass

    handled = threading.Event()
    worker: Worker[Item] = Worker(lambda batch: handled.set(), name="t")
    item = Item()
    gone = weakref.ref(item)
    worker.put(item)
    del item
    assert handled.wait(5)
    deadline = time.monotonic() + 5
    while gone() is not None and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert gone() is None
    worker.close()
