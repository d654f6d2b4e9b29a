"""`sniff_records`: sniffed trackers to records, and each session's frames to its own capture.

Fed here by the frames of a real capture file through the same tap and flow table the
live capture uses (the live path itself runs in tests/integration/test_sniff_pcap_peers.py).
"""

from __future__ import annotations

from pathlib import Path

from kexproxy.core.record import SessionRecord
from kexproxy.pipeline import capture_records
from kexproxy.sources.capfile import CaptureInput, CaptureStats
from kexproxy.sources.connection_frames import FrameTap
from kexproxy.sources.flowtable import FlowTable
from kexproxy.sources.pcap import run_frames
from kexproxy.sources.sniff_records import LIVE_PREFIX, SessionFrames, SniffRecords

ROOT = Path(__file__).resolve().parents[2]
MANY = ROOT / "tests" / "data" / "public" / "zeek-ssh-ssh.pcap"
#: What a session's capture file read back must give as the record did.
SAME = ("outcome", "client_kexinit", "server_kexinit", "negotiated", "failures", "host_key")


def _sniff_capture(
    source: Path, frames: SessionFrames | None
) -> tuple[list[tuple[SessionRecord, bool]], list[str]]:
    """Every record SniffRecords publishes for `source`'s connections, and its warnings."""
    published: list[tuple[SessionRecord, bool]] = []
    warned: list[str] = []
    sniffed = SniffRecords(
        "eth9", lambda r, final: published.append((r, final)), warn=warned.append, frames=frames
    )
    tap = FrameTap(frames.keep if frames else lambda *_: None, sniffed.on_finished)
    stats = CaptureStats()
    conns = FlowTable(sniffed.factory, tap.finished, sniffed.on_decided, stats)
    with CaptureInput(str(source), None) as inp:
        try:
            run_frames(tap.wrap(inp, conns), conns, stats, None)
        finally:
            conns.finish_all()
    return published, warned


def test_each_session_has_a_capture_that_reads_back_the_same(tmp_path: Path) -> None:
    frames = SessionFrames(str(tmp_path))
    published, warned = _sniff_capture(MANY, frames)
    finals = [record for record, final in published if final]
    assert warned == []
    assert len(finals) == len(capture_records(str(MANY))) == frames.written == 22
    assert frames.failed == 0 and frames.held == 0  # nothing held once all ended
    assert any(not final for _record, final in published)  # decided records went out early
    for record in finals:
        assert record.capture == str(tmp_path / f"kexproxy-{record.id}.pcap")
        (back,) = capture_records(record.capture)
        for field in SAME:
            assert getattr(back, field) == getattr(record, field), (record.id, field)
    files = {p.stat().st_size for p in tmp_path.iterdir()}
    # Past the handshake frames are only counted, not kept: no file is the whole connection.
    assert max(files) < MANY.stat().st_size


def test_without_a_directory_the_record_names_the_interface() -> None:
    published, _ = _sniff_capture(MANY, None)
    assert {record.capture for record, _final in published} == {f"{LIVE_PREFIX}eth9"}


def test_a_session_past_the_limit_is_cut_and_says_so(tmp_path: Path) -> None:
    frames = SessionFrames(str(tmp_path), limit=300)
    published, _ = _sniff_capture(MANY, frames)
    record = next(r for r, final in published if final and r.outcome == "negotiated")
    assert record.capture is not None
    (note,) = [n for n in record.notes if "capture file holds" in n]
    assert "first" in note and "past its limit" in note
    # The pcap header, then at most 300 bytes of frames with a 16-byte header each.
    assert Path(record.capture).stat().st_size <= 24 + 300 + 16 * (300 // 54)
    back = capture_records(record.capture)
    assert [r.outcome for r in back] != ["negotiated"]  # no KEXINIT pair in so few bytes


def test_the_frames_held_for_all_sessions_together_are_bounded(tmp_path: Path) -> None:
    frames = SessionFrames(str(tmp_path), total_limit=2000)
    seen: list[int] = []
    keep = frames.keep

    def watched(*args: object) -> None:
        keep(*args)  # type: ignore[arg-type]
        seen.append(frames.held)

    frames.keep = watched  # type: ignore[method-assign]
    published, _ = _sniff_capture(MANY, frames)
    assert seen and max(seen) <= 2000
    assert any("past its limit" in n for r, _f in published for n in r.notes)


def test_a_file_that_cannot_be_written_is_counted_and_the_record_kept(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    frames = SessionFrames(str(blocker))
    published, warned = _sniff_capture(MANY, frames)
    finals = [record for record, final in published if final]
    assert len(finals) == 22 and frames.failed == 22 and frames.written == 0
    assert len(warned) == 22 and "could not write" in warned[0]
    assert all(r.capture == f"{LIVE_PREFIX}eth9" for r in finals)
    assert all(any("could not be written" in n for n in r.notes) for r in finals)


def test_frames_the_kernel_dropped_are_noted_on_the_sessions_open_then() -> None:
    """Each connection's first frame is remembered until it ends, so its record can say
    how many frames the kernel dropped since (here: a reading of 3 drops after them all)."""
    published: list[tuple[SessionRecord, bool]] = []
    sniffed = SniffRecords("eth9", lambda r, final: published.append((r, final)), warn=print)
    readings = iter([3])
    sniffed.drops.attach(lambda: next(readings, 0))
    stats = CaptureStats()
    conns = FlowTable(sniffed.factory, sniffed.on_finished, sniffed.on_decided, stats)
    with CaptureInput(str(MANY), None) as inp:
        try:
            run_frames(inp, conns, stats, None)
        finally:
            conns.finish_all()
    finals = [record for record, final in published if final]
    assert len(finals) == 22
    note = "the kernel dropped 3 frames while this session was open: its record may miss packets"
    assert all(note in record.notes for record in finals)
