"""A separate process that writes a session store the way the proxy does, for the store tests.

    python -m tests.tui.store_writer STORE CAPTURE...

Each record of the captures is first written as live (not final), then again as final with
a later end, one record every few milliseconds; "ready" is printed once the store exists.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

from kexproxy.pipeline import capture_records
from kexproxy.sinks.store import SessionStore

#: Seconds between two writes: slow enough that the dashboard sees live versions first.
PAUSE = 0.05


def main(argv: list[str]) -> int:
    path, *captures = argv
    records = [r for capture in captures for r in capture_records(capture)]
    store = SessionStore.open(path)
    print("ready", flush=True)
    for record in records:
        store.put(replace(record, ended=None), final=False)
        time.sleep(PAUSE)
    for record in records:
        store.put(record, final=True)
        time.sleep(PAUSE)
    store.close()
    print("done", len(records), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
