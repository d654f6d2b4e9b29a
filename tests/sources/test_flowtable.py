"""The flow table's bounds: hostile frames never end the read, and memory held for
connections still in their handshake is capped (issue 9: LAND crash, SYN floods).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kexproxy.core.netframes import ACK, RST, SYN
from kexproxy.core.observer import Leg
from kexproxy.sources import flowtable, pcap
from kexproxy.sources.pcap import read_capture
from tests.sources.captures import (
    C_BANNER,
    Conversation,
    Frame,
    Recorder,
    pcap_bytes,
    run,
    ssh_conversation,
    write,
)

# -- hostile input: the read goes on -------------------------------------------------------


def land(port: int = 22, flags: int = SYN, payload: bytes = b"") -> Conversation:
    """A segment from 10.0.0.1:`port` to itself (issue 9's LAND packet)."""
    return Conversation(("10.0.0.1", port), ("10.0.0.1", port)).packet("c", payload, flags)


def test_segments_from_an_endpoint_to_itself_are_counted_and_skipped(tmp_path: Path) -> None:
    frames = land().frames + land(flags=ACK, payload=C_BANNER).frames
    frames += ssh_conversation(t0=1_700_000_001.0).close().frames + land(flags=RST).frames
    result = run(write(tmp_path, "land.pcap", pcap_bytes(frames)))
    assert result.error is None
    assert result.stats is not None
    assert result.stats.self_addressed_segments == 3
    assert result.stats.internal_errors == 0
    (rec,) = result.finished
    assert bytes(rec.data["a"]).startswith(C_BANNER)
    assert rec.closes == [("a", "fin"), ("b", "fin")]


def test_an_exception_while_handling_a_frame_ends_only_its_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def receive(self: Recorder, side: Leg, data: bytes, ts: float) -> None:
        if b"boom" in data:
            raise RuntimeError("a bug")
        self.data[side] += data

    monkeypatch.setattr(Recorder, "receive", receive)
    bad = ssh_conversation(("10.0.0.5", 5555)).packet("c", b"boom").packet("c", b"after")
    good = ssh_conversation(t0=bad.t + 1).close()
    result = run(write(tmp_path, "bug.pcap", pcap_bytes(bad.frames + good.frames)))
    assert result.error is None
    assert result.stats is not None
    assert result.stats.internal_errors == 1
    assert [r.a.port for r in result.finished] == [5555, 40000]  # handed on, once each
    assert bytes(result.finished[0].data["a"]) == C_BANNER + b"\0\0\0\x0c\x0a\x14" + b"k" * 10
    # "after" (its connection had ended) and the last ACK of the good one's close().
    assert result.stats.stray_segments == 2
    assert bytes(result.finished[1].data["a"]).startswith(C_BANNER)


def test_an_exception_decoding_a_frame_skips_only_that_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = pcap.decode_frame

    def decode(linktype: int, buf: bytes, start: int, end: int, wirelen: int) -> Any:
        if b"poison" in buf[start:end]:
            raise IndexError("a bug")
        return real(linktype, buf, start, end, wirelen)

    monkeypatch.setattr(pcap, "decode_frame", decode)
    conv = ssh_conversation().packet("c", b"poison", advance=False).close()
    result = run(write(tmp_path, "decode.pcap", conv.pcap()))
    assert result.stats is not None
    assert result.stats.internal_errors == 1
    (rec,) = result.finished
    assert rec.closes == [("a", "fin"), ("b", "fin")]
    assert b"poison" not in bytes(rec.data["a"])


def test_exceptions_from_the_callers_callbacks_are_never_contained(tmp_path: Path) -> None:
    path = write(tmp_path, "two.pcap", pcap_bytes(ssh_conversation().close().frames))

    def finished(obs: Any) -> None:
        raise BrokenPipeError("stdout closed")

    with pytest.raises(BrokenPipeError):
        read_capture(path, Recorder, on_finished=finished)
    with pytest.raises(BrokenPipeError):
        read_capture(path, Recorder, on_decided=finished)


# -- memory bounded by the connections still in their handshake ----------------------------


def syn_only(port: int, t0: float) -> Conversation:
    return Conversation(("10.0.0.7", port), t0=t0).packet("c", flags=SYN)


def test_a_handshake_idle_too_long_ends_at_its_last_packet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pcap, "PROGRESS_EVERY", 4)
    monkeypatch.setattr(flowtable, "HANDSHAKE_IDLE", 10.0)
    scan = syn_only(1, 1_700_000_000.0)
    early = ssh_conversation(("10.0.0.8", 2), t0=1_700_000_000.5)  # decided: not bounded
    busy = ssh_conversation(("10.0.0.9", 3), t0=1_700_000_020.0)
    late = Conversation(("10.0.0.7", 1), t0=busy.t + 1).packet("c", C_BANNER, seq=1001)
    frames = scan.frames + early.frames + busy.frames + late.frames
    result = run(write(tmp_path, "idle.pcap", pcap_bytes(frames)), limit=20)
    assert result.stats is not None
    assert result.stats.idle_handshakes == 1
    assert [r.a.port for r in result.finished] == [1, 2, 3]
    assert result.finished[0].calls == []
    assert result.stats.stray_segments == 1  # the idle one's late data starts nothing
    assert result.finished[1].total("a") == len(C_BANNER) + 16


def test_beyond_the_cap_the_least_recently_active_handshake_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flowtable, "MAX_HANDSHAKING", 2)
    one, two, three = (syn_only(port, 1_700_000_000.0 + port) for port in (1, 2, 3))
    one.t = 1_700_000_002.5
    one.packet("c", C_BANNER[:4], flags=ACK)  # makes `two` the least recently active
    result = run(
        write(tmp_path, "cap.pcap", pcap_bytes(sorted(one.frames + two.frames + three.frames)))
    )
    assert result.stats is not None
    assert result.stats.evicted_handshakes == 1
    assert [r.a.port for r in result.finished] == [2, 1, 3]
    assert bytes(result.finished[1].data["a"]) == C_BANNER[:4]


def test_connections_past_their_handshake_do_not_count_against_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flowtable, "MAX_HANDSHAKING", 1)
    frames: list[Frame] = []
    for port in range(1, 4):
        frames += ssh_conversation(("10.0.0.1", port), t0=1_700_000_000.0 + port).frames
    result = run(write(tmp_path, "past.pcap", pcap_bytes(frames)), limit=1)
    assert result.stats is not None
    assert result.stats.evicted_handshakes == 0
    assert [r.total("a") for r in result.finished] == [len(C_BANNER) + 16] * 3


def test_a_syn_flood_holds_at_most_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flowtable, "MAX_HANDSHAKING", 50)
    frames: list[Frame] = []
    for port in range(1, 1001):
        frames += syn_only(port, 1_700_000_000.0 + port / 1000).frames
    made = 0
    most = 0

    def factory(*args: Any) -> Recorder:
        nonlocal made
        made += 1
        return Recorder(*args)

    def finished(obs: Any) -> None:
        nonlocal most
        most = max(most, made - len(ended))
        ended.append(obs)

    ended: list[Recorder] = []
    stats = read_capture(
        write(tmp_path, "flood.pcap", pcap_bytes(frames)), factory, on_finished=finished
    )
    assert stats.evicted_handshakes == 950
    assert len(ended) == 1000
    assert most == 51  # the newest is in the table just before the oldest leaves


# -- counting past the handshake ------------------------------------------------------------


def test_a_segment_that_arrives_late_is_counted_once(tmp_path: Path) -> None:
    """Loopback hands a migrating sender's segments to the capture out of order: the late
    one fills the hole the early one jumped over and is counted; its retransmission is not."""
    conv = Conversation().handshake().packet("c", C_BANNER)
    for n in range(4):
        conv.packet("c", bytes([n]) * 1000)
    second, third = conv.frames[-3], conv.frames[-2]
    conv.frames[-3], conv.frames[-2] = third, second  # the third segment before the second
    conv.frames.append(second)  # and the second again, a retransmission
    conv.close()
    (rec,) = run(write(tmp_path, "late.pcap", conv.pcap()), limit=len(C_BANNER)).finished
    assert rec.total("a") == len(C_BANNER) + 4000


def test_a_hole_never_filled_stays_uncounted(tmp_path: Path) -> None:
    """A segment the capture lost is not guessed at: only what the capture holds counts."""
    conv = Conversation().handshake().packet("c", C_BANNER)
    for n in range(4):
        conv.packet("c", bytes([n]) * 1000)
    del conv.frames[-3]  # the second segment is not in the capture
    conv.close()
    (rec,) = run(write(tmp_path, "hole.pcap", conv.pcap()), limit=len(C_BANNER)).finished
    assert rec.total("a") == len(C_BANNER) + 3000


def test_holes_are_bounded_and_cut_by_what_fills_them() -> None:
    d = flowtable.Direction.__new__(flowtable.Direction)
    d.holes = []
    for i in range(flowtable.MAX_HOLES + 5):
        flowtable.note_hole(d, 1000 * i, 100)
    assert len(d.holes) == flowtable.MAX_HOLES and d.holes[0] == (5000, 100)
    d.holes = [(5000, 100), (6000, 100), (7000, 100)]
    # Fills the middle of one hole, and overlaps the start of the next (and a wrap).
    assert flowtable.fill_holes(d, 5020, 10) == 10
    assert (5000, 20) in d.holes and (5030, 70) in d.holes
    assert flowtable.fill_holes(d, 5990, 30) == 20  # only [6000, 6020) was missing
    assert (6020, 80) in d.holes
    d.holes = [(0xFFFFFFF0, 0x20)]  # a hole across the sequence number wrap
    assert flowtable.fill_holes(d, 0xFFFFFFF8, 0x10) == 0x10
    assert d.holes == [(0xFFFFFFF0, 8), (0x8, 8)]
