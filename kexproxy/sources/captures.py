"""The capture source: frames of pcap/pcapng files wired to one tracker per connection.

Shared by ``kexproxy read``, ``kexproxy explain``, the TUI's capture mode and the tests, so
that every way of reading a capture gives the same records with the same ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kexproxy.core.connection import ConnectionTracker
from kexproxy.core.observer import Endpoint, InitiatorEvidence
from kexproxy.core.record import SessionRecord

if TYPE_CHECKING:
    from kexproxy.sources.capfile import CaptureStats

Progress = Callable[[int, int | None], None]


def session_id(capture: str, flow_index: int, a: Endpoint, b: Endpoint, first_ts: float) -> str:
    """Stable across runs on the same file: derived from what the file holds, not from a clock."""
    key = f"{capture}|{flow_index}|{a.ip}|{a.port}|{b.ip}|{b.port}|{first_ts:.6f}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class Collector:
    """Makes a tracker per connection and hands each record on once: when decided, if
    `early` (a live pipe, where waiting for the end of input would be useless), else when
    the connection or the capture ends."""

    def __init__(
        self,
        capture: str,
        emit: Callable[[SessionRecord], None],
        *,
        early: bool = False,
        include_non_ssh: bool = False,
    ) -> None:
        self.capture = capture
        self.emit = emit
        self.early = early
        self.include_non_ssh = include_non_ssh
        self._emitted: set[int] = set()

    def factory(
        self,
        a: Endpoint,
        b: Endpoint,
        initiator: InitiatorEvidence,
        flow_index: int,
        first_ts: float,
    ) -> ConnectionTracker:
        return ConnectionTracker(
            a=a,
            b=b,
            initiator=initiator,
            session_id=session_id(self.capture, flow_index, a, b, first_ts),
            source="pcap",
            capture=self.capture,
        )

    def _hand_on(self, record: SessionRecord) -> None:
        if record.outcome != "not_ssh" or self.include_non_ssh:
            self.emit(record)

    def on_decided(self, observer: ConnectionTracker) -> None:
        if self.early and id(observer) not in self._emitted:
            self._emitted.add(id(observer))
            self._hand_on(observer.record())

    def on_finished(self, observer: ConnectionTracker) -> None:
        if id(observer) in self._emitted:
            self._emitted.discard(id(observer))
            return
        self._hand_on(observer.finish())


def capture_label(path: str) -> str:
    return "stdin" if path == "-" else Path(path).name


def analyse_capture(
    path: str,
    emit: Callable[[SessionRecord], None],
    *,
    early: bool = False,
    include_non_ssh: bool = False,
    progress: Progress | None = None,
) -> CaptureStats:
    """Reads one capture and emits its records; raises `CaptureError` after emitting all
    that could be read. Returns what the reader saw (for `capture_notes`)."""
    from kexproxy.sources.pcap import read_capture

    collector = Collector(capture_label(path), emit, early=early, include_non_ssh=include_non_ssh)
    return read_capture(
        path,
        collector.factory,
        on_finished=collector.on_finished,
        on_decided=collector.on_decided,
        progress=progress,
    )


def capture_notes(stats: CaptureStats) -> list[str]:
    """What a reader of the output should know about frames that were skipped, one line each.

    Nothing for a clean capture. These are not errors: the connections that could be read
    were, and a capture of only unsupported frames is then not mistaken for a quiet one.
    """
    from kexproxy.core.netframes import SUPPORTED_LINKTYPES

    notes: list[str] = []
    if stats.unsupported_link_frames:
        kinds = sorted(t for t in stats.link_types if t not in SUPPORTED_LINKTYPES)
        which = f" (link type {', '.join(map(str, kinds))})" if kinds else ""
        notes.append(
            f"{stats.unsupported_link_frames} frames of an unsupported link layer skipped"
            f"{which}; kexproxy reads Ethernet, Linux cooked (SLL, SLL2), raw IP and BSD loopback"
        )
    if stats.malformed_frames:
        notes.append(f"{stats.malformed_frames} malformed frames or records skipped")
    if stats.truncated_frames:
        notes.append(
            f"{stats.truncated_frames} frames cut short by the capture's snap length: "
            "inspection of their connections stops there (capture with -s 0)"
        )
    if stats.fragments:
        notes.append(f"{stats.fragments} IP fragments skipped (not reassembled)")
    if stats.bad_timestamps:
        notes.append(f"{stats.bad_timestamps} corrupt timestamps replaced by the previous one")
    if stats.self_addressed_segments:
        notes.append(
            f"{stats.self_addressed_segments} TCP segments from an address and port to "
            "themselves skipped (a LAND attack, or a socket connected to itself)"
        )
    notes += _handshake_notes(stats)
    if stats.internal_errors:
        notes.append(
            f"{stats.internal_errors} frames skipped after an internal error (a kexproxy bug: "
            "please report it with the capture); their connections were ended there"
        )
    return notes


def _handshake_notes(stats: CaptureStats) -> list[str]:
    """Connections the reader ended early to bound its memory, and why."""
    from kexproxy.sources.flowtable import HANDSHAKE_IDLE, MAX_HANDSHAKING

    why = []
    if stats.idle_handshakes:
        why.append(f"{stats.idle_handshakes} idle for {HANDSHAKE_IDLE:.0f} s of capture time")
    if stats.evicted_handshakes:
        why.append(
            f"{stats.evicted_handshakes} least recently active beyond {MAX_HANDSHAKING:,} "
            "open at once"
        )
    if not why:
        return []
    total = stats.idle_handshakes + stats.evicted_handshakes
    return [
        f"{total} connections still in their handshake were ended early to bound memory "
        f"({'; '.join(why)}): a port scan or SYN flood looks like this"
    ]
