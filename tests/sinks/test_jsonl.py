"""JSON lines: one record per line, ASCII only, flushed per record, final records only."""

from __future__ import annotations

import dataclasses
import json
import os

from kexproxy.core.record import SessionRecord
from kexproxy.sinks.jsonl import JsonLinesSink, dumps
from tests.sinks.test_store import failed_record


def test_a_line_is_the_record_and_reads_back_the_same() -> None:
    record = dataclasses.replace(failed_record(), client_banner="SSH-2.0-\u00e9\u202e\x1b[2J\nx")
    line = dumps(record)
    assert "\n" not in line and line.isascii()
    assert SessionRecord.from_dict(json.loads(line)) == record
    assert json.loads(line)["schema"] == "kexproxy/session/1"


def test_only_final_records_are_written_and_each_reaches_a_pipe_at_once() -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as stream, os.fdopen(read_end, "rb") as reader:
        sink = JsonLinesSink(stream)
        sink.update(failed_record("live"), final=False)
        sink.update(failed_record("done"), final=True)
        # Flushed per record: the reader sees the line while the writer is still open.
        line = reader.readline()
        assert json.loads(line)["id"] == "done"
        sink.close()
