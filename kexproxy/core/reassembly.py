"""TCP stream reassembly for one direction of a captured connection, reporting gaps.

Theory of operation: `add` takes a segment's sequence number and payload and returns the
bytes that became contiguous with what was delivered before (often the segment itself,
sometimes nothing, sometimes several buffered segments at once). Positions are kept as
unbounded offsets from the first sequence number seen (the SYN's plus one, or the first
segment's in a capture that starts mid-stream), so sequence-number wraparound is handled
once, in `_offset`. Bytes already delivered or already buffered are never replaced: a
retransmission that disagrees with the first copy loses, as in most TCP stacks.

When the stream cannot continue without guessing, the reassembler declares a gap and stops
for good: `gap` holds the number of bytes known to be missing. That happens when the peer
acknowledges data the capture never showed, when more out-of-order data waits than
`MAX_OUT_OF_ORDER_BYTES` allows, when a cut (truncated) frame's bytes are next in line, or
at `finish` (FIN reached with a hole, RST, end of capture) while a hole remains.
"""

from __future__ import annotations

from bisect import bisect_right
from operator import itemgetter
from typing import Final

#: Out-of-order bytes buffered per direction before the hole is called a gap. A TCP
#: receive window rarely exceeds a few MiB, and the bytes this tool inspects (banners and
#: key exchange messages) fit in far less, so 1 MiB bounds memory per handshaking flow
#: while leaving room for real reordering and retransmission.
MAX_OUT_OF_ORDER_BYTES: Final = 1 << 20
#: Out-of-order segments buffered per direction: bounds the cost of inserting into the
#: buffer when a hostile capture sends many tiny segments ahead of a hole.
MAX_OUT_OF_ORDER_SEGMENTS: Final = 2048

_MOD: Final = 1 << 32
_HALF: Final = 1 << 31
_start = itemgetter(0)


class Reassembler:
    """One direction's byte stream rebuilt from captured segments; a gap ends it."""

    __slots__ = (
        "_fin",
        "_highest",
        "_max_bytes",
        "_next",
        "_next_seq",
        "_pending",
        "_pending_bytes",
        "_poison",
        "dropped",
        "gap",
    )

    def __init__(self, max_out_of_order: int = MAX_OUT_OF_ORDER_BYTES) -> None:
        self._max_bytes = max_out_of_order
        #: Stream offset of the next byte to deliver (bytes delivered so far).
        self._next = 0
        #: Sequence number of that byte, or None until the first SYN or segment is seen.
        self._next_seq: int | None = None
        #: Highest stream offset seen in any segment (end of the furthest segment).
        self._highest = 0
        #: Out-of-order bytes: sorted, non-overlapping (offset, data) pairs past `_next`.
        self._pending: list[tuple[int, bytes]] = []
        self._pending_bytes = 0
        #: Offset of the first byte that a cut frame made unrecoverable.
        self._poison: int | None = None
        self._fin: int | None = None
        #: Bytes known to be missing when the gap was declared; None while the stream is whole.
        self.gap: int | None = None
        #: Out-of-order bytes that were buffered when the gap was declared: seen, never delivered.
        self.dropped = 0

    @property
    def started(self) -> bool:
        """Whether a SYN or a segment has fixed where the stream starts."""
        return self._next_seq is not None

    @property
    def delivered(self) -> int:
        """Bytes returned by `add` so far."""
        return self._next

    @property
    def pending_bytes(self) -> int:
        """Bytes buffered out of order, waiting for a hole before them to fill."""
        return self._pending_bytes

    @property
    def fin_reached(self) -> bool:
        """Whether every byte before the FIN was delivered."""
        return self._fin is not None and self._next >= self._fin and self.gap is None

    def highest_seq(self) -> int | None:
        """Sequence number just past the furthest byte seen, for counting after this ends."""
        if self._next_seq is None:
            return None
        return (self._next_seq + self._highest - self._next) % _MOD

    def _offset(self, seq: int) -> int:
        # The signed 32-bit distance from the next expected sequence number: segments up to
        # 2 GiB behind or ahead are placed correctly across a wraparound.
        assert self._next_seq is not None
        return self._next + ((seq - self._next_seq + _HALF) % _MOD) - _HALF

    def syn(self, seq: int) -> None:
        """The SYN (or SYN-ACK) carried `seq`; data starts one after it."""
        if self._next_seq is None:
            self._next_seq = (seq + 1) % _MOD

    def add(self, seq: int, data: bytes) -> bytes:
        """The bytes that `data` (starting at `seq`) makes contiguous; b"" if none."""
        if self.gap is not None or not data:
            return b""
        if self._next_seq is None:
            self._next_seq = seq
        off = self._offset(seq)
        end = off + len(data)
        self._highest = max(self._highest, end)
        nxt = self._next
        if end <= nxt:
            return b""  # a retransmission of delivered bytes: the first copy stands
        if off > nxt:
            self._buffer(off, data)
            return b""
        out = data if off == nxt else data[nxt - off :]
        if self._pending:
            # Buffered bytes were seen first: they win where this segment overlaps them.
            self._insert(nxt, out)
            out = self._drain()
        else:
            self._next = end
        if self._poison is not None and self._next >= self._poison:
            return self._stop_at_poison(out)
        self._next_seq = (self._next_seq + len(out)) % _MOD
        return out

    def _drain(self) -> bytes:
        """The buffered bytes now contiguous with what was delivered."""
        pending = self._pending
        parts = []
        while pending and pending[0][0] <= self._next:
            off, data = pending.pop(0)
            self._pending_bytes -= len(data)
            end = off + len(data)
            if end > self._next:
                parts.append(data if off == self._next else data[self._next - off :])
                self._next = end
        return b"".join(parts)

    def _stop_at_poison(self, out: bytes) -> bytes:
        assert self._poison is not None and self._next_seq is not None
        excess = self._next - self._poison
        out = out[: len(out) - excess] if excess else out
        self._next = self._poison
        self._next_seq = (self._next_seq + len(out)) % _MOD
        self._declare(max(self._highest - self._next, 1))
        return out

    def _buffer(self, off: int, data: bytes) -> None:
        """Keeps an out-of-order segment, declaring a gap when the buffer is over its bounds."""
        self._insert(off, data)
        if self._pending_bytes > self._max_bytes or len(self._pending) > MAX_OUT_OF_ORDER_SEGMENTS:
            self._declare(self._pending[0][0] - self._next)

    def _insert(self, off: int, data: bytes) -> None:
        """Keeps the parts of a segment that no buffered segment covers (first copy wins)."""
        pending = self._pending
        end = off + len(data)
        i = bisect_right(pending, off, key=_start)
        cur = off
        if i > 0:
            prev_off, prev = pending[i - 1]
            cur = max(cur, prev_off + len(prev))
        pieces: list[tuple[int, bytes]] = []
        j = i
        while j < len(pending) and cur < end:
            s, d = pending[j]
            if s >= end:
                break
            if s > cur:
                pieces.append((cur, data[cur - off : s - off]))
            cur = max(cur, s + len(d))
            j += 1
        if cur < end:
            pieces.append((cur, data[cur - off :]))
        for piece in pieces:
            pending.insert(bisect_right(pending, piece[0], key=_start), piece)
            self._pending_bytes += len(piece[1])

    def mark_missing(self, seq: int, length: int) -> None:
        """A segment of `length` bytes at `seq` was cut by the capture: its bytes are lost."""
        if self.gap is not None or length <= 0:
            return
        if self._next_seq is None:
            self._next_seq = seq
        off = self._offset(seq)
        end = off + length
        if end <= self._next:
            return
        self._highest = max(self._highest, end)
        start = max(off, self._next)
        if self._poison is None or start < self._poison:
            self._poison = start
        if start == self._next:
            self._declare(end - self._next)

    def ack(self, ack: int) -> None:
        """The peer acknowledged up to `ack`: a hole before it is data the capture missed."""
        if self.gap is not None or self._next_seq is None:
            return
        off = self._offset(ack)
        limit = self._next
        if self._fin is not None and self._next >= self._fin:
            limit += 1  # the FIN takes one sequence number
        if off > limit:
            self._declare((off if self._fin is None else min(off, self._fin)) - self._next)

    def fin(self, seq: int) -> None:
        """A FIN was sent after the byte before `seq` (the segment's seq plus its length)."""
        if self._next_seq is None:
            self._next_seq = seq
        if self._fin is None:
            self._fin = self._offset(seq)

    def finish(self) -> None:
        """The stream ends here (FIN reached, RST, end of capture): a hole left is a gap."""
        if self.gap is not None:
            return
        missing = 0
        if self._pending:
            missing = self._pending[0][0] - self._next
        elif self._poison is not None:
            missing = max(self._highest - self._next, 1)
        elif self._fin is not None and self._fin > self._next:
            missing = self._fin - self._next
        if missing:
            self._declare(missing)

    def _declare(self, missing: int) -> None:
        self.gap = max(missing, 1)
        self.dropped = self._pending_bytes
        self._pending = []
        self._pending_bytes = 0
