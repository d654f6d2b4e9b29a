"""A sniffed interface's records, as `kexproxy sniff` and `kexproxy tui --interface` publish them.

Theory of operation. `sniff.sniff_interface` hands on one tracker per TCP connection;
`SniffRecords` turns them into records the same way for every consumer: the record so far
once a handshake is decided (not final, so a store shows it while the session lasts), and
the final record when the session ends (at Ctrl-C for those still open), with a note when
the kernel dropped frames while it was open (`sniff.DropLedger`).

With a capture directory (`--pcap DIR`), `SessionFrames` keeps each connection's raw frames
as sniffed, both directions, from its first frame until inspection stops (frames only
counted past the handshake are not kept; its FIN or RST is), at most
`connection_frames.MAX_SESSION_FRAME_BYTES` of them: past that nothing more is kept, as a
stream with a hole in its middle would be read as something the peers never sent. When the
session ends its frames are written unchanged (`connection_frames.write_frames`) to a file
named as `proxy --pcap` names its own (`proxy_pcap.capture_name`), and the record's
`capture` names that file, so `kexproxy read FILE` gives the record back. The file is
written in the capture thread: a handshake's few dozen frames take a millisecond, and the
socket's buffer holds what arrives meanwhile. A file that cannot be written is counted and
noted on its record, which is published all the same.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from kexproxy.core.connection import ConnectionTracker
from kexproxy.core.observer import ConnectionObserver, Endpoint, InitiatorEvidence
from kexproxy.core.record import SessionRecord
from kexproxy.sources.capfile import Record
from kexproxy.sources.captures import Collector
from kexproxy.sources.connection_frames import MAX_SESSION_FRAME_BYTES
from kexproxy.sources.sniff import DropLedger, SniffResult, drop_note, sniff_interface

#: (record, final): where records go (a pipeline's `publish`).
Publish = Callable[[SessionRecord, bool], None]
Warn = Callable[[str], None]
#: Frame bytes held for all open connections together: `MAX_SESSION_FRAME_BYTES` each would
#: let the flow table's 10,000 handshakes in flight (`flowtable.MAX_HANDSHAKING`) hold 6 GB.
#: A connection whose frame would go over it is cut there, as at its own limit.
MAX_OPEN_FRAME_BYTES: Final = 256 << 20
#: The label sniffed sessions' ids are made from, and their `capture` without `--pcap`.
LIVE_PREFIX: Final = "live:"


class _Kept:
    """One connection's frames so far."""

    __slots__ = ("cut", "frames", "size")

    def __init__(self) -> None:
        self.frames: list[Record] = []
        self.size = 0
        #: Frame bytes not kept: past the limit.
        self.cut = 0


class SessionFrames:
    """Each open connection's raw frames while it is inspected, written as one pcap file per
    session into `directory` when it ends."""

    def __init__(
        self,
        directory: str,
        *,
        limit: int = MAX_SESSION_FRAME_BYTES,
        total_limit: int = MAX_OPEN_FRAME_BYTES,
    ) -> None:
        self.directory = directory
        self.limit = limit
        self.total_limit = total_limit
        #: Frame bytes held now, all open connections together.
        self.held = 0
        #: Capture files that could not be written.
        self.failed = 0
        #: Capture files written.
        self.written = 0
        self._open: dict[int, _Kept] = {}

    def keep(self, observer: ConnectionObserver, record: Record, counted: bool) -> None:
        """A `connection_frames.Keep`: the frame kept if its connection is still inspected."""
        if counted:
            return  # past the handshake, only counted: the bulk is not the capture's
        kept = self._open.get(id(observer))
        if kept is None:
            kept = self._open[id(observer)] = _Kept()
        linktype, buf, start, end, wirelen, ts = record
        size = end - start
        if kept.cut or kept.size + size > self.limit or self.held + size > self.total_limit:
            kept.cut += size
            return
        kept.size += size
        self.held += size
        kept.frames.append((linktype, bytes(buf[start:end]), 0, size, wirelen, ts))

    def discard(self, observer: ConnectionObserver) -> None:
        """Forgets an ended connection that has no record to name a file (not SSH or TLS)."""
        self._take(observer)

    def _take(self, observer: ConnectionObserver) -> _Kept | None:
        kept = self._open.pop(id(observer), None)
        if kept is not None:
            self.held -= kept.size
        return kept

    def write(
        self, observer: ConnectionObserver, record: SessionRecord, warn: Warn
    ) -> SessionRecord:
        """Writes the ended connection's frames as `record`'s capture file; the record
        naming it, or noting why there is none."""
        from kexproxy.sources.connection_frames import write_frames
        from kexproxy.sources.proxy_pcap import capture_name

        kept = self._take(observer)
        if kept is None or not kept.frames:
            return record
        path = str(Path(self.directory) / capture_name(record.id))
        notes = list(record.notes)
        try:
            write_frames(path, kept.frames)
        except Exception as exc:  # a capture is lost, never the record
            self.failed += 1
            why = f"{type(exc).__name__}: {exc}"
            warn(f"kexproxy: session {record.id}: could not write {path}: {why}")
            notes.append(f"the capture file {path} could not be written: {why}")
            return dataclasses.replace(record, notes=notes)
        self.written += 1
        if kept.cut:
            notes.append(
                f"the capture file holds the session's first {kept.size} bytes of frames only: "
                f"{kept.cut} more were past its limit"
            )
        return dataclasses.replace(record, capture=path, notes=notes)


class SniffRecords:
    """Trackers from `sniff_interface` to published records: the decided record early, the
    final one at the end, with the kernel's drops noted and, with `frames`, a capture file."""

    def __init__(
        self,
        interface: str,
        publish: Publish,
        *,
        warn: Warn,
        frames: SessionFrames | None = None,
    ) -> None:
        self.interface = interface
        self.frames = frames
        self.drops = DropLedger()
        self._publish = publish
        self._warn = warn
        self._collector = Collector(f"{LIVE_PREFIX}{interface}", lambda _record: None)
        #: id() of a connection's tracker -> the kernel timestamp of its first frame, for
        #: its drop note (held until the connection ends, so the id is not reused meanwhile).
        self._first_seen: dict[int, float] = {}

    def run(
        self,
        *,
        bpf: str | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        ready: Callable[[], None] | None = None,
    ) -> SniffResult:
        """Captures until `should_stop()`; raises `sniff.SniffError` before capturing."""
        return sniff_interface(
            self.interface,
            self.factory,
            bpf=bpf,
            on_finished=self.on_finished,
            on_decided=self.on_decided,
            should_stop=should_stop,
            ready=ready,
            drops=self.drops,
            keep=None if self.frames is None else self.frames.keep,
        )

    def factory(
        self,
        a: Endpoint,
        b: Endpoint,
        initiator: InitiatorEvidence,
        flow_index: int,
        first_ts: float,
    ) -> ConnectionTracker:
        tracker = self._collector.factory(a, b, initiator, flow_index, first_ts)
        self._first_seen[id(tracker)] = first_ts
        return tracker

    def on_decided(self, tracker: ConnectionTracker) -> None:
        record = tracker.record()
        if record.outcome != "not_ssh":
            self._publish(self._noted(record, self._first_seen.get(id(tracker))), False)

    def on_finished(self, tracker: ConnectionTracker) -> None:
        record = tracker.finish()
        first = self._first_seen.pop(id(tracker), None)
        if record.outcome == "not_ssh":  # as `read` leaves them out
            if self.frames is not None:
                self.frames.discard(tracker)
            return
        record = self._noted(record, first)
        if self.frames is not None:
            record = self.frames.write(tracker, record, self._warn)
        self._publish(record, True)

    def _noted(self, record: SessionRecord, first: float | None) -> SessionRecord:
        dropped = 0 if first is None else self.drops.since(first, time.time())
        if not dropped:
            return record
        return dataclasses.replace(record, notes=[*record.notes, drop_note(dropped)])
