"""A child process fed through a pipe: everything sent arrives, the result comes back, a dead
child is counted, never waited on for ever."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from kexproxy.worker_process import ChildWorker


def _summing_child(out: Path) -> Callable[[], tuple[Callable[[int], None], Callable[[], int]]]:
    def setup() -> tuple[Callable[[int], None], Callable[[], int]]:
        seen: list[int] = []

        def finish() -> int:
            out.write_text(f"{os.getpid()} {len(seen)}")
            return sum(seen)

        return seen.append, finish

    return setup


def test_every_item_reaches_the_child_and_its_result_comes_back(tmp_path: Path) -> None:
    warnings: list[str] = []
    child: ChildWorker[int, int] = ChildWorker(
        _summing_child(tmp_path / "out"), name="test", warn=warnings.append
    )
    for i in range(20_000):
        child.put(i)
    assert child.close() == sum(range(20_000))
    pid, count = (tmp_path / "out").read_text().split()
    assert int(pid) == child.pid != os.getpid() and int(count) == 20_000
    assert child.lost == 0 and warnings == []


def test_signals_meant_for_the_parent_do_not_stop_the_child_mid_work(tmp_path: Path) -> None:
    child: ChildWorker[int, int] = ChildWorker(
        _summing_child(tmp_path / "out"), name="test", warn=print
    )
    child.put(1)
    time.sleep(0.2)
    os.kill(child.pid, signal.SIGINT)  # a Ctrl-C reaches the whole process group
    os.kill(child.pid, signal.SIGTERM)
    child.put(2)
    assert child.close() == 3


def test_a_child_that_dies_is_said_and_what_it_missed_is_counted(tmp_path: Path) -> None:
    warnings: list[str] = []
    child: ChildWorker[int, int] = ChildWorker(
        _summing_child(tmp_path / "out"), name="test", warn=warnings.append
    )
    os.kill(child.pid, signal.SIGKILL)
    time.sleep(0.2)
    for i in range(5):
        child.put(i)
    assert child.close() is None
    assert child.lost == 5
    assert any("process is gone" in w for w in warnings)
    assert warnings[-1] == "kexproxy: the test process ended without finishing its work"


def _slow_child() -> tuple[Callable[[bytes], None], Callable[[], int]]:
    seen: list[int] = []

    def handle(item: bytes) -> None:
        time.sleep(0.001)
        seen.append(len(item))

    return handle, lambda: len(seen)


def test_with_a_loop_attached_put_never_waits_for_a_slow_child() -> None:
    import asyncio

    async def run() -> tuple[float, ChildWorker[bytes, int]]:
        child: ChildWorker[bytes, int] = ChildWorker(_slow_child, name="test", warn=print)
        child.attach(asyncio.get_running_loop())
        started = time.monotonic()
        for _ in range(300):
            child.put(b"x" * 100_000)  # 30 MB: far more than a pipe holds
        took = time.monotonic() - started
        while child._out:  # the loop writes the rest as the child reads
            await asyncio.sleep(0.01)
        return took, child

    took, child = asyncio.run(run())
    assert took < 1.0  # 300 slow items would take the child at least 0.3 s to read
    assert child.close() == 300 and child.lost == 0


def test_beyond_its_byte_bound_work_is_dropped_counted_and_said_once() -> None:
    import asyncio

    warnings: list[str] = []

    async def run() -> ChildWorker[bytes, int]:
        child: ChildWorker[bytes, int] = ChildWorker(
            _slow_child, name="test", warn=warnings.append, max_buffered=1_000_000
        )
        child.attach(asyncio.get_running_loop())
        for _ in range(100):
            child.put(b"x" * 100_000)
        return child

    child = asyncio.run(run())
    lost = child.lost
    assert 0 < lost < 100
    assert child.close() == 100 - lost
    assert warnings == ["kexproxy: the test process is not keeping up; work is dropped"]
