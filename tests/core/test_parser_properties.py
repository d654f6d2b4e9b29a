"""The per-direction parser's properties: any chunking gives the same events, and any bytes end in events or one ParseFailed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kexproxy.core.events import (
    Anomaly,
    Event,
    Identification,
    ParseFailed,
    Protocol1,
    StreamEnded,
)
from tests.builders import (
    debug,
    disconnect,
    ident,
    ignore,
    kexinit,
    kexinit_payload,
    packet,
    raw_packet,
)
from tests.core.parsing import BANNER, FUZZ, events_of, failure, feed, handshake, kinds

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
