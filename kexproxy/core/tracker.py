"""The session tracker: joins both directions of one connection into the facts of a session.

Theory of operation: a source (pcap reassembly or the live relay) calls `receive`,
`count`, `receive_gap`, `receive_close` and `receive_timeout` with the two TCP legs
named ``a`` and ``b``. Each leg has its own `DirectionParser`; the tracker keeps what
its events say (banners, KEXINITs, KEX messages, NEWKEYS, DISCONNECTs, closes) per leg,
and only when its facts are asked for does it decide the SSH roles and negotiate. Roles
are decided late because the evidence for them (markers in the KEXINITs, who sends which
KEX message) arrives after the bytes. `facts` is a frozen snapshot; `recordbuild` turns it
into a record (decoding the KEX reply and naming the outcome), and the diagnosis is a
later stage (`kexproxy.core.diagnosis.diagnosed`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kexproxy.core import limits
from kexproxy.core.events import (
    Anomaly,
    Disconnect,
    Identification,
    KexInit,
    KexInitReceived,
    KexMessage,
    NewKeys,
    OtherMessage,
    ParseFailed,
    PlaintextLine,
    PreBannerLine,
    Protocol1,
    StreamEnded,
)
from kexproxy.core.facts import LegFacts, SessionFacts
from kexproxy.core.lists import CLIENT_MARKERS, KEX_ALGORITHMS, SERVER_MARKERS
from kexproxy.core.messages import disconnect_reason_name
from kexproxy.core.negotiation import Negotiation, kex_family, negotiate
from kexproxy.core.observer import LEGS, CloseKind, Endpoint, InitiatorEvidence, Leg, other_leg
from kexproxy.core.parser import DirectionParser
from kexproxy.core.record import SessionRecord
from kexproxy.core.recordbuild import build_record
from kexproxy.core.tracking import TrackerBase

#: Messages only one role sends, by KEX family (RFC 4253 8, RFC 4419, RFC 5656, RFC 4432).
_CLIENT_ONLY = {"dh": {30}, "ecdh": {30}, "gex": {30, 32, 34}, "rsa": {31}}
_SERVER_ONLY = {"dh": {31}, "ecdh": {31}, "gex": {31, 33}, "rsa": {30, 32}}
#: KEX messages kept per leg for decoding; a peer sends two or three in a real exchange.
_MAX_KEX_MESSAGES = 8
#: With no identification on either leg after this much text, the stream is not SSH.
_NOT_SSH_TEXT_BYTES = 64 * 1024
#: With no identification on either leg after this many bytes in all, the stream is not SSH
#: either: an SSH server sends its identification as soon as it accepts (RFC 4253 4.2), so
#: one leg's binary bytes met by silence (an HTTP download whose request went by, a
#: one-way stream) would otherwise be reassembled to their end waiting for it.
_NOT_SSH_BYTES = 64 * 1024
#: Ports that name the server when the capture does not show who connected.
_SERVER_PORTS = frozenset({22, 2222, 2200, 830, 8022, 29418})
_EPHEMERAL_MIN = 32768


@dataclass(slots=True)
class _Direction:
    """What one TCP leg sent, as far as the parser understood it."""

    parser: DirectionParser = field(default_factory=DirectionParser)
    ident: Identification | None = None
    pre_banner: list[str] = field(default_factory=list)
    pre_banner_count: int = 0
    pre_banner_bytes: int = 0
    protocol1: str | None = None
    kexinit: KexInit | None = None
    kex_messages: list[tuple[int, bytes, float]] = field(default_factory=list)
    newkeys: float | None = None
    plaintext: list[str] = field(default_factory=list)
    disconnects: list[tuple[Disconnect, float]] = field(default_factory=list)
    failed: str | None = None
    gap: bool = False
    close: tuple[CloseKind, float] | None = None
    bytes: int = 0

    def facts(self) -> LegFacts:
        return LegFacts(
            ident=self.ident,
            pre_banner=tuple(self.pre_banner),
            pre_banner_count=self.pre_banner_count,
            protocol1=self.protocol1,
            kexinit=self.kexinit,
            kex_messages=tuple(self.kex_messages),
            newkeys=self.newkeys,
            plaintext=tuple(self.plaintext),
            disconnects=tuple(self.disconnects),
            failed=self.failed,
            gap=self.gap,
            close=self.close,
            bytes=self.bytes,
            banner_started=self.parser.banner_started,
        )


class SessionTracker(TrackerBase):
    """Implements `ConnectionObserver`: bytes of both legs in, `SessionFacts` (and a record) out."""

    def __init__(
        self,
        *,
        a: Endpoint,
        b: Endpoint,
        initiator: InitiatorEvidence,
        session_id: str,
        source: str = "pcap",
        capture: str | None = None,
    ) -> None:
        super().__init__(
            a=a, b=b, initiator=initiator, session_id=session_id, source=source, capture=capture
        )
        self._dirs: dict[Leg, _Direction] = {"a": _Direction(), "b": _Direction()}
        self._cache: tuple[tuple[Leg, str], Negotiation | None] | None = None
        self._not_ssh = False

    def _leg_state(self, leg: Leg) -> _Direction:
        return self._dirs[leg]

    def _inspects(self, leg: Leg) -> bool:
        return self._dirs[leg].parser.parsing and not self._not_ssh

    # -- the observer interface ----------------------------------------------------------

    @property
    def inspecting(self) -> bool:
        if self._not_ssh:
            return False
        return self._dirs["a"].parser.parsing or self._dirs["b"].parser.parsing

    @property
    def decided(self) -> bool:
        """The outcome will not change any more (only byte counts and the end time may)."""
        a, b = self._dirs["a"], self._dirs["b"]
        if self._not_ssh or self.timeout is not None:
            return True
        if a.newkeys is not None and b.newkeys is not None:
            return True
        if a.close is not None or b.close is not None:
            return self.outcome_known or (a.close is not None and b.close is not None)
        return False

    @property
    def outcome_known(self) -> bool:
        """Negotiation failed or succeeded; the close may still be to come."""
        if self._not_ssh:
            return True
        a, b = self._dirs["a"], self._dirs["b"]
        if a.kexinit is None or b.kexinit is None:
            return False
        if a.newkeys is not None and b.newkeys is not None:
            return True
        result = self._negotiation()
        return result is not None and not result.ok

    def receive(self, leg: Leg, data: bytes, ts: float) -> None:
        direction = self._dirs[leg]
        self._touch(direction, ts, len(data))
        if not direction.parser.parsing or self._not_ssh:
            if not self._not_ssh:
                self._check_not_ssh()  # a failed leg's bytes still count against the silence
            return
        for event in direction.parser.receive_data(data):
            self._apply(leg, event, ts)
        self._check_not_ssh()

    # -- event handling ------------------------------------------------------------------

    def _apply(
        self,
        leg: Leg,
        event: object,
        ts: float,
    ) -> None:
        d = self._dirs[leg]
        match event:
            case PreBannerLine(text=text):
                d.pre_banner_count += 1
                d.pre_banner_bytes += len(text) + 2
                if len(d.pre_banner) < limits.KEPT_PRE_BANNER_LINES:
                    d.pre_banner.append(text[: limits.MAX_TEXT])
            case Identification():
                d.ident = event
                self._cache = None
                self._event(ts, leg, "banner", event.line[: limits.MAX_TEXT])
            case Protocol1(version=version):
                d.protocol1 = version
                self._note(
                    f"the {{{leg}}} speaks SSH protocol {version}; kexproxy parses protocol 2 only",
                )
            case PlaintextLine(text=text):
                if len(d.plaintext) < limits.MAX_PLAINTEXT_LINES:
                    d.plaintext.append(text[: limits.MAX_TEXT])
                self._event(ts, leg, "text", text[: limits.MAX_TEXT])
            case KexInitReceived(kexinit=kexinit):
                if d.kexinit is None:
                    d.kexinit = kexinit
                    self._cache = None
                self._event(ts, leg, "SSH_MSG_KEXINIT", None)
            case KexMessage(number=number, payload=payload):
                if len(d.kex_messages) < _MAX_KEX_MESSAGES:
                    d.kex_messages.append((number, payload[: limits.KEPT_KEX_BYTES], ts))
                    self._cache = None
                self._event(ts, leg, f"kex:{number}", None)
            case NewKeys():
                d.newkeys = ts
                self._event(ts, leg, "SSH_MSG_NEWKEYS", None)
            case Disconnect():
                if len(d.disconnects) < limits.MAX_DISCONNECTS:
                    d.disconnects.append((event, ts))
                self._event(
                    ts,
                    leg,
                    "SSH_MSG_DISCONNECT",
                    f"{disconnect_reason_name(event.reason_code)}: {event.description}",
                )
            case OtherMessage(summary=summary):
                self._event(ts, leg, summary.split(":", 1)[0], summary)
            case Anomaly(text=text):
                self._note(f"{{{leg}}}: {text}")
            case ParseFailed(reason=reason):
                d.failed = reason
                if d.ident is not None:
                    self._note(f"inspection of the {{{leg}}}'s bytes stopped: {reason}")
            case StreamEnded():
                pass
            case _:
                raise AssertionError(f"unhandled event {event!r}")

    def _check_not_ssh(self) -> None:
        a, b = self._dirs["a"], self._dirs["b"]
        if a.ident is not None or b.ident is not None:
            return
        # One leg's binary bytes say nothing of the other's: a TLS client may still meet an
        # SSH server, whose banner must not be dropped because the client's bytes came first.
        both_failed = a.failed is not None and b.failed is not None
        if (
            both_failed
            or a.pre_banner_bytes + b.pre_banner_bytes > _NOT_SSH_TEXT_BYTES
            or a.bytes + b.bytes > _NOT_SSH_BYTES
        ):
            self._not_ssh = True

    # -- roles, negotiation, decoding ------------------------------------------------------

    def _marker_client(self) -> Leg | None:
        votes: set[Leg] = set()
        for leg in LEGS:
            kexinit = self._dirs[leg].kexinit
            if kexinit is None:
                continue
            names = set(kexinit.names(KEX_ALGORITHMS))
            if names.intersection(CLIENT_MARKERS):
                votes.add(leg)
            if names.intersection(SERVER_MARKERS):
                votes.add(other_leg(leg))
        return votes.pop() if len(votes) == 1 else None

    def _default_client(self) -> tuple[Leg, str]:
        if self.initiator != "first-packet":
            return "a", "tcp"
        a, b = self.endpoints["a"], self.endpoints["b"]
        pairs: tuple[tuple[Leg, Endpoint, Endpoint], ...] = (("a", a, b), ("b", b, a))
        for leg, ep, other in pairs:
            if ep.port in _SERVER_PORTS and other.port not in _SERVER_PORTS:
                return other_leg(leg), "port"
        if (a.port >= _EPHEMERAL_MIN) != (b.port >= _EPHEMERAL_MIN):
            return ("a" if a.port >= _EPHEMERAL_MIN else "b"), "port"
        return ("a" if a.port > b.port else "b"), "port"

    def _roles(self) -> tuple[Leg, str]:
        """Which TCP leg is the SSH client, and what showed it."""
        marked = self._marker_client()
        if marked is not None:
            return marked, "markers"
        client, how = self._default_client()
        server = other_leg(client)
        ci, si = self._dirs[client].kexinit, self._dirs[server].kexinit
        if ci is not None and si is not None:
            family = kex_family(self._negotiate(client).chosen["kex"])
            if self._sends_role_of(server, family, _CLIENT_ONLY) or self._sends_role_of(
                client, family, _SERVER_ONLY
            ):
                return server, "kex messages"
        return client, how

    def _sends_role_of(self, leg: Leg, family: str, table: dict[str, set[int]]) -> bool:
        numbers = table.get(family)
        if not numbers:
            return False
        return any(number in numbers for number, _payload, _ts in self._dirs[leg].kex_messages)

    def _negotiate(self, client: Leg) -> Negotiation:
        server = other_leg(client)
        ci, si = self._dirs[client].kexinit, self._dirs[server].kexinit
        assert ci is not None and si is not None
        c_ep, s_ep = self.endpoints[client], self.endpoints[server]
        return negotiate(ci, si, client_addr=(c_ep.ip, c_ep.port), server_addr=(s_ep.ip, s_ep.port))

    def _negotiation(self) -> Negotiation | None:
        if self._dirs["a"].kexinit is None or self._dirs["b"].kexinit is None:
            return None
        if self._cache is None:
            client, how = self._roles()
            self._cache = ((client, how), self._negotiate(client))
        return self._cache[1]

    # -- the record ------------------------------------------------------------------------

    def finish(self) -> SessionRecord:
        """Ends every direction (the capture or connection is over) and returns the record."""
        ts = self.last_ts if self.last_ts is not None else 0.0
        for leg in LEGS:
            parser = self._dirs[leg].parser
            if parser.parsing and not self._not_ssh:
                for event in parser.receive_eof():
                    self._apply(leg, event, ts)
        return self.record()

    def facts(self) -> SessionFacts:
        """A frozen snapshot of what is known now, with the SSH roles decided."""
        negotiation = self._negotiation()
        if negotiation is not None:
            assert self._cache is not None
            client, how = self._cache[0]
        else:
            client, how = self._roles()
        return SessionFacts(
            session_id=self.session_id,
            source=self.source,
            capture=self.capture,
            a=self.endpoints["a"],
            b=self.endpoints["b"],
            initiator=self.initiator,
            legs=(self._dirs["a"].facts(), self._dirs["b"].facts()),
            first_ts=self.first_ts,
            last_ts=self.last_ts,
            notes=tuple(self.notes),
            timeline=tuple(self.timeline),
            close_order=tuple(self.close_order),
            timeout=self.timeout,
            abort_reason=self.abort_reason,
            client=client,
            roles_by=how,
            negotiation=negotiation,
        )

    def record(self) -> SessionRecord:
        """The record as of now, without its diagnosis; a live source may ask repeatedly."""
        return build_record(self.facts())
