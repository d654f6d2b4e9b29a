"""`write_session_capture`: a stored record's capture, or one line saying why there is none."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from kexproxy.pipeline import capture_records
from kexproxy.sources.session_capture import export_capture, write_session_capture

ROOT = Path(__file__).resolve().parents[2]
FAILED = ROOT / "captures" / "openssh-kex-fail.pcap"


def test_why_not_for_each_kind_of_record(tmp_path: Path) -> None:
    [record] = capture_records(str(FAILED))
    out = str(tmp_path / "out.pcap")
    live = write_session_capture(replace(record, capture="live:lo"), None, out)
    assert live is not None and "sniffed without --pcap" in live
    gone = write_session_capture(replace(record, capture="/nope.pcap", source="proxy"), None, out)
    assert gone is not None and "/nope.pcap is not there any more" in gone
    none = write_session_capture(replace(record, capture=None, source="proxy"), None, out)
    assert none is not None and "proxy --pcap DIR" in none
    assert not Path(out).exists()


def test_standard_input_cannot_be_read_twice(tmp_path: Path) -> None:
    [record] = capture_records(str(FAILED))
    problem = export_capture("-", [record], str(tmp_path / "o.pcap"))
    assert problem is not None and "standard input" in problem
