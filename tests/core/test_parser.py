"""The per-direction parser: a whole direction, identification lines (RFC 4253 4.2), plaintext refusals."""

from __future__ import annotations

import pytest

from kexproxy.core import limits
from kexproxy.core.events import (
    Anomaly,
    Identification,
    KexInitReceived,
    KexMessage,
    NewKeys,
    ParseFailed,
    PlaintextLine,
    PreBannerLine,
    Protocol1,
    StreamEnded,
)
from kexproxy.core.parser import DirectionParser, State
from tests.builders import (
    disconnect,
    ecdh_init,
    ident,
    ignore,
    kexinit,
    newkeys,
    uint32,
)
from tests.core.parsing import (
    BANNER,
    LEN,
    bytewise,
    events_of,
    failure,
    feed,
    handshake,
    kinds,
    only,
)

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
