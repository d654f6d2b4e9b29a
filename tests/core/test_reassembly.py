"""TCP reassembly: the original bytes or an explicit gap, never wrong bytes."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexproxy.core import reassembly
from kexproxy.core.reassembly import Reassembler

ISN = 1000


def stream(r: Reassembler, *segments: tuple[int, bytes]) -> bytes:
    """Everything `add` returns for `segments` (offsets relative to ISN + 1), in order."""
    return b"".join(r.add((ISN + 1 + off) % (1 << 32), data) for off, data in segments)


def gap(r: Reassembler) -> int | None:
    """`r.gap`, read through a call so that mypy does not keep an earlier narrowing."""
    return r.gap


def fin_reached(r: Reassembler) -> bool:
    return r.fin_reached


def is_started(r: Reassembler) -> bool:
    return r.started


def started() -> Reassembler:
    r = Reassembler()
    r.syn(ISN)
    return r


def test_in_order_segments_come_straight_through() -> None:
    r = started()
    assert r.add(ISN + 1, b"SSH-2.0-") == b"SSH-2.0-"
    assert r.add(ISN + 9, b"x\r\n") == b"x\r\n"
    assert r.delivered == 11
    assert gap(r) is None


def test_syn_takes_one_sequence_number() -> None:
    r = started()
    assert r.add(ISN, b"X") == b""  # the SYN's own number is not data
    assert r.add(ISN + 1, b"a") == b"a"


def test_out_of_order_segments_wait_for_the_hole() -> None:
    r = started()
    assert stream(r, (5, b"fghij"), (3, b"de")) == b""
    assert r.pending_bytes == 7
    assert stream(r, (0, b"abc")) == b"abcdefghij"
    assert r.pending_bytes == 0


def test_duplicates_are_dropped() -> None:
    r = started()
    assert stream(r, (0, b"abc"), (0, b"abc"), (3, b"def"), (0, b"abcdef")) == b"abcdef"
    assert stream(r, (6, b"gh"), (6, b"gh")) == b"gh"


def test_overlapping_retransmission_keeps_the_first_copy() -> None:
    r = started()
    assert stream(r, (0, b"abcd")) == b"abcd"
    assert stream(r, (2, b"XXYY")) == b"YY"  # "cd" was delivered: the first copy stands
    # Out of order: the buffered copy wins over a later overlapping one.
    assert stream(r, (10, b"klmn"), (8, b"ZZZZZZ"), (12, b"QQQQ")) == b""
    assert stream(r, (6, b"gh")) == b"ghZZklmnQQ"


def test_segment_spanning_several_buffered_ones() -> None:
    r = started()
    assert stream(r, (2, b"c"), (4, b"e"), (6, b"g")) == b""
    assert stream(r, (1, b"BCDEFGH")) == b""
    assert r.pending_bytes == 7
    assert stream(r, (0, b"a")) == b"aBcDeFgH"


def test_sequence_numbers_wrap_around() -> None:
    r = Reassembler()
    r.syn((1 << 32) - 3)
    assert r.add((1 << 32) - 2, b"ab") == b"ab"
    assert r.add(2, b"ef") == b""  # after the wrap, out of order
    assert r.add(0, b"cd") == b"cdef"
    assert r.highest_seq() == 4


def test_capture_starting_mid_stream_starts_at_the_first_segment() -> None:
    r = Reassembler()
    assert not is_started(r)
    assert r.add(555, b"middle") == b"middle"
    assert is_started(r)
    assert r.add(550, b"early") == b""  # before the first seen byte: treated as old


def test_peer_acknowledging_past_a_hole_is_a_gap() -> None:
    r = started()
    assert stream(r, (0, b"abc"), (10, b"k")) == b"abc"
    r.ack(ISN + 1 + 3)
    assert gap(r) is None
    r.ack(ISN + 1 + 11)
    assert gap(r) == 8
    assert r.add(ISN + 4, b"defghij") == b""  # nothing after a gap, ever


def test_ack_before_any_data_or_of_the_fin_is_no_gap() -> None:
    r = Reassembler()
    r.ack(12345)  # nothing seen of this direction yet
    assert gap(r) is None
    r = started()
    r.ack(ISN + 1)  # the SYN-ACK acknowledging the SYN
    assert stream(r, (0, b"abc")) == b"abc"
    r.fin(ISN + 4)
    assert fin_reached(r)
    r.ack(ISN + 5)  # the FIN takes one number
    assert gap(r) is None


def test_fin_after_a_hole_waits_then_finish_reports_the_gap() -> None:
    r = started()
    stream(r, (0, b"ab"), (4, b"ef"))
    r.fin(ISN + 7)
    assert not fin_reached(r)
    assert stream(r, (2, b"cd")) == b"cdef"
    assert fin_reached(r)
    r.finish()
    assert gap(r) is None

    r = started()
    stream(r, (0, b"ab"), (4, b"ef"))
    r.fin(ISN + 7)
    r.finish()
    assert gap(r) == 2


def test_fin_beyond_the_last_byte_seen_is_a_gap_at_finish() -> None:
    r = started()
    stream(r, (0, b"ab"))
    r.fin(ISN + 1 + 10)
    r.finish()
    assert gap(r) == 8


def test_finish_without_a_hole_is_clean() -> None:
    r = started()
    stream(r, (0, b"abc"))
    r.finish()
    assert gap(r) is None
    r = Reassembler()
    r.finish()
    assert gap(r) is None


def test_buffer_bound_turns_a_hole_into_a_gap() -> None:
    r = Reassembler(max_out_of_order=100)
    r.syn(ISN)
    stream(r, (0, b"a"))
    stream(r, (10, b"x" * 60))
    assert gap(r) is None
    stream(r, (70, b"y" * 60))
    assert gap(r) == 9
    assert r.pending_bytes == 0  # the buffer is released


def test_default_bound_is_one_mebibyte() -> None:
    assert reassembly.MAX_OUT_OF_ORDER_BYTES == 1 << 20
    r = started()
    chunk = b"z" * 65536
    for i in range(16):
        r.add(ISN + 2 + i * len(chunk), chunk)
    assert gap(r) is None
    r.add(ISN + 2 + 16 * len(chunk), b"!")
    assert gap(r) == 1


def test_many_tiny_segments_are_bounded_too() -> None:
    r = started()
    for i in range(reassembly.MAX_OUT_OF_ORDER_SEGMENTS + 1):
        r.add(ISN + 3 + 2 * i, b"t")
    assert gap(r) == 2


def test_cut_segment_next_in_line_is_a_gap() -> None:
    r = started()
    stream(r, (0, b"abc"))
    r.mark_missing(ISN + 4, 1000)
    assert gap(r) == 1000


def test_cut_segment_ahead_stops_delivery_where_it_starts() -> None:
    r = started()
    r.mark_missing(ISN + 1 + 5, 100)
    assert gap(r) is None
    assert stream(r, (0, b"abcdefgh")) == b"abcde"
    assert gap(r) is not None
    assert r.delivered == 5


def test_cut_copy_of_delivered_bytes_is_harmless() -> None:
    r = started()
    stream(r, (0, b"abcdef"))
    r.mark_missing(ISN + 1, 6)
    r.mark_missing(ISN + 1, 0)
    assert gap(r) is None
    r.finish()
    assert gap(r) is None


def test_cut_segment_first_in_a_mid_stream_capture() -> None:
    r = Reassembler()
    r.mark_missing(777, 50)
    assert gap(r) == 50


def test_cut_segment_left_pending_is_a_gap_at_finish() -> None:
    r = started()
    r.mark_missing(ISN + 1 + 5, 100)
    stream(r, (0, b"ab"))
    r.finish()
    assert gap(r) is not None


def test_highest_seq_counts_buffered_segments() -> None:
    r = started()
    assert r.highest_seq() == ISN + 1
    stream(r, (0, b"ab"), (10, b"xyz"))
    assert r.highest_seq() == ISN + 1 + 13
    assert Reassembler().highest_seq() is None


def test_fin_on_an_unstarted_direction() -> None:
    r = Reassembler()
    r.fin(4242)
    assert fin_reached(r)
    r.finish()
    assert gap(r) is None


# -- properties ----------------------------------------------------------------------------

DATA = st.binary(min_size=1, max_size=400)


@st.composite
def segmented(draw: st.DrawFn) -> tuple[bytes, int, list[tuple[int, bytes]]]:
    """A stream, an ISN, and segments covering it (cut at random points, possibly overlapping)."""
    data = draw(DATA)
    isn = draw(st.integers(0, (1 << 32) - 1))
    cuts = sorted(
        set(draw(st.lists(st.integers(1, len(data) - 1), max_size=20)) if len(data) > 1 else [])
    )
    bounds = [0, *cuts, len(data)]
    segments = []
    for start, end in itertools.pairwise(bounds):
        # Sometimes extend a segment backwards over its predecessor: an overlapping resend.
        back = draw(st.integers(0, start))
        segments.append((start - back, data[start - back : end]))
    return data, isn, segments


def feed(r: Reassembler, isn: int, segments: list[tuple[int, bytes]]) -> bytes:
    return b"".join(r.add((isn + 1 + off) % (1 << 32), chunk) for off, chunk in segments)


@settings(max_examples=400, deadline=None)
@given(case=segmented(), data=st.data())
def test_any_order_with_duplicates_gives_the_original(
    case: tuple[bytes, int, list[tuple[int, bytes]]], data: st.DataObject
) -> None:
    original, isn, segments = case
    dups = data.draw(st.lists(st.sampled_from(segments), max_size=10))
    order = data.draw(st.permutations(segments + dups))
    r = Reassembler()
    r.syn(isn)
    out = feed(r, isn, order)
    r.fin((isn + 1 + len(original)) % (1 << 32))
    r.finish()
    assert gap(r) is None
    assert fin_reached(r)
    assert out == original


@settings(max_examples=400, deadline=None)
@given(case=segmented(), data=st.data())
def test_missing_segments_give_a_prefix_and_a_gap(
    case: tuple[bytes, int, list[tuple[int, bytes]]], data: st.DataObject
) -> None:
    original, isn, segments = case
    kept = data.draw(st.lists(st.sampled_from(segments), max_size=len(segments) + 5))
    r = Reassembler(max_out_of_order=data.draw(st.sampled_from([16, 1 << 20])))
    r.syn(isn)
    out = feed(r, isn, kept)
    if data.draw(st.booleans()):
        r.ack((isn + 1 + len(original)) % (1 << 32))
    r.fin((isn + 1 + len(original)) % (1 << 32))
    r.finish()
    assert original.startswith(out)  # never wrong bytes
    assert (out == original) == (gap(r) is None)  # short of the whole only with a gap


@settings(max_examples=300, deadline=None)
@given(
    case=segmented(),
    data=st.data(),
)
def test_cut_frames_never_pass_for_whole_ones(
    case: tuple[bytes, int, list[tuple[int, bytes]]], data: st.DataObject
) -> None:
    original, isn, segments = case
    order = data.draw(st.permutations(segments))
    cut = data.draw(st.sets(st.integers(0, len(order) - 1)))
    r = Reassembler()
    r.syn(isn)
    out = b""
    for i, (off, chunk) in enumerate(order):
        seq = (isn + 1 + off) % (1 << 32)
        if i in cut:
            r.mark_missing(seq, len(chunk))
        else:
            out += r.add(seq, chunk)
    r.finish()
    assert original.startswith(out)
    if gap(r) is None:
        assert out == original


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["add", "ack", "fin", "missing", "syn"]),
            st.integers(0, (1 << 32) - 1),
            st.binary(max_size=50),
        ),
        max_size=40,
    )
)
def test_arbitrary_calls_never_raise(ops: list[tuple[str, int, bytes]]) -> None:
    r = Reassembler(max_out_of_order=200)
    for op, seq, blob in ops:
        if op == "add":
            r.add(seq, blob)
        elif op == "ack":
            r.ack(seq)
        elif op == "fin":
            r.fin(seq)
        elif op == "missing":
            r.mark_missing(seq, len(blob))
        else:
            r.syn(seq)
        assert r.pending_bytes <= 200 + 50
    r.finish()


@pytest.mark.parametrize("size", [1, 7, 1460, 5120])
def test_byte_at_a_time_and_whole(size: int) -> None:
    original = bytes(range(256)) * 20
    pieces = [(i, original[i : i + size]) for i in range(0, len(original), size)]
    assert stream(started(), *pieces) == original
    if len(pieces) <= reassembly.MAX_OUT_OF_ORDER_SEGMENTS:
        assert stream(started(), *reversed(pieces)) == original
