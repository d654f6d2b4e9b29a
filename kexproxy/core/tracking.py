"""What every protocol's tracker keeps of a connection besides the protocol itself.

Theory of operation: the SSH tracker (`kexproxy.core.tracker`) and the TLS tracker
(`kexproxy.core.tls.tracker`) are driven the same way by every source (the observer
interface in `kexproxy.core.observer`) and keep the same bookkeeping: the two endpoints and
who opened the connection, the first and last timestamps, bounded notes and timeline, each
side's FIN or RST in the order they came, a timeout, an abort. `TrackerBase` holds that once;
a tracker adds its per-leg state (`Leg` objects with `parser`, `bytes`, `gap` and `close`) and
`_apply`, which turns one parser event into facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from kexproxy.core import limits
from kexproxy.core.observer import CloseKind, Endpoint, InitiatorEvidence, Leg, other_leg


class _Parser(Protocol):
    @property
    def parsing(self) -> bool: ...

    def receive_eof(self) -> Sequence[object]: ...


class LegState(Protocol):
    """The part of a tracker's per-leg state the bookkeeping reads and writes."""

    @property
    def parser(self) -> _Parser: ...

    bytes: int
    gap: bool
    close: tuple[CloseKind, float] | None


def ordered_closes(
    closes: dict[Leg, tuple[CloseKind, float] | None], order: Sequence[Leg]
) -> list[tuple[float, Leg, CloseKind]]:
    """Each side's FIN or RST as (time, side, kind), earliest first; equal times in the order
    they arrived (`TrackerBase.close_order`). Both record builders say who closed first."""
    out = [(close[1], leg, close[0]) for leg, close in closes.items() if close is not None]
    out.sort(key=lambda item: (item[0], order.index(item[1])))
    return out


class TrackerBase:
    """Endpoints, times, notes, timeline, closes, timeout and abort of one connection."""

    def __init__(
        self,
        *,
        a: Endpoint,
        b: Endpoint,
        initiator: InitiatorEvidence,
        session_id: str,
        source: str,
        capture: str | None,
    ) -> None:
        self.endpoints: dict[Leg, Endpoint] = {"a": a, "b": b}
        self.initiator = initiator
        self.session_id = session_id
        self.source = source
        self.capture = capture
        self.notes: list[str] = []
        self.timeline: list[tuple[float, Leg | None, str, str | None]] = []
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.timeout: tuple[float, str] | None = None
        self.abort_reason: str | None = None
        #: Sides in the order their FIN or RST arrived: breaks ties of equal timestamps.
        self.close_order: list[Leg] = []

    # -- what a tracker provides -----------------------------------------------------------

    def _leg_state(self, leg: Leg) -> LegState:
        raise NotImplementedError

    def _apply(self, leg: Leg, event: object, ts: float) -> None:
        raise NotImplementedError

    def _inspects(self, leg: Leg) -> bool:
        """Whether `leg`'s bytes still go to its parser (the SSH tracker stops for non-SSH)."""
        return self._leg_state(leg).parser.parsing

    # -- the observer interface's bookkeeping ------------------------------------------------

    def count(self, leg: Leg, nbytes: int, ts: float) -> None:
        self._touch(self._leg_state(leg), ts, nbytes)

    def receive_gap(self, leg: Leg, nbytes: int, ts: float) -> None:
        d = self._leg_state(leg)
        self._touch(d, ts, 0)
        if d.gap:
            return
        d.gap = True
        if self._inspects(leg):
            self._note(
                f"the capture is missing {nbytes} bytes sent by the {{{leg}}} at stream offset "
                f"{d.bytes}; inspection of that direction stopped"
            )
            self._end_of(leg, ts)

    def receive_close(self, leg: Leg, kind: CloseKind, ts: float) -> None:
        d = self._leg_state(leg)
        self._touch(d, ts, 0)
        if d.close is not None:
            return
        d.close = (kind, ts)
        self.close_order.append(leg)
        self._event(ts, leg, kind.upper(), None)
        # An RST ends both directions: nothing more will come from either.
        for end_leg in (leg, other_leg(leg)) if kind == "rst" else (leg,):
            if self._leg_state(end_leg).parser.parsing:
                self._end_of(end_leg, ts)

    def receive_timeout(self, ts: float, reason: str) -> None:
        """The live source gave up waiting for the handshake (a stalled or silent peer)."""
        if self.timeout is None:
            self.timeout = (ts, reason)
            self.last_ts = ts
            self._event(ts, None, "timeout", reason)

    def abort(self, reason: str, ts: float) -> None:
        """The source could not carry the connection (upstream refused, shutdown)."""
        if self.abort_reason is None:
            self.abort_reason = reason
            self.last_ts = max(ts, self.last_ts or ts)
            self.notes.append(reason)

    # -- helpers -----------------------------------------------------------------------------

    def _end_of(self, leg: Leg, ts: float) -> None:
        """`leg`'s stream is over: its parser says what it held."""
        for event in self._leg_state(leg).parser.receive_eof():
            self._apply(leg, event, ts)

    def _touch(self, d: LegState, ts: float, nbytes: int) -> None:
        d.bytes += nbytes
        if self.first_ts is None:
            self.first_ts = ts
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts

    def _note(self, text: str) -> None:
        # Notes may name a leg as {a} or {b}; the role is filled in when the record is built.
        if len(self.notes) < limits.MAX_NOTES:
            self.notes.append(text)

    def _event(self, ts: float, leg: Leg | None, name: str, detail: str | None) -> None:
        if len(self.timeline) < limits.MAX_TIMELINE:
            self.timeline.append((ts, leg, name, detail))


__all__ = ["LegState", "TrackerBase", "ordered_closes"]
