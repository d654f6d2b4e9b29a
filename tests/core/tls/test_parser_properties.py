"""The TLS parser's properties: any chunking gives the same events, and any bytes end in events or one ParseFailed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kexproxy.core.events import ParseFailed, StreamEnded
from kexproxy.core.tls.events import TlsEvent
from tests.core.parsing import FUZZ
from tests.core.tls.builders import (
    CCS,
    alert,
    client_hello,
    client_hello_body,
    handshake,
    record,
    server_hello,
    server_hello_body,
    sslv2_client_hello,
    vec24,
)
from tests.core.tls.parsing import feed, kinds


def _stream_cases() -> list[bytes]:
    flight = handshake(2, server_hello_body(suite=0xC02F, extensions=()))
    flight += handshake(11, vec24(vec24(b"x" * 300))) + handshake(14, b"")
    return [
        client_hello() + CCS + client_hello() + record(23, b"\x01" * 40),
        server_hello(server_hello_body(retry=True)) + CCS + server_hello() + record(23, b"e"),
        record(22, flight[:7]) + record(22, flight[7:200]) + record(22, flight[200:]) + CCS,
        sslv2_client_hello([0x2F, 0x010080]) + alert(2, 40),
        alert(1, 112) + record(24, b"hb") + CCS + record(21, b"\x00" * 26),
        client_hello(client_hello_body()[:-3]),
        record(22, b"\x01\x00\x00\x10") + CCS,
        b"\x16\x03\x01\xff\xff",
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


def _check_invariant(stream: bytes, sizes: list[int]) -> list[TlsEvent]:
    """Never an exception; events identical across chunkings; at most one ParseFailed, last."""
    events = feed(stream, sizes)
    assert events == feed(stream)
    failed = [i for i, e in enumerate(events) if isinstance(e, ParseFailed)]
    assert len(failed) <= 1
    if failed:
        assert kinds(events[failed[0] + 1 :]) == ["StreamEnded"]
    assert isinstance(events[-1], StreamEnded)
    assert all(0 <= e.offset <= len(stream) for e in events)
    return events


@FUZZ
@given(st.data(), st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data: st.DataObject, stream: bytes) -> None:
    _check_invariant(stream, data.draw(chunk_sizes(len(stream))))


@FUZZ
@given(st.data(), st.binary(min_size=0, max_size=400), st.integers(0, 2))
def test_bytes_after_a_valid_start_never_raise(
    data: st.DataObject, tail: bytes, start: int
) -> None:
    """Random bytes inside records (where the interesting decoders are) still end cleanly."""
    prefix = (client_hello(), server_hello(), alert(1, 0))[start]
    wrapped = record(22, tail[:300]) + tail[300:]
    stream = prefix + wrapped
    _check_invariant(stream, data.draw(chunk_sizes(len(stream))))


@FUZZ
@given(st.data(), st.binary(min_size=1, max_size=300))
def test_mutated_hellos_never_raise(data: st.DataObject, noise: bytes) -> None:
    base = bytearray(client_hello() + server_hello())
    for i, byte in enumerate(noise[:40]):
        base[(i * 37 + byte) % len(base)] = byte
    stream = bytes(base)
    _check_invariant(stream, data.draw(chunk_sizes(len(stream))))
