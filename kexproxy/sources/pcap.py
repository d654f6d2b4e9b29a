"""The pcap source: capture files (or a pipe) to per-connection observer calls.

Theory of operation: `read_capture` opens the input (a path, ``-`` for standard input, or a
binary file object), recognises gzip, pcap (micro- or nanosecond) and pcapng by their magic
bytes, and walks the records with a small reader of its own (`capfile`). Each frame is
decoded in place by `kexproxy.core.netframes`; a TCP segment goes to its connection in the
flow table (`flowtable`, which explains connections, reassembly and their bounds), except
that a direction only counted is counted right here in the frame loop, for speed.

No exception from one frame ends the read: the loop counts it, the flow table ends the
connections the frame belongs to, and the next frame is read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import BinaryIO, Final, Protocol, TypeVar

from kexproxy.core.netframes import (
    ETH_IPV4_TCP,
    ETHERTYPE_IPV4,
    FIN,
    LINKTYPE_ETHERNET,
    PROTO_TCP,
    RST,
    SYN,
    Skip,
    TcpSegment,
    decode_frame,
)
from kexproxy.core.observer import ConnectionObserver
from kexproxy.sources.capfile import CaptureError, CaptureInput, CaptureStats, Record
from kexproxy.sources.flowtable import (
    HALF,
    MOD_MASK,
    FlowTable,
    ObserverFactory,
    fill_holes,
    note_hole,
)

__all__ = [
    "CaptureError",
    "CaptureStats",
    "FrameInput",
    "ObserverFactory",
    "read_capture",
    "run_frames",
]

#: Frames between two progress reports: a few reports a second at full speed.
PROGRESS_EVERY: Final = 4096
Progress = Callable[[int, int | None], None]
Obs = TypeVar("Obs", bound=ConnectionObserver)


class FrameInput(Protocol):
    """Where the frame loop's frames come from: a capture file (`CaptureInput`) or a live
    socket (`kexproxy.sources.sniff`), so both go through the same decoding and flow table."""

    total: int | None
    link_types: set[int]
    bad_records: int
    bad_timestamps: int
    format: str

    def records(self) -> Iterator[Record]: ...

    def consumed(self) -> int: ...


def read_capture(
    source: str | os.PathLike[str] | BinaryIO,
    factory: ObserverFactory[Obs],
    *,
    on_finished: Callable[[Obs], None] | None = None,
    on_decided: Callable[[Obs], None] | None = None,
    progress: Progress | None = None,
    stdin: BinaryIO | None = None,
) -> CaptureStats:
    """Feeds every TCP connection of a capture to an observer made by `factory`.

    `source` is a path, ``"-"`` for standard input (or `stdin` when given, for tests), or an
    open binary file. `on_finished` gets each observer once its connection ended, at the
    latest at the end of the input, in order of first packet; `on_decided` gets it once,
    as soon as `observer.decided` turns true, so a live pipe can report early.
    Raises `CaptureError` after everything readable was delivered.
    """
    stats = CaptureStats()
    conns = FlowTable(factory, on_finished, on_decided, stats)
    with CaptureInput(source, stdin) as inp:
        error: CaptureError | None = None
        try:
            run_frames(inp, conns, stats, progress)
        except CaptureError as exc:
            error = exc
        stats.bytes_read = inp.consumed()
        conns.finish_all()
        if progress is not None:
            progress(stats.bytes_read, inp.total)
        if error is not None:
            error.stats = stats
            raise error
    return stats


def run_frames(
    inp: FrameInput, conns: FlowTable, stats: CaptureStats, progress: Progress | None
) -> None:
    """The per-frame loop: every frame of `inp` to `conns`, what was skipped into `stats`;
    counted-only segments never leave it, for speed."""
    skips = [0] * len(Skip)
    frames = 0
    segments = 0
    truncated = 0
    table = conns.table
    slow = conns.segment
    # Locals, not globals, in the loop below: it runs once a frame, and a global's lookup
    # costs as much as the arithmetic it feeds.
    eth_ipv4_tcp, ethernet, ipv4, tcp = ETH_IPV4_TCP, LINKTYPE_ETHERNET, ETHERTYPE_IPV4, PROTO_TCP
    special, mod_mask, half, every = SYN | FIN | RST, MOD_MASK, HALF, PROGRESS_EVERY
    jumps = conns.count_jumps
    try:
        for linktype, buf, start, end, wirelen, ts in inp.records():
            frames += 1
            if not frames % every:
                if progress is not None:
                    progress(inp.consumed(), inp.total)
                conns.sweep(ts)
            seg: TcpSegment | Skip | None = None
            # No exception from one frame may end the read (the class of issue 9's LAND
            # crash); a `try` costs nothing in the loop until something raises.
            try:
                if linktype == ethernet and end - start >= 54:
                    # Nearly every frame of a large capture: untagged Ethernet, IPv4 without
                    # options, TCP, of a connection past its handshake, neither SYN, FIN nor
                    # RST. Counted here without building a segment; the checks are
                    # decode_frame's, and any frame they do not pass goes the general way.
                    etype, vihl, total, frag, proto, seq, _ack, doff, flags = eth_ipv4_tcp(
                        buf, start
                    )
                    if (
                        etype == ipv4
                        and vihl == 0x45
                        and proto == tcp
                        and total != 0
                        and not frag & 0x3FFF
                        and doff >= 0x50
                        and not flags & special
                    ):
                        d = table.get(buf[start + 26 : start + 38])
                        payload = start + 34 + ((doff >> 4) << 2)
                        ip_end = start + 14 + total
                        if d is not None and d.fast and payload <= ip_end and payload <= end:
                            segments += 1
                            plen = ip_end - payload
                            if (ip_end if ip_end < end else end) - payload < plen:
                                truncated += 1
                            d.last_ts = ts
                            if plen:
                                e = (seq + plen) & mod_mask
                                delta = (e - d.hi) & mod_mask
                                if delta and delta < half:
                                    if delta > plen and not jumps:
                                        note_hole(d, d.hi, delta - plen)
                                    d.hi = e
                                    d.pending += delta if delta < plen or jumps else plen
                                    d.pending_ts = ts
                                elif d.holes:
                                    d.pending += fill_holes(d, seq, plen)
                                    d.pending_ts = ts
                            continue
                seg = decode_frame(linktype, buf, start, end, wirelen)
                if isinstance(seg, Skip):
                    skips[seg] += 1
                    continue
                segments += 1
                key, seq, _ack, flags, pstart, pend, plen = seg
                if pend - pstart < plen:
                    truncated += 1
                d = table.get(key)
                if d is None or not d.fast or flags & (SYN | FIN | RST):
                    slow(d, seg, buf, ts)
                    continue
                d.last_ts = ts
                if plen:
                    # Counting only: advance past the furthest byte seen, so that duplicates
                    # and retransmissions are not counted twice. The observer hears the sum
                    # at the connection's next event (or its end): one call, not one per frame.
                    e = (seq + plen) & MOD_MASK
                    delta = (e - d.hi) & MOD_MASK
                    if delta and delta < HALF:
                        if delta > plen and not jumps:
                            note_hole(d, d.hi, delta - plen)  # a late segment may fill it
                        d.hi = e
                        d.pending += delta if delta < plen or jumps else plen
                        d.pending_ts = ts
                    elif d.holes:
                        d.pending += fill_holes(d, seq, plen)
                        d.pending_ts = ts
            except MemoryError:
                raise
            except Exception:
                if conns.calling:
                    raise  # the caller's own callback failed: not this frame's doing
                conns.contain(seg[0] if isinstance(seg, tuple) else None)
    finally:
        stats.frames += frames
        stats.tcp_segments += segments
        stats.truncated_frames += truncated
        stats.non_tcp_frames += skips[Skip.NOT_TCP]
        stats.malformed_frames += skips[Skip.MALFORMED] + skips[Skip.TRUNCATED_HEADER]
        stats.fragments += skips[Skip.FRAGMENT]
        stats.unsupported_link_frames += skips[Skip.UNSUPPORTED_LINK]
        stats.link_types |= inp.link_types
        stats.malformed_frames += inp.bad_records
        stats.bad_timestamps += inp.bad_timestamps
        stats.format = inp.format
