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

Why not scapy's readers: `RawPcapReader` and `RawPcapNgReader` cut every frame to 65,535
bytes (their `MTU` default) when iterated, which silently truncates loopback captures whose
frames reach 262,144 bytes, and they turn a truncated file or a corrupt gzip stream into a
quiet end of file. Reading records is a few dozen lines of `struct`, and doing it here also
lets the decoder work on offsets into one large read buffer instead of one copy per frame.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
from kexproxy.core.observer import ConnectionObserver, InitiatorEvidence, Side
from kexproxy.core.reassembly import Reassembler

__all__ = ["CaptureError", "CaptureStats", "ObserverFactory", "read_capture"]

#: Bytes asked of the input per read: large enough that a read costs little per frame,
#: small enough to stay a rounding error in the memory budget.
READ_CHUNK: Final = 1 << 20
#: Largest record accepted. libpcap's largest snaplen for the link types decoded here is
#: 262,144 bytes and Linux BIG TCP super-frames stay under 512 KiB; a larger caplen or
#: block length means a corrupt file, and reading it would allocate whatever it claims.
MAX_RECORD: Final = 16 << 20
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
#: 9999-12-31T23:59:59Z, the last second a date in a record can show.
_MAX_TIMESTAMP: Final = 253402300799.0
_MOD_MASK: Final = 0xFFFFFFFF
_HALF: Final = 1 << 31
_PCAP_MAGICS: Final = {
    b"\xa1\xb2\xc3\xd4": (">", 1e-6, "pcap"),
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6, "pcap"),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9, "pcap (nanosecond)"),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9, "pcap (nanosecond)"),
}
_PCAPNG_SHB: Final = b"\x0a\x0d\x0d\x0a"
_GZIP_MAGIC: Final = b"\x1f\x8b"

Record = tuple[int, bytes, int, int, int, float]


class CaptureError(Exception):
    """The input could not be read (missing, not a capture, truncated, corrupt).

    The message is one line naming the input. It is raised only after every connection read
    so far has been handed to `on_finished`, so a caller can report them and this.
    """

    def __init__(self, message: str, stats: CaptureStats | None = None) -> None:
        super().__init__(message)
        self.stats = stats


@dataclass(slots=True)
class CaptureStats:
    """What the reader saw, for a summary line: frames by kind and connections found."""

    format: str = ""
    link_types: set[int] = field(default_factory=set)
    frames: int = 0
    tcp_segments: int = 0
    non_tcp_frames: int = 0
    malformed_frames: int = 0
    fragments: int = 0
    truncated_frames: int = 0
    unsupported_link_frames: int = 0
    #: TCP segments that belong to no connection (pure ACKs before any data, packets after
    #: a connection ended).
    stray_segments: int = 0
    tcp_connections: int = 0
    #: pcapng timestamps outside years 1970-9999 (corrupt), replaced by the previous one.
    bad_timestamps: int = 0
    bytes_read: int = 0


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
    with _Input(source, stdin) as inp:
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


def _run(inp: _Input, conns: _Connections, stats: CaptureStats, progress: Progress | None) -> None:
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


# -- input -------------------------------------------------------------------------------


class _Prefixed:
    """A stream with bytes already read put back in front, so magic bytes can be sniffed."""

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        if self._prefix:
            head, self._prefix = (
                (self._prefix, b"") if n < 0 else (self._prefix[:n], self._prefix[n:])
            )
            return head
        return self._stream.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        # gzip only seeks to rewind, which a pipe cannot do either.
        raise io.UnsupportedOperation("seek")


class _Input:
    """The opened input: label, raw stream, optional gzip layer and the record reader."""

    def __init__(self, source: str | os.PathLike[str] | BinaryIO, stdin: BinaryIO | None):
        self._owned: BinaryIO | None = None
        self.total: int | None = None
        self.link_types: set[int] = set()
        self._decompressed = 0
        self._gzip = False
        self.format = ""
        #: Packet blocks naming an interface the file never described, or overrunning their block.
        self.bad_records = 0
        self.bad_timestamps = 0
        if isinstance(source, (str, os.PathLike)):
            name = os.fspath(source)
            if name == "-":
                self.label = "stdin"
                self._raw: BinaryIO = stdin if stdin is not None else sys.stdin.buffer
            else:
                self.label = name
                try:
                    self._owned = self._raw = open(name, "rb")  # noqa: SIM115 - closed in __exit__
                except OSError as exc:
                    reason = (exc.strerror or str(exc)).lower()
                    raise CaptureError(f"{name}: {reason}") from None
        else:
            self.label = getattr(source, "name", None) or "stream"
            self._raw = source
        self._stream: BinaryIO | gzip.GzipFile = self._raw
        try:
            st = os.fstat(self._raw.fileno())
        except (OSError, AttributeError, ValueError):
            st = None
        if st is not None and stat.S_ISREG(st.st_mode):
            self.total = st.st_size
            self._seekable = True
        else:
            self._seekable = False

    def __enter__(self) -> _Input:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._owned is not None:
            self._owned.close()

    def consumed(self) -> int:
        """Bytes of the input read so far (compressed bytes for gzip), for progress."""
        return self._raw.tell() if self._seekable else self._decompressed

    def _fail(self, what: str) -> CaptureError:
        return CaptureError(f"{self.label}: {what}")

    def _read(self, n: int) -> bytes:
        """At most `n` bytes, whatever is available (a pipe is not waited on to fill `n`)."""
        read1 = getattr(self._stream, "read1", None)
        try:
            data: bytes = read1(n) if read1 is not None else self._stream.read(n)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise self._fail(f"corrupt or truncated gzip data ({exc})") from None
        except OSError as exc:
            raise self._fail(f"read error ({exc.strerror or exc})") from None
        self._decompressed += len(data)
        return data

    def _read_exact(self, n: int) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < n:
            data = self._read(n - got)
            if not data:
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def records(self) -> Iterator[Record]:
        """Every captured frame as (linktype, buf, start, end, wirelen, timestamp)."""
        head = self._read_exact(4)
        if head[:2] == _GZIP_MAGIC:
            self._gzip = True
            self._stream = gzip.GzipFile(fileobj=_Prefixed(head, self._raw), mode="rb")
            head = self._read_exact(4)
            if not head:
                raise self._fail("gzip file holds no capture")
        if not head:
            raise self._fail("empty file (not a pcap or pcapng file)")
        if head in _PCAP_MAGICS:
            return self._pcap(head)
        if head == _PCAPNG_SHB:
            return self._pcapng(head)
        shown = " ".join(f"{b:02x}" for b in head)
        inner = " inside gzip" if self._gzip else ""
        raise self._fail(f"not a pcap or pcapng file{inner} (starts with {shown})")

    def _refill(self, buf: bytes, pos: int, need: int) -> bytes:
        """`buf[pos:]` extended to at least `need` bytes when the input has them."""
        parts = [buf[pos:]]
        have = len(buf) - pos
        while have < need:
            data = self._read(max(READ_CHUNK, need - have))
            if not data:
                break
            parts.append(data)
            have += len(data)
        return b"".join(parts)

    def _pcap(self, magic: bytes) -> Iterator[Record]:
        endian, scale, fmt = _PCAP_MAGICS[magic]
        header = self._read_exact(20)
        if len(header) < 20:
            raise self._fail("truncated pcap file header")
        _major, _minor, _tz, _sigfigs, _snaplen, linkfield = struct.unpack(
            endian + "HHiIII", header
        )
        # The upper bits may carry FCS information (pcap spec, "LinkType and additional
        # information"); libpcap keeps the low 26 bits as the link type.
        linktype = linkfield & 0x03FFFFFF
        self.format = f"{fmt}+gzip" if self._gzip else fmt
        self.link_types.add(linktype)
        unpack = struct.Struct(endian + "IIII").unpack_from
        buf = b""
        pos = 0
        index = 0
        while True:
            if len(buf) - pos < 16:
                buf = self._refill(buf, pos, 16)
                pos = 0
                if not buf:
                    return
                if len(buf) < 16:
                    raise self._truncated(index, "record header")
            sec, frac, caplen, wirelen = unpack(buf, pos)
            start = pos + 16
            end = start + caplen
            if end > len(buf):
                if caplen > MAX_RECORD:
                    raise self._fail(
                        f"record {index + 1} claims {caplen} captured bytes (corrupt file)"
                    )
                buf = self._refill(buf, pos, 16 + caplen)
                pos = 0
                start = 16
                end = start + caplen
                if end > len(buf):
                    raise self._truncated(index, "frame")
            yield linktype, buf, start, end, wirelen, sec + frac * scale
            pos = end
            index += 1

    def _clock(self, ts: float, previous: float) -> float:
        """A pcapng timestamp, or the previous one when it is outside what a date can be.

        A 64-bit tick count with a corrupt resolution or offset can land far past year 9999
        or before 1970; the frame itself may still be whole, so it is kept.
        """
        if 0.0 <= ts <= _MAX_TIMESTAMP:
            return ts
        self.bad_timestamps += 1
        return previous

    def _truncated(self, index: int, what: str) -> CaptureError:
        return self._fail(
            f"truncated capture: the file ends inside the {what} of record {index + 1}"
        )

    def _pcapng(self, magic: bytes) -> Iterator[Record]:
        """pcapng (draft-ietf-opsawg-pcapng): sections, interfaces and packet blocks."""
        buf = magic
        pos = 0
        endian = "<"
        # Per interface: (linktype, seconds per tick, offset in seconds, snaplen).
        interfaces: list[tuple[int, float, int, int]] = []
        index = 0
        last_ts = 0.0
        self.format = "pcapng+gzip" if self._gzip else "pcapng"
        while True:
            if len(buf) - pos < 12:
                buf = self._refill(buf, pos, 12)
                pos = 0
                if not buf:
                    return
                if len(buf) < 12:
                    raise self._truncated(index, "block header")
            btype = buf[pos : pos + 4]
            if btype == _PCAPNG_SHB:
                bom = buf[pos + 8 : pos + 12]
                if bom == b"\x1a\x2b\x3c\x4d":
                    endian = ">"
                elif bom == b"\x4d\x3c\x2b\x1a":
                    endian = "<"
                else:
                    raise self._fail(f"corrupt pcapng section header (byte order mark {bom.hex()})")
                interfaces = []
            (blen,) = struct.unpack_from(endian + "I", buf, pos + 4)
            if blen < 12 or blen % 4 or blen > MAX_RECORD:
                raise self._fail(f"corrupt pcapng block {index + 1} (length {blen})")
            if len(buf) - pos < blen:
                buf = self._refill(buf, pos, blen)
                pos = 0
                if len(buf) < blen:
                    raise self._truncated(index, "block")
            (tail,) = struct.unpack_from(endian + "I", buf, pos + blen - 4)
            if tail != blen:
                raise self._fail(f"corrupt pcapng block {index + 1} (lengths {blen} and {tail})")
            (kind,) = struct.unpack_from(endian + "I", buf, pos)
            body = pos + 8
            body_end = pos + blen - 4
            if kind == 6 and body_end - body >= 20:  # enhanced packet block
                ifid, hi, lo, caplen, wirelen = struct.unpack_from(endian + "IIIII", buf, body)
                start = body + 20
                if ifid < len(interfaces) and start + caplen <= body_end:
                    lt, tick, toff, _snap = interfaces[ifid]
                    last_ts = self._clock(((hi << 32) | lo) * tick + toff, last_ts)
                    yield lt, buf, start, start + caplen, wirelen, last_ts
                else:
                    self.bad_records += 1
            elif kind == 3 and interfaces and body_end - body >= 4:  # simple packet block
                (wirelen,) = struct.unpack_from(endian + "I", buf, body)
                lt, tick, toff, snap = interfaces[0]
                caplen = min(wirelen, body_end - body - 4, snap or wirelen)
                # A simple packet block has no timestamp: the last one seen stands in.
                yield lt, buf, body + 4, body + 4 + caplen, wirelen, last_ts
            elif kind == 2 and body_end - body >= 20:  # obsolete packet block
                ifid, _drops, hi, lo, caplen, wirelen = struct.unpack_from(
                    endian + "HHIIII", buf, body
                )
                start = body + 20
                if ifid < len(interfaces) and start + caplen <= body_end:
                    lt, tick, toff, _snap = interfaces[ifid]
                    last_ts = self._clock(((hi << 32) | lo) * tick + toff, last_ts)
                    yield lt, buf, start, start + caplen, wirelen, last_ts
            elif kind == 1 and body_end - body >= 8:  # interface description block
                lt, _reserved, snap = struct.unpack_from(endian + "HHI", buf, body)
                tick, toff = _idb_time(buf, body + 8, body_end, endian)
                interfaces.append((lt, tick, toff, snap))
                self.link_types.add(lt)
            pos += blen
            index += 1


def _idb_time(buf: bytes, pos: int, end: int, endian: str) -> tuple[float, int]:
    """An interface's clock: seconds per timestamp tick and the offset in seconds."""
    tick = 1e-6
    offset = 0
    while pos + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", buf, pos)
        if code == 0:
            break
        value = pos + 4
        if code == 9 and length >= 1:  # if_tsresol
            res = buf[value]
            tick = 2.0 ** -(res & 0x7F) if res & 0x80 else 10.0**-res
        elif code == 14 and length >= 8:  # if_tsoffset
            (offset,) = struct.unpack_from(endian + "q", buf, value)
        pos = value + length + (-length % 4)
    return tick, offset
