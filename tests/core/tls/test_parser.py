"""The TLS direction parser on hand-made bytes: records, reassembly, hellos, and malformed input."""

from __future__ import annotations

import pytest

from kexproxy.core import limits
from kexproxy.core.events import Anomaly, StreamEnded
from kexproxy.core.tls.events import (
    AlertReceived,
    CertificateReceived,
    ChangeCipherSpecReceived,
    ClientHelloReceived,
    EncryptedRecord,
    HandshakeReceived,
    ServerHelloReceived,
    ServerKeyExchangeReceived,
    Ssl2Message,
)
from kexproxy.core.tls.parser import TlsDirectionParser
from tests.core.tls.builders import (
    CCS,
    TLS12,
    TLS13,
    alert,
    alpn_ext,
    client_hello,
    client_hello_body,
    codes16,
    ext,
    handshake,
    record,
    server_hello,
    server_hello_body,
    sslv2_client_hello,
    u8,
    u16,
    u24,
    vec8,
    vec16,
    vec24,
)
from tests.core.tls.parsing import (
    client_hellos,
    events_of,
    failure,
    feed,
    kinds,
    server_hellos,
)

# -- hellos ----------------------------------------------------------------------------------


def test_client_hello_fields() -> None:
    events = events_of(client_hello())
    assert kinds(events) == ["ClientHelloReceived", "StreamEnded"]
    hello = client_hellos(events)[0]
    assert hello.cipher_suites == (0x1301, 0xC02F)
    assert hello.extensions == (0, 10, 11, 13, 16, 43, 51)
    assert hello.supported_groups == (0x1D, 0x17)
    assert hello.key_share_groups == (0x1D,)
    assert hello.signature_algorithms == (0x0403, 0x0804)
    assert hello.ec_point_formats == (0,)
    assert hello.alpn == ("h2", "http/1.1")
    assert hello.supported_versions == (TLS13, TLS12)
    assert hello.server_name == "example.com"
    assert hello.to_dict() == {
        "legacy_version": "TLS 1.2",
        "versions": ["TLS 1.3", "TLS 1.2"],
        "cipher_suites": ["TLS_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
        "supported_groups": ["x25519", "secp256r1"],
        "key_share_groups": ["x25519"],
        "signature_algorithms": ["ecdsa_secp256r1_sha256", "rsa_pss_rsae_sha256"],
        "alpn": ["h2", "http/1.1"],
        "server_name": "example.com",
        "extensions": [
            "server_name",
            "supported_groups",
            "ec_point_formats",
            "signature_algorithms",
            "application_layer_protocol_negotiation",
            "supported_versions",
            "key_share",
        ],
        "sslv2": False,
    }


def test_grease_is_kept_on_the_wire_and_left_out_of_the_dict() -> None:
    body = client_hello_body(
        suites=(0x0A0A, 0x1301),
        extensions=(ext(0x1A1A, b""), ext(10, vec16(codes16((0x2A2A, 0x001D))))),
    )
    hello = client_hellos(events_of(client_hello(body)))[0]
    assert hello.cipher_suites == (0x0A0A, 0x1301)
    assert hello.grease() == 3
    assert hello.to_dict()["cipher_suites"] == ["TLS_AES_128_GCM_SHA256"]
    assert hello.to_dict()["supported_groups"] == ["x25519"]
    assert hello.to_dict()["extensions"] == ["supported_groups"]
    assert hello.to_dict()["versions"] == ["TLS 1.2"]  # no supported_versions: legacy alone


def test_hello_without_extensions() -> None:
    hello = events_of(client_hello(client_hello_body(extensions=(), version=0x0301)))[0]
    assert isinstance(hello, ClientHelloReceived)
    assert hello.hello.extensions == ()
    assert hello.hello.to_dict()["versions"] == ["TLS 1.0"]


def test_server_hello_and_hello_retry_request() -> None:
    events = events_of(server_hello() + server_hello(server_hello_body(retry=True)))
    first, retry = events[0], events[1]
    assert isinstance(first, ServerHelloReceived) and isinstance(retry, ServerHelloReceived)
    assert not first.hello.retry and retry.hello.retry
    assert first.hello.version == TLS13 and first.hello.key_share_group == 0x1D
    assert first.hello.to_dict() == {
        "version": "TLS 1.3",
        "cipher_suite": "TLS_AES_128_GCM_SHA256",
        "key_share_group": "x25519",
        "alpn": None,
        "extensions": ["supported_versions", "key_share"],
    }
    assert retry.hello.to_dict() == {
        "cipher_suite": "TLS_AES_128_GCM_SHA256",
        "selected_group": "x25519",
    }


def test_server_hello_alpn_and_tls12() -> None:
    body = server_hello_body(suite=0xC02F, extensions=(alpn_ext("h2"),))
    hello = server_hellos(events_of(server_hello(body)))[0]
    assert hello.version == TLS12 and hello.selected_version is None and hello.alpn == "h2"


def test_sslv2_compatible_client_hello() -> None:
    events = events_of(sslv2_client_hello([0x00002F, 0x010080]) + client_hello())
    assert kinds(events) == ["ClientHelloReceived", "ClientHelloReceived", "StreamEnded"]
    hello = client_hellos(events)[0]
    assert hello.sslv2 and hello.cipher_suites == (0x2F, 0x010080)
    assert hello.to_dict()["cipher_suites"] == ["TLS_RSA_WITH_AES_128_CBC_SHA", "0x010080"]
    assert hello.legacy_version == 0x0301


def test_ssl2_server_hello_stops_without_failing() -> None:
    data = u16(0x8000 | 20) + b"\x04" + b"\x00" * 19
    events = events_of(data)
    assert events[0] == Ssl2Message(msg_type=4, length=20, offset=0)
    assert kinds(events) == ["Ssl2Message", "StreamEnded"]


# -- records and reassembly ------------------------------------------------------------------


def test_several_messages_in_one_record_and_one_message_over_records() -> None:
    chain = vec24(vec24(b"leaf-der") + vec24(b"ca-der"))
    flight = (
        handshake(2, server_hello_body(suite=0xC02F, extensions=()))
        + handshake(11, chain)
        + handshake(14, b"")
    )
    one_record = record(22, flight, TLS12)
    split = record(22, flight[:10], TLS12) + record(22, flight[10:50], TLS12)
    split += record(22, flight[50:], TLS12)
    for data in (one_record, split):
        events = events_of(data)
        assert kinds(events) == [
            "ServerHelloReceived",
            "CertificateReceived",
            "HandshakeReceived",
            "StreamEnded",
        ]
        assert events[1] == CertificateReceived(
            certificates=(b"leaf-der", b"ca-der"), offset=events[1].offset
        )
        assert events[2] == HandshakeReceived(msg_type=14, offset=events[2].offset)
    # The offset is that of the record completing the message.
    assert [e.offset for e in events_of(split)][:3] == [60, 60, 60]


def test_certificates_kept_are_bounded() -> None:
    chain = vec24(b"".join(vec24(b"c%d" % i) for i in range(limits.TLS_KEPT_CERTIFICATES + 5)))
    event = events_of(record(22, handshake(11, chain), TLS12))[0]
    assert isinstance(event, CertificateReceived)
    assert len(event.certificates) == limits.TLS_KEPT_CERTIFICATES


def test_tls12_flight_stops_at_the_encrypted_finished() -> None:
    data = record(22, handshake(16, b"\x00" * 10), TLS12) + CCS + record(22, b"\x99" * 40, TLS12)
    events = events_of(data + record(23, b"\x88" * 30, TLS12))
    assert kinds(events) == [
        "HandshakeReceived",
        "ChangeCipherSpecReceived",
        "EncryptedRecord",
        "StreamEnded",
    ]
    assert events[2] == EncryptedRecord(content_type=22, length=40, offset=len(data) - 45)


def test_tls13_stops_at_application_data() -> None:
    events = events_of(server_hello() + CCS + record(23, b"\x77" * 50, TLS12))
    assert kinds(events)[1:] == ["ChangeCipherSpecReceived", "EncryptedRecord", "StreamEnded"]


def test_clear_and_encrypted_alerts() -> None:
    events = events_of(alert(2, 40))
    assert events[0] == AlertReceived(level=2, description=40, encrypted=False, length=2, offset=0)
    events = events_of(CCS + record(21, b"\x55" * 26, TLS12))
    assert events[1] == AlertReceived(
        level=None, description=None, encrypted=True, length=26, offset=6
    )
    assert kinds(events)[2:] == ["StreamEnded"]
    # Two bytes after ChangeCipherSpec cannot be encrypted (any cipher adds a MAC or a tag).
    events = events_of(CCS + alert(1, 0))
    assert events[1] == AlertReceived(level=1, description=0, encrypted=False, length=2, offset=6)


def test_two_alerts_in_one_record() -> None:
    events = events_of(record(21, b"\x01\x70\x02\x28", TLS12))
    alerts = [(e.level, e.description) for e in events if isinstance(e, AlertReceived)]
    assert alerts == [(1, 112), (2, 40)]


def test_tls13_compatibility_ccs_before_a_second_client_hello() -> None:
    events = events_of(client_hello() + CCS + client_hello() + record(23, b"\x01" * 40))
    assert kinds(events) == [
        "ClientHelloReceived",
        "ChangeCipherSpecReceived",
        "ClientHelloReceived",
        "EncryptedRecord",
        "StreamEnded",
    ]


def test_tls13_compatibility_ccs_after_a_hello_retry_request() -> None:
    data = server_hello(server_hello_body(retry=True)) + CCS + server_hello()
    events = events_of(data + record(23, b"\x01" * 40))
    assert kinds(events) == [
        "ServerHelloReceived",
        "ChangeCipherSpecReceived",
        "ServerHelloReceived",
        "EncryptedRecord",
        "StreamEnded",
    ]


def test_a_tls12_client_finished_after_ccs_is_encrypted() -> None:
    no13 = client_hello_body(extensions=())
    events = events_of(client_hello(no13) + CCS + record(22, handshake(1, b"\x00" * 36)))
    assert kinds(events)[-2:] == ["EncryptedRecord", "StreamEnded"]


def test_heartbeat_is_noted() -> None:
    events = events_of(record(24, b"\x01\x00\x10", TLS12) + alert(1, 0))
    assert isinstance(events[0], Anomaly) and "heartbeat" in events[0].text
    assert isinstance(events[1], AlertReceived)


def test_server_key_exchange_ecdhe_and_dhe() -> None:
    point = vec8(b"\x04" + b"\x01" * 64)
    ecdhe = u8(3) + u16(0x17) + point + u16(0x0401) + vec16(b"\x02" * 64)
    flight = server_hello(server_hello_body(suite=0xC02F, extensions=()))
    events = events_of(flight + record(22, handshake(12, ecdhe), TLS12))
    assert events[1] == ServerKeyExchangeReceived(
        kind="ecdhe", group=0x17, dh_bits=None, signature_scheme=0x0401, offset=events[1].offset
    )
    prime = b"\xff" * 256
    dhe = vec16(prime) + vec16(b"\x02") + vec16(b"\x05" * 256) + u16(0x0804) + vec16(b"s" * 256)
    flight = server_hello(server_hello_body(suite=0x009E, extensions=()))
    events = events_of(flight + record(22, handshake(12, dhe), TLS12))
    assert events[1] == ServerKeyExchangeReceived(
        kind="dhe", group=None, dh_bits=2048, signature_scheme=0x0804, offset=events[1].offset
    )
    # TLS 1.0 has no scheme before the signature; RSA key exchange has no parameters parsed.
    flight = server_hello(server_hello_body(suite=0xC013, extensions=(), version=0x0301))
    ecdhe10 = u8(3) + u16(0x17) + point + vec16(b"\x02" * 64)
    event = events_of(flight + record(22, handshake(12, ecdhe10), TLS12))[1]
    assert isinstance(event, ServerKeyExchangeReceived) and event.signature_scheme is None
    flight = server_hello(server_hello_body(suite=0x0003, extensions=()))
    event = events_of(flight + record(22, handshake(12, b"\x00\x01\x02"), TLS12))[1]
    assert isinstance(event, ServerKeyExchangeReceived) and event.kind == "other"


def test_eof_reports_pending_bytes_once() -> None:
    parser = TlsDirectionParser()
    assert parser.receive_data(client_hello()[:20]) == []
    assert parser.receive_eof() == [StreamEnded(pending=20, offset=0)]
    assert parser.receive_eof() == []
    assert not parser.parsing


def test_nothing_is_parsed_after_the_first_encrypted_record() -> None:
    parser = TlsDirectionParser()
    parser.receive_data(record(23, b"x" * 10))
    assert not parser.parsing
    assert parser.receive_data(client_hello()) == []


# -- hostile input: one ParseFailed with a precise reason and offset ---------------------


@pytest.mark.parametrize(
    ("data", "reason", "offset"),
    [
        (b"GET / HTTP/1.1\r\n", "not TLS: first byte 0x47", 0),
        (b"SSH-2.0-x\r\n", "not TLS: first byte 0x53", 0),
        (alert(2, 40) + b"\x30\x03\x03", "unknown record type 48 at offset 7", 7),
        (b"\x16\x02\x00\x00\x10", "has version 0x0200, not SSL 3.0 or TLS", 1),
        (b"\x16\x03\x01\x48\x01", "is 18433 bytes long, over the 18432", 3),
        (record(22, b"\x00" * (limits.TLS_MAX_PLAINTEXT + 1)), "record_overflow", 3),
        (record(22, b"\x0b\xff\xff\xff"), "certificate completed by the record at offset 0", 0),
        (record(21, b"\x02"), "alert record at offset 0 is 1 bytes long", 3),
        (record(20, b"\x02"), "ChangeCipherSpec at offset 0 is '02'", 5),
        (record(22, b"\x01\x00\x00\x10") + CCS, "inside a fragmented handshake", 9),
        (record(22, handshake(1, b"\x03\x03" + b"\x00" * 10)), "random: needs 32 bytes", 0),
        (
            client_hello(client_hello_body(extensions=(ext(10, b"\x00\x05\x00\x1d"),))),
            "supported_groups: length 5 overruns the 2 bytes left",
            0,
        ),
        (
            client_hello(client_hello_body(extensions=(ext(10, b"\x00\x03\x00\x1d\x00"),))),
            "supported_groups: length 3 is not a multiple of 2",
            0,
        ),
        (
            client_hello(client_hello_body(extensions=()) + b"\x00\x04\x00\x00\x00\x10"),
            "extension server_name: length 16 overruns",
            0,
        ),
        (
            client_hello(client_hello_body(extensions=()) + b"\x00\x00\xff"),
            "hello after its extensions: 1 bytes left over",
            0,
        ),
        (
            client_hello(client_hello_body(session_id=b"\x00" * 33)),
            "session_id: 33 bytes, over 32",
            0,
        ),
        (
            client_hello(client_hello_body(extensions=(alpn_ext(""),))),
            "empty protocol name",
            0,
        ),
        (
            client_hello(client_hello_body(extensions=(ext(43, b"\x02\x03\x04\x00"),))),
            "supported_versions: 1 bytes left over",
            0,
        ),
        (u16(0x8000 | 5) + b"\x01\x00\x02\x00\x04", "malformed SSLv2-compatible ClientHello", 0),
        (u16(0x8000 | 12) + b"\x01\x00\x02" + u16(4) + u16(0) + u16(0) + b"\0" * 4, "3", 0),
    ],
)
def test_malformed_input_fails_precisely(data: bytes, reason: str, offset: int) -> None:
    failed = failure(data)
    assert reason in failed.reason
    assert failed.offset == offset


def test_truncated_extension_block() -> None:
    body = client_hello_body()
    cut = body[:-5]
    failed = failure(record(22, handshake(1, cut)))
    assert failed.reason.startswith("malformed client_hello in the record at offset 0: ")
    assert "overruns" in failed.reason


def test_a_handshake_message_over_the_cap_fails_on_its_header() -> None:
    length = limits.TLS_MAX_HANDSHAKE_MESSAGE
    failed = failure(record(22, handshake(11, b"")[:1] + u24(length)))
    assert "over the" in failed.reason and str(length) in failed.reason


def test_failure_is_terminal() -> None:
    parser = TlsDirectionParser()
    events = parser.receive_data(b"\x00junk")
    assert kinds(events) == ["ParseFailed"]
    assert parser.receive_data(client_hello()) == []
    assert kinds(parser.receive_eof()) == ["StreamEnded"]


def test_kept_entries_are_bounded() -> None:
    suites = list(range(1, limits.TLS_KEPT_ENTRIES + 100))
    hello = feed(client_hello(client_hello_body(suites=suites, extensions=())))[0]
    assert isinstance(hello, ClientHelloReceived)
    assert len(hello.hello.cipher_suites) == limits.TLS_KEPT_ENTRIES


def test_change_cipher_spec_event() -> None:
    assert events_of(CCS)[0] == ChangeCipherSpecReceived(offset=0)


def test_rarer_paths() -> None:
    # A second (clear, one-byte) ChangeCipherSpec after the first is reported, not encrypted.
    assert kinds(events_of(CCS + CCS))[:2] == ["ChangeCipherSpecReceived"] * 2
    # tls12_cid records (RFC 9146) are encrypted.
    assert events_of(record(25, b"\x00" * 9))[0] == EncryptedRecord(
        content_type=25, length=9, offset=0
    )
    # An explicit-curve ServerKeyExchange has no group code.
    flight = server_hello(server_hello_body(suite=0xC02F, extensions=()))
    event = events_of(flight + record(22, handshake(12, b"\x01" + b"\x00" * 20)))[1]
    assert event == ServerKeyExchangeReceived(
        kind="ecdhe", group=None, dh_bits=None, signature_scheme=None, offset=event.offset
    )
    # A TLS 1.3 draft-16 ServerHello has neither session id nor compression method.
    draft = u16(0x7F10) + b"\x02" * 32 + u16(0x1301) + vec16(ext(51, u16(0x1D) + vec16(b"k")))
    hello = server_hellos(events_of(server_hello(draft)))[0]
    assert hello.version == 0x7F10 and hello.session_id == b"" and hello.key_share_group == 0x1D
    # A second ClientHello over two records after a compatibility CCS (first fragment full).
    big = client_hello_body(suites=list(range(1, 9000)), extensions=(ext(43, vec8(u16(TLS13))),))
    message = handshake(1, big)
    cut = limits.TLS_MAX_PLAINTEXT
    data = client_hello() + CCS + record(22, message[:cut]) + record(22, message[cut:])
    assert kinds(events_of(data)).count("ClientHelloReceived") == 2


def test_more_malformed_input() -> None:
    assert "SSLv2 record of length 0" in failure(b"\x80\x00\x01").reason
    two_alpn = server_hello_body(extensions=(alpn_ext("h2", "h3"),))
    assert "2 names" in failure(server_hello(two_alpn)).reason
    bad_sni = client_hello_body(extensions=(ext(0, b"\x00\x05\x00\x00\x09ab"),))
    assert "server_name: length 9 overruns" in failure(client_hello(bad_sni)).reason
