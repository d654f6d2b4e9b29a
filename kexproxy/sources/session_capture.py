"""One session's capture file, written for `kexproxy explain ID --pcap OUT`.

A record holds no bytes, so the frames come from where its bytes are: for a session read
from a capture file, that file again (the frames of that one TCP connection, unchanged);
for a session whose record names a capture file of its own (`proxy --pcap`,
`sniff --pcap`), that file, copied. Anything else is said in one line.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from kexproxy.core.connection import ConnectionTracker
from kexproxy.core.observer import Endpoint, InitiatorEvidence
from kexproxy.core.record import SessionRecord
from kexproxy.sources.captures import Collector, capture_label, session_id


def export_capture(target: str, records: list[SessionRecord], out: str) -> str | None:
    """`explain TARGET --pcap OUT`: the one session of `records` (read from the capture file
    `target`, or looked up in the store by the id `target`) written to `out`; why not in one
    line, or None."""
    if len(records) != 1:
        return (
            f"--pcap writes one session; {target} has {len(records)}: pick one with --connection N"
        )
    source = target if target == "-" or Path(target).exists() else None
    return write_session_capture(records[0], source, out)


def write_session_capture(record: SessionRecord, source: str | None, out: str) -> str | None:
    """Writes `record`'s session as a pcap file at `out`, from the capture file `source` it
    was read from (None: a stored record); returns why not in one line, or None."""
    if source is not None:
        return _from_capture(record, source, out)
    own = record.capture
    if own and Path(own).is_file():
        try:
            shutil.copyfile(own, out)
        except OSError as exc:
            return f"cannot copy {own} to {out}: {exc.strerror or exc}"
        return None
    if own and own.startswith("live:"):
        why = "it was sniffed without --pcap, so no capture file holds its frames"
    elif own and record.source == "pcap":
        why = f"it was read from the capture {own!r}: run explain on that file with --connection"
    elif own:
        why = f"its capture file {own} is not there any more"
    else:
        why = "no capture file holds its frames (proxy --pcap DIR keeps one per session)"
    return f"session {record.id}: cannot write {out}: {why}"


def _from_capture(record: SessionRecord, source: str, out: str) -> str | None:
    from kexproxy.sources.connection_frames import (
        CaptureWriteError,
        connection_frames,
        write_frames,
    )

    if source == "-":
        return "--pcap needs the capture as a file, not standard input (it is read twice)"
    label = capture_label(source)
    collector = Collector(label, lambda _record: None)
    chosen: list[ConnectionTracker] = []

    def factory(
        a: Endpoint, b: Endpoint, initiator: InitiatorEvidence, flow_index: int, first_ts: float
    ) -> ConnectionTracker:
        tracker = collector.factory(a, b, initiator, flow_index, first_ts)
        if session_id(label, flow_index, a, b, first_ts) == record.id:
            chosen.append(tracker)
        return tracker

    def wanted(observer: Any) -> bool:
        return bool(chosen) and observer is chosen[0]

    frames = connection_frames(source, factory, wanted)
    if not frames:
        return f"{source}: no frames of session {record.id} found to write"
    try:
        write_frames(out, frames)
    except CaptureWriteError as exc:
        return f"cannot write {out}: {exc}"
    except OSError as exc:
        return f"cannot write {out}: {exc.strerror or exc}"
    return None
