"""The SSH probe's I/O against loopback stand-ins: what it sends, its bounds, hostile servers, and the client audit."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from kexproxy.cli import main
from kexproxy.core.events import Disconnect, Identification, KexInitReceived, KexMessage
from kexproxy.core.hostkey import fingerprint
from kexproxy.core.parser import DirectionParser
from kexproxy.core.record import SessionRecord
from kexproxy.sources.ssh_probe import (
    MAX_ANSWER_BYTES,
    ClientAudit,
    ListenLimits,
    ProbeLimits,
    probe_ssh,
)
from tests.builders import (
    client_offer,
    ecdh_reply,
    host_key,
    ident,
    ignore,
    kexinit,
    server_offer,
)

LOOPBACK = "127.0.0.1"
HOST_KEYS = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-256")


class Listener:
    """A loopback server that answers each connection with `reply` and keeps what it was sent
    (what `reply` read itself it returns, so that nothing is lost)."""

    def __init__(self, reply: Callable[[socket.socket], bytes | None]) -> None:
        self.sock = socket.create_server((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        self.arrivals: list[float] = []
        self.received: list[bytes] = []
        self._reply = reply
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.arrivals.append(time.monotonic())
            got = bytearray()
            with conn, contextlib.suppress(OSError):
                got += self._reply(conn) or b""
                conn.settimeout(3)
                while data := conn.recv(65536):
                    got += data
            self.received.append(bytes(got))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Callable[[Callable[[socket.socket], bytes | None]], Listener]]:
    made: list[Listener] = []

    def make(reply: Callable[[socket.socket], bytes | None]) -> Listener:
        made.append(Listener(reply))
        return made[-1]

    yield make
    for one in made:
        one.close()


def _ssh_server(conn: socket.socket) -> bytes:
    """Banner, KEXINIT and (once the client's key exchange starts) an ECDH reply with an ed25519 key."""
    conn.sendall(ident("OpenSSH_9.6") + kexinit(server_offer(host_key=list(HOST_KEYS))))
    conn.settimeout(3)
    seen = bytearray()
    while seen.count(b"\r\n") < 1 or len(seen) < 40:
        seen += conn.recv(65536)
    time.sleep(0.05)
    conn.sendall(ecdh_reply(host_key("ed25519").blob))
    return bytes(seen)


FAST = ProbeLimits(rate=20, timeout=2)


def test_one_connection_for_the_offer_then_one_per_host_key_algorithm(
    listener: Callable[..., Listener],
) -> None:
    server = listener(_ssh_server)
    report = probe_ssh(LOOPBACK, server.port, limits=FAST)
    assert report["handshakes"] == 1 + len(HOST_KEYS) and report["notes"] == []
    assert [k["algorithm"] for k in report["host_keys"]] == list(HOST_KEYS)  # type: ignore[union-attr]
    expected = fingerprint(host_key("ed25519").blob)
    assert {k["sha256"] for k in report["host_keys"]} == {expected}  # type: ignore[union-attr]
    time.sleep(0.3)
    assert len(server.received) == 1 + len(HOST_KEYS)
    for sent in server.received:
        events = DirectionParser().receive_data(sent)
        kinds = [type(e) for e in events]
        assert kinds[:2] == [Identification, KexInitReceived]
        last = events[-1]
        assert isinstance(last, Disconnect) and last.reason_code == 11
        # Nothing but the key exchange's first message in between: no service request,
        # so never any authentication.
        assert all(isinstance(e, KexMessage) and e.number == 30 for e in events[2:-1])


def test_rate_and_cap_are_honoured(listener: Callable[..., Listener]) -> None:
    server = listener(_ssh_server)
    report = probe_ssh(LOOPBACK, server.port, limits=ProbeLimits(rate=4, max_handshakes=2))
    time.sleep(0.2)
    assert len(server.arrivals) == 2 and report["handshakes"] == 2
    assert server.arrivals[1] - server.arrivals[0] >= 0.24
    assert any("cap of 2 handshakes" in n for n in report["notes"])  # type: ignore[union-attr]


def _garbage(conn: socket.socket) -> None:
    conn.sendall(b"\x00\x01\x02\x03 this is not ssh\r\n")


def _silence(conn: socket.socket) -> None:
    time.sleep(2)


def _huge_packet(conn: socket.socket) -> None:
    conn.sendall(ident() + (0x7FFFFF00).to_bytes(4, "big") + b"\x04" + bytes(64))


def _drip(conn: socket.socket) -> None:
    conn.sendall(ident() + (200_000).to_bytes(4, "big"))
    for _ in range(20):
        conn.sendall(bytes(100))
        time.sleep(0.1)


def _flood(conn: socket.socket) -> None:
    """Valid packets forever, none of them a KEXINIT (SSH_MSG_IGNORE, RFC 4253 11.2)."""
    conn.sendall(ident())
    for _ in range(100):
        conn.sendall(ignore(bytes(8_000)) * 10)


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (_flood, f"more than {MAX_ANSWER_BYTES} bytes without a complete answer"),
        (_garbage, "binary data before any SSH identification"),
        (_silence, "no complete answer within 1 s"),
        (_huge_packet, "bad packet length"),
        (_drip, "no SSH_MSG_KEXINIT (no complete answer within 1 s)"),
    ],
)
def test_hostile_server_ends_in_one_clear_line(
    listener: Callable[..., Listener],
    capsys: pytest.CaptureFixture[str],
    reply: Callable[[socket.socket], None],
    words: str,
) -> None:
    server = listener(reply)
    argv = ["probe", f"{LOOPBACK}:{server.port}", "--rate", "20", "--timeout", "1"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and words in lines[0], captured.err
    assert len(server.arrivals) == 1


def test_an_unreachable_target_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server((LOOPBACK, 0)) as sock:
        port = sock.getsockname()[1]
    assert main(["probe", f"{LOOPBACK}:{port}"]) == 2
    assert "cannot connect" in capsys.readouterr().err


# -- probe --listen ----------------------------------------------------------------------


def _audit(limits: ListenLimits) -> tuple[ClientAudit, list[SessionRecord], threading.Thread]:
    records: list[SessionRecord] = []
    audit = ClientAudit(LOOPBACK, 0, on_record=records.append, limits=limits)
    thread = threading.Thread(target=audit.serve, daemon=True)
    thread.start()
    return audit, records, thread


def test_the_audit_records_a_clients_banner_and_kexinit_and_says_goodbye() -> None:
    audit, records, thread = _audit(ListenLimits(count=1, timeout=3))
    with socket.create_connection(audit.address, timeout=5) as sock:
        sock.sendall(ident("OpenSSH_9.9") + kexinit(client_offer()))
        got = bytearray()
        while data := sock.recv(65536):
            got += data
    thread.join(10)
    assert not thread.is_alive()
    events = DirectionParser().receive_data(bytes(got))
    assert isinstance(events[0], Identification) and events[0].software == "kexproxy_probe"
    assert isinstance(events[1], KexInitReceived)
    assert isinstance(events[-1], Disconnect) and events[-1].reason_code == 11
    (record,) = records
    assert record.source == "probe" and record.client_banner == "SSH-2.0-OpenSSH_9.9"
    assert record.server_banner == "SSH-2.0-kexproxy_probe"
    assert record.client_kexinit is not None
    assert record.client_kexinit["kex_algorithms"][-2:] == [
        "ext-info-c",
        "kex-strict-c-v00@openssh.com",
    ]


def test_the_audit_bounds_clients_at_once_and_time_per_client() -> None:
    audit, records, thread = _audit(ListenLimits(count=2, timeout=1, max_clients=1))
    started = time.monotonic()
    with socket.create_connection(audit.address, timeout=5) as first:
        time.sleep(0.3)
        with socket.create_connection(audit.address, timeout=5) as second:
            assert second.recv(100) == b""  # closed unanswered: the one slot is taken
        first.recv(65536)
        thread.join(10)
    assert audit.refused == 1 and audit.served == 1
    (record,) = records
    assert record.client_banner is None
    assert any("no complete KEXINIT in time" in str(e) for e in record.timeline), record.timeline
    assert time.monotonic() - started < 5


def test_listen_limits_refuse_nonsense() -> None:
    for bad in ({"max_clients": 0}, {"timeout": 0}, {"count": 0}, {"max_clients": 10_000}):
        with pytest.raises(ValueError):
            ListenLimits(**bad)  # type: ignore[arg-type]
