"""JSON lines: one record per line, nothing else, flushed per record so pipes see it at once."""

from __future__ import annotations

import json
from typing import TextIO

from kexproxy.core.record import SessionRecord


def dumps(record: SessionRecord) -> str:
    """The record's one-line JSON form; non-ASCII escaped so any terminal shows it literally."""
    return json.dumps(record.to_dict(), ensure_ascii=True, separators=(",", ":"))


class JsonLinesSink:
    """Writes final records only: a line is a promise that the record will not change."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def update(self, record: SessionRecord, *, final: bool) -> None:
        if final:
            self._stream.write(dumps(record) + "\n")
            self._stream.flush()

    def close(self) -> None:
        self._stream.flush()
