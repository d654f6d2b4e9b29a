"""Writing sessions as JSON lines, the same encoding as ``kexproxy read --json``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from kexproxy.core.record import SessionRecord
from kexproxy.sinks.jsonl import dumps


def write_jsonl(records: Iterable[SessionRecord], path: str) -> int:
    """Writes one record per line to `path` (replacing it) and returns how many."""
    target = Path(os.path.expanduser(path))
    count = 0
    with target.open("w", encoding="ascii") as out:
        for record in records:
            out.write(dumps(record) + "\n")
            count += 1
    return count
