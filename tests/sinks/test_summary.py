"""The proxy's line per session: what it says, and that strangers' strings are escaped."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

from kexproxy.pipeline import capture_records
from kexproxy.sinks.summary import SummarySink

ROOT = Path(__file__).resolve().parents[2]


def test_a_failed_session_is_one_line_with_both_messages_under_it() -> None:
    [record] = capture_records(str(ROOT / "captures" / "openssh-kex-fail.pcap"))
    out = io.StringIO()
    sink = SummarySink(out)
    sink.update(record, final=False)
    assert out.getvalue() == ""  # only ended sessions
    sink.update(record, final=True)
    first, *rest = out.getvalue().splitlines()
    assert record.id in first and " failed " in first
    assert [line.split(":")[0].strip() for line in rest] == ["client", "server"]
    assert "no matching key exchange method found" in rest[0]


def test_control_characters_from_the_wire_are_escaped() -> None:
    [record] = capture_records(str(ROOT / "captures" / "openssh-kex-fail.pcap"))
    hostile = dataclasses.replace(record, client_banner="SSH-2.0-evil\x1b[2J\u202e")
    out = io.StringIO()
    SummarySink(out).update(hostile, final=True)
    assert "\x1b" not in out.getvalue() and "\u202e" not in out.getvalue()
