"""Work done in a child process, fed through a pipe: so that it never shares the caller's interpreter.

Python runs one thread at a time, so work in a thread of the relay's process still takes
the relay's time: a record thread and an SQLite writer made a relayed connection's setup
wait behind them. `ChildWorker` forks once, before the relay starts any thread, and runs
the work there; the relay's side only pickles and writes, from a `Worker` thread, so a slow
child never blocks the loop (its queue is bounded and what it drops is counted).

Protocol: the parent sends pickled lists of items; an empty pipe end (EOF) tells the child
to finish; the child answers with one pickled result (what `finish` returned) and exits.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Generic, TypeVar

from kexproxy.worker import Worker

T = TypeVar("T")
R = TypeVar("R")

#: Items waiting for the pipe; past this the oldest are dropped and counted.
MAX_QUEUED = 20_000
#: Items per write: one pickle and one write for a burst instead of one per item.
MAX_BATCH = 256

#: What the child runs: set up in the child (open files, sinks), it returns the handler of
#: one item and the function that finishes the work and returns its result.
Setup = Callable[[], tuple[Callable[[T], None], Callable[[], R]]]


class ChildWorker(Generic[T, R]):
    """Forks a child that runs `setup()` then handles every item `put` sends it."""

    def __init__(
        self,
        setup: Setup[T, R],
        *,
        name: str,
        warn: Callable[[str], None],
        max_queued: int = MAX_QUEUED,
        idle: bool = False,
    ) -> None:
        """`idle`: the child runs only on CPU time nothing else wants (see `_run_when_idle`)."""
        self._warn = warn
        self._name = name
        self._lost = 0
        self._dead = False
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        # Buffers would be written twice (by both processes) if not emptied before fork.
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child
            os.close(to_child_w)
            os.close(from_child_r)
            _child_main(setup, Connection(to_child_r), Connection(from_child_w), idle)
        os.close(to_child_r)
        os.close(from_child_w)
        self.pid = pid
        self._to_child = Connection(to_child_w)
        self._from_child = Connection(from_child_r)
        self._worker: Worker[T] = Worker(
            self._send,
            name=name,
            max_queued=max_queued,
            max_batch=MAX_BATCH,
            on_drop=self._dropped,
        )

    @property
    def lost(self) -> int:
        """Items that never reached the child (dropped by a full queue, or the child died)."""
        return self._lost + self._worker.dropped

    def put(self, item: T) -> None:
        """Never blocks."""
        self._worker.put(item)

    submit = put

    def close(self) -> R | None:
        """Sends what is queued, lets the child finish, and returns its result (None if it died)."""
        self._worker.close()
        with contextlib.suppress(OSError):
            self._to_child.close()
        result: R | None = None
        try:
            result = pickle.loads(self._from_child.recv_bytes())
        except (EOFError, OSError, pickle.UnpicklingError):
            self._warn(f"kexproxy: the {self._name} process ended without finishing its work")
        finally:
            self._from_child.close()
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
        return result

    def _send(self, batch: list[T]) -> None:
        if self._dead:
            self._lost += len(batch)
            return
        try:
            self._to_child.send_bytes(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError as exc:
            self._dead = True
            self._lost += len(batch)
            self._warn(f"kexproxy: the {self._name} process is gone ({exc}); its work is lost")

    def _dropped(self, item: T) -> None:
        if self._worker.dropped == 1:
            self._warn(f"kexproxy: the {self._name} process is not keeping up; work is dropped")


def _run_when_idle() -> None:
    """This process runs only on CPU time nothing else wants (Linux SCHED_IDLE), else as
    the nicest process there is."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # type: ignore[attr-defined,unused-ignore]
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(19)


def _child_main(setup: Setup[T, R], items: Connection, results: Connection, idle: bool) -> None:
    """Runs in the child; never returns. SIGINT and SIGTERM are the parent's to act on: the
    child finishes when the parent closes the pipe, so that nothing queued is lost."""
    status = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if idle:
            _run_when_idle()
        handle, finish = setup()
        while True:
            try:
                batch = pickle.loads(items.recv_bytes())
            except EOFError:
                break
            for item in batch:
                handle(item)
        result = finish()
        with contextlib.suppress(OSError):
            results.send_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    except BaseException as exc:  # the child's own failure: said, then the parent sees EOF
        with contextlib.suppress(Exception):
            print(f"kexproxy: the recording process failed: {exc!r}", file=sys.stderr)
        status = 1
    finally:
        # Not stdout: its sinks flushed what they wrote, and a reader that stopped reading
        # would hold a flush here for ever.
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(status)
