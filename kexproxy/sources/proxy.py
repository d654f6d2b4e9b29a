"""The live source: a transparent TCP relay that shows every SSH handshake to the core.

Theory of operation. `Proxy` owns one listening socket and accepts in batches from a
readiness callback; each accepted connection becomes a `Session` (proxy_session.py) that
connects upstream and relays both ways with two `Pump`s (proxy_relay.py). Everything runs
on one event loop through readiness callbacks rather than tasks, because a callback per
readiness event is the cheapest thing asyncio (and uvloop) can do, and connection setup
and round-trip latency are what a relay is judged by. The loop never builds a record: each
session hands its tracker to a recorder (proxy_record.py), which never blocks: a thread of
this process given a `publish` callback, or, for ``kexproxy proxy``, a recording process
fed through a pipe (kexproxy/worker_process.py).

In transparent mode (``--transparent``) the upstream of each connection is the address the
client really connected to, recovered from netfilter (proxy_netfilter.py) after an
iptables ``REDIRECT``. In TPROXY mode (``--tproxy``) an iptables ``TPROXY`` rule hands the
connection over unchanged: its original destination is the accepted socket's own address,
and the upstream leg leaves from the client's own address (proxy_tproxy.py), so the server
sees the real client.
"""

from __future__ import annotations

import asyncio
import resource
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from kexproxy.core.catalogue import catalogue
from kexproxy.core.observer import Endpoint
from kexproxy.sources.proxy_netfilter import original_destination
from kexproxy.sources.proxy_record import InThreadRecorder, Publish, Warn
from kexproxy.sources.proxy_session import (
    RecordSubmit,
    Session,
    dial,
    endpoint_of,
    prepare_client,
)
from kexproxy.sources.proxy_tproxy import dial_as_client, is_own_address, make_transparent

#: Connections accepted per readiness callback: enough to drain a burst, few enough that
#: relaying for the sessions already open is not held up.
ACCEPT_BATCH = 64
#: How long accepting pauses when the process is out of file descriptors (EMFILE): the
#: listener stays readable, and retrying at once would spin.
ACCEPT_PAUSE = 0.1
DEFAULT_HANDSHAKE_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 10.0
#: How often live sessions whose byte counts moved are published again.
DEFAULT_REFRESH = 5.0
SWITCH_INTERVAL = 0.0005
#: Session ids (see `Proxy.__init__`): 2^64 / golden ratio, odd, so multiplying permutes.
_ID_STEP = 0x9E3779B97F4A7C15
_ID_MASK = (1 << 64) - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyConfig:
    """What the proxy listens on and relays to; `upstream` is None in transparent and TPROXY mode."""

    listen: tuple[str, int]
    upstream: tuple[str, int] | None
    transparent: bool = False
    #: TPROXY mode: the original destination is the accepted socket's address, and the
    #: upstream leg leaves from the client's own address.
    tproxy: bool = False
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    refresh: float = DEFAULT_REFRESH
    backlog: int = 1024
    splice: bool = True
    #: Where each session's capture file goes (`--pcap`); None writes none.
    pcap_dir: str | None = None


def parse_address(
    text: str, *, default_host: str | None, default_port: int | None
) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT``, ``:PORT``, ``PORT`` or ``HOST`` as (host, port).

    Raises ValueError with a message fit for the command line.
    """
    text = text.strip()
    host: str | None
    port_text: str | None
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"{text!r}: missing ']' after an IPv6 address")
        host = text[1:close]
        if not host:
            raise ValueError(f"{text!r}: no address between '[' and ']'")
        rest = text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected ':PORT' after ']'")
        port_text = rest[1:] if rest else None
        if port_text == "":
            raise ValueError(f"{text!r}: no port after ':'")
    elif text.isdigit():
        host, port_text = None, text
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        if not port_text:
            raise ValueError(f"{text!r}: no port after ':'")
    else:
        host, port_text = text, None  # a host name, an IPv4 address or a bare IPv6 address
    host = host or default_host
    if host is None:
        raise ValueError(f"{text!r}: no host given")
    if not port_text:
        if default_port is None:
            raise ValueError(f"{text!r}: no port given")
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


def resolve(host: str, port: int) -> Endpoint:
    """The first address of `host`, resolved once at start: a per-connection lookup would
    put DNS latency on every connection setup."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    if not infos:
        raise OSError(f"{host}: no address")
    return endpoint_of(infos[0][4])


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def raise_fd_limit() -> int:
    """Raises the soft open-files limit to the hard one: every session holds up to six."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
        except (ValueError, OSError):
            return soft
    return soft


class Proxy:
    """Accepts clients and runs one `Session` per connection on the running event loop."""

    def __init__(
        self,
        config: ProxyConfig,
        publish: Publish | None = None,
        *,
        recorder: RecordSubmit | None = None,
        clock: Callable[[], float] = time.time,
        warn: Warn = _stderr,
    ) -> None:
        """Records go to `recorder` (whose owner closes it), or else through a thread of this
        process to `publish` (closed by `shutdown`)."""
        if (publish is None) == (recorder is None):
            raise ValueError("give the proxy either publish or recorder")
        self.config = config
        self._publish = publish
        self._recorder = recorder
        self._own_recorder: InThreadRecorder | None = None
        self._clock = clock
        self._warn = warn
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: socket.socket | None = None
        self._upstream: Endpoint | None = None
        self._sessions: set[Session] = set()
        self._accepting = False
        self._accept_warned: set[int | None] = set()
        self._refresh_timer: asyncio.TimerHandle | None = None
        self.address: Endpoint | None = None
        self.accepted = 0
        # Ids: a counter spread over 64 bits by an odd multiplier (a bijection, so unique
        # within a run) from a random start per run (so runs sharing a store do not
        # collide); as cheap as a counter, and a few leading digits tell sessions apart.
        self._id_offset = secrets.randbits(64)
        self._serial = 0

    @property
    def _follows_destination(self) -> bool:
        """True when each connection goes to its own original destination."""
        return self.config.transparent or self.config.tproxy

    @property
    def open_sessions(self) -> int:
        return len(self._sessions)

    def start(self, loop: asyncio.AbstractEventLoop) -> Endpoint:
        """Binds and starts accepting; returns the address it listens on (port 0 resolved)."""
        self._loop = loop
        # The core reads its algorithm catalogue on first use; reading it now means that a
        # proxy out of file descriptors later can still build every record.
        catalogue()
        if self.config.upstream is not None and not self._follows_destination:
            self._upstream = resolve(*self.config.upstream)
        host, port = self.config.listen
        infos = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
        )
        family, _type, _proto, _name, sockaddr = infos[0]
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.config.tproxy:
                make_transparent(listener)
            if family == socket.AF_INET6 and sockaddr[0] == "::":
                # "::" serves IPv4 clients too (shown as plain IPv4 in records).
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            listener.bind(sockaddr)
            listener.listen(self.config.backlog)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.address = endpoint_of(listener.getsockname())
        if self._publish is not None:
            self._own_recorder = InThreadRecorder(
                self._publish, warn=self._warn, capture_dir=self.config.pcap_dir
            )
            self._recorder = self._own_recorder
        assert self._recorder is not None
        self._recorder.attach(loop)

        self._resume_accepting()
        if self.config.refresh > 0:
            self._refresh_timer = loop.call_later(self.config.refresh, self._refresh)
        return self.address

    def stop_accepting(self) -> None:
        if self._listener is None or self._loop is None:
            return
        self._pause_accepting()
        self._listener.close()
        self._listener = None
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
            self._refresh_timer = None

    def shutdown(self, reason: str) -> None:
        """Stops accepting and ends every open session, recording `reason` in each.

        Returns once every final record has been published.
        """
        self.stop_accepting()
        for session in list(self._sessions):
            session.shutdown(reason)
        if self._own_recorder is not None:
            self._own_recorder.close()
            self._own_recorder = None

    # -- accepting ---------------------------------------------------------------------------

    def _resume_accepting(self) -> None:
        if not self._accepting and self._listener is not None and self._loop is not None:
            self._accepting = True
            self._loop.add_reader(self._listener.fileno(), self._on_acceptable)

    def _pause_accepting(self) -> None:
        if self._accepting and self._listener is not None and self._loop is not None:
            self._accepting = False
            self._loop.remove_reader(self._listener.fileno())

    def _on_acceptable(self) -> None:
        listener, loop = self._listener, self._loop
        if listener is None or loop is None:
            return
        for _ in range(ACCEPT_BATCH):
            try:
                conn, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                # Out of descriptors or memory (or anything unexpected): the listener stays
                # readable, so retrying at once would spin; pause, say so once, go on.
                if exc.errno not in self._accept_warned:
                    self._accept_warned.add(exc.errno)
                    self._warn(f"kexproxy: cannot accept more connections now: {exc.strerror}")
                self._pause_accepting()
                loop.call_later(ACCEPT_PAUSE, self._resume_accepting)
                return
            self._admit(conn, addr)

    def _admit(self, conn: socket.socket, addr: tuple[object, ...]) -> None:
        loop = self._loop
        assert loop is not None
        self.accepted += 1
        # The upstream's connect first: its handshake and the server's greeting then
        # overlap everything else done here for the session.
        dialled = None
        if not self._follows_destination and self._upstream is not None:
            dialled = dial(self._upstream)
        # accept()'s address, not getpeername(): a client that already reset while waiting
        # in the backlog has no peer name any more, and still deserves its record.
        client_ep = endpoint_of(addr)
        try:
            prepare_client(conn)
            local = endpoint_of(conn.getsockname())
        except OSError:
            local = self.address or Endpoint(ip=self.config.listen[0], port=self.config.listen[1])
        refuse: str | None = None
        if self.config.tproxy:
            # Both peers see each other: the client's view is the server, the server's
            # (the upstream socket's name) the client.
            upstream, client_view = local, local
            refuse = self._addressed_to_proxy(local)
            if refuse is None:
                dialled = dial_as_client(local, client_ep)
        elif self.config.transparent:
            upstream, refuse = self._original_destination(conn, local)
            client_view = upstream
        else:
            assert self._upstream is not None
            upstream, client_view = self._upstream, local
        self._serial += 1
        assert self._recorder is not None
        session = Session(
            session_id=f"{(self._serial * _ID_STEP + self._id_offset) & _ID_MASK:016x}",
            loop=loop,
            client=conn,
            client_ep=client_ep,
            client_view=client_view,
            upstream=upstream,
            recorder=self._recorder,
            on_closed=self._sessions.discard,
            clock=self._clock,
            warn=self._warn,
            handshake_timeout=self.config.handshake_timeout,
            connect_timeout=self.config.connect_timeout,
            use_splice=self.config.splice,
            refuse=refuse,
            dialled=dialled,
            keep_bytes=self.config.pcap_dir is not None,
        )
        self._sessions.add(session)
        session.start()

    def _original_destination(
        self, conn: socket.socket, local: Endpoint
    ) -> tuple[Endpoint, str | None]:
        try:
            dest = endpoint_of(original_destination(conn))
        except OSError as exc:
            return local, (
                f"transparent mode: no original destination for this connection "
                f"({exc.strerror or exc}); it was not redirected here by iptables, so it was reset"
            )
        if dest == local or (self.address is not None and dest == self.address):
            return dest, (
                "transparent mode: the connection was addressed to the proxy itself; "
                "relaying it would loop, so it was reset"
            )
        return dest, None

    def _addressed_to_proxy(self, local: Endpoint) -> str | None:
        """Why a TPROXY-mode connection must not be relayed: it was sent to the proxy itself
        (not steered by a TPROXY rule), and relaying it would connect back to the proxy."""
        if self.address is None or local.port != self.address.port:
            return None
        if local != self.address and not is_own_address(local.ip):
            return None
        return (
            "TPROXY mode: the connection was addressed to the proxy itself; "
            "relaying it would loop, so it was reset"
        )

    def _refresh(self) -> None:
        loop = self._loop
        if loop is None or self._listener is None:
            return
        for session in list(self._sessions):
            session.refresh()
        self._refresh_timer = loop.call_later(self.config.refresh, self._refresh)


async def serve(
    config: ProxyConfig,
    publish: Publish | None = None,
    *,
    recorder: RecordSubmit | None = None,
    stop: asyncio.Event,
    ready: Callable[[Endpoint], None] | None = None,
    clock: Callable[[], float] = time.time,
    warn: Warn = _stderr,
    shutdown_reason: Callable[[], str] = lambda: "the proxy was shut down",
    drain: asyncio.Event | None = None,
) -> Proxy:
    """Runs the proxy on the running loop until `stop` is set, then ends every session;
    once `drain` is set it takes no new connection and relays the open ones on."""
    proxy = Proxy(config, publish, recorder=recorder, clock=clock, warn=warn)
    address = proxy.start(asyncio.get_running_loop())
    if ready is not None:
        ready(address)

    async def drained() -> None:
        assert drain is not None
        await drain.wait()
        proxy.stop_accepting()

    draining = asyncio.create_task(drained()) if drain is not None else None
    try:
        await stop.wait()
    finally:
        if draining is not None:
            draining.cancel()
        proxy.shutdown(shutdown_reason())
    return proxy


def new_event_loop(*, use_uvloop: bool = True) -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed (cheaper callbacks, faster setup), else asyncio's."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def run_proxy(
    config: ProxyConfig,
    publish: Publish | None = None,
    *,
    recorder: RecordSubmit | None = None,
    ready: Callable[[Endpoint], None] | None = None,
    use_uvloop: bool = True,
    warn: Warn = _stderr,
) -> None:
    """Runs the proxy in this (main) thread until SIGINT or SIGTERM, then ends every session."""
    raise_fd_limit()
    # When the record thread holds the interpreter, the relay waits at most this long for
    # it instead of Python's default 5 ms: a round trip must not wait for a record.
    sys.setswitchinterval(SWITCH_INTERVAL)
    loop = new_event_loop(use_uvloop=use_uvloop)
    received: list[str] = []

    async def main() -> None:
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):

            def on_signal(signum: int = signum) -> None:
                received.append(signal.Signals(signum).name)
                stop.set()

            loop.add_signal_handler(signum, on_signal)
        await serve(
            config,
            publish,
            recorder=recorder,
            stop=stop,
            ready=ready,
            warn=warn,
            shutdown_reason=lambda: (
                "the proxy was shut down"
                + (f" ({received[0]})" if received else "")
                + " while the session was open"
            ),
        )

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
