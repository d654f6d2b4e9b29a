"""Work done in a child process, fed through a pipe: so that it never shares the caller's interpreter.

Python runs one thread at a time, so work in a thread of the relay's process still takes
the relay's time: a record thread and an SQLite writer made a relayed connection's setup
wait behind them. `ChildWorker` forks once, before the relay starts any thread, and runs
the work there; the relay's side only pickles and writes to a non-blocking pipe, so a slow
child never blocks the loop (what waits is bounded in bytes, and what it drops is counted).

Protocol: the parent sends length-prefixed pickled lists of items (the framing of
`multiprocessing.connection`); an empty pipe end (EOF) tells the child to finish; the child
answers with one pickled result (what `finish` returned) and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import struct
import sys
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Bytes of pickled work waiting for the pipe; past this new items are dropped and counted.
#: A session's record job is a few KiB pickled, a hostile one (the largest offers the
#: parser keeps) a few hundred: this holds tens of thousands of ordinary sessions.
MAX_BUFFERED = 256 * 1024 * 1024

#: What the child runs: set up in the child (open files, sinks), it returns the handler of
#: one item and the function that finishes the work and returns its result.
Setup = Callable[[], tuple[Callable[[T], None], Callable[[], R]]]


class ChildWorker(Generic[T, R]):
    """Forks a child that runs `setup()` then handles every item `put` sends it.

    `put` pickles the item and writes it to the pipe without blocking, in the caller's
    thread: a relay's loop calls it, and a second Python thread in the relay's process
    would take the interpreter from the loop whenever the loop made a system call
    (measured: half of a new connection's 320 us in the accept callback went to that).
    What the pipe does not take waits in a buffer of at most `max_buffered` bytes, written
    when the pipe is writable again (`attach` names the loop that watches it); beyond that
    bound an item is dropped and counted in `lost`.
    """

    def __init__(
        self,
        setup: Setup[T, R],
        *,
        name: str,
        warn: Callable[[str], None],
        max_buffered: int = MAX_BUFFERED,
        idle: bool = False,
    ) -> None:
        """`idle`: the child runs only on CPU time nothing else wants (see `_run_when_idle`)."""
        self._warn = warn
        self._name = name
        self._max_buffered = max_buffered
        self._lost = 0
        self._dead = False
        self._said_full = False
        self._out = bytearray()
        #: The sizes of the frames in `_out`, oldest first, so that a death counts items.
        self._frames: deque[int] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watching = False
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
        self._fd = to_child_w
        os.set_blocking(self._fd, False)
        self._from_child = Connection(from_child_r)

    @property
    def lost(self) -> int:
        """Items that never reached the child (beyond the buffer's bound, or the child died)."""
        return self._lost

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop that writes what the pipe could not take at once (never blocking it)."""
        self._loop = loop

    def put(self, item: T) -> None:
        """Never blocks while a loop is attached; without one, waits for a full pipe."""
        if self._dead:
            self._lost += 1
            return
        data = pickle.dumps([item], protocol=pickle.HIGHEST_PROTOCOL)
        frame = struct.pack("!i", len(data)) + data
        if len(self._out) + len(frame) > self._max_buffered:
            self._lost += 1
            if not self._said_full:
                self._said_full = True
                self._warn(f"kexproxy: the {self._name} process is not keeping up; work is dropped")
            return
        self._out += frame
        self._frames.append(len(frame))
        self._flush()
        if self._out and self._loop is None:
            self._drain()

    submit = put

    def close(self) -> R | None:
        """Sends what is buffered, lets the child finish, and returns its result (None if it died)."""
        self._unwatch()
        self._loop = None
        self._drain()
        with contextlib.suppress(OSError):
            os.close(self._fd)
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

    def _flush(self) -> None:
        while self._out and not self._dead:
            try:
                written = os.write(self._fd, self._out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._died(exc)
                break
            del self._out[:written]
            while self._frames and written >= self._frames[0]:
                written -= self._frames.popleft()
            if self._frames and written:
                self._frames[0] -= written
        if self._out and not self._dead:
            self._watch()
        else:
            self._unwatch()

    def _drain(self) -> None:
        """Writes everything buffered, waiting for the child to read (shutdown, no loop)."""
        if not self._out or self._dead:
            return
        os.set_blocking(self._fd, True)
        try:
            self._flush()
        finally:
            with contextlib.suppress(OSError):
                os.set_blocking(self._fd, False)

    def _watch(self) -> None:
        if self._loop is not None and not self._watching:
            self._loop.add_writer(self._fd, self._flush)
            self._watching = True

    def _unwatch(self) -> None:
        if self._watching and self._loop is not None:
            with contextlib.suppress(RuntimeError, OSError, ValueError):
                self._loop.remove_writer(self._fd)
        self._watching = False

    def _died(self, exc: OSError) -> None:
        self._dead = True
        self._lost += len(self._frames)
        self._frames.clear()
        self._out.clear()
        self._warn(f"kexproxy: the {self._name} process is gone ({exc}); its work is lost")


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
