"""One direction of a relayed TCP connection, driven by the event loop's readiness callbacks.

Theory of operation. A `Pump` reads one socket and writes the other; two pumps make a
session. It has two ways to move bytes, chosen afresh at every read:

* inspecting: ``recv`` a chunk, ``send`` it on at once, then hand the same bytes to the
  owner (the session tracker). Forward first, observe second: inspection never delays,
  changes or holds back a byte.
* fast (once the owner stops inspecting): ``splice(2)`` moves the bytes socket -> pipe ->
  socket inside the kernel, so they never enter Python. Where Linux offers no splice the
  pump falls back to ``recv``/``send`` of large chunks.

Backpressure: when the destination will not take everything, the pump stops reading its
source and waits for the destination to become writable; at most one chunk (inspecting)
or one pipe's worth (fast) is ever held per direction. The pump reads into the pipe only
when the pipe is empty, so EAGAIN from the reading splice always means "the socket has
nothing more" and never "the pipe is full".

FIN from the source is passed on as ``shutdown(SHUT_WR)`` once every byte before it has
been written; an RST or a send error is reported to the owner, which resets the other
socket (SO_LINGER 0) and ends the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from collections.abc import Callable
from typing import Protocol

from kexproxy.core.observer import Leg, other_leg

#: Bytes read per recv while inspecting: a handshake message is rarely bigger than a few KiB,
#: and this bounds what one direction holds while its destination is slow.
INSPECT_CHUNK = 64 * 1024
#: Bytes read per recv on the copy fallback (no splice): large chunks amortise the
#: Python overhead per call.
COPY_CHUNK = 256 * 1024
#: Pipe capacity asked for once a direction moves bulk data (Linux's default is 64 KiB and
#: /proc/sys/fs/pipe-max-size allows 1 MiB to anyone); a bigger pipe means fewer wake-ups.
BULK_PIPE_SIZE = 1024 * 1024
#: Bytes moved per readiness callback before yielding to the loop, so that one busy
#: direction cannot starve the other sessions sharing it.
READ_BUDGET = 16 * 1024 * 1024
#: Linux's default pipe capacity (16 pages): a splice this big filled the pipe.
DEFAULT_PIPE_SIZE = 64 * 1024
_F_SETPIPE_SZ = 1031  # linux/fcntl.h (F_LINUX_SPECIFIC_BASE + 7); not in every Python's fcntl
_HAVE_SPLICE = hasattr(os, "splice")
_SPLICE_FLAGS = (
    (os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK) if _HAVE_SPLICE else 0  # type: ignore[attr-defined,unused-ignore]
)
#: errnos that mean "splice does not work on these files", not "the connection broke".
_SPLICE_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})


class PumpOwner(Protocol):
    """What a pump reports to; the proxy's session implements it."""

    @property
    def inspecting(self) -> bool:
        """True while the bytes must still be shown to the tracker."""
        ...

    def observe(self, side: Leg, data: bytes, ts: float) -> None:
        """`side` sent `data`, which has already been forwarded."""
        ...

    def counted(self, side: Leg, nbytes: int, ts: float) -> None:
        """`side` sent `nbytes` that were forwarded without inspection."""
        ...

    def end_of_stream(self, side: Leg, ts: float) -> None:
        """`side` sent a FIN."""
        ...

    def pump_finished(self, pump: Pump) -> None:
        """The pump passed its FIN on and has nothing more to do."""
        ...

    def reset_by(self, side: Leg, ts: float, exc: OSError) -> None:
        """`side`'s socket failed (an RST, mostly): the session must end."""
        ...


class Pump:
    """Moves the bytes `src` sends to `dst` and tells its owner what went through."""

    __slots__ = (
        "_clock",
        "_dst",
        "_dst_fd",
        "_eof",
        "_in_pipe",
        "_loop",
        "_owner",
        "_pending",
        "_pipe",
        "_pipe_grown",
        "_reading",
        "_src",
        "_src_fd",
        "_use_splice",
        "_writing",
        "finished",
        "side",
        "stopped",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        src: socket.socket,
        dst: socket.socket,
        side: Leg,
        owner: PumpOwner,
        *,
        clock: Callable[[], float],
        use_splice: bool = True,
    ) -> None:
        self._loop = loop
        self._src = src
        self._dst = dst
        self._src_fd = src.fileno()
        self._dst_fd = dst.fileno()
        self.side = side
        self._owner = owner
        self._clock = clock
        self._use_splice = use_splice and _HAVE_SPLICE
        self._pending: memoryview | None = None
        self._pipe: tuple[int, int] | None = None
        self._pipe_grown = False
        self._in_pipe = 0
        self._eof = False
        self._reading = False
        self._writing = False
        self.finished = False
        self.stopped = False

    def start(self) -> None:
        """Starts watching the source, and reads what is already waiting at once rather than
        in the next loop iteration: a new session's first bytes (a banner sent at once) then
        cost no extra wake-up."""
        self._resume_reading()
        if self._reading and not self.stopped:
            self._on_readable()

    def stop(self) -> None:
        """Unregisters the callbacks and frees the pipe; the owner closes the sockets."""
        if self.stopped:
            return
        self.stopped = True
        if self._reading:
            self._loop.remove_reader(self._src_fd)
            self._reading = False
        if self._writing:
            self._loop.remove_writer(self._dst_fd)
            self._writing = False
        self._pending = None
        self._close_pipe()

    # -- reading -------------------------------------------------------------------------

    def _on_readable(self) -> None:
        # Read until the socket says EAGAIN, EOF or an error, never just once: uvloop
        # (libuv) reports a socket error by running the callbacks once and then dropping
        # the registration, so an error left unread here would never be seen again.
        budget = READ_BUDGET
        while not self.stopped and self._reading:
            if self._owner.inspecting:
                moved = self._read_copy(INSPECT_CHUNK, inspect=True)
            elif self._use_splice:
                moved = self._read_splice()
            else:
                moved = self._read_copy(COPY_CHUNK, inspect=False)
            if moved <= 0:
                return
            budget -= moved
            if budget <= 0:
                # Fair to the other sessions: go on in the next loop iteration.
                self._loop.call_soon(self._on_readable)
                return

    def _read_copy(self, size: int, *, inspect: bool) -> int:
        """One recv and its send; returns the bytes moved, 0 when there is nothing more."""
        try:
            data = self._src.recv(size)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            self._owner.reset_by(self.side, self._clock(), exc)
            return 0
        if not data:
            self._on_eof()
            return 0
        ts = self._clock()
        error = self._send(data)
        # Shown to the owner even when the send failed: the peer did send these bytes
        # (a DISCONNECT that reaches a server already gone is still its sender's evidence).
        if inspect:
            self._owner.observe(self.side, data, ts)
        else:
            self._owner.counted(self.side, len(data), ts)
        if error is not None:
            self._owner.reset_by(other_leg(self.side), self._clock(), error)
            return 0
        return 0 if self.stopped or self._pending is not None else len(data)

    def _read_splice(self) -> int:
        """One splice into the (empty) pipe and one out of it; returns the bytes moved."""
        pipe = self._pipe
        if pipe is None:
            pipe = self._pipe = _new_pipe()
        pipe_r, pipe_w = pipe
        try:
            n = os.splice(self._src_fd, pipe_w, BULK_PIPE_SIZE, flags=_SPLICE_FLAGS)  # type: ignore[attr-defined,unused-ignore]
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            if exc.errno in _SPLICE_UNSUPPORTED:
                self._use_splice = False
                self._close_pipe()
                return self._read_copy(COPY_CHUNK, inspect=False)
            self._owner.reset_by(self.side, self._clock(), exc)
            return 0
        if n == 0:
            self._on_eof()
            return 0
        if not self._pipe_grown and n >= DEFAULT_PIPE_SIZE:
            # A full default pipe: this direction carries bulk data, give it room.
            self._pipe_grown = True
            _grow_pipe(pipe_w)
        self._in_pipe = n
        self._owner.counted(self.side, n, self._clock())
        if not self._drain_pipe(pipe_r) or self.stopped:
            return 0
        if self._in_pipe:
            self._pause_for_write()
            return 0
        return n

    def _drain_pipe(self, pipe_r: int) -> bool:
        """Splices what the pipe holds into the destination; False if the session broke."""
        try:
            self._in_pipe -= os.splice(pipe_r, self._dst_fd, self._in_pipe, flags=_SPLICE_FLAGS)  # type: ignore[attr-defined,unused-ignore]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self._owner.reset_by(other_leg(self.side), self._clock(), exc)
            return False
        return True

    def _on_eof(self) -> None:
        self._eof = True
        self._pause_reading()
        self._owner.end_of_stream(self.side, self._clock())
        if self.stopped:
            return
        if self._pending is None and not self._in_pipe:
            self._finish()

    def _finish(self) -> None:
        # The destination may be gone already; its own pump reports how.
        with contextlib.suppress(OSError):
            self._dst.shutdown(socket.SHUT_WR)
        self._close_pipe()
        self.finished = True
        self._owner.pump_finished(self)

    # -- writing -------------------------------------------------------------------------

    def _send(self, data: bytes) -> OSError | None:
        """Sends what the destination takes now and keeps the rest; returns a send error."""
        try:
            n = self._dst.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            return exc
        if n < len(data):
            self._pending = memoryview(data)[n:]
            self._pause_for_write()
        return None

    def _on_writable(self) -> None:
        if self.stopped:
            return
        if self._pending is not None:
            try:
                n = self._dst.send(self._pending)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._owner.reset_by(other_leg(self.side), self._clock(), exc)
                return
            self._pending = self._pending[n:] if n < len(self._pending) else None
            if self._pending is not None:
                return
        elif self._in_pipe and self._pipe is not None:
            if not self._drain_pipe(self._pipe[0]):
                return
            if self._in_pipe:
                return
        self._writing = False
        self._loop.remove_writer(self._dst_fd)
        if self._eof:
            self._finish()
        else:
            self._resume_reading()

    # -- registration --------------------------------------------------------------------

    def _pause_for_write(self) -> None:
        self._pause_reading()
        if not self._writing:
            self._writing = True
            self._loop.add_writer(self._dst_fd, self._on_writable)

    def _pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._src_fd)

    def _resume_reading(self) -> None:
        if not self._reading and not self.stopped:
            self._reading = True
            self._loop.add_reader(self._src_fd, self._on_readable)

    def _close_pipe(self) -> None:
        if self._pipe is not None:
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None
            self._in_pipe = 0


def _new_pipe() -> tuple[int, int]:
    """A non-blocking pipe, created only when a direction first moves data in fast mode."""
    return os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)


def _grow_pipe(pipe_w: int) -> None:
    import fcntl

    # Over the per-user pipe quota the default size still works, only slower.
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe_w, _F_SETPIPE_SZ, BULK_PIPE_SIZE)
