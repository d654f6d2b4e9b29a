"""Shared harness for the proxy tests (no tests here): an in-process proxy and fake upstreams.

`RunningProxy` runs one or more `Proxy` instances on an event loop in a background thread,
the way `kexproxy proxy` runs them, and collects every published record. `Upstream` is a
small selector-driven TCP server on 127.0.0.1 with a per-connection handler, for tests that
need exact control of what the "server" sends and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from kexproxy.core.observer import Endpoint
from kexproxy.core.record import SessionRecord
from kexproxy.pipeline import Pipeline, stages
from kexproxy.sources.proxy import Proxy, ProxyConfig, new_event_loop

LOOPBACK = "127.0.0.1"


def config(upstream_port: int, **kwargs: object) -> ProxyConfig:
    """A proxy on a free loopback port relaying to `upstream_port`."""
    return ProxyConfig(listen=(LOOPBACK, 0), upstream=(LOOPBACK, upstream_port), **kwargs)  # type: ignore[arg-type]


def decided_live(record: SessionRecord, final: bool) -> bool:
    """A live record past the first one (`in_progress`, published when a session starts)."""
    return not final and record.outcome != "in_progress"


class RunningProxy:
    """Proxies on one event loop in a thread; `records` holds every (record, final) published."""

    def __init__(
        self,
        *configs: ProxyConfig,
        use_uvloop: bool = True,
        keep_records: bool = True,
    ) -> None:
        self.configs = configs
        self.use_uvloop = use_uvloop
        self.keep_records = keep_records
        self.published: list[tuple[SessionRecord, bool]] = []
        self._stages = Pipeline([], stages=stages())
        self.final_count = 0
        self.warnings: list[str] = []
        self.proxies: list[Proxy] = []
        self.addresses: list[Endpoint] = []
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return self.addresses[0].port

    def _publish(self, record: SessionRecord, final: bool) -> None:
        # The stages every front end runs (the diagnosis), as `kexproxy proxy` does.
        record = self._stages.process(record)
        with self._cond:
            if self.keep_records:
                self.published.append((record, final))
            if final:
                self.final_count += 1
            self._cond.notify_all()

    def _warn(self, text: str) -> None:
        with self._cond:
            self.warnings.append(text)

    def __enter__(self) -> Self:
        started = threading.Event()

        def run() -> None:
            loop = new_event_loop(use_uvloop=self.use_uvloop)
            self._loop = loop
            try:
                loop.run_until_complete(self._main(started))
            except BaseException as exc:
                self._error = exc
                started.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="test-proxy", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the proxy did not start")
        if self._error is not None:
            raise self._error
        return self

    async def _main(self, started: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for cfg in self.configs:
            proxy = Proxy(cfg, self._publish, warn=self._warn)
            self.addresses.append(proxy.start(loop))
            self.proxies.append(proxy)
        started.set()
        await self._stop.wait()
        for proxy in self.proxies:
            proxy.shutdown("the proxy was shut down by the test")

    def call(self, fn: Callable[[], object]) -> object:
        """Runs `fn` on the proxy's loop and returns its result (for reading proxy state)."""
        assert self._loop is not None
        done = threading.Event()
        box: list[object] = []

        def wrapper() -> None:
            box.append(fn())
            done.set()

        self._loop.call_soon_threadsafe(wrapper)
        assert done.wait(10)
        return box[0]

    def open_sessions(self) -> int:
        return int(self.call(lambda: sum(p.open_sessions for p in self.proxies)))  # type: ignore[arg-type]

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            stop = self._stop
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(stop.set)
            self._thread.join(10)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- waiting for records -----------------------------------------------------------------

    def finals(self) -> list[SessionRecord]:
        with self._cond:
            return [r for r, final in self.published if final]

    def wait_finals(self, count: int, timeout: float = 10.0) -> list[SessionRecord]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.final_count < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    finals = {r.id for r, final in self.published if final}
                    live = [r for r, _f in self.published if r.id not in finals]
                    raise AssertionError(
                        f"{self.final_count} final records after {timeout}s, expected {count}; "
                        f"live: {[(r.client, r.client_banner, r.evidence) for r in live]}"
                    )
                self._cond.wait(left)
            return [r for r, final in self.published if final]

    def wait_for(
        self, predicate: Callable[[SessionRecord, bool], bool], timeout: float = 10.0
    ) -> SessionRecord:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for record, final in self.published:
                    if predicate(record, final):
                        return record
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching record after {timeout}s: {self.published}")
                self._cond.wait(left)

    def connect(self, index: int = 0, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection((LOOPBACK, self.addresses[index].port), timeout=timeout)


Handler = Callable[[socket.socket], None]


class Upstream:
    """A TCP server on 127.0.0.1 that runs `handler(conn)` in a thread per connection."""

    def __init__(self, handler: Handler, *, backlog: int = 128) -> None:
        self.handler = handler
        self.listener = socket.socket()
        self.listener.bind((LOOPBACK, 0))
        self.listener.listen(backlog)
        self.port: int = self.listener.getsockname()[1]
        self.errors: list[BaseException] = []
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._accept_thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Self:
        self._accept_thread.start()
        return self

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _addr = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                self.handler(conn)
            except BaseException as exc:
                self.errors.append(exc)

    def __exit__(self, *exc: object) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for thread in self._threads:
            thread.join(5)


class EchoUpstream:
    """An echo server on 127.0.0.1 driven by one selector thread: cheap for many connections."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((LOOPBACK, 0))
        self.listener.listen(1024)
        self.listener.setblocking(False)
        self.port: int = self.listener.getsockname()[1]
        self.accepted = 0
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._running = True

    def __enter__(self) -> Self:
        self._sel.register(self.listener, selectors.EVENT_READ)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._thread.start()
        return self

    def _run(self) -> None:
        while self._running:
            for key, _mask in self._sel.select():
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._wake_r:
                    return
                if sock is self.listener:
                    with contextlib.suppress(BlockingIOError):
                        while True:
                            conn, _ = self.listener.accept()
                            conn.setblocking(False)
                            self.accepted += 1
                            self._sel.register(conn, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._sel.unregister(sock)
                    sock.close()
                    continue
                with contextlib.suppress(OSError):
                    sock.setblocking(True)
                    sock.sendall(data)
                    sock.setblocking(False)

    def __exit__(self, *exc: object) -> None:
        self._running = False
        self._wake_w.send(b"x")
        self._thread.join(5)
        for key in list(self._sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._sel.close()
        self._wake_w.close()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise AssertionError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_until_eof(sock: socket.socket) -> bytes:
    buf = bytearray()
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return bytes(buf)
        buf += chunk


def reset(sock: socket.socket) -> None:
    """Closes with an RST (SO_LINGER 0), as a crashing peer's kernel would."""
    import struct

    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def refused_port() -> int:
    """A loopback port with nothing listening: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


def fd_count() -> int:
    import os

    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
