"""The per-direction parser: whole, byte-at-a-time and any chunking give the same events.

Every stream is built from tests/builders.py; every case is fed three ways (whole, one
byte at a time, and at every split point into two chunks for short streams) and the events
must agree, because a TCP source never chooses where segments end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kexproxy.core import limits
from kexproxy.core.events import (
    Anomaly,
    Disconnect,
    Event,
    Identification,
    KexInitReceived,
    KexMessage,
    NewKeys,
    OtherMessage,
    ParseFailed,
    PlaintextLine,
    PreBannerLine,
    Protocol1,
    StreamEnded,
)
from kexproxy.core.parser import DirectionParser, State
from tests.builders import (
    Offer,
    client_offer,
    debug,
    disconnect,
    ecdh_init,
    ident,
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

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def feed(data: bytes, sizes: Iterable[int] | None = None, *, eof: bool = True) -> list[Event]:
    """Events for `data` fed in chunks of `sizes` (the rest in one chunk), then EOF."""
    parser = DirectionParser()
    events: list[Event] = []
    pos = 0
    for size in sizes or ():
        events += parser.receive_data(data[pos : pos + size])
        pos += size
    events += parser.receive_data(data[pos:])
    if eof:
        events += parser.receive_eof()
    return events


def bytewise(data: bytes, *, eof: bool = True) -> list[Event]:
    return feed(data, [1] * len(data), eof=eof)


def events_of(data: bytes, *, eof: bool = True) -> list[Event]:
    """The events of `data`, after checking that whole and byte-at-a-time feeding agree."""
    whole = feed(data, eof=eof)
    assert bytewise(data, eof=eof) == whole
    if len(data) <= 200:
        for cut in range(len(data) + 1):
            assert feed(data, [cut], eof=eof) == whole, f"split at {cut}"
    return whole


def kinds(events: Sequence[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def only(events: Sequence[Event], cls: type[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, cls)]


def failure(events: Sequence[Event]) -> ParseFailed:
    failed = only(events, ParseFailed)
    assert len(failed) == 1, events
    assert isinstance(failed[0], ParseFailed)
    return failed[0]


BANNER = ident()
LEN = len(BANNER)


def handshake(*, trailing: bytes = b"") -> bytes:
    """One direction of a plain client handshake: banner, KEXINIT, ECDH init, NEWKEYS."""
    return BANNER + kexinit(client_offer()) + ecdh_init() + newkeys() + trailing


# -- a whole direction ---------------------------------------------------------------------


def test_a_client_direction_up_to_newkeys() -> None:
    stream = handshake()
    events = events_of(stream)
    assert kinds(events) == [
        "Identification",
        "KexInitReceived",
        "KexMessage",
        "NewKeys",
        "StreamEnded",
    ]
    _banner, kex_event, ecdh, nk, end = events
    assert isinstance(kex_event, KexInitReceived) and isinstance(ecdh, KexMessage)
    assert kex_event.offset == LEN
    assert kex_event.kexinit.names("kex_algorithms") == (
        "curve25519-sha256",
        "ecdh-sha2-nistp256",
        "ext-info-c",
        "kex-strict-c-v00@openssh.com",
    )
    assert kex_event.kexinit.cookie == bytes(range(16))
    assert ecdh.number == 30 and ecdh.payload == uint32(32) + bytes(32)
    assert isinstance(nk, NewKeys) and nk.offset == len(stream) - len(newkeys())
    assert end == StreamEnded(pending=0, offset=len(stream))


def test_bytes_after_newkeys_are_never_parsed() -> None:
    # NEWKEYS and what would be a DISCONNECT and garbage, all in one chunk: after NEWKEYS
    # the direction is encrypted, so none of it may become an event.
    junk = disconnect(2, "not really") + b"\xff" * 40 + b"SSH-2.0-x\r\n"
    parser = DirectionParser()
    events = parser.receive_data(BANNER + kexinit() + newkeys() + junk)
    assert kinds(events) == ["Identification", "KexInitReceived", "NewKeys"]
    assert parser.state is State.OPAQUE and not parser.parsing
    assert parser.opaque_reason == "SSH_MSG_NEWKEYS (the rest is encrypted)"
    assert parser.receive_data(ecdh_init()) == []
    assert parser.offset == LEN + len(kexinit()) + len(newkeys())
    assert parser.receive_eof() == [StreamEnded(pending=0, offset=parser.offset)]
    assert events_of(handshake(trailing=junk))[-2:] == [
        NewKeys(offset=len(handshake()) - len(newkeys())),
        StreamEnded(pending=0, offset=len(handshake())),
    ]


def test_packets_counts_binary_packets() -> None:
    parser = DirectionParser()
    parser.receive_data(BANNER + ignore() + ignore(b"x") + kexinit())
    assert parser.packets == 3


# -- identification lines (RFC 4253 section 4.2) ----------------------------------------


@pytest.mark.parametrize(
    ("line", "proto", "software", "comments", "ending"),
    [
        (b"SSH-2.0-OpenSSH_9.2p1\r\n", "2.0", "OpenSSH_9.2p1", None, "CRLF"),
        (b"SSH-2.0-OpenSSH_9.2p1\n", "2.0", "OpenSSH_9.2p1", None, "LF"),
        (
            b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
            "2.0",
            "OpenSSH_9.2p1",
            "Debian-2+deb12u3",
            "CRLF",
        ),
        (b"SSH-2.0-dropbear_2022.83 \r\n", "2.0", "dropbear_2022.83", "", "CRLF"),
        (b"SSH-1.99-Cisco-1.25\r\n", "1.99", "Cisco-1.25", None, "CRLF"),
        (b"SSH-2.0-PuTTY_Release_0.78 a b c\r\n", "2.0", "PuTTY_Release_0.78", "a b c", "CRLF"),
    ],
)
def test_identification_forms(
    line: bytes, proto: str, software: str, comments: str | None, ending: str
) -> None:
    events = events_of(line + kexinit())
    first = events[0]
    assert first == Identification(
        line=line.rstrip(b"\r\n").decode(),
        proto_version=proto,
        software=software,
        comments=comments,
        line_ending=ending,  # type: ignore[arg-type]
        offset=0,
    )
    # 1.99 is treated as 2.0: the packets that follow are parsed.
    assert isinstance(events[1], KexInitReceived)


def test_protocol_1_is_reported_and_the_rest_is_opaque() -> None:
    parser = DirectionParser()
    events = parser.receive_data(ident(proto="1.5") + kexinit())
    assert kinds(events) == ["Identification", "Protocol1"]
    assert events[1] == Protocol1(version="1.5")
    assert parser.state is State.OPAQUE
    assert parser.opaque_reason == "SSH protocol 1.5 (not parsed)"
    assert events_of(ident(proto="1.5") + kexinit())[:2] == events


@pytest.mark.parametrize("proto", ["3.0", "2.1", "", "x"])
def test_an_unknown_protocol_version_fails(proto: str) -> None:
    events = events_of(ident(proto=proto) + kexinit())
    assert isinstance(events[0], Identification)
    assert failure(events) == ParseFailed(
        reason=f"unsupported protocol version {proto!r}", offset=0
    )
    assert not only(events, KexInitReceived)


def test_an_identification_without_software_version_fails() -> None:
    events = events_of(b"SSH-2.0\r\n" + kexinit())
    assert failure(events) == ParseFailed(
        reason="identification line has no software version", offset=0
    )


def test_a_long_identification_is_an_anomaly_not_a_failure() -> None:
    at_limit = b"SSH-2.0-" + b"x" * (limits.RFC_MAX_IDENTIFICATION - 10) + b"\r\n"
    assert len(at_limit) == limits.RFC_MAX_IDENTIFICATION
    assert kinds(events_of(at_limit + kexinit()))[:2] == ["Identification", "KexInitReceived"]
    over = b"SSH-2.0-" + b"x" * (limits.RFC_MAX_IDENTIFICATION - 9) + b"\r\n"
    events = events_of(over + kexinit())
    assert kinds(events)[:3] == ["Identification", "Anomaly", "KexInitReceived"]
    assert events[1] == Anomaly(
        text=f"identification line is {limits.RFC_MAX_IDENTIFICATION + 1} bytes, over "
        f"RFC 4253's {limits.RFC_MAX_IDENTIFICATION}",
        offset=0,
    )


def test_a_carriage_return_inside_the_identification_is_an_anomaly() -> None:
    events = events_of(b"SSH-2.0-x\ry\r\n" + kexinit())
    assert events[1] == Anomaly(text="identification line contains control characters", offset=0)
    assert isinstance(events[2], KexInitReceived)


def test_pre_banner_lines_come_before_the_identification() -> None:
    stream = b"Welcome\r\n\r\nplain LF\n" + BANNER + kexinit()
    events = events_of(stream)
    assert events[:3] == [
        PreBannerLine(text="Welcome", offset=0),
        PreBannerLine(text="", offset=9),
        PreBannerLine(text="plain LF", offset=11),
    ]
    assert events[3] == Identification(
        line="SSH-2.0-OpenSSH_9.2p1",
        proto_version="2.0",
        software="OpenSSH_9.2p1",
        comments=None,
        line_ending="CRLF",
        offset=20,
    )


def test_pre_banner_text_that_is_not_utf8_keeps_its_bytes() -> None:
    events = events_of(b"caf\xe9 \xc3\xa9\r\n" + BANNER)
    assert events[0] == PreBannerLine(text="caf\\xe9 \xe9", offset=0)


def test_too_many_pre_banner_lines_fail() -> None:
    lines = b"x\r\n" * (limits.MAX_PRE_BANNER_LINES + 1)
    events = feed(lines + BANNER)
    assert len(only(events, PreBannerLine)) == limits.MAX_PRE_BANNER_LINES
    assert failure(events) == ParseFailed(
        reason=f"more than {limits.MAX_PRE_BANNER_LINES} lines before the identification",
        offset=3 * limits.MAX_PRE_BANNER_LINES,
    )
    assert not only(events, Identification)
    assert feed(lines + BANNER, [7] * 500) == events


def test_a_line_longer_than_the_limit_fails() -> None:
    events = feed(b"a" * (limits.MAX_LINE + 1))
    assert failure(events) == ParseFailed(
        reason=f"no line end within {limits.MAX_LINE} bytes before the identification",
        offset=0,
    )
    # A line of exactly the limit is still a line.
    ok = feed(b"a" * limits.MAX_LINE + b"\n" + BANNER)
    assert kinds(ok)[:2] == ["PreBannerLine", "Identification"]
    assert feed(b"a" * (limits.MAX_LINE + 1), [4096, 4096]) == events


@pytest.mark.parametrize(
    ("stream", "byte", "offset"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 0x16, 0),  # a TLS ClientHello
        (b"hello\r\nwor\x00ld\r\n", 0x00, 10),
        (b"GET / HTTP/1.1\r\n\x1b[31m\r\n", 0x1B, 16),
        (b"abc\x7f\n", 0x7F, 3),
    ],
)
def test_binary_data_before_any_identification_is_not_ssh(
    stream: bytes, byte: int, offset: int
) -> None:
    events = events_of(stream)
    assert failure(events) == ParseFailed(
        reason=f"binary data before any SSH identification line "
        f"(byte 0x{byte:02x} at offset {offset})",
        offset=offset,
    )
    assert kinds(events)[-2:] == ["ParseFailed", "StreamEnded"]


def test_a_failed_direction_ignores_further_bytes() -> None:
    parser = DirectionParser()
    parser.receive_data(b"\x00")
    assert parser.state is State.FAILED and not parser.parsing
    assert parser.opaque_reason is not None and "binary data" in parser.opaque_reason
    assert parser.receive_data(BANNER) == []
    assert parser.receive_eof() == [StreamEnded(pending=0, offset=0)]


def test_eof_inside_a_line_before_the_identification() -> None:
    events = events_of(b"SSH-2.0-trunc", eof=True)
    assert events == [
        Anomaly(text="stream ended inside a line before the identification (13 bytes)", offset=0),
        StreamEnded(pending=13, offset=0),
    ]
    assert events_of(b"") == [StreamEnded(pending=0, offset=0)]


# -- plaintext refusals where packets belong -------------------------------------------


@pytest.mark.parametrize(
    "refusal",
    [
        b"Invalid SSH identification string.\r\n",
        b"Protocol major versions differ.\r\n",
        b"Protocol mismatch.\n",
        b"ab\n",
    ],
)
def test_a_text_line_after_the_banner_is_a_plaintext_line(refusal: bytes) -> None:
    events = events_of(BANNER + refusal)
    assert events[1] == PlaintextLine(text=refusal.rstrip(b"\r\n").decode(), offset=LEN)
    assert events[2] == StreamEnded(pending=0, offset=LEN + len(refusal))


def test_packets_may_follow_a_plaintext_line() -> None:
    events = events_of(BANNER + b"ab\n" + kexinit() + newkeys())
    assert kinds(events) == [
        "Identification",
        "PlaintextLine",
        "KexInitReceived",
        "NewKeys",
        "StreamEnded",
    ]


def test_a_plaintext_line_with_control_bytes_fails() -> None:
    events = events_of(BANNER + b"Bad\x01 line\n")
    assert failure(events) == ParseFailed(
        reason=f"garbage where a binary packet belongs (byte 0x01 at offset {LEN + 3})",
        offset=LEN + 3,
    )


def test_plaintext_without_a_line_end_fails_at_the_limit() -> None:
    stream = BANNER + b"x" * limits.MAX_TEXT
    events = feed(stream)
    assert failure(events) == ParseFailed(
        reason="text where a binary packet belongs, with no line end", offset=LEN
    )
    assert bytewise(stream) == events
    # One byte short of the limit, the text simply ends with the stream.
    short = feed(BANNER + b"x" * (limits.MAX_TEXT - 1))
    assert kinds(short) == ["Identification", "Anomaly", "StreamEnded"]


def test_a_short_text_tail_at_eof_is_a_truncated_packet() -> None:
    events = events_of(BANNER + b"ab")
    assert events[1:] == [
        Anomaly(text="stream ended inside a packet (2 bytes of it seen)", offset=LEN),
        StreamEnded(pending=2, offset=LEN),
    ]


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


# -- properties: chunking and the fuzz invariant ----------------------------------------


def _stream_cases() -> list[bytes]:
    return [
        handshake(trailing=b"\x00\x01encrypted"),
        b"banner line\r\n" + handshake(),
        BANNER + b"Protocol mismatch.\n",
        BANNER + ignore(b"x" * 300) + debug("d") + kexinit() + disconnect(2, "bye"),
        ident(proto="1.5") + b"\x00\x00\x00\x10stuff",
        BANNER + raw_packet(1 << 20, 0, b""),
        BANNER + packet(kexinit_payload() + b"xx", padding=3) + kexinit()[:40],
        b"\x16\x03\x01",
    ]


@st.composite
def chunk_sizes(draw: st.DrawFn, total: int) -> list[int]:
    sizes: list[int] = []
    left = total
    while left > 0:
        size = draw(st.integers(min_value=1, max_value=max(1, min(left, 64))))
        sizes.append(size)
        left -= size
    return sizes


@FUZZ
@given(st.data(), st.sampled_from(_stream_cases()))
def test_any_chunking_gives_the_same_events(data: st.DataObject, stream: bytes) -> None:
    sizes = data.draw(chunk_sizes(len(stream)))
    assert feed(stream, sizes) == feed(stream)


def _check_invariant(stream: bytes, sizes: list[int]) -> list[Event]:
    """Never an exception; events identical across chunkings; at most one ParseFailed, last."""
    events = feed(stream, sizes)
    assert events == feed(stream)
    failed = [i for i, e in enumerate(events) if isinstance(e, ParseFailed)]
    assert len(failed) <= 1
    if failed:
        assert kinds(events[failed[0] + 1 :]) == ["StreamEnded"]
    assert isinstance(events[-1], StreamEnded)
    offsets = [e.offset for e in events if not isinstance(e, Protocol1)]
    assert all(0 <= off <= len(stream) for off in offsets)
    return events


@FUZZ
@given(st.data(), st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data: st.DataObject, stream: bytes) -> None:
    _check_invariant(stream, data.draw(chunk_sizes(len(stream))))


@FUZZ
@given(st.data(), st.binary(max_size=600))
def test_arbitrary_bytes_after_a_banner_never_raise(data: st.DataObject, tail: bytes) -> None:
    stream = BANNER + tail
    _check_invariant(stream, data.draw(chunk_sizes(len(stream))))


@st.composite
def packet_soup(draw: st.DrawFn) -> bytes:
    """Well-framed packets with arbitrary payloads: exercises every message decoder."""
    parts = [BANNER]
    for _ in range(draw(st.integers(0, 6))):
        number = draw(st.sampled_from([1, 2, 3, 4, 5, 7, 20, 21, 30, 31, 34, 60, 255]))
        body = draw(st.binary(max_size=80))
        parts.append(packet(bytes([number]) + body))
    return b"".join(parts)


@FUZZ
@given(st.data(), packet_soup())
def test_framed_packets_with_arbitrary_payloads_never_raise(
    data: st.DataObject, stream: bytes
) -> None:
    _check_invariant(stream, data.draw(chunk_sizes(len(stream))))


@st.composite
def mutated_stream(draw: st.DrawFn) -> bytes:
    base = bytearray(draw(st.sampled_from(_stream_cases()[:4])))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(0, len(base) - 1)))
        if op == "flip" and base:
            base[pos] ^= draw(st.integers(1, 255))
        elif op == "insert":
            base[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and base:
            del base[pos : pos + draw(st.integers(1, 8))]
        else:
            del base[pos:]
    return bytes(base)


@FUZZ
@given(st.data(), mutated_stream())
def test_mutated_valid_streams_never_raise(data: st.DataObject, stream: bytes) -> None:
    _check_invariant(stream, data.draw(chunk_sizes(len(stream))))


def test_an_escape_inside_the_identification_is_an_anomaly_not_binary() -> None:
    """OpenSSH accepts any byte but NUL in its peer's identification line; so must we."""
    line = b"SSH-2.0-[bold red]x[/]\x1b[2J"
    whole = events_of(line + b"\r\n" + kexinit())
    assert kinds(whole)[:3] == ["Identification", "Anomaly", "KexInitReceived"]
    ident_event = whole[0]
    assert isinstance(ident_event, Identification)
    assert ident_event.line == "SSH-2.0-[bold red]x[/]\x1b[2J"
    assert ident_event.software == "[bold"
    assert whole[1] == Anomaly(text="identification line contains control characters", offset=0)
    # One byte at a time gives the same events.
    assert feed(line + b"\r\n" + kexinit(), [1] * (len(line) + 2 + len(kexinit()))) == whole


def test_a_nul_inside_the_identification_is_refused_as_openssh_does() -> None:
    events = events_of(b"SSH-2.0-a\x00b\r\n" + kexinit())
    assert failure(events) == ParseFailed(
        reason="identification line contains a NUL byte (at offset 9); "
        "OpenSSH refuses it: banner line contains invalid characters",
        offset=9,
    )


@pytest.mark.parametrize("stream", [b"SS\x1b\r\n", b"S\x01H-2.0-x\r\n", b"SSX\x1b-2.0\r\n"])
def test_control_bytes_before_a_whole_ssh_prefix_are_still_binary(stream: bytes) -> None:
    reason = failure(events_of(stream)).reason
    assert reason.startswith("binary data before any SSH identification line")
