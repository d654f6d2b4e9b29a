"""Protocol recognition: the first bytes of the first speaker say SSH or TLS, on any port."""

from __future__ import annotations

import pytest

from kexproxy.core.connection import ConnectionTracker, recognise
from kexproxy.core.observer import Endpoint

TLS12_HELLO_START = bytes.fromhex("160301020001")
SSLV2_HELLO_START = bytes.fromhex("8067010301")


@pytest.mark.parametrize(
    ("data", "final", "expected"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n", False, "ssh"),
        (b"S", False, "ssh"),
        (TLS12_HELLO_START, False, "tls"),
        (bytes.fromhex("15030300020228"), False, "tls"),  # an alert first
        (SSLV2_HELLO_START, False, "tls"),
        (bytes.fromhex("16"), False, None),  # a handshake byte alone: wait
        (bytes.fromhex("16"), True, "ssh"),  # ...unless nothing more will come
        (bytes.fromhex("1603"), False, None),
        (bytes.fromhex("160203"), False, "ssh"),  # major version 2 is no TLS record
        (bytes.fromhex("160305"), False, "ssh"),  # minor version past TLS 1.3's
        (bytes.fromhex("8067"), False, None),
        (bytes.fromhex("8067020301"), False, "ssh"),  # not a CLIENT-HELLO
        (b"GET / HTTP/1.1\r\n", False, "ssh"),  # the SSH tracker says not_ssh
        (b"", True, "ssh"),
    ],
)
def test_recognise(data: bytes, final: bool, expected: str | None) -> None:
    assert recognise(data, final=final) == expected


def _tracker() -> ConnectionTracker:
    return ConnectionTracker(
        a=Endpoint("127.0.0.1", 40000),
        b=Endpoint("127.0.0.1", 8443),
        initiator="syn",
        session_id="t",
    )


def test_tls_recognised_from_single_byte_segments() -> None:
    tracker = _tracker()
    for i, byte in enumerate(TLS12_HELLO_START[:5]):
        tracker.receive("a", bytes([byte]), float(i))
        assert tracker.protocol is None if i < 2 else tracker.protocol == "tls"
    assert tracker.protocol == "tls"


def test_undecided_bytes_are_replayed_into_the_ssh_tracker_at_close() -> None:
    tracker = _tracker()
    tracker.receive("a", b"\x16", 1.0)
    assert tracker.protocol is None
    tracker.receive_close("a", "fin", 2.0)
    assert tracker.protocol == "ssh"
    record = tracker.finish()
    assert record.protocol == "ssh"
    assert record.bytes["c2s"] == 1


def test_ssh_banner_from_the_server_first_is_ssh() -> None:
    tracker = _tracker()
    tracker.receive("b", b"SSH-2.0-OpenSSH_9.2\r\n", 1.0)
    assert tracker.protocol == "ssh"
    record = tracker.finish()
    assert record.server_banner == "SSH-2.0-OpenSSH_9.2"
    assert "client_hello" not in record.to_dict()
    assert record.to_dict()["protocol"] == "ssh"


def test_a_silent_connection_is_an_ssh_record() -> None:
    tracker = _tracker()
    tracker.receive_close("a", "fin", 1.0)
    assert tracker.finish().outcome == "not_ssh"
