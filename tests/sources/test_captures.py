"""The capture source: one tracker per connection, stable ids, each record handed on once,
and the notes a reader of the output should see about skipped frames."""

from __future__ import annotations

from pathlib import Path

from kexproxy.core.record import SessionRecord
from kexproxy.sources.capfile import CaptureStats
from kexproxy.sources.captures import analyse_capture, capture_label, capture_notes

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = str(ROOT / "captures" / "openssh-kex-fail.pcap")


def _records(path: str, **kwargs: bool) -> list[SessionRecord]:
    out: list[SessionRecord] = []
    analyse_capture(path, out.append, **kwargs)
    return out


def test_ids_are_the_same_on_every_run_and_differ_between_connections() -> None:
    first = _records(CAPTURE)
    again = _records(CAPTURE)
    assert [r.id for r in first] == [r.id for r in again]
    assert len({r.id for r in first}) == len(first) >= 1


def test_early_hands_each_record_on_once_when_decided() -> None:
    early = _records(CAPTURE, early=True)
    late = _records(CAPTURE)
    assert [r.id for r in early] == [r.id for r in late]
    assert [r.outcome for r in early] == [r.outcome for r in late] == ["failed"]


def test_streams_that_are_not_ssh_only_when_asked(tmp_path: Path) -> None:
    every = ROOT / "tests" / "data" / "public" / "arkime-gre-sample.pcap"
    ssh = _records(str(every))
    everything = _records(str(every), include_non_ssh=True)
    assert all(r.outcome != "not_ssh" for r in ssh)
    assert len(everything) >= len(ssh)
    assert {r.id for r in ssh} <= {r.id for r in everything}


def test_the_label_of_stdin_and_of_a_path() -> None:
    assert capture_label("-") == "stdin"
    assert capture_label("/a/b/c.pcapng") == "c.pcapng"


def test_notes_say_what_was_skipped_and_nothing_for_a_clean_capture() -> None:
    assert capture_notes(CaptureStats()) == []
    stats = CaptureStats(
        link_types={1, 147},
        unsupported_link_frames=3,
        malformed_frames=2,
        truncated_frames=1,
        fragments=4,
        bad_timestamps=5,
    )
    notes = capture_notes(stats)
    assert notes[0].startswith("3 frames of an unsupported link layer skipped (link type 147)")
    assert "2 malformed frames or records skipped" in notes
    assert any(n.startswith("1 frames cut short by the capture's snap length") for n in notes)
    assert "4 IP fragments skipped (not reassembled)" in notes
    assert "5 corrupt timestamps replaced by the previous one" in notes
