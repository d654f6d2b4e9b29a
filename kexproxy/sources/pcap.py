"""The pcap source: capture files (or a pipe) to per-connection observer calls.

Theory of operation: `read_capture` opens the input (a path, ``-`` for standard input, or a
binary file object), recognises gzip, pcap (micro- or nanosecond) and pcapng by their magic
bytes, and walks the records with a small reader of its own. Each frame is decoded in place
by `kexproxy.core.netframes`; a TCP segment goes to its connection, found by a directional
flow key. While a connection's observer is still `inspecting`, each direction's payload runs
through a `Reassembler` and the in-order bytes go to `observer.receive`; a hole the capture
cannot fill becomes one `receive_gap` and that direction is only counted from then on. Once
the observer stops inspecting, segments are only counted: no reassembly, no payload copy.
A connection ends (and `on_finished` gets its observer) at the second FIN, a second after
an RST (the peer's packets in flight still count), when a new SYN reuses its 4-tuple, or at
the end of the input; memory is held only for connections not yet ended, and buffered
payload only for those still in their handshake.

"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, BinaryIO, Final, Protocol, TypeVar

from kexproxy.core.netframes import (
    ACK,
    FIN,
    RST,
    SYN,
    Endpoint,
    Skip,
    TcpSegment,
    decode_frame,
    endpoints_of,
    reverse_key,
)
from kexproxy.core.observer import ConnectionObserver, InitiatorEvidence
from kexproxy.core.observer import Leg as Side
from kexproxy.core.reassembly import Reassembler
from kexproxy.sources.capfile import CaptureError, CaptureInput, CaptureStats

__all__ = ["CaptureError", "CaptureStats", "ObserverFactory", "read_capture"]

#: Frames between two progress reports: a few reports a second at full speed.
PROGRESS_EVERY: Final = 4096
#: 4-tuples of recently ended connections remembered so that their trailing packets (the
#: last ACK, a retransmitted FIN) do not start a new connection. Oldest forgotten first.
MAX_ENDED_KEYS: Final = 16384

#: Out-of-order bytes buffered by all connections together. Each direction may hold
#: `reassembly.MAX_OUT_OF_ORDER_BYTES`; this keeps a capture crafted with thousands of
#: connections, each with a hole, from holding gigabytes: the connection that goes over
#: it has its hole declared a gap.
MAX_BUFFERED_TOTAL: Final = 64 << 20
#: Capture seconds a connection stays open after an RST: what the peer had in flight (data,
#: its own FIN or RST) arrives within a round trip, and the flow's memory is freed after.
RST_LINGER: Final = 1.0

_NEVER: Final = float("inf")
_MOD_MASK: Final = 0xFFFFFFFF
_HALF: Final = 1 << 31
Obs = TypeVar("Obs", bound=ConnectionObserver)
Obs_co = TypeVar("Obs_co", bound=ConnectionObserver, covariant=True)


class ObserverFactory(Protocol[Obs_co]):
    """Makes the observer of one connection; `a` is the TCP initiator when known."""

    def __call__(
        self,
        a: Endpoint,
        b: Endpoint,
        initiator: InitiatorEvidence,
        flow_index: int,
        first_ts: float,
    ) -> Obs_co: ...


Progress = Callable[[int, int | None], None]
#: Inside the flow table observers are only `ConnectionObserver`s; the callbacks get back
#: the caller's own type, which `read_capture`'s signature guarantees.
_Callback = Callable[[Any], None]


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
    conns = _Connections(factory, on_finished, on_decided, stats)
    with CaptureInput(source, stdin) as inp:
        error: CaptureError | None = None
        try:
            _run(inp, conns, stats, progress)
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


def _run(
    inp: CaptureInput, conns: _Connections, stats: CaptureStats, progress: Progress | None
) -> None:
    """The per-frame loop; counted-only segments never leave it, for speed."""
    skips = [0] * len(Skip)
    frames = 0
    segments = 0
    truncated = 0
    table = conns.table
    slow = conns.segment
    try:
        for linktype, buf, start, end, wirelen, ts in inp.records():
            frames += 1
            if not frames % PROGRESS_EVERY:
                if progress is not None:
                    progress(inp.consumed(), inp.total)
                if ts >= conns.next_deadline:
                    conns.sweep(ts)
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
                # and retransmissions are not counted twice. The observer hears the sum at
                # the connection's next event (or its end): one call, not one per frame.
                e = (seq + plen) & _MOD_MASK
                delta = (e - d.hi) & _MOD_MASK
                if delta and delta < _HALF:
                    d.hi = e
                    d.pending += delta if delta < plen else plen
                    d.pending_ts = ts
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


# -- connections ---------------------------------------------------------------------------


class _Direction:
    """One direction of a connection: its reassembly, or its counting position."""

    __slots__ = (
        "buffered",
        "closed",
        "fast",
        "fin",
        "flow",
        "hi",
        "isn",
        "last_ts",
        "peer",
        "pending",
        "pending_ts",
        "reasm",
        "rst",
        "side",
    )

    def __init__(self, flow: _Flow, side: Side) -> None:
        self.flow = flow
        self.side: Side = side
        self.reasm: Reassembler | None = Reassembler()
        #: Sequence number past the furthest byte counted, once only counting.
        self.hi = 0
        #: Only counting, from `hi` on: the per-frame loop handles this direction alone.
        self.fast = False
        #: Bytes counted but not yet told to the observer, and the time of the last of them.
        self.pending = 0
        self.pending_ts = 0.0
        #: This direction's share of the flow table's buffered-bytes total.
        self.buffered = 0
        self.last_ts = 0.0
        self.isn: int | None = None
        self.fin = False
        self.rst = False
        self.closed = False
        self.peer: _Direction = self

    def flush(self) -> None:
        """Tells the observer the bytes counted since its last call, before anything else."""
        if self.pending:
            self.flow.observer.count(self.side, self.pending, self.pending_ts)
            self.pending = 0


class _Flow:
    """One TCP connection: its observer and both directions."""

    __slots__ = ("a", "b", "decided", "had_data", "index", "keys", "observer")

    def __init__(self, observer: ConnectionObserver, index: int, keys: tuple[bytes, bytes]):
        self.observer = observer
        self.index = index
        self.keys = keys
        self.a = _Direction(self, "a")
        self.b = _Direction(self, "b")
        self.a.peer = self.b
        self.b.peer = self.a
        self.decided = False
        self.had_data = False

    @property
    def last_ts(self) -> float:
        return max(self.a.last_ts, self.b.last_ts)


class _Connections:
    """The flow table: finds, creates and ends connections and drives their observers."""

    def __init__(
        self,
        factory: ObserverFactory[ConnectionObserver],
        on_finished: _Callback | None,
        on_decided: _Callback | None,
        stats: CaptureStats,
    ) -> None:
        self.factory = factory
        self.on_finished = on_finished
        self.on_decided = on_decided
        self.stats = stats
        self.table: dict[bytes, _Direction] = {}
        self.flows: dict[int, _Flow] = {}
        #: Directional keys of ended connections -> the ISN that direction's SYN carried.
        self.ended: dict[bytes, int | None] = {}
        #: Reset connections still open for the peer's last packets -> when they end.
        self.lingering: dict[int, float] = {}
        self.next_deadline = _NEVER
        #: Out-of-order bytes held by all reassemblers (see MAX_BUFFERED_TOTAL).
        self.buffered = 0
        self.next_index = 0

    def segment(self, d: _Direction | None, seg: TcpSegment, buf: bytes, ts: float) -> None:
        """Everything but counting an established direction: SYN, FIN, RST, reassembly."""
        key, seq, ack, flags, pstart, pend, plen = seg
        if d is None:
            d = self._start(key, seq, flags, plen, ts)
            if d is None:
                self.stats.stray_segments += 1
                return
        elif flags & SYN and d.isn != seq and (d.flow.had_data or _closing(d) or _closing(d.peer)):
            # A new SYN on a 4-tuple whose connection carried data: the port was reused.
            self._end(d.flow, ts)
            d = self._start(key, seq, flags, plen, ts)
            assert d is not None  # a SYN with a new ISN always starts a connection
        flow = d.flow
        obs = flow.observer
        d.last_ts = ts
        d.flush()
        d.peer.flush()
        touched = False
        if flags & SYN:
            d.isn = seq
            if d.reasm is not None:
                d.reasm.syn(seq)
            seq = (seq + 1) & _MOD_MASK
        if plen:
            flow.had_data = True
        r = d.reasm
        if r is not None:
            if pend - pstart < plen:
                r.mark_missing(seq, plen)
                if r.gap is not None:
                    d.pending += plen  # the cut segment was sent, if not captured whole
                    d.pending_ts = ts
            elif plen:
                data = r.add(seq, buf[pstart:pend])
                if data:
                    obs.receive(d.side, data, ts)
                    touched = True
            if flags & FIN:
                r.fin((seq + plen) & _MOD_MASK)
            if r.gap is not None:
                self._stop(d, ts)
                touched = True
        elif plen:
            self._count(d, seq, plen, ts)
        if flags & ACK:
            pr = d.peer.reasm
            if pr is not None:
                pr.ack(ack)
                if pr.gap is not None:
                    self._stop(d.peer, ts)
                    touched = True
        if flags & FIN:
            d.fin = True
        for x in (d, d.peer):
            if x.fin and not x.closed and (x.reasm is None or x.reasm.fin_reached):
                x.closed = True
                obs.receive_close(x.side, "fin", ts)
                touched = True
        if flags & RST and not d.rst:
            self._reset(d, ts)
            touched = True
        if touched:
            self._after_calls(flow, ts)
        self._account(d)
        self._account(d.peer)
        if self.buffered > MAX_BUFFERED_TOTAL and d.reasm is not None and d.reasm.pending_bytes:
            d.reasm.finish()  # a hole with bytes waiting behind it: now a gap
            self._stop(d, ts)
            self._account(d)
            self._after_calls(flow, ts)
        if (d.fin or d.rst) and (d.peer.fin or d.peer.rst):
            self._end(flow, ts)
        elif self.lingering and ts >= self.next_deadline:
            self.sweep(ts)

    def _account(self, d: _Direction) -> None:
        held = d.reasm.pending_bytes if d.reasm is not None else 0
        self.buffered += held - d.buffered
        d.buffered = held

    def _stop(self, d: _Direction, ts: float) -> None:
        """The direction's reassembler declared a gap: report it, then only count."""
        assert d.reasm is not None and d.reasm.gap is not None
        d.flow.observer.receive_gap(d.side, d.reasm.gap, ts)
        self._count_from_here(d, ts)

    def _reset(self, d: _Direction, ts: float) -> None:
        """An RST: nothing more will be delivered in order, so holes are gaps now; the
        connection lingers briefly for what the peer had in flight (data, its own FIN)."""
        flow = d.flow
        d.rst = True
        for x in (flow.a, flow.b):
            r = x.reasm
            if r is not None:
                r.finish()
                if r.gap is not None:
                    flow.observer.receive_gap(x.side, r.gap, ts)
                self._count_from_here(x, ts)
        flow.observer.receive_close(d.side, "rst", ts)
        if flow.index not in self.lingering:
            deadline = ts + RST_LINGER
            self.lingering[flow.index] = deadline
            self.next_deadline = min(self.next_deadline, deadline)

    def sweep(self, now: float) -> None:
        """Ends the reset connections whose linger time is over."""
        for index, deadline in list(self.lingering.items()):
            if deadline <= now:
                self._end(self.flows[index], now)
        self.next_deadline = min(self.lingering.values(), default=_NEVER)

    def _start(self, key: bytes, seq: int, flags: int, plen: int, ts: float) -> _Direction | None:
        """A new connection from its first useful packet: a SYN, or data mid-stream."""
        syn = flags & SYN
        if key in self.ended:
            if not syn or self.ended[key] == seq:
                return None  # a late packet of an ended connection
            self._forget(key)
        elif not syn and not plen:
            return None  # a bare ACK, FIN or RST tells nothing about who is who
        src, dst = endpoints_of(key)
        initiator: InitiatorEvidence
        if syn and flags & ACK:
            initiator = "syn-ack"
            a, b, key_a, key_b = dst, src, reverse_key(key), key
        else:
            initiator = "syn" if syn else "first-packet"
            a, b, key_a, key_b = src, dst, key, reverse_key(key)
        index = self.next_index
        self.next_index += 1
        self.stats.tcp_connections += 1
        observer = self.factory(a, b, initiator, index, ts)
        flow = _Flow(observer, index, (key_a, key_b))
        self.flows[index] = flow
        self.table[key_a] = flow.a
        self.table[key_b] = flow.b
        return flow.b if initiator == "syn-ack" else flow.a

    def _forget(self, key: bytes) -> None:
        self.ended.pop(key, None)
        self.ended.pop(reverse_key(key), None)

    def _count(self, d: _Direction, seq: int, plen: int, ts: float) -> None:
        e = (seq + plen) & _MOD_MASK
        if not d.fast:
            d.hi = e
            d.fast = True
            d.flow.observer.count(d.side, plen, ts)
            return
        delta = (e - d.hi) & _MOD_MASK
        if delta and delta < _HALF:
            d.hi = e
            d.flow.observer.count(d.side, min(delta, plen), ts)

    def _count_from_here(self, d: _Direction, ts: float) -> None:
        """This direction is no longer reassembled: bytes from now on are only counted."""
        r = d.reasm
        if r is None:
            return
        d.reasm = None
        hi = r.highest_seq()
        if hi is not None:
            d.hi = hi
            d.fast = True
        # Bytes seen but never delivered (buffered beyond a hole) were still sent.
        seen = r.pending_bytes + r.dropped
        if seen:
            d.flow.observer.count(d.side, seen, ts)

    def _after_calls(self, flow: _Flow, ts: float) -> None:
        """After bytes, a gap or a close: stop reassembling, report a decision."""
        obs = flow.observer
        if (flow.a.reasm is not None or flow.b.reasm is not None) and not obs.inspecting:
            for x in (flow.a, flow.b):
                self._count_from_here(x, ts)
                if x.fin and not x.closed:
                    x.closed = True
                    obs.receive_close(x.side, "fin", ts)
        if not flow.decided and obs.decided:
            flow.decided = True
            if self.on_decided is not None:
                self.on_decided(obs)

    def _end(self, flow: _Flow, ts: float) -> None:
        """The connection is over: report what is missing, then hand the observer on."""
        obs = flow.observer
        flow.a.flush()
        flow.b.flush()
        for x in (flow.a, flow.b):
            r = x.reasm
            if r is not None:
                r.finish()
                if r.gap is not None:
                    obs.receive_gap(x.side, r.gap, ts)
                x.reasm = None
                self._account(x)
            if x.fin and not x.closed:
                x.closed = True
                obs.receive_close(x.side, "fin", ts)
        del self.flows[flow.index]
        self.lingering.pop(flow.index, None)
        ended = self.ended
        for key, x in zip(flow.keys, (flow.a, flow.b), strict=True):
            del self.table[key]
            ended.pop(key, None)  # re-inserted last: the newest is forgotten last
            ended[key] = x.isn
        while len(ended) > MAX_ENDED_KEYS:
            del ended[next(iter(ended))]
        if self.on_finished is not None:
            self.on_finished(obs)

    def finish_all(self) -> None:
        """End of input: every connection still open ends now, oldest first."""
        for flow in list(self.flows.values()):
            self._end(flow, flow.last_ts)


def _closing(d: _Direction) -> bool:
    return d.fin or d.rst
