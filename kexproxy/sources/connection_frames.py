"""The raw frames of one connection, as the frame loop read them: for `explain --pcap` and
`sniff --pcap`.

Theory of operation. `FrameTap` sits between a `FrameInput` and the frame loop: it looks
each TCP frame's flow key up in the flow table before the loop handles it (the connection
it continues) and after (the connection a SYN started), and hands the frame to `keep` with
the connection's observer, so a reused port never mixes two connections. A connection's end
is handed on (`on_finished`) only once the frame that ended it was kept, so a capture file
written then holds its FIN or RST. Frames are written unchanged (bytes, lengths, times) with
scapy's raw pcap writer: `kexproxy read` of the file sees what it saw in the source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from kexproxy.core.netframes import FIN, RST, SYN, decode_frame
from kexproxy.core.observer import ConnectionObserver
from kexproxy.sources.capfile import SNAPLEN, CaptureStats, Record
from kexproxy.sources.flowtable import FlowTable, ObserverFactory
from kexproxy.sources.pcap import FrameInput, run_frames

#: Frame bytes kept per sniffed session: the handshake's frames, both directions. As for a
#: proxied session's capture (`proxy_tape.MAX_TAPE_BYTES`), room for a 256 KiB KEXINIT
#: from each side with their headers.
MAX_SESSION_FRAME_BYTES: Final = 640 * 1024

#: (observer, the frame's record, True when the frame only continues bulk data that the
#: flow table was already counting, not inspecting).
Keep = Callable[[ConnectionObserver, Record, bool], None]


class FrameTap:
    """Hands every TCP frame to `keep` with its connection's observer, and each ended
    connection to `on_finished` once its last frame was kept."""

    def __init__(self, keep: Keep, on_finished: Callable[[Any], None] | None) -> None:
        self._keep = keep
        self._on_finished = on_finished
        self._pending: list[ConnectionObserver] = []
        self._in_frame = False

    def finished(self, observer: ConnectionObserver) -> None:
        """The flow table's `on_finished`: deferred while the ending frame is handled."""
        self._pending.append(observer)
        if not self._in_frame:
            self._flush()

    def _flush(self) -> None:
        while self._pending:
            observer = self._pending.pop(0)
            if self._on_finished is not None:
                self._on_finished(observer)

    def wrap(self, inner: FrameInput, conns: FlowTable) -> FrameInput:
        """`inner` with each frame routed to `keep` after the frame loop handled it."""
        return _TappedInput(inner, conns, self)

    def frames(self, inner: FrameInput, conns: FlowTable) -> Iterator[Record]:
        table = conns.table
        keep = self._keep
        special = SYN | FIN | RST
        for record in inner.records():
            linktype, buf, start, end, wirelen, _ts = record
            seg = decode_frame(linktype, buf, start, end, wirelen)
            if not isinstance(seg, tuple):
                yield record
                continue
            key, flags = seg[0], seg[3]
            before = table.get(key)
            counted = before is not None and before.fast and not flags & special
            self._in_frame = True
            try:
                yield record
            finally:
                self._in_frame = False
            after = table.get(key)
            owner = after if after is not None and (before is None or before.flow.done) else before
            if owner is not None:
                keep(owner.flow.observer, record, counted)
            self._flush()


class _TappedInput:
    """A `FrameInput` whose records pass through a `FrameTap`."""

    def __init__(self, inner: FrameInput, conns: FlowTable, tap: FrameTap) -> None:
        self._inner = inner
        self._conns = conns
        self._tap = tap
        self.total = inner.total
        self.link_types = inner.link_types
        self.format = inner.format

    @property
    def bad_records(self) -> int:
        return self._inner.bad_records

    @bad_records.setter
    def bad_records(self, value: int) -> None:
        self._inner.bad_records = value

    @property
    def bad_timestamps(self) -> int:
        return self._inner.bad_timestamps

    @bad_timestamps.setter
    def bad_timestamps(self, value: int) -> None:
        self._inner.bad_timestamps = value

    def records(self) -> Iterator[Record]:
        return self._tap.frames(self._inner, self._conns)

    def consumed(self) -> int:
        return self._inner.consumed()


class CaptureWriteError(Exception):
    """The frames cannot be written as one pcap file; the message says why in one line."""


def write_frames(path: str | Path, frames: Sequence[Record]) -> None:
    """Writes `frames` unchanged as a microsecond pcap file at `path` (replacing one)."""
    from scapy.utils import RawPcapWriter

    link_types = {frame[0] for frame in frames}
    if len(link_types) > 1:
        kinds = ", ".join(map(str, sorted(link_types)))
        raise CaptureWriteError(f"the connection's frames have several link types ({kinds})")
    writer = RawPcapWriter(str(path), linktype=next(iter(link_types), 1), snaplen=SNAPLEN)
    try:
        writer.write_header(None)
        for linktype, buf, start, end, wirelen, ts in frames:
            sec = int(ts)
            usec = round((ts - sec) * 1e6)
            if usec >= 1_000_000:
                sec, usec = sec + 1, usec - 1_000_000
            data = buf[start:end]
            writer._write_packet(data, linktype, sec, usec, len(data), wirelen)
    finally:
        writer.close()


def connection_frames(
    source: str, factory: ObserverFactory[Any], wanted: Callable[[Any], bool]
) -> list[Record]:
    """Every frame of `source` that belongs to a connection whose observer `wanted` picks,
    read by the same frame loop and flow table as `read_capture` (so connections are told
    apart exactly as `read` tells them); a damaged capture gives the frames before the damage."""
    from kexproxy.sources.capfile import CaptureError, CaptureInput

    kept: list[Record] = []

    def keep(observer: ConnectionObserver, record: Record, _counted: bool) -> None:
        if wanted(observer):
            linktype, buf, start, end, wirelen, ts = record
            kept.append((linktype, bytes(buf[start:end]), 0, end - start, wirelen, ts))

    tap = FrameTap(keep, None)
    stats = CaptureStats()
    conns = FlowTable(factory, tap.finished, None, stats)
    with CaptureInput(source, None) as inp:
        try:
            run_frames(tap.wrap(inp, conns), conns, stats, None)
        except CaptureError:
            pass  # explain has said what is wrong with the file; the frames read still count
        finally:
            conns.finish_all()
    return kept
