"""One relayed connection: the upstream connect, two pumps, the guarded tracker, the record.

Theory of operation. A session starts when the proxy accepts a client: the upstream connect
is already under way (`dial`, started first so that it overlaps the rest), then a pump
starts each way, the server's side read first. Every
byte is forwarded first and shown to the `ConnectionTracker` second; every tracker call is
guarded, so an unexpected exception ends inspection (with a note in the record) and never
the relay. Records are made by the recorder from what the session hands it (`RecordJob`,
`SessionStarted`, `BytesMoved`): a first one (`in_progress`) as the connection is accepted,
so that a crash still leaves one; again when the handshake's outcome is known, at a
handshake timeout and on periodic refreshes; and a last time (final) when the connection
ends: FIN both ways, an RST either way, or the proxy shutting down.

Addresses: the tracker's endpoints are the real client (the accepted socket's peer) and
the real server (the upstream). Through a relay neither peer sees the other: the client's
peer is the address it connected to (the proxy's listen address, or in transparent mode
the original destination) and the server's peer is the proxy's upstream-side source
address. Each rejection message is rewritten to name the peer that side really saw, so it
is the line the real client printed and the line the real sshd logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import struct
from collections.abc import Callable
from typing import Protocol

from kexproxy.core.connection import ConnectionTracker
from kexproxy.core.observer import CloseKind, Endpoint, Leg
from kexproxy.sources.proxy_record import (
    BytesMoved,
    RecorderItem,
    RecordJob,
    RelayFacts,
    SessionStarted,
    Warn,
    live_job,
)
from kexproxy.sources.proxy_relay import Pump
from kexproxy.sources.proxy_tape import TapeRecorder


class RecordSubmit(Protocol):
    """Whoever makes the records (a thread, another process); `submit` never blocks."""

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The relay's loop, for a recorder that writes when its pipe is writable."""
        ...

    def submit(self, item: RecorderItem) -> None: ...


#: How long after the accept a session's first row is handed over (see `start`).
FIRST_ROW_DELAY = 0.002
#: How long after its outcome is known a live session is published (see `observe`).
LIVE_PUBLISH_DELAY = 0.05
_LINGER_RESET = struct.pack("ii", 1, 0)


def endpoint_of(address: tuple[object, ...]) -> Endpoint:
    """A socket address as an `Endpoint`; IPv4-mapped IPv6 shown as plain IPv4, as sshd does."""
    ip = str(address[0])
    if ip.startswith("::ffff:") and "." in ip:
        ip = ip[7:]
    port = address[1]
    return Endpoint(ip=ip, port=port if isinstance(port, int) else 0)


def reset_socket(sock: socket.socket) -> None:
    """Closes `sock` with an RST instead of a FIN (SO_LINGER on, timeout 0)."""
    # A socket that is already dead cannot take the option; close() is all that is left.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


class Session:
    """Carries one client connection to the upstream and records its handshake."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        client: socket.socket,
        client_ep: Endpoint,
        client_view: Endpoint,
        upstream: Endpoint,
        recorder: RecordSubmit,
        on_closed: Callable[[Session], None],
        clock: Callable[[], float],
        warn: Warn,
        handshake_timeout: float,
        connect_timeout: float,
        use_splice: bool = True,
        refuse: str | None = None,
        session_id: str,
        dialled: tuple[socket.socket | None, int] | None = None,
        keep_bytes: bool = False,
    ) -> None:
        """`dialled`: the upstream connect `dial` already started, if the caller did;
        `keep_bytes`: keep what the tracker is shown, for the session's capture file."""
        self.id = session_id
        self._dialled = dialled
        self._loop = loop
        self._client = client
        self._client_ep = client_ep
        self._upstream_ep = upstream
        #: The address each TCP side sees as its peer; b's is known once connected.
        self._views: dict[Leg, Endpoint | None] = {"a": client_view, "b": None}
        self._recorder = recorder
        self._on_closed = on_closed
        self._clock = clock
        self._warn = warn
        self._handshake_timeout = handshake_timeout
        self._connect_timeout = connect_timeout
        self._use_splice = use_splice
        self._refuse = refuse
        self._upstream: socket.socket | None = None
        self._pumps: list[Pump] = []
        self._timers: list[asyncio.TimerHandle] = []
        self._inspect = True
        self._broken: str | None = None
        self._relayed = False
        self._published = False
        self._live_published = False
        self._published_bytes = -1
        self._bytes: dict[Leg, int] = {"a": 0, "b": 0}
        self._last: dict[Leg, float | None] = {"a": None, "b": None}
        self.ended = False
        self._tracker = ConnectionTracker(
            a=client_ep, b=upstream, initiator="accept", session_id=self.id, source="proxy"
        )
        # The connection starts when it is accepted, before any byte: a refused upstream
        # still gives a record with a start time.
        self._accepted = clock()
        self._tape = TapeRecorder(self._accepted) if keep_bytes else None
        self._guard("count", lambda: self._tracker.count("a", 0, self._accepted))

    # -- start: the upstream connect -------------------------------------------------------

    def start(self) -> None:
        self._connect_upstream()
        # A row from the start: if the proxy is killed before the outcome is known, the
        # connection still left evidence. Handed over a moment later, not now: handing it
        # over wakes the recorder, and now is when the server's greeting is due to be
        # forwarded. A session over by then has its final record instead.
        if not self.ended:
            self._timers.append(self._loop.call_later(FIRST_ROW_DELAY, self._publish_started))

    def _publish_started(self) -> None:
        if not self.ended and not self._live_published:
            self._submit(SessionStarted(relay=self._relay_facts(now=self._accepted)))

    def _connect_upstream(self) -> None:
        if self._refuse is not None:
            self._upstream_failed(self._refuse, close_kind=None)
            return
        if self._dialled is None:
            self._dialled = dial(self._upstream_ep)
        up, err = self._dialled
        if up is None:
            self._upstream_failed(
                f"the proxy could not open a socket to the upstream ({os.strerror(err)}); "
                "the client's connection was reset",
                None,
            )
            return
        self._upstream = up
        self._timers.append(
            self._loop.call_later(self._handshake_timeout, self._on_handshake_timeout)
        )
        if err in (errno.EINPROGRESS, errno.EAGAIN):
            err = _finished_connecting(up)
        if err == 0:
            self._connected()
        elif err in (errno.EINPROGRESS, errno.EAGAIN):
            self._loop.add_writer(up.fileno(), self._on_connect_ready)
            self._timers.append(self._loop.call_later(self._connect_timeout, self._connect_late))
        else:
            self._connect_error(err)

    def _on_connect_ready(self) -> None:
        up = self._upstream
        if up is None or self.ended:
            return
        self._loop.remove_writer(up.fileno())
        err = up.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._connect_error(err)
        else:
            self._connected()

    def _connect_late(self) -> None:
        up = self._upstream
        if self.ended or self._relayed or up is None:
            return
        self._loop.remove_writer(up.fileno())
        reason = (
            f"the upstream {self._upstream_ep.ip} port {self._upstream_ep.port} did not "
            f"answer within {self._connect_timeout:g} s; the client's connection was reset"
        )
        self._upstream_failed(reason, close_kind="timeout")

    def _connect_error(self, err: int) -> None:
        what = {
            errno.ECONNREFUSED: "refused the connection",
            errno.EHOSTUNREACH: "is unreachable (no route to host)",
            errno.ENETUNREACH: "is unreachable (network unreachable)",
            errno.ETIMEDOUT: "did not answer (connect timed out)",
        }.get(err, f"could not be reached ({os.strerror(err)})")
        reason = (
            f"the upstream {self._upstream_ep.ip} port {self._upstream_ep.port} {what}; "
            "the client's connection was reset"
        )
        self._upstream_failed(reason, close_kind="rst" if err == errno.ECONNREFUSED else None)

    def _connected(self) -> None:
        up = self._upstream
        assert up is not None
        self._relayed = True
        try:
            self._views["b"] = endpoint_of(up.getsockname())
        except OSError:
            self._views["b"] = None
        self._pumps = [
            Pump(
                self._loop,
                self._client,
                up,
                "a",
                self,
                clock=self._clock,
                use_splice=self._use_splice,
            ),
            Pump(
                self._loop,
                up,
                self._client,
                "b",
                self,
                clock=self._clock,
                use_splice=self._use_splice,
            ),
        ]
        # The server's side first: a server that greets at once (they all do) has its banner
        # waiting, and the client waits for it; the client's bytes go on a moment later.
        for pump in reversed(self._pumps):
            pump.start()

    def _upstream_failed(self, reason: str, close_kind: str | None) -> None:
        ts = self._clock()
        # What the client sent meanwhile (its banner, mostly) says who was turned away.
        try:
            early = self._client.recv(64 * 1024)
        except OSError:
            early = b""
        if early:
            self._bytes["a"] += len(early)
            if self._tape is not None:
                self._tape.data("a", early, ts)
            self._guard("receive", lambda: self._tracker.receive("a", early, ts))
        self._guard("abort", lambda: self._tracker.abort(reason, ts))
        if close_kind == "rst":
            if self._tape is not None:
                self._tape.close("b", "rst", ts, 0)
            self._guard("receive_close", lambda: self._tracker.receive_close("b", "rst", ts))
        elif close_kind == "timeout":
            self._guard("receive_timeout", lambda: self._tracker.receive_timeout(ts, reason))
        self._end(reset=True)

    # -- the pump owner interface ----------------------------------------------------------

    @property
    def inspecting(self) -> bool:
        if not self._inspect:
            return False
        try:
            still = self._tracker.inspecting
        except Exception as exc:  # the core promises not to raise; the relay never relies on it
            self._broke("inspecting", exc)
            return False
        if not still:
            self._inspect = False
        return still

    def observe(self, side: Leg, data: bytes, ts: float) -> None:
        self._bytes[side] += len(data)
        self._last[side] = ts
        if self._tape is not None:
            self._tape.data(side, data, ts)
        if not self._guard("receive", lambda: self._tracker.receive(side, data, ts)):
            return
        if not self._published:
            try:
                known = self._tracker.outcome_known
            except Exception as exc:
                self._broke("outcome_known", exc)
                return
            if known:
                self._published = True
                # Soon, not now: most failed handshakes close within milliseconds, and then
                # the final record is the only one worth building on the relay's loop.
                self._timers.append(self._loop.call_later(LIVE_PUBLISH_DELAY, self._publish_live))

    def counted(self, side: Leg, nbytes: int, ts: float) -> None:
        self._bytes[side] += nbytes
        self._last[side] = ts
        # Inline rather than through _guard: this runs for every chunk of bulk data.
        try:
            self._tracker.count(side, nbytes, ts)
        except Exception as exc:
            self._broke("count", exc)

    def end_of_stream(self, side: Leg, ts: float) -> None:
        self._close_seen(side, "fin", ts)

    def pump_finished(self, pump: Pump) -> None:
        if all(p.finished for p in self._pumps):
            self._end(reset=False)

    def reset_by(self, side: Leg, ts: float, exc: OSError) -> None:
        self._close_seen(side, "rst", ts)
        if exc.errno not in (errno.ECONNRESET, errno.EPIPE):
            self._abort_note(f"the {_who(side)}'s socket failed: {exc.strerror or exc}")
        self._end(reset=True)

    def _close_seen(self, side: Leg, kind: CloseKind, ts: float) -> None:
        self._last[side] = ts
        if self._tape is not None:
            self._tape.close(side, kind, ts, self._bytes[side])
        self._guard("receive_close", lambda: self._tracker.receive_close(side, kind, ts))

    # -- timers ----------------------------------------------------------------------------

    def _on_handshake_timeout(self) -> None:
        if self.ended or not self.inspecting:
            return
        ts = self._clock()
        reason = self._timeout_reason(ts)
        self._guard("receive_timeout", lambda: self._tracker.receive_timeout(ts, reason))
        # A transparent relay does not cut a connection the peers keep open: inspection
        # stops and the bytes go on, unless nothing ever moved and the pair is just idle.
        self._inspect = False
        # Built by the recorder from a copy, as every record is: many sessions timing out
        # at once (hostile ones with huge offers) must not take their records'
        # milliseconds from every other session.
        self._publish(final=False)
        if self._relayed and self._bytes["a"] == 0 and self._bytes["b"] == 0:
            self._end(reset=False)

    def _timeout_reason(self, ts: float) -> str:
        limit = f"{self._handshake_timeout:g} s"
        if self._bytes["a"] == 0 and self._bytes["b"] == 0:
            return f"neither side sent anything within {limit}"
        if self._bytes["a"] == 0:
            return f"the client sent nothing within {limit}"
        ages = []
        for side in ("a", "b"):
            last = self._last[side]
            if last is not None:
                ages.append(f"last byte from the {_who(side)} {ts - last:.1f} s before")
        return f"the handshake did not finish within {limit} ({', '.join(ages)})"

    # -- records ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Republishes a live session whose byte counts moved, so other readers see them.

        Only bytes and the last activity change once a record has been published (its
        outcome was known, or inspection had stopped), so the recorder reuses the last
        record with new counts: a refresh of every open session must not stall the relay.
        """
        if self.ended or not self._live_published:
            return
        moved = self._bytes["a"] + self._bytes["b"]
        if moved == self._published_bytes:
            return
        self._published_bytes = moved
        latest = [ts for ts in self._last.values() if ts is not None]
        self._submit(
            BytesMoved(
                session_id=self.id,
                bytes_a=self._bytes["a"],
                bytes_b=self._bytes["b"],
                last_ts=max(latest) if latest else None,
            )
        )

    def shutdown(self, reason: str) -> None:
        """The proxy is stopping: the session is recorded as ended by it, both sockets closed."""
        if self.ended:
            return
        self._guard("abort", lambda: self._tracker.abort(reason, self._clock()), stop=False)
        self._end(reset=False)

    def _publish_live(self) -> None:
        if not self.ended:
            self._publish(final=False)

    def _publish(self, *, final: bool) -> None:
        """Hands the record's making to the recorder: the loop never builds one."""
        self._published = True
        self._published_bytes = self._bytes["a"] + self._bytes["b"]
        relay = self._relay_facts()
        if final:
            # Nothing touches the tracker any more: the recorder may take it as it is.
            tape = None
            if self._tape is not None:
                tape = self._tape.tape(self.id, self._client_ep, self._upstream_ep)
            job = RecordJob(tracker=self._tracker, final=True, relay=relay, tape=tape)
        else:
            try:
                job = live_job(self._tracker, relay)
            except Exception as exc:
                self._broke("record", exc)
                return
            self._live_published = True
        self._submit(job)

    def _relay_facts(self, *, now: float | None = None) -> RelayFacts:
        return RelayFacts(
            session_id=self.id,
            client=self._client_ep,
            upstream=self._upstream_ep,
            client_view=self._views["a"],
            server_view=self._views["b"],
            relayed=self._relayed,
            broken=self._broken,
            bytes_a=self._bytes["a"],
            bytes_b=self._bytes["b"],
            now=self._clock() if now is None else now,
        )

    def _submit(self, item: RecorderItem) -> None:
        try:
            self._recorder.submit(item)
        except Exception as exc:
            # Recorders report their own failures; this only keeps a broken one off the relay.
            self._warn(f"kexproxy: could not hand session {self.id} to the recorder: {exc!r}")

    # -- the tracker guard -----------------------------------------------------------------

    def _guard(self, where: str, call: Callable[[], object], *, stop: bool = True) -> bool:
        """Runs one tracker call; an exception ends inspection, never the relay."""
        if self._broken is not None and stop:
            return False
        try:
            call()
        except Exception as exc:
            self._broke(where, exc)
            return False
        return True

    def _broke(self, where: str, exc: Exception) -> None:
        if self._broken is None:
            self._broken = (
                f"inspection stopped after an internal error in the tracker's {where}: "
                f"{type(exc).__name__}: {exc}; the relay went on"
            )
            self._warn(f"kexproxy: session {self.id}: {self._broken}")
        self._inspect = False

    def _abort_note(self, text: str) -> None:
        self._guard("abort", lambda: self._tracker.abort(text, self._clock()), stop=False)

    # -- the end ---------------------------------------------------------------------------

    def _end(self, *, reset: bool) -> None:
        if self.ended:
            return
        self.ended = True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for pump in self._pumps:
            pump.stop()
        up = self._upstream
        if up is not None and not self._relayed:
            with contextlib.suppress(OSError, ValueError):
                self._loop.remove_writer(up.fileno())
        for sock in (self._client, up):
            if sock is None:
                continue
            if reset:
                reset_socket(sock)
            else:
                sock.close()
        self._on_closed(self)
        self._publish(final=True)


def _who(side: Leg) -> str:
    return "client" if side == "a" else "server"


def dial(upstream: Endpoint) -> tuple[socket.socket | None, int]:
    """A non-blocking connect to `upstream` under way: (the socket, connect's errno), or
    (None, errno) when no socket could be made. The proxy calls it first thing after an
    accept, so that the upstream's handshake and its greeting overlap the proxy's own
    bookkeeping for the new session."""
    family = socket.AF_INET6 if ":" in upstream.ip else socket.AF_INET
    try:
        up = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        return None, exc.errno or errno.EMFILE
    up.setblocking(False)
    _nodelay(up)
    try:
        err = up.connect_ex((upstream.ip, upstream.port))
    except OSError as exc:
        err = exc.errno or errno.EIO
    return up, err


def _finished_connecting(sock: socket.socket) -> int:
    """0 when a non-blocking connect has already completed, its error if it failed, else
    EINPROGRESS. Over loopback the handshake is done by the time connect() returns: going on
    at once saves the relay a loop iteration on every new connection."""
    try:
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            return err
        sock.getpeername()
    except OSError:
        return errno.EINPROGRESS
    return 0


def _nodelay(sock: socket.socket) -> None:
    """No Nagle delay: the relay forwards each chunk as the peer sent it, at once."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def prepare_client(sock: socket.socket) -> None:
    sock.setblocking(False)
    _nodelay(sock)
