"""The per-direction parser: binary packet framing (RFC 4253 6), KEXINIT (7.1) and the other plaintext messages."""

from __future__ import annotations

import pytest

from kexproxy.core import limits
from kexproxy.core.events import (
    Anomaly,
    Disconnect,
    KexInitReceived,
    KexMessage,
    OtherMessage,
    ParseFailed,
    StreamEnded,
)
from kexproxy.core.parser import DirectionParser
from tests.builders import (
    Offer,
    debug,
    disconnect,
    ignore,
    kexinit,
    kexinit_payload,
    name_list,
    newkeys,
    packet,
    raw_packet,
    uint32,
    unimplemented,
)
from tests.core.parsing import BANNER, LEN, events_of, failure, feed, kinds, only

# -- binary packet framing (RFC 4253 section 6) -----------------------------------------


@pytest.mark.parametrize("length", [0, 1, 4, limits.MAX_PACKET_LENGTH + 1, 0x00FFFFFF])
def test_a_bad_packet_length_fails(length: int) -> None:
    stream = BANNER + raw_packet(length, 4, bytes(16))
    events = events_of(stream)
    assert failure(events) == ParseFailed(
        reason=f"bad packet length {length} (OpenSSH accepts 5 to {limits.MAX_PACKET_LENGTH})",
        offset=LEN,
    )


def test_the_largest_packet_openssh_accepts_is_parsed() -> None:
    body = bytes([2]) + uint32(limits.MAX_PACKET_LENGTH - 10) + bytes(limits.MAX_PACKET_LENGTH - 10)
    stream = BANNER + raw_packet(limits.MAX_PACKET_LENGTH, 4, body + bytes(4))
    events = feed(stream)
    assert kinds(events) == ["Identification", "Anomaly", "OtherMessage", "StreamEnded"]
    assert feed(stream, [LEN, 3, 1000, 70000]) == events


def test_the_smallest_packet_is_parsed() -> None:
    # Length 5: a padding-length byte, a one-byte payload (NEWKEYS) and 3 bytes of padding.
    events = events_of(BANNER + raw_packet(5, 3, bytes([21, 0, 0, 0])))
    assert kinds(events) == ["Identification", "Anomaly", "NewKeys", "StreamEnded"]


@pytest.mark.parametrize(("length", "padding"), [(12, 11), (12, 200), (8, 7)])
def test_padding_that_leaves_no_payload_fails(length: int, padding: int) -> None:
    stream = BANNER + raw_packet(length, padding, bytes(length - 1))
    events = events_of(stream)
    assert failure(events) == ParseFailed(
        reason=f"padding length {padding} leaves no payload in a packet of length {length}",
        offset=LEN,
    )


def test_odd_padding_is_one_anomaly_for_the_whole_direction() -> None:
    short_padding = packet(bytes([2]) + uint32(0), padding=3)  # fewer than 4 bytes
    misaligned = packet(bytes([2]) + uint32(0), padding=5)  # not a multiple of 8
    stream = BANNER + short_padding + misaligned + kexinit() + short_padding + newkeys()
    events = events_of(stream)
    anomalies = only(events, Anomaly)
    assert anomalies == [
        Anomaly(
            text=f"packet at offset {LEN} breaks RFC 4253's padding rules (length 9, padding 3)",
            offset=LEN,
        )
    ]
    assert kinds(events)[-2:] == ["NewKeys", "StreamEnded"]
    aligned = BANNER + packet(bytes([2]) + uint32(0), padding=6)  # 16 bytes in all
    assert not only(events_of(aligned), Anomaly)


def test_eof_inside_a_packet() -> None:
    whole = kexinit()
    stream = BANNER + whole[:-3]
    events = events_of(stream)
    assert events[1:] == [
        Anomaly(
            text=f"stream ended inside a packet ({len(whole) - 3} bytes of it seen)", offset=LEN
        ),
        StreamEnded(pending=len(whole) - 3, offset=LEN),
    ]
    assert only(events_of(BANNER + whole[:3]), Anomaly) == [
        Anomaly(text="stream ended inside a packet (3 bytes of it seen)", offset=LEN)
    ]


def test_eof_after_a_whole_packet_is_clean() -> None:
    parser = DirectionParser()
    parser.receive_data(BANNER + kexinit())
    assert parser.receive_eof() == [StreamEnded(pending=0, offset=LEN + len(kexinit()))]
    assert not parser.parsing
    assert parser.opaque_reason == "end of stream"
    assert parser.receive_eof() == [StreamEnded(pending=0, offset=LEN + len(kexinit()))]


# -- KEXINIT (RFC 4253 section 7.1) --------------------------------------------------------


def test_kexinit_keeps_the_wire_strings() -> None:
    lists = Offer(kex="a,,b", host_key="", languages_c2s="en", languages_s2c="x,y")
    events = events_of(BANNER + kexinit(lists, follows=True, reserved=7, cookie=b"\xaa" * 16))
    received = events[1]
    assert isinstance(received, KexInitReceived)
    k = received.kexinit
    assert k.raw("kex_algorithms") == "a,,b"
    assert k.names("kex_algorithms") == ("a", "", "b")
    assert k.names("server_host_key_algorithms") == ()
    assert k.names("languages_server_to_client") == ("x", "y")
    assert k.first_kex_packet_follows is True
    assert k.reserved == 7
    assert k.cookie == b"\xaa" * 16
    assert k.to_dict()["cookie"] == "aa" * 16
    assert k.to_dict()["server_host_key_algorithms"] == []


def test_any_nonzero_byte_is_true_for_first_kex_packet_follows() -> None:
    payload = bytearray(kexinit_payload())
    payload[-5] = 0x7F
    received = events_of(BANNER + packet(bytes(payload)))[1]
    assert isinstance(received, KexInitReceived) and received.kexinit.first_kex_packet_follows


def _lists_bytes(count: int) -> bytes:
    return b"".join(name_list("n") for _ in range(count))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (bytes([20]) + bytes(10), "cookie: needs 16 bytes, 10 left"),
        (bytes([20]) + bytes(16) + b"\x00\x00", "kex_algorithms length: needs 4 bytes, 2 left"),
        (
            bytes([20]) + bytes(16) + uint32(100) + b"curve",
            "kex_algorithms: length 100 exceeds the 5 bytes left",
        ),
        (
            bytes([20]) + bytes(16) + _lists_bytes(3) + uint32(0xFFFFFFFF),
            "encryption_algorithms_server_to_client: length 4294967295 exceeds the 0 bytes left",
        ),
        (
            bytes([20]) + bytes(16) + _lists_bytes(10),
            "first_kex_packet_follows: needs 1 byte, 0 left",
        ),
        (
            bytes([20]) + bytes(16) + _lists_bytes(10) + b"\x00\x00\x00",
            "reserved: needs 4 bytes, 2 left",
        ),
    ],
)
def test_a_malformed_kexinit_fails_with_a_precise_reason(payload: bytes, reason: str) -> None:
    events = events_of(BANNER + packet(payload))
    assert failure(events) == ParseFailed(
        reason=f"malformed SSH_MSG_KEXINIT at offset {LEN}: {reason}", offset=LEN
    )
    assert not only(events, KexInitReceived)


def test_a_name_list_cannot_read_into_the_padding() -> None:
    # The length covers the payload plus the padding bytes that follow it: still malformed.
    payload = bytes([20]) + bytes(16) + uint32(6) + b"ab"
    stream = BANNER + packet(payload, padding=4)
    assert "kex_algorithms: length 6 exceeds the 2 bytes left" in failure(events_of(stream)).reason


def test_kexinit_with_trailing_bytes_is_an_anomaly() -> None:
    events = events_of(BANNER + packet(kexinit_payload() + b"\x01\x02\x03"))
    assert kinds(events)[1:3] == ["KexInitReceived", "Anomaly"]
    assert events[2] == Anomaly(
        text="SSH_MSG_KEXINIT has 3 bytes after its reserved field", offset=LEN
    )


def test_a_second_kexinit_is_an_anomaly_and_still_reported() -> None:
    second = kexinit(Offer(kex="diffie-hellman-group14-sha256"))
    events = events_of(BANNER + kexinit() + second)
    assert kinds(events) == [
        "Identification",
        "KexInitReceived",
        "KexInitReceived",
        "Anomaly",
        "StreamEnded",
    ]
    assert events[3] == Anomaly(
        text="a second SSH_MSG_KEXINIT before NEWKEYS", offset=LEN + len(kexinit())
    )
    third = events[2]
    assert isinstance(third, KexInitReceived)
    assert third.kexinit.names("kex_algorithms") == ("diffie-hellman-group14-sha256",)


# -- other messages ------------------------------------------------------------------------


def test_disconnect_is_decoded() -> None:
    stream = BANNER + disconnect(2, "strict KEX violation: KEXINIT was not the first packet")
    assert events_of(stream)[1] == Disconnect(
        reason_code=2,
        description="strict KEX violation: KEXINIT was not the first packet",
        offset=LEN,
    )


def test_disconnect_description_is_cut_and_keeps_bad_bytes() -> None:
    long = "é" * limits.MAX_TEXT  # two bytes each: the cut falls inside the text
    event = events_of(BANNER + disconnect(11, long))[1]
    assert isinstance(event, Disconnect) and event.reason_code == 11
    assert event.description == "é" * (limits.MAX_TEXT // 2)
    raw = packet(bytes([1]) + uint32(3) + uint32(3) + b"a\x1b\xff" + uint32(0))
    event = events_of(BANNER + raw)[1]
    assert isinstance(event, Disconnect) and event.description == "a\x1b\\xff"


def test_a_disconnect_without_language_tag_is_accepted() -> None:
    raw = packet(bytes([1]) + uint32(2) + uint32(3) + b"bye")
    assert events_of(BANNER + raw)[1] == Disconnect(reason_code=2, description="bye", offset=LEN)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (
            bytes([1]) + b"\x00\x00",
            "malformed SSH_MSG_DISCONNECT at offset {}: reason code: needs 4 bytes, 2 left",
        ),
        (
            bytes([1]) + uint32(2) + uint32(50) + b"short",
            "malformed SSH_MSG_DISCONNECT at offset {}: description: length 50 exceeds the 5 bytes left",
        ),
        (bytes([4]), "malformed SSH_MSG_DEBUG at offset {}: always_display: needs 1 byte, 0 left"),
        (
            bytes([3]) + b"\x01",
            "malformed SSH_MSG_UNIMPLEMENTED at offset {}: sequence number: needs 4 bytes, 1 left",
        ),
    ],
)
def test_malformed_plaintext_messages_fail(payload: bytes, reason: str) -> None:
    assert failure(events_of(BANNER + packet(payload))) == ParseFailed(
        reason=reason.format(LEN), offset=LEN
    )


def test_other_messages_are_summarised() -> None:
    stream = (
        BANNER
        + ignore(b"\x00" * 50)
        + debug("hello \x1b[2J", always_display=True)
        + unimplemented(7)
        + packet(bytes([5]) + b"ssh-userauth")
        + packet(bytes([200]))
    )
    others = only(events_of(stream), OtherMessage)
    assert [(e.number, e.summary) for e in others if isinstance(e, OtherMessage)] == [
        (2, "SSH_MSG_IGNORE"),
        (4, "SSH_MSG_DEBUG: hello \x1b[2J"),
        (3, "SSH_MSG_UNIMPLEMENTED for packet 7"),
        (5, "SSH_MSG_SERVICE_REQUEST"),
        (200, "SSH_MSG_200"),
    ]


def test_kex_method_messages_carry_their_payload() -> None:
    stream = BANNER + packet(bytes([30]) + b"abc") + packet(bytes([49])) + packet(bytes([50]))
    events = events_of(stream)
    assert events[1] == KexMessage(number=30, payload=b"abc", offset=LEN)
    assert isinstance(events[2], KexMessage) and events[2].number == 49
    assert isinstance(events[3], OtherMessage) and events[3].number == 50
