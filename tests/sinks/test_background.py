"""A sink in a thread of its own: the caller never waits, a stalled reader is given up on."""

from __future__ import annotations

import io
import os
import threading

from kexproxy.core.record import SessionRecord
from kexproxy.sinks.background import BackgroundSink
from kexproxy.sinks.jsonl import JsonLinesSink, dumps
from tests.sinks.test_store import failed_record


def test_final_records_reach_the_sink_in_order() -> None:
    out = io.StringIO()
    sink = BackgroundSink(JsonLinesSink(out), warn=print, name="JSON")
    records = [failed_record(f"r{i}") for i in range(50)]
    for record in records:
        sink.update(record, final=False)  # live updates are not for stdout
        sink.update(record, final=True)
    assert sink.close() is True
    assert out.getvalue() == "".join(dumps(r) + "\n" for r in records)


class _Stuck:
    def __init__(self) -> None:
        self.gate = threading.Event()

    def update(self, record: SessionRecord, *, final: bool) -> None:
        self.gate.wait(10)

    def close(self) -> None:
        pass


def test_a_stalled_reader_drops_beyond_the_bound_and_close_says_how_many() -> None:
    warnings: list[str] = []
    stuck = _Stuck()
    sink = BackgroundSink(stuck, warn=warnings.append, name="JSON", max_queued=5)
    for i in range(20):
        sink.update(failed_record(f"r{i}"), final=True)
    assert 10 <= sink.dropped <= 15  # the bound, plus what the stuck writer holds
    assert sink.close(timeout=0.2) is False
    stuck.gate.set()
    assert warnings[0] == "kexproxy: JSON output is not keeping up; records dropped"
    assert warnings[-1].startswith("kexproxy: JSON output is not being read; ")


def test_a_closed_pipe_stops_that_output_once() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    stream = os.fdopen(write_end, "w")
    warnings: list[str] = []
    sink = BackgroundSink(JsonLinesSink(stream), warn=warnings.append, name="JSON")
    for i in range(3):
        sink.update(failed_record(f"r{i}"), final=True)
    sink.close()
    assert len(warnings) == 1 and warnings[0].startswith("kexproxy: JSON output stopped:")
