"""The live relay with scripted peers on loopback: bytes, closes, failures, bounds, records.

Peers here are plain sockets speaking bytes from tests/builders.py, so each test controls
exactly what crosses the relay and when; real SSH implementations are in test_proxy_peers.py.
"""

from __future__ import annotations

import gc
import hashlib
import os
import socket
import threading
import time
from collections import Counter

import pytest

from kexproxy.core.record import SessionRecord
from kexproxy.core.tracker import SessionTracker
from kexproxy.present import summary
from kexproxy.sources import proxy_relay
from kexproxy.sources.proxy import parse_address
from tests.builders import (
    assert_valid_record,
    client_offer,
    ident,
    kexinit,
    newkeys,
    offer,
    openssh_handshake_start,
    server_offer,
)
from tests.sources.proxy_harness import (
    LOOPBACK,
    EchoUpstream,
    RunningProxy,
    Upstream,
    config,
    decided_live,
    fd_count,
    recv_exactly,
    recv_until_eof,
    refused_port,
    reset,
    rss_bytes,
)

CLIENT_FLIGHT, SERVER_FLIGHT = openssh_handshake_start()


def ssh_server(after_handshake: str = "echo") -> Upstream:
    """An upstream that does the SSH first flights and NEWKEYS, then echoes until EOF."""

    def handler(conn: socket.socket) -> None:
        conn.sendall(SERVER_FLIGHT)
        recv_exactly(conn, len(CLIENT_FLIGHT))
        conn.sendall(newkeys())
        recv_exactly(conn, len(newkeys()))
        while data := conn.recv(1 << 20):
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)

    return Upstream(handler)


def handshake(sock: socket.socket) -> None:
    sock.sendall(CLIENT_FLIGHT)
    assert recv_exactly(sock, len(SERVER_FLIGHT)) == SERVER_FLIGHT
    sock.sendall(newkeys())
    assert recv_exactly(sock, len(newkeys())) == newkeys()


@pytest.mark.parametrize("use_uvloop", [True, False], ids=["uvloop", "asyncio"])
@pytest.mark.parametrize("splice", [True, False], ids=["splice", "copy"])
def test_bytes_cross_unchanged_and_the_handshake_is_recorded(
    use_uvloop: bool, splice: bool
) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    with (
        ssh_server() as up,
        RunningProxy(config(up.port, splice=splice), use_uvloop=use_uvloop) as proxy,
    ):
        with proxy.connect() as sock:
            handshake(sock)
            echoed = bytearray()

            def reader() -> None:
                echoed.extend(recv_until_eof(sock))

            thread = threading.Thread(target=reader)
            thread.start()
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            thread.join(20)
            client_port = sock.getsockname()[1]
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
        [record] = proxy.wait_finals(1)
    data = assert_valid_record(record)
    assert data["source"] == "proxy"
    assert data["outcome"] == "negotiated"
    assert data["client"] == {"ip": LOOPBACK, "port": client_port}
    assert data["server"] == {"ip": LOOPBACK, "port": up.port}
    assert data["client_banner"] == "SSH-2.0-OpenSSH_9.6"
    assert data["bytes"] == {
        "c2s": len(CLIENT_FLIGHT) + len(newkeys()) + len(payload),
        "s2c": len(SERVER_FLIGHT) + len(newkeys()) + len(payload),
    }
    assert data["evidence"]["first_close"] == "client"
    assert data["evidence"]["how"] == "fin"
    assert [c["side"] for c in data["evidence"]["closes"]] == ["client", "server"]


def test_half_close_is_passed_on_and_the_other_direction_keeps_flowing() -> None:
    got_eof = threading.Event()

    def handler(conn: socket.socket) -> None:
        assert recv_until_eof(conn) == b"request"
        got_eof.set()
        time.sleep(0.1)  # the client has half-closed; this side still talks
        conn.sendall(b"answer after your FIN")

    with Upstream(handler) as up, RunningProxy(config(up.port)) as proxy:
        with proxy.connect() as sock:
            sock.sendall(b"request")
            sock.shutdown(socket.SHUT_WR)
            assert got_eof.wait(5)
            assert recv_until_eof(sock) == b"answer after your FIN"
        [record] = proxy.wait_finals(1)
    assert record.evidence["first_close"] == "client"
    assert record.evidence["how"] == "fin"
    assert not up.errors


def test_a_client_rst_reaches_the_server_as_rst() -> None:
    outcome: list[str] = []
    ready = threading.Event()

    def handler(conn: socket.socket) -> None:
        conn.sendall(SERVER_FLIGHT)
        recv_exactly(conn, len(ident("OpenSSH_9.6")))
        ready.set()
        try:
            data = conn.recv(100)
            outcome.append(f"data {data!r}")
        except ConnectionResetError:
            outcome.append("reset")

    with Upstream(handler) as up, RunningProxy(config(up.port)) as proxy:
        sock = proxy.connect()
        sock.sendall(ident("OpenSSH_9.6"))
        assert ready.wait(5)
        reset(sock)
        [record] = proxy.wait_finals(1)
        time.sleep(0.1)
    assert outcome == ["reset"]
    assert record.evidence["first_close"] == "client"
    assert record.evidence["how"] == "rst"
    assert record.outcome == "incomplete"


def test_a_server_rst_reaches_the_client_as_rst() -> None:
    def handler(conn: socket.socket) -> None:
        conn.sendall(SERVER_FLIGHT)
        recv_exactly(conn, len(CLIENT_FLIGHT))
        reset(conn)

    with Upstream(handler) as up, RunningProxy(config(up.port)) as proxy:
        with proxy.connect() as sock:
            sock.sendall(CLIENT_FLIGHT)
            recv_exactly(sock, len(SERVER_FLIGHT))
            with pytest.raises(ConnectionResetError):
                while sock.recv(100):
                    pass
        [record] = proxy.wait_finals(1)
    assert record.evidence["first_close"] == "server"
    assert record.evidence["how"] == "rst"
    assert record.outcome == "aborted"  # the lists matched, the connection ended before NEWKEYS


def test_a_refused_upstream_resets_the_client_and_is_recorded_as_aborted() -> None:
    port = refused_port()
    with RunningProxy(config(port)) as proxy:
        for _ in range(2):  # and the proxy goes on serving
            # The reset may come so fast that connect() itself reports it.
            with pytest.raises(ConnectionResetError), proxy.connect() as sock:
                sock.sendall(ident("OpenSSH_9.6"))
                while sock.recv(100):
                    pass
        records = proxy.wait_finals(2)
    for record in records:
        data = assert_valid_record(record)
        assert data["outcome"] == "aborted"
        assert any(f"upstream 127.0.0.1 port {port} refused" in n for n in data["notes"])
        assert f"upstream 127.0.0.1 port {port} refused" in data["evidence"]["aborted"]
        assert not any("half duplex" in n for n in data["notes"])  # a relay sees both sides
        assert summary(record).startswith(f"the upstream 127.0.0.1 port {port} refused")
        assert data["evidence"]["first_close"] == "server"
        assert data["evidence"]["how"] == "rst"
    # What the client sent before it was turned away says who it was, when it came in time.
    assert any(r.client_banner == "SSH-2.0-OpenSSH_9.6" for r in records) or all(
        r.client_banner is None for r in records
    )


def test_an_upstream_that_never_answers_times_out() -> None:
    # A listener whose accept queue is full drops SYNs: the connect hangs, as to a dead host.
    listener = socket.socket()
    listener.bind((LOOPBACK, 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex((LOOPBACK, port))
        fillers.append(filler)
    time.sleep(0.1)
    try:
        with RunningProxy(config(port, connect_timeout=0.3, handshake_timeout=5.0)) as proxy:
            with proxy.connect() as sock:
                started = time.monotonic()
                with pytest.raises(ConnectionResetError):
                    while sock.recv(100):
                        pass
                assert time.monotonic() - started < 3
            [record] = proxy.wait_finals(1)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert record.outcome == "aborted"
    assert record.evidence["how"] == "timeout"
    assert "did not answer within 0.3 s" in record.evidence["timeout"]


def test_a_stalled_handshake_times_out_is_recorded_and_keeps_relaying() -> None:
    got = threading.Event()
    received = bytearray()

    def handler(conn: socket.socket) -> None:
        conn.sendall(SERVER_FLIGHT)
        received.extend(recv_exactly(conn, len(ident("OpenSSH_9.6")) + 5))
        got.set()
        recv_until_eof(conn)

    with Upstream(handler) as up, RunningProxy(config(up.port, handshake_timeout=0.3)) as proxy:
        with proxy.connect() as sock:
            recv_exactly(sock, len(SERVER_FLIGHT))
            sock.sendall(ident("OpenSSH_9.6"))  # and then nothing: a stalled client
            live = proxy.wait_for(decided_live, timeout=5)
            assert live.evidence["how"] == "timeout"
            assert "did not finish within 0.3 s" in live.evidence["timeout"]
            sock.sendall(b"later")  # the relay still carries bytes after the timeout
            assert got.wait(5)
        [record] = proxy.wait_finals(1)
    assert bytes(received).endswith(b"later")
    assert record.evidence["timeout"] == live.evidence["timeout"]
    assert record.outcome == "incomplete"


def test_a_connection_where_nothing_moves_is_closed_at_the_timeout() -> None:
    def handler(conn: socket.socket) -> None:
        recv_until_eof(conn)

    with Upstream(handler) as up, RunningProxy(config(up.port, handshake_timeout=0.3)) as proxy:
        with proxy.connect() as sock:
            assert recv_until_eof(sock) == b""
        [record] = proxy.wait_finals(1)
    assert record.evidence["how"] == "timeout"
    assert "neither side sent anything within 0.3 s" in record.evidence["timeout"]


def test_a_failed_negotiation_is_published_before_the_connection_closes() -> None:
    client = ident("OpenSSH_9.6") + kexinit(client_offer(kex=["diffie-hellman-group1-sha1"]))
    server = ident("OpenSSH_9.2p1") + kexinit(server_offer(kex=["curve25519-sha256"]))
    release = threading.Event()
    seen: list[int] = []  # the port the server saw its peer (the proxy's upstream leg) on

    def handler(conn: socket.socket) -> None:
        seen.append(conn.getpeername()[1])
        conn.sendall(server)
        recv_exactly(conn, len(client))
        release.wait(5)

    with Upstream(handler) as up, RunningProxy(config(up.port)) as proxy:
        with proxy.connect() as sock:
            sock.sendall(client)
            recv_exactly(sock, len(server))
            live = proxy.wait_for(decided_live)
            assert live.outcome == "failed"
            assert live.ended is not None
            release.set()
            recv_until_eof(sock)
        [record] = proxy.wait_finals(1)
    assert record.id == live.id
    assert record.failing_lists == ["kex_algorithms"]
    # The first row came when the connection was accepted: the same start, no end yet.
    first, first_is_final = proxy.published[0]
    assert (first.id, first.outcome, first_is_final) == (record.id, "in_progress", False)
    assert first.ended is None and first.started == record.started
    assert (first.client, first.server) == (record.client, record.server)
    # Each side's message names the peer as that side saw it through the relay.
    assert record.rejections["client"]["message"].startswith(
        f"Unable to negotiate with 127.0.0.1 port {proxy.port}: no matching key exchange"
    )
    # (Not the client's own port: the upstream leg's, which Linux may even give the same
    # number, since the two connections go to different places.)
    assert record.rejections["server"]["message"].startswith(
        f"Unable to negotiate with 127.0.0.1 port {seen[0]}: no matching key exchange"
    )
    assert any(
        n.startswith("relayed by kexproxy: the client saw its peer as 127.0.0.1")
        for n in record.notes
    )


def test_garbage_is_relayed_and_recorded_as_not_ssh() -> None:
    garbage = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 40
    with EchoUpstream() as up, RunningProxy(config(up.port)) as proxy:
        with proxy.connect() as sock:
            sock.sendall(garbage)
            sock.shutdown(socket.SHUT_WR)
            assert recv_until_eof(sock) == garbage
        [record] = proxy.wait_finals(1)
    assert record.outcome == "not_ssh"
    assert record.bytes == {"c2s": len(garbage), "s2c": len(garbage)}


def test_an_exception_in_the_tracker_ends_inspection_never_the_relay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: SessionTracker, side: str, data: bytes, ts: float) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(SessionTracker, "receive", broken)
    payload = os.urandom(200_000)
    with EchoUpstream() as up, RunningProxy(config(up.port)) as proxy:
        with proxy.connect() as sock:
            sock.sendall(CLIENT_FLIGHT + payload)
            sock.shutdown(socket.SHUT_WR)
            assert recv_until_eof(sock) == CLIENT_FLIGHT + payload
        [record] = proxy.wait_finals(1)
        warnings = list(proxy.warnings)
    assert any("RuntimeError: boom" in n and "the relay went on" in n for n in record.notes)
    assert any("RuntimeError: boom" in w for w in warnings)
    assert record.bytes["s2c"] == len(CLIENT_FLIGHT) + len(payload)


def test_an_exception_while_building_the_record_still_gives_a_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: SessionTracker) -> SessionRecord:
        raise ValueError("no record today")

    monkeypatch.setattr(SessionTracker, "finish", broken)
    with EchoUpstream() as up, RunningProxy(config(up.port)) as proxy:
        with proxy.connect() as sock:
            sock.sendall(b"hello")
            sock.shutdown(socket.SHUT_WR)
            assert recv_until_eof(sock) == b"hello"
        [record] = proxy.wait_finals(1)
    data = assert_valid_record(record)
    assert data["outcome"] == "incomplete"
    assert data["bytes"] == {"c2s": 5, "s2c": 5}
    assert any("no record today" in n for n in data["notes"])


def test_shutdown_records_open_sessions_and_closes_them() -> None:
    def handler(conn: socket.socket) -> None:
        conn.sendall(SERVER_FLIGHT)
        recv_until_eof(conn)

    with Upstream(handler) as up:
        proxy = RunningProxy(config(up.port))
        with proxy, proxy.connect() as sock:
            sock.sendall(ident("OpenSSH_9.6"))
            recv_exactly(sock, len(SERVER_FLIGHT))
            proxy.stop()
            assert recv_until_eof(sock) == b""
            [record] = proxy.finals()
    assert any("shut down" in n for n in record.notes)
    assert record.outcome == "aborted"


def test_a_reader_that_stops_reading_holds_the_writer_back() -> None:
    """Backpressure: a stalled receiver stops the sender; the relay buffers one chunk at most."""
    stop = threading.Event()

    def handler(conn: socket.socket) -> None:
        stop.wait(10)  # never reads

    for splice in (True, False):
        with Upstream(handler) as up, RunningProxy(config(up.port, splice=splice)) as proxy:
            with proxy.connect() as sock:
                sock.sendall(b"not ssh at all\r\n" * 10)  # not SSH: the fast path carries it
                sock.setblocking(False)
                sent = 0
                chunk = bytes(1 << 20)
                stalled_since = time.monotonic()
                while time.monotonic() - stalled_since < 0.3 and sent < 256 << 20:
                    try:
                        sent += sock.send(chunk)
                        stalled_since = time.monotonic()
                    except BlockingIOError:
                        time.sleep(0.01)
                # Four socket buffers (autotuned, at most a few MiB each) and one pipe/chunk.
                assert sent < 64 << 20, sent
            stop.set()
            time.sleep(0.05)
            stop.clear()


RELAY_MODULES = ("kexproxy", "asyncio", "socket", "_asyncio", "uvloop")


def relay_objects() -> Counter[str]:
    """The live objects of kexproxy's, asyncio's and the socket module's types, by type."""
    gc.collect()
    kinds: Counter[str] = Counter()
    for o in gc.get_objects():
        module = type(o).__dict__.get("__module__") or ""
        if isinstance(module, str) and module.startswith(RELAY_MODULES):
            kinds[f"{module}.{type(o).__qualname__}"] += 1
    return kinds


def test_ten_thousand_short_connections_leave_no_descriptors_or_memory_behind() -> None:
    with EchoUpstream() as up, RunningProxy(config(up.port), keep_records=False) as proxy:

        def burst(n: int) -> None:
            for _ in range(n // 50):
                socks = [proxy.connect() for _ in range(50)]
                for sock in socks:
                    sock.sendall(b"SSH-2.0-x\r\n")
                    sock.shutdown(socket.SHUT_WR)
                for sock in socks:
                    recv_until_eof(sock)
                    sock.close()

        burst(1000)  # warm up: caches, the allocator's arenas, the loop's tables
        proxy.wait_finals(1000, timeout=30)
        assert proxy.open_sessions() == 0
        fds, rss, before = fd_count(), rss_bytes(), relay_objects()
        burst(10_000)
        proxy.wait_finals(11_000, timeout=60)
        assert proxy.open_sessions() == 0
        assert fd_count() == fds
        # A leak of one object a connection is 10,000 more of kexproxy's, asyncio's or socket
        # objects (the process's other objects come and go with whatever else it runs: CI once
        # counted 5,410 more of all kinds, RSS +0). What is still on its way out (the last
        # records, the loop's last callbacks) is gone within moments; a leak is not.
        deadline = time.monotonic() + 10
        while True:
            grew = relay_objects() - before
            if grew.total() < 1_000 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        # The allocator's high-water mark is not a leak, and on a loaded machine (records
        # queued while the test's own client runs ahead) it moves by several MiB: RSS has a
        # looser bound, for what is not an object.
        grown = rss_bytes() - rss
        print(f"\n10,000 connections: {grew.total():+d} relay objects, RSS {grown >> 10:+d} KiB")
        assert grew.total() < 1_000, f"after 10,000 connections: {grew.most_common(8)}"
        assert grown < 32 << 20, f"RSS grew by {grown >> 10} KiB over 10,000 connections"
        assert up.accepted == 11_000


def test_splice_is_used_once_inspection_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = os.splice

    def counting(*args: object, **kwargs: object) -> int:
        moved = real(*args, **kwargs)  # type: ignore[arg-type]
        if moved:
            calls["n"] += 1
        return moved

    monkeypatch.setattr(proxy_relay.os, "splice", counting)
    with ssh_server() as up, RunningProxy(config(up.port)) as proxy:
        with proxy.connect() as sock:
            handshake(sock)
            assert calls["n"] == 0  # no handshake byte went through splice: all were inspected
            sock.sendall(b"x" * 100_000)
            recv_exactly(sock, 100_000)
            sock.shutdown(socket.SHUT_WR)
            recv_until_eof(sock)
        proxy.wait_finals(1)
    assert calls["n"] > 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2222", ("127.0.0.1", 2222)),
        (":2222", ("127.0.0.1", 2222)),
        ("0.0.0.0:2222", ("0.0.0.0", 2222)),
        ("[::1]:2222", ("::1", 2222)),
        ("[::]", None),
        ("host.example", None),
        ("127.0.0.1:", None),
        ("[::1]:", None),
        ("[]:0", None),
        ("-1", None),
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int] | None) -> None:
    if expected is None:
        with pytest.raises(ValueError, match=r"no port|no address|port must be"):
            parse_address(text, default_host="127.0.0.1", default_port=None)
    else:
        assert parse_address(text, default_host="127.0.0.1", default_port=None) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server.example", ("server.example", 22)),
        ("server.example:2200", ("server.example", 2200)),
        ("10.0.0.5", ("10.0.0.5", 22)),
        ("::1", ("::1", 22)),
        ("[fe80::1%eth0]:22", ("fe80::1%eth0", 22)),
    ],
)
def test_upstream_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text, default_host=None, default_port=22) == expected


@pytest.mark.parametrize("bad", ["host:99999", "host:x", "[::1", "[::1]x", ":"])
def test_bad_addresses(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_address(bad, default_host=None, default_port=22)


def test_offer_builders_agree_with_the_relay() -> None:
    """The same offers on both sides negotiate: the baseline the failure tests change."""
    with ssh_server() as up, RunningProxy(config(up.port)) as proxy:
        with proxy.connect() as sock:
            handshake(sock)
            sock.shutdown(socket.SHUT_WR)
            recv_until_eof(sock)
        [record] = proxy.wait_finals(1)
    assert record.negotiated is not None
    assert record.negotiated["kex"] == offer().kex[0]


def test_live_sessions_are_republished_as_their_bytes_move() -> None:
    with ssh_server() as up, RunningProxy(config(up.port, refresh=0.1)) as proxy:
        with proxy.connect() as sock:
            handshake(sock)
            first = proxy.wait_for(decided_live)
            sock.sendall(b"x" * 10_000)
            recv_exactly(sock, 10_000)
            moved = proxy.wait_for(
                lambda r, final: decided_live(r, final) and r.bytes["c2s"] > 10_000
            )
            sock.shutdown(socket.SHUT_WR)
            recv_until_eof(sock)
        [final] = proxy.wait_finals(1)
    assert first.outcome == moved.outcome == final.outcome == "negotiated"
    assert moved.id == first.id == final.id
    assert moved.bytes["c2s"] == first.bytes["c2s"] + 10_000
    assert moved.ended is not None and first.ended is not None and moved.ended >= first.ended
    assert final.bytes == {"c2s": moved.bytes["c2s"], "s2c": moved.bytes["s2c"]}
