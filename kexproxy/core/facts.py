"""A frozen snapshot of what a tracker knows about one connection: the record builder's input.

The tracker keeps mutable per-leg state while bytes arrive; the builder must see one
consistent moment of it and must not reach into the tracker, so `SessionTracker.facts`
copies that state into these dataclasses. The facts are still per TCP leg (``a``/``b``);
`client` says which leg the tracker decided is the SSH client, and how it knows.
"""

from __future__ import annotations

from dataclasses import dataclass

from kexproxy.core.events import Disconnect, Identification, KexInit
from kexproxy.core.negotiation import Negotiation
from kexproxy.core.observer import CloseKind, Endpoint, InitiatorEvidence, Leg

#: (at, leg or None for the source itself, event name, detail); ``kex:N`` names a KEX message
#: whose name depends on the negotiated method, resolved when the record is built.
TimelineEntry = tuple[float, Leg | None, str, str | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class LegFacts:
    """What one TCP leg sent, as far as its parser understood it."""

    ident: Identification | None
    #: The first lines before the identification (at most `limits.KEPT_PRE_BANNER_LINES`).
    pre_banner: tuple[str, ...]
    pre_banner_count: int
    protocol1: str | None
    kexinit: KexInit | None
    #: (message number, payload cut to `limits.KEPT_KEX_BYTES`, at).
    kex_messages: tuple[tuple[int, bytes, float], ...]
    newkeys: float | None
    plaintext: tuple[str, ...]
    disconnects: tuple[tuple[Disconnect, float], ...]
    #: Why the parser stopped on malformed input, if it did.
    failed: str | None
    #: The capture lost bytes of this leg.
    gap: bool
    close: tuple[CloseKind, float] | None
    bytes: int
    #: An identification line began but never ended (a slow drip or a cut).
    banner_started: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionFacts:
    """Everything a record is built from, at one moment of one connection."""

    session_id: str
    source: str
    capture: str | None
    a: Endpoint
    b: Endpoint
    initiator: InitiatorEvidence
    legs: tuple[LegFacts, LegFacts]
    first_ts: float | None
    last_ts: float | None
    #: Notes may name a leg as ``{a}`` or ``{b}``, to be replaced by its role.
    notes: tuple[str, ...]
    timeline: tuple[TimelineEntry, ...]
    #: Legs in the order their FIN or RST arrived: breaks ties of equal timestamps.
    close_order: tuple[Leg, ...]
    timeout: tuple[float, str] | None
    abort_reason: str | None
    #: The leg the tracker decided is the SSH client, and what showed it.
    client: Leg
    roles_by: str
    #: Present exactly when both KEXINITs were seen.
    negotiation: Negotiation | None

    def leg(self, leg: Leg) -> LegFacts:
        return self.legs[0] if leg == "a" else self.legs[1]

    def endpoint(self, leg: Leg) -> Endpoint:
        return self.a if leg == "a" else self.b
