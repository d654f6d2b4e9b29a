"""The capture reader's flow table: TCP segments to connections, and their observers' calls.

Theory of operation: a TCP segment goes to its connection, found by a directional flow key.
While a connection's observer is still `inspecting`, each direction's payload runs through a
`Reassembler` and the in-order bytes go to `observer.receive`; a hole the capture cannot fill
becomes one `receive_gap` and that direction is only counted from then on. Once the observer
stops inspecting, segments are only counted (by the reader's frame loop, for speed: see
`Direction.fast`). A connection ends (and `on_finished` gets its observer) at the second
FIN, a second after an RST (the peer's packets in flight still count), when a new SYN reuses
its 4-tuple, or at the end of the input; memory is held only for connections not yet ended,
and buffered payload only for those still in their handshake. Connections still in their
handshake are bounded too: one idle for `HANDSHAKE_IDLE` seconds of capture time ends, and
beyond `MAX_HANDSHAKING` of them the least recently active ends (a port scan or a SYN flood
would otherwise hold one observer per SYN until the end of the input); both are counted.

Hostile input never ends the read: a segment from an endpoint to itself is counted and
skipped, and an exception raised while handling a frame (a bug, by definition) is counted
and ends the connections the frame belongs to, whose observers are still handed on.
Exceptions from the caller's callbacks are never caught: they are the caller's to handle.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, Protocol, TypeVar

from kexproxy.core.netframes import (
    ACK,
    FIN,
    RST,
    SYN,
    Endpoint,
    TcpSegment,
    endpoints_of,
    reverse_key,
)
from kexproxy.core.observer import ConnectionObserver, InitiatorEvidence, Leg
from kexproxy.core.reassembly import Reassembler
from kexproxy.sources.capfile import CaptureStats

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
#: Connections still in their handshake (still reassembled) held at once. Each costs a few
#: kilobytes (its observer and two reassemblers); 10,000 is far more handshakes than a busy
#: server has in flight, and holds a SYN flood to some 40 MB. Beyond it, the connection
#: active least recently ends.
MAX_HANDSHAKING: Final = 10_000
#: Capture seconds without a packet after which a connection still in its handshake ends:
#: more than OpenSSH's LoginGraceTime (120 s, after which sshd drops a connection that has
#: not logged in) and Linux's SYN retries (about 127 s), so only abandoned ones end early.
HANDSHAKE_IDLE: Final = 300.0

#: Holes remembered per counted direction (`Direction.holes`): reordering fills a hole
#: within a few segments; a hole older than this many is a gap in the capture.
MAX_HOLES: Final = 16

_NEVER: Final = float("inf")
#: TCP sequence numbers are modulo 2**32 (RFC 9293 section 3.4); a distance under HALF is
#: forward, one above it is behind.
MOD_MASK: Final = 0xFFFFFFFF
HALF: Final = 1 << 31
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


#: Inside the flow table observers are only `ConnectionObserver`s; the callbacks get back
#: the caller's own type, which `read_capture`'s signature guarantees.
Callback = Callable[[Any], None]


class Direction:
    """One direction of a connection: its reassembly, or its counting position."""

    __slots__ = (
        "buffered",
        "closed",
        "fast",
        "fin",
        "flow",
        "hi",
        "holes",
        "isn",
        "last_ts",
        "peer",
        "pending",
        "pending_ts",
        "reasm",
        "rst",
        "side",
    )

    def __init__(self, flow: Flow, side: Leg) -> None:
        self.flow = flow
        self.side: Leg = side
        self.reasm: Reassembler | None = Reassembler()
        #: Sequence number past the furthest byte counted, once only counting.
        self.hi = 0
        #: Only counting, from `hi` on: the per-frame loop handles this direction alone.
        self.fast = False
        #: Sequence ranges (start, length) jumped over while counting a capture, newest
        #: last: a segment that arrives late (loopback delivers a migrating sender's segments
        #: out of order) is counted when it fills one. At most `MAX_HOLES`.
        self.holes: list[tuple[int, int]] = []
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
        self.peer: Direction = self

    def flush(self) -> None:
        """Tells the observer the bytes counted since its last call, before anything else."""
        if self.pending:
            self.flow.observer.count(self.side, self.pending, self.pending_ts)
            self.pending = 0


def note_hole(d: Direction, start: int, length: int) -> None:
    """A counted direction jumped over `length` bytes from `start`: remember them."""
    holes = d.holes
    holes.append((start, length))
    if len(holes) > MAX_HOLES:
        del holes[0]


def fill_holes(d: Direction, seq: int, plen: int) -> int:
    """Bytes of a late segment [seq, seq + plen) that fall in remembered holes: counted now,
    and cut out of the holes (so a retransmission of them is not counted again)."""
    got = 0
    kept: list[tuple[int, int]] = []
    for start, length in d.holes:
        lo = (seq - start) & MOD_MASK  # where the segment starts, from the hole's start
        if lo >= HALF:  # the segment starts before the hole
            skip = (start - seq) & MOD_MASK
            lo, take = 0, min(length, max(0, plen - skip))
        else:
            take = max(0, min(length, lo + plen) - lo) if lo < length else 0
        if not take:
            kept.append((start, length))
            continue
        got += take
        if lo:
            kept.append((start, lo))
        if lo + take < length:
            kept.append(((start + lo + take) & MOD_MASK, length - lo - take))
    d.holes = kept[-MAX_HOLES:]
    return got


class Flow:
    """One TCP connection: its observer and both directions."""

    __slots__ = ("a", "b", "decided", "done", "had_data", "index", "keys", "observer")

    def __init__(self, observer: ConnectionObserver, index: int, keys: tuple[bytes, bytes]):
        self.observer = observer
        self.index = index
        self.keys = keys
        self.a = Direction(self, "a")
        self.b = Direction(self, "b")
        self.a.peer = self.b
        self.b.peer = self.a
        self.decided = False
        self.had_data = False
        #: Ended: unlinked from the table and handed on, so ending it again does nothing.
        self.done = False

    @property
    def last_ts(self) -> float:
        return max(self.a.last_ts, self.b.last_ts)


class FlowTable:
    """The flow table: finds, creates and ends connections and drives their observers."""

    def __init__(
        self,
        factory: ObserverFactory[ConnectionObserver],
        on_finished: Callback | None,
        on_decided: Callback | None,
        stats: CaptureStats,
    ) -> None:
        self.factory = factory
        self.on_finished = on_finished
        self.on_decided = on_decided
        self.stats = stats
        self.table: dict[bytes, Direction] = {}
        self.flows: dict[int, Flow] = {}
        #: Directional keys of ended connections -> the ISN that direction's SYN carried.
        #: An OrderedDict: a plain dict's first key is found by skipping the slots of every
        #: key deleted before it, which makes forgetting the oldest quadratic.
        self.ended: OrderedDict[bytes, int | None] = OrderedDict()
        #: Reset connections still open for the peer's last packets -> when they end.
        self.lingering: dict[int, float] = {}
        self.next_deadline = _NEVER
        #: Out-of-order bytes held by all reassemblers (see MAX_BUFFERED_TOTAL).
        self.buffered = 0
        self.next_index = 0
        #: Connections still reassembled, least recently active first (see MAX_HANDSHAKING).
        self.handshaking: OrderedDict[int, Flow] = OrderedDict()
        #: True while a caller's callback runs: its exceptions are the caller's to handle.
        self.calling = False
        #: A counted direction's jump in sequence numbers is counted as bytes sent: a live
        #: capture filters bulk segments out on purpose (`sniff_bpf`). A capture file's jump
        #: is a hole in the capture, and only what it holds is counted.
        self.count_jumps = False
        #: Bumped whenever a connection stops being reassembled in both directions, so a
        #: live source can move it to its kernel filter at once (`sniff_bpf`).
        self.counted_changes = 0

    def segment(self, d: Direction | None, seg: TcpSegment, buf: bytes, ts: float) -> None:
        """Everything but counting an established direction: SYN, FIN, RST, reassembly."""
        key, seq, ack, flags, pstart, pend, plen = seg
        if d is None:
            if key == reverse_key(key):
                # A LAND packet, or a socket connected to itself: both directions would
                # share one flow key, and nothing tells the two sides apart.
                self.stats.self_addressed_segments += 1
                return
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
        if flow.index in self.handshaking:
            self.handshaking.move_to_end(flow.index)
        d.flush()
        d.peer.flush()
        touched = False
        if flags & SYN:
            d.isn = seq
            if d.reasm is not None:
                d.reasm.syn(seq)
            seq = (seq + 1) & MOD_MASK
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
                r.fin((seq + plen) & MOD_MASK)
            if r.gap is not None:
                self._stop(d, ts)
                touched = True
        elif plen or (flags & FIN and d.fast and self.count_jumps):
            self._count(d, seq, plen, ts)  # a FIN's sequence number ends what was sent
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

    def _account(self, d: Direction) -> None:
        held = d.reasm.pending_bytes if d.reasm is not None else 0
        self.buffered += held - d.buffered
        d.buffered = held

    def _stop(self, d: Direction, ts: float) -> None:
        """The direction's reassembler declared a gap: report it, then only count."""
        assert d.reasm is not None and d.reasm.gap is not None
        d.flow.observer.receive_gap(d.side, d.reasm.gap, ts)
        self._count_from_here(d, ts)

    def _reset(self, d: Direction, ts: float) -> None:
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
        """Ends the reset connections whose linger time is over, and handshakes idle for
        `HANDSHAKE_IDLE` seconds (at the time of their last packet, as the end of the
        input would have)."""
        if now >= self.next_deadline:
            for index, deadline in list(self.lingering.items()):
                flow = self.flows.get(index)
                if flow is not None and deadline <= now:
                    self._end_contained(flow, now)
            self.next_deadline = min(self.lingering.values(), default=_NEVER)
        handshaking = self.handshaking
        while handshaking:
            index, flow = next(iter(handshaking.items()))
            if now - flow.last_ts < HANDSHAKE_IDLE:
                break
            self.stats.idle_handshakes += 1
            self._end_contained(flow, flow.last_ts)
            handshaking.pop(index, None)

    def _start(self, key: bytes, seq: int, flags: int, plen: int, ts: float) -> Direction | None:
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
        flow = Flow(observer, index, (key_a, key_b))
        self.flows[index] = flow
        self.table[key_a] = flow.a
        self.table[key_b] = flow.b
        handshaking = self.handshaking
        handshaking[index] = flow
        if len(handshaking) > MAX_HANDSHAKING:
            oldest = next(iter(handshaking.values()))
            self.stats.evicted_handshakes += 1
            self._end_contained(oldest, oldest.last_ts)
        return flow.b if initiator == "syn-ack" else flow.a

    def _forget(self, key: bytes) -> None:
        self.ended.pop(key, None)
        self.ended.pop(reverse_key(key), None)

    def _count(self, d: Direction, seq: int, plen: int, ts: float) -> None:
        e = (seq + plen) & MOD_MASK
        if not d.fast:
            d.hi = e
            d.fast = True
            d.flow.observer.count(d.side, plen, ts)
            return
        delta = (e - d.hi) & MOD_MASK
        if delta and delta < HALF:
            if delta > plen and not self.count_jumps:
                note_hole(d, d.hi, delta - plen)
            d.hi = e
            d.flow.observer.count(d.side, delta if self.count_jumps else min(delta, plen), ts)
        elif d.holes:
            got = fill_holes(d, seq, plen)
            if got:
                d.flow.observer.count(d.side, got, ts)

    def _count_from_here(self, d: Direction, ts: float) -> None:
        """This direction is no longer reassembled: bytes from now on are only counted."""
        r = d.reasm
        if r is None:
            return
        d.reasm = None
        if d.peer.reasm is None:
            self.handshaking.pop(d.flow.index, None)
            self.counted_changes += 1
        hi = r.highest_seq()
        if hi is not None:
            d.hi = hi
            d.fast = True
        # Bytes seen but never delivered (buffered beyond a hole) were still sent.
        seen = r.pending_bytes + r.dropped
        if seen:
            d.flow.observer.count(d.side, seen, ts)

    def _after_calls(self, flow: Flow, ts: float) -> None:
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
            self._hand(self.on_decided, obs)

    def _hand(self, callback: Callback | None, obs: ConnectionObserver) -> None:
        """Calls the caller's callback, marked so that its exceptions are never contained."""
        if callback is not None:
            self.calling = True
            callback(obs)
            self.calling = False

    def _end(self, flow: Flow, ts: float) -> None:
        """The connection is over: report what is missing, then hand the observer on."""
        if flow.done:
            return
        flow.done = True
        self._unlink(flow)
        obs = flow.observer
        try:
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
        finally:
            # Handed on even when reporting failed: a record is never lost uncounted.
            self._hand(self.on_finished, obs)

    def _unlink(self, flow: Flow) -> None:
        """Forgets the connection: no table entry, timer or handshake slot refers to it."""
        self.flows.pop(flow.index, None)
        self.lingering.pop(flow.index, None)
        self.handshaking.pop(flow.index, None)
        table = self.table
        ended = self.ended
        for key, x in zip(flow.keys, (flow.a, flow.b), strict=True):
            if table.get(key) is x:
                del table[key]
            ended.pop(key, None)  # re-inserted last: the newest is forgotten last
            ended[key] = x.isn
        while len(ended) > MAX_ENDED_KEYS:
            ended.popitem(last=False)

    def _end_contained(self, flow: Flow, ts: float) -> None:
        """`_end`, outside the frame loop's guard: a failure is counted, never raised."""
        try:
            self._end(flow, ts)
        except MemoryError:
            raise
        except Exception:
            if self.calling:
                raise
            self.stats.internal_errors += 1
            self._abandon(flow)

    def contain(self, key: bytes | None) -> None:
        """Handling a frame raised: count it and end the connections it belongs to, whose
        state is now in doubt, handing their observers on with what they heard so far."""
        self.stats.internal_errors += 1
        if key is None:
            return
        for k in (key, reverse_key(key)):
            d = self.table.get(k)
            if d is not None:
                self._abandon(d.flow)

    def _abandon(self, flow: Flow) -> None:
        """Ends a connection without asking its parts anything: they may be what failed."""
        if flow.done:
            return
        flow.done = True
        self._unlink(flow)
        for x in (flow.a, flow.b):
            x.reasm = None
            self._account(x)
        self._hand(self.on_finished, flow.observer)

    def finish_all(self) -> None:
        """End of input: every connection still open ends now, oldest first."""
        for flow in list(self.flows.values()):
            self._end_contained(flow, flow.last_ts)


def _closing(d: Direction) -> bool:
    return d.fin or d.rst
