"""The session tracker: joins both directions of one connection into a session record.

Theory of operation: a source (pcap reassembly or the live relay) calls `receive`,
`count`, `receive_gap`, `receive_close` and `receive_timeout` with the two TCP endpoints
named ``a`` and ``b``. Each side has its own `DirectionParser`; the tracker keeps what
its events say (banners, KEXINITs, KEX messages, NEWKEYS, DISCONNECTs, closes) per TCP
side, and only when a record is asked for does it decide the SSH roles, negotiate, decode
the KEX reply and name the outcome. Roles are decided late because the evidence for them
(markers in the KEXINITs, who sends which KEX message) arrives after the bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Literal

from kexproxy.core import limits
from kexproxy.core.codec import Cursor, DecodeError, decode_text
from kexproxy.core.diagnosis import diagnose
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
from kexproxy.core.hostkey import parse_host_key
from kexproxy.core.lists import CLIENT_MARKERS, KEX_ALGORITHMS, RFC_NAMES, SERVER_MARKERS, lists_for
from kexproxy.core.messages import disconnect_reason_name, message_name
from kexproxy.core.negotiation import (
    Negotiation,
    Role,
    guess_is_wrong,
    kex_family,
    negotiate,
    strict_kex,
)
from kexproxy.core.observer import CloseKind, Endpoint, InitiatorEvidence, Side
from kexproxy.core.parser import DirectionParser
from kexproxy.core.record import JSONDict, Outcome, SessionRecord, rfc3339

#: Messages only one role sends, by KEX family (RFC 4253 8, RFC 4419, RFC 5656, RFC 4432).
_CLIENT_ONLY = {"dh": {30}, "ecdh": {30}, "gex": {30, 32, 34}, "rsa": {31}}
_SERVER_ONLY = {"dh": {31}, "ecdh": {31}, "gex": {31, 33}, "rsa": {30, 32}}
#: KEX messages kept per side for decoding; a peer sends two or three in a real exchange.
_MAX_KEX_MESSAGES = 8
#: With no identification on either side after this much text, the stream is not SSH.
_NOT_SSH_TEXT_BYTES = 64 * 1024
#: Ports that name the server when the capture does not show who connected.
_SERVER_PORTS = frozenset({22, 2222, 2200, 830, 8022, 29418})
_EPHEMERAL_MIN = 32768


def _other(side: Side) -> Side:
    return "b" if side == "a" else "a"


@dataclass(slots=True)
class _Direction:
    """What one TCP side sent, as far as the parser understood it."""

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
    first_ts: float | None = None


class SessionTracker:
    """Implements `ConnectionObserver`: bytes of both sides in, a `SessionRecord` out."""

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
        self._endpoints: dict[Side, Endpoint] = {"a": a, "b": b}
        self._initiator = initiator
        self._id = session_id
        self._source = source
        self._capture = capture
        self._dirs: dict[Side, _Direction] = {"a": _Direction(), "b": _Direction()}
        self._notes: list[str] = []
        self._timeline: list[tuple[float, Side | None, str, str | None]] = []
        self._first_ts: float | None = None
        self._last_ts: float | None = None
        self._timeout: tuple[float, str] | None = None
        self._cache: tuple[tuple[Side, str], Negotiation | None] | None = None
        self._not_ssh = False
        self._abort_reason: str | None = None
        #: Sides in the order their FIN or RST arrived: breaks ties of equal timestamps.
        self._close_order: list[Side] = []

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
        if self._not_ssh or self._timeout is not None:
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

    def receive(self, side: Side, data: bytes, ts: float) -> None:
        direction = self._dirs[side]
        self._touch(direction, ts, len(data))
        if not direction.parser.parsing or self._not_ssh:
            return
        for event in direction.parser.receive_data(data):
            self._apply(side, event, ts)
        self._check_not_ssh()

    def count(self, side: Side, nbytes: int, ts: float) -> None:
        self._touch(self._dirs[side], ts, nbytes)

    def receive_gap(self, side: Side, nbytes: int, ts: float) -> None:
        direction = self._dirs[side]
        self._touch(direction, ts, 0)
        if direction.gap:
            return
        direction.gap = True
        offset = direction.bytes
        if direction.parser.parsing and not self._not_ssh:
            self._note(
                side,
                f"the capture is missing {nbytes} bytes sent by the {{{side}}} at stream offset "
                f"{offset}; inspection of that direction stopped",
            )
            for event in direction.parser.receive_eof():
                self._apply(side, event, ts)

    def receive_close(self, side: Side, kind: CloseKind, ts: float) -> None:
        direction = self._dirs[side]
        self._touch(direction, ts, 0)
        if direction.close is not None:
            return
        direction.close = (kind, ts)
        self._close_order.append(side)
        self._event(ts, side, kind.upper(), None)
        for end_side in (side, _other(side)) if kind == "rst" else (side,):
            parser = self._dirs[end_side].parser
            if parser.parsing:
                for event in parser.receive_eof():
                    self._apply(end_side, event, ts)

    def receive_timeout(self, ts: float, reason: str) -> None:
        """The live source gave up waiting for the handshake (a stalled or silent peer)."""
        if self._timeout is None:
            self._timeout = (ts, reason)
            self._last_ts = ts
            self._event(ts, None, "timeout", reason)

    def abort(self, reason: str, ts: float) -> None:
        """The source could not carry the connection (upstream refused, shutdown)."""
        if self._abort_reason is None:
            self._abort_reason = reason
            self._last_ts = max(ts, self._last_ts or ts)
            self._notes.append(reason)

    # -- event handling ------------------------------------------------------------------

    def _touch(self, direction: _Direction, ts: float, nbytes: int) -> None:
        direction.bytes += nbytes
        if direction.first_ts is None:
            direction.first_ts = ts
        if self._first_ts is None:
            self._first_ts = ts
        if self._last_ts is None or ts > self._last_ts:
            self._last_ts = ts

    def _note(self, side: Side | None, text: str) -> None:
        # Notes may name a side as {a} or {b}; the role is filled in when the record is built.
        if len(self._notes) < limits.MAX_NOTES:
            self._notes.append(text)

    def _event(self, ts: float, side: Side | None, name: str, detail: str | None) -> None:
        if len(self._timeline) < limits.MAX_TIMELINE:
            self._timeline.append((ts, side, name, detail))

    def _apply(
        self,
        side: Side,
        event: object,
        ts: float,
    ) -> None:
        d = self._dirs[side]
        match event:
            case PreBannerLine(text=text):
                d.pre_banner_count += 1
                d.pre_banner_bytes += len(text) + 2
                if len(d.pre_banner) < limits.KEPT_PRE_BANNER_LINES:
                    d.pre_banner.append(text[: limits.MAX_TEXT])
            case Identification():
                d.ident = event
                self._cache = None
                self._event(ts, side, "banner", event.line[: limits.MAX_TEXT])
            case Protocol1(version=version):
                d.protocol1 = version
                self._note(
                    side,
                    f"the {{{side}}} speaks SSH protocol {version}; kexproxy parses protocol 2 only",
                )
            case PlaintextLine(text=text):
                if len(d.plaintext) < limits.MAX_PLAINTEXT_LINES:
                    d.plaintext.append(text[: limits.MAX_TEXT])
                self._event(ts, side, "text", text[: limits.MAX_TEXT])
            case KexInitReceived(kexinit=kexinit):
                if d.kexinit is None:
                    d.kexinit = kexinit
                    self._cache = None
                self._event(ts, side, "SSH_MSG_KEXINIT", None)
            case KexMessage(number=number, payload=payload):
                if len(d.kex_messages) < _MAX_KEX_MESSAGES:
                    d.kex_messages.append((number, payload[: limits.KEPT_KEX_BYTES], ts))
                    self._cache = None
                self._event(ts, side, f"kex:{number}", None)
            case NewKeys():
                d.newkeys = ts
                self._event(ts, side, "SSH_MSG_NEWKEYS", None)
            case Disconnect():
                if len(d.disconnects) < limits.MAX_DISCONNECTS:
                    d.disconnects.append((event, ts))
                self._event(
                    ts,
                    side,
                    "SSH_MSG_DISCONNECT",
                    f"{disconnect_reason_name(event.reason_code)}: {event.description}",
                )
            case OtherMessage(summary=summary):
                self._event(ts, side, summary.split(":", 1)[0], summary)
            case Anomaly(text=text):
                self._note(side, f"{{{side}}}: {text}")
            case ParseFailed(reason=reason):
                d.failed = reason
                if d.ident is not None:
                    self._note(side, f"inspection of the {{{side}}}'s bytes stopped: {reason}")
            case StreamEnded():
                pass
            case _:
                raise AssertionError(f"unhandled event {event!r}")

    def _check_not_ssh(self) -> None:
        a, b = self._dirs["a"], self._dirs["b"]
        if a.ident is not None or b.ident is not None:
            return
        # One side's binary bytes say nothing of the other's: a TLS client may still meet an
        # SSH server, whose banner must not be dropped because the client's bytes came first.
        both_failed = a.failed is not None and b.failed is not None
        if both_failed or a.pre_banner_bytes + b.pre_banner_bytes > _NOT_SSH_TEXT_BYTES:
            self._not_ssh = True

    # -- roles, negotiation, decoding ------------------------------------------------------

    def _marker_client(self) -> Side | None:
        votes: set[Side] = set()
        for side in ("a", "b"):
            kexinit = self._dirs[side].kexinit
            if kexinit is None:
                continue
            names = set(kexinit.names(KEX_ALGORITHMS))
            if names.intersection(CLIENT_MARKERS):
                votes.add(side)
            if names.intersection(SERVER_MARKERS):
                votes.add(_other(side))
        return votes.pop() if len(votes) == 1 else None

    def _default_client(self) -> tuple[Side, str]:
        if self._initiator != "first-packet":
            return "a", "tcp"
        a, b = self._endpoints["a"], self._endpoints["b"]
        pairs: tuple[tuple[Side, Endpoint, Endpoint], ...] = (("a", a, b), ("b", b, a))
        for side, ep, other in pairs:
            if ep.port in _SERVER_PORTS and other.port not in _SERVER_PORTS:
                return _other(side), "port"
        if (a.port >= _EPHEMERAL_MIN) != (b.port >= _EPHEMERAL_MIN):
            return ("a" if a.port >= _EPHEMERAL_MIN else "b"), "port"
        return ("a" if a.port > b.port else "b"), "port"

    def _roles(self) -> tuple[Side, str]:
        """Which TCP side is the SSH client, and what showed it."""
        marked = self._marker_client()
        if marked is not None:
            return marked, "markers"
        client, how = self._default_client()
        server = _other(client)
        ci, si = self._dirs[client].kexinit, self._dirs[server].kexinit
        if ci is not None and si is not None:
            family = kex_family(self._negotiate(client).chosen["kex"])
            if self._sends_role_of(server, family, _CLIENT_ONLY) or self._sends_role_of(
                client, family, _SERVER_ONLY
            ):
                return server, "kex messages"
        return client, how

    def _sends_role_of(self, side: Side, family: str, table: dict[str, set[int]]) -> bool:
        numbers = table.get(family)
        if not numbers:
            return False
        return any(number in numbers for number, _payload, _ts in self._dirs[side].kex_messages)

    def _negotiate(self, client: Side) -> Negotiation:
        server = _other(client)
        ci, si = self._dirs[client].kexinit, self._dirs[server].kexinit
        assert ci is not None and si is not None
        c_ep, s_ep = self._endpoints[client], self._endpoints[server]
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
        ts = self._last_ts if self._last_ts is not None else 0.0
        for side in ("a", "b"):
            parser = self._dirs[side].parser
            if parser.parsing and not self._not_ssh:
                for event in parser.receive_eof():
                    self._apply(side, event, ts)
        return self.record()

    def record(self) -> SessionRecord:
        """The record as of now; a live source may ask repeatedly."""
        if self._dirs["a"].kexinit is not None and self._dirs["b"].kexinit is not None:
            self._negotiation()
            assert self._cache is not None
            (client, how), negotiation = self._cache
        else:
            client, how = self._roles()
            negotiation = None
        return _RecordBuilder(self, client, how, negotiation).build()


class _RecordBuilder:
    """Turns a tracker's per-side facts into a record once the roles are known."""

    def __init__(
        self, tracker: SessionTracker, client: Side, how: str, negotiation: Negotiation | None
    ) -> None:
        self.t = tracker
        self.client_side = client
        self.server_side = _other(client)
        self.how = how
        self.neg = negotiation
        self.c = tracker._dirs[client]
        self.s = tracker._dirs[self.server_side]
        self.notes: list[str] = []
        self.family = kex_family(negotiation.chosen["kex"] if negotiation else None)

    def role(self, side: Side | None) -> Role | None:
        if side is None:
            return None
        return "client" if side == self.client_side else "server"

    def build(self) -> SessionRecord:
        t = self.t
        self._role_notes()
        for note in t._notes:
            self.notes.append(
                note.replace("{a}", self.role("a") or "").replace("{b}", self.role("b") or "")
            )
        host_key, dh_gex = self._decode_kex()
        ci, si = self.c.kexinit, self.s.kexinit
        outcome = self._outcome()
        client_ep = t._endpoints[self.client_side]
        server_ep = t._endpoints[self.server_side]
        neg = self.neg
        rejections: JSONDict = {"client": None, "server": None}
        if neg is not None:
            for role, rejection in neg.rejections.items():
                rejections[role] = rejection.to_dict() if rejection else None
        hassh_alg = _hassh_string(ci, "c2s")
        hassh_srv_alg = _hassh_string(si, "s2c")
        record = SessionRecord(
            id=t._id,
            source=t._source,  # type: ignore[arg-type]
            capture=t._capture,
            started=rfc3339(t._first_ts),
            ended=rfc3339(t._last_ts),
            client={"ip": client_ep.ip, "port": client_ep.port},
            server={"ip": server_ep.ip, "port": server_ep.port},
            client_banner=self.c.ident.line if self.c.ident else None,
            server_banner=self.s.ident.line if self.s.ident else None,
            client_kexinit=ci.to_dict() if ci else None,
            server_kexinit=si.to_dict() if si else None,
            outcome=outcome,
            negotiated=neg.to_dict() if neg else None,
            failures=[f.to_dict() for f in neg.failures] if neg else [],
            rejections=rejections,
            evidence=self._evidence(),
            host_key=host_key,
            hassh=_md5(hassh_alg),
            hassh_server=_md5(hassh_srv_alg),
            hassh_algorithms=hassh_alg,
            hassh_server_algorithms=hassh_srv_alg,
            strict_kex={"client": strict_kex(ci, "client"), "server": strict_kex(si, "server")},
            bytes={"c2s": self.c.bytes, "s2c": self.s.bytes},
            notes=self.notes[: limits.MAX_NOTES],
            kex_family=self.family if neg else None,
            dh_gex=dh_gex,
            roles={
                "determined_by": self.how,
                "tcp_initiator": (
                    None
                    if t._initiator == "first-packet"
                    else ("client" if self.client_side == "a" else "server")
                ),
            },
            pre_banner_lines={
                "client": list(self.c.pre_banner),
                "server": list(self.s.pre_banner),
            },
            timeline=self._timeline(),
        )
        return replace(record, diagnosis=diagnose(record))

    def _role_notes(self) -> None:
        t = self.t
        if self.how == "port":
            self.notes.append(
                "the capture does not show who opened the connection; SSH roles guessed from "
                "the port numbers"
            )
        if t._initiator != "first-packet" and self.client_side == "b":
            self.notes.append(
                f"reverse SSH: the TCP initiator is the SSH server (shown by {self.how})"
            )
        if t._source != "pcap":
            pass  # a relay sees both sides; a silent one is in the timeline and evidence
        elif self.c.bytes == 0 and self.s.bytes > 0:
            self.notes.append(
                "only the server's side of the connection is in the data (half duplex)"
            )
        elif self.s.bytes == 0 and self.c.bytes > 0:
            self.notes.append(
                "only the client's side of the connection is in the data (half duplex)"
            )
        for role, d in (("client", self.c), ("server", self.s)):
            if d.kexinit is None:
                continue
            for rfc, raw in zip(RFC_NAMES, d.kexinit.raw_lists, strict=True):
                count = raw.count(",") + 1 if raw else 0
                if count > limits.KEPT_NAMES:
                    self.notes.append(
                        f"the {role}'s {rfc} holds {count} names; the record keeps the first "
                        f"{limits.KEPT_NAMES} (negotiation used them all)"
                    )
        if self.c.pre_banner_count:
            self.notes.append(
                f"the client sent {self.c.pre_banner_count} line(s) before any identification"
            )
        if self.s.pre_banner_count:
            self.notes.append(
                f"the server sent {self.s.pre_banner_count} line(s) before its identification"
            )

    def _outcome(self) -> Outcome:
        c, s, t = self.c, self.s, self.t
        if c.ident is None and s.ident is None:
            if c.parser.banner_started or s.parser.banner_started:
                return "incomplete"  # an identification line was cut off (a slow drip)
            return "not_ssh"
        if self.neg is not None:
            if not self.neg.ok:
                return "failed"
            if c.newkeys is not None or s.newkeys is not None:
                if c.newkeys is None or s.newkeys is None:
                    who, other = (
                        ("client", "server") if c.newkeys is not None else ("server", "client")
                    )
                    silent = s if c.newkeys is not None else c
                    if silent.close is not None and silent.failed is None and not silent.gap:
                        # Every byte of that side was read, and NEWKEYS was not among them:
                        # it gave up after the key exchange (ssh that does not accept the
                        # host key, plink in batch mode with an unknown key).
                        self.notes.append(
                            f"the {other} closed without sending SSH_MSG_NEWKEYS after the key "
                            f"exchange (the {who} sent its own): it did not go on, for example "
                            "because it did not accept the host key"
                        )
                        return "aborted"
                    self.notes.append(f"only the {who}'s SSH_MSG_NEWKEYS was seen")
                return "negotiated"
            return "aborted"
        if c.plaintext or s.plaintext or t._abort_reason is not None:
            return "aborted"
        if self._refused_before_banner():
            return "aborted"
        if c.ident is not None and s.ident is not None:
            c_major = c.ident.proto_version.split(".")[0]
            s_major = s.ident.proto_version.split(".")[0]
            if c.protocol1 is None and s.protocol1 is None and c_major != s_major:
                return "aborted"
        return "incomplete"

    def _refused_before_banner(self) -> bool:
        """The server answered an SSH client with lines and closed, never sending its own
        identification: sshd's "Exceeded MaxStartups", a text service on the SSH port."""
        c, s = self.c, self.s
        return (
            c.ident is not None
            and s.ident is None
            and bool(s.pre_banner)
            and s.close is not None
            and s.failed is None
            and not s.gap
        )

    def _evidence(self) -> JSONDict:
        t = self.t
        disconnects: list[tuple[float, Side, Disconnect]] = []
        for side in ("a", "b"):
            for dis, ts in t._dirs[side].disconnects:
                disconnects.append((ts, side, dis))
        disconnects.sort(key=lambda item: item[0])
        closes = [
            (d.close[1], side, d.close[0]) for side, d in t._dirs.items() if d.close is not None
        ]
        closes.sort(key=lambda item: (item[0], t._close_order.index(item[1])))
        first_close: str | None = None
        how: str | None = None
        # A DISCONNECT closes first only if it came no later than the first FIN or RST.
        if disconnects and (not closes or disconnects[0][0] <= closes[0][0]):
            first_close, how = self.role(disconnects[0][1]), "disconnect"
        elif closes:
            first_close, how = self.role(closes[0][1]), closes[0][2]
        elif t._timeout is not None:
            how = "timeout"
        banner_error = None
        if self._refused_before_banner():
            banner_error = self.s.pre_banner[-1]
        for d in (self.s, self.c):
            if d.plaintext:
                banner_error = d.plaintext[0]
                break
        return {
            "first_close": first_close,
            "how": how,
            "disconnects": [
                {
                    "sender": self.role(side),
                    "reason_code": dis.reason_code,
                    "reason": disconnect_reason_name(dis.reason_code),
                    "description": dis.description,
                }
                for _ts, side, dis in disconnects
            ],
            "banner_error": banner_error,
            "closes": [
                {"side": self.role(side), "how": kind, "at": rfc3339(ts)}
                for ts, side, kind in closes
            ],
            "timeout": t._timeout[1] if t._timeout else None,
            "aborted": t._abort_reason,
        }

    def _timeline(self) -> list[JSONDict]:
        out: list[JSONDict] = []
        for ts, side, raw_name, detail in self.t._timeline:
            name = raw_name
            if raw_name.startswith("kex:"):
                name = message_name(int(raw_name[4:]), self.family)
            out.append(
                {"at": rfc3339(ts), "from": self.role(side), "event": name, "detail": detail}
            )
        return out

    def _server_kex_messages(self) -> list[tuple[int, bytes]]:
        """The server's KEX messages, without a wrongly guessed first packet."""
        msgs = [(n, p) for n, p, _ts in self.s.kex_messages]
        ci, si = self.c.kexinit, self.s.kexinit
        # RFC 4432's server speaks first, so it may guess too (RFC 4253 7: either side may).
        if (
            ci is not None
            and si is not None
            and si.first_kex_packet_follows
            and msgs
            and guess_is_wrong(ci, si)
        ):
            self.notes.append(
                f"the server's guessed first KEX packet ({message_name(msgs[0][0], self.family)}) "
                "was ignored: its guess of the kex or host key algorithm was wrong"
            )
            msgs = msgs[1:]
        return msgs

    def _client_kex_messages(self) -> list[tuple[int, bytes]]:
        msgs = [(n, p) for n, p, _ts in self.c.kex_messages]
        ci, si = self.c.kexinit, self.s.kexinit
        if ci is not None and si is not None and ci.first_kex_packet_follows and msgs:
            if guess_is_wrong(ci, si):
                self.notes.append(
                    f"the client's guessed first KEX packet ({message_name(msgs[0][0], self.family)}) "
                    "was ignored: its guess of the kex or host key algorithm was wrong"
                )
                msgs = msgs[1:]
            else:
                self.notes.append("the client's guessed first KEX packet was right and was used")
        return msgs

    def _decode_kex(self) -> tuple[JSONDict | None, JSONDict | None]:
        family = self.family
        server_msgs = self._server_kex_messages()
        client_msgs = self._client_kex_messages()
        if family == "unknown" and self.neg is None:
            # Without both KEXINITs the method is unknown; the server's reply message
            # still shows its layout: 33 only exists in group exchange.
            family = "gex" if any(n == 33 for n, _p in server_msgs) else "ecdh"
        reply_number = {"dh": 31, "ecdh": 31, "gex": 33, "rsa": 30}.get(family)
        host_key: JSONDict | None = None
        dh_gex: JSONDict | None = None
        if family == "gex":
            dh_gex = self._gex(client_msgs, server_msgs)
        reply = next((p for n, p in server_msgs if n == reply_number), None)
        if reply is not None:
            host_key = self._host_key_from_reply(reply, family, reply_number or 0)
            if family == "rsa":
                dh_gex = self._transient_rsa(reply)
        if family == "rsa":
            for number, payload in server_msgs:
                if number == 32:
                    try:
                        sig = Cursor(Cursor(payload).string("signature"))
                        if host_key is not None:
                            host_key["signature"] = decode_text(sig.string("signature type"))
                    except DecodeError as exc:
                        self.notes.append(f"malformed SSH_MSG_KEXRSA_DONE: {exc}")
        return host_key, dh_gex

    def _host_key_from_reply(self, payload: bytes, family: str, number: int) -> JSONDict | None:
        """The host key (K_S, always the reply's first field) and the signature's type."""
        name = message_name(number, family)
        cursor = Cursor(payload)
        try:
            blob = cursor.string("host key")
        except DecodeError as exc:
            if self.neg is not None:
                self.notes.append(f"malformed {name}: {exc}; host key not decoded")
            return None
        key = parse_host_key(blob)
        if self.neg is None and key.key_type is None:
            return None  # the layout was a guess, and a guess that does not fit says nothing
        host_key = key.to_dict()
        if key.error:
            self.notes.append(key.error)
        if family == "rsa":
            return host_key
        try:
            cursor.string("server's public value")
            signature = Cursor(cursor.string("signature"))
            host_key["signature"] = decode_text(signature.string("signature type"))
        except DecodeError as exc:
            self.notes.append(f"malformed {name} after the host key: {exc}")
        return host_key

    def _transient_rsa(self, payload: bytes) -> JSONDict | None:
        """RFC 4432: SSH_MSG_KEXRSA_PUBKEY's second field is the transient RSA key."""
        cursor = Cursor(payload)
        try:
            cursor.string("host key")
            transient = parse_host_key(cursor.string("transient RSA key"))
        except DecodeError as exc:
            self.notes.append(f"malformed SSH_MSG_KEXRSA_PUBKEY: {exc}")
            return None
        return {"transient_rsa_bits": transient.bits}

    def _gex(
        self, client_msgs: list[tuple[int, bytes]], server_msgs: list[tuple[int, bytes]]
    ) -> JSONDict:
        out: JSONDict = {"request": None, "p_bits": None, "g": None}
        for number, payload in client_msgs:
            try:
                cursor = Cursor(payload)
                if number == 34:
                    out["request"] = {
                        "min": cursor.uint32("min"),
                        "n": cursor.uint32("n"),
                        "max": cursor.uint32("max"),
                    }
                elif number == 30:
                    out["request"] = {"min": None, "n": cursor.uint32("n"), "max": None}
            except DecodeError as exc:
                self.notes.append(f"malformed {message_name(number, 'gex')}: {exc}")
        for number, payload in server_msgs:
            if number != 31:
                continue
            try:
                cursor = Cursor(payload)
                p = cursor.mpint("p")
                g = cursor.mpint("g")
                out["p_bits"] = p.bit_length()
                out["g"] = g if g.bit_length() <= 64 else None
            except DecodeError as exc:
                self.notes.append(f"malformed SSH_MSG_KEX_DH_GEX_GROUP: {exc}")
            break
        return out


def _hassh_string(kexinit: KexInit | None, direction: Literal["c2s", "s2c"]) -> str | None:
    """HASSH's input: kex;enc;mac;comp of one side, each list exactly as sent (salesforce/hassh)."""
    if kexinit is None:
        return None
    return ";".join(kexinit.raw(n.rfc) for n in lists_for(direction) if n.kind != "host_key")


def _md5(text: str | None) -> str | None:
    if text is None:
        return None
    return hashlib.md5(text.encode("utf-8", "surrogateescape"), usedforsecurity=False).hexdigest()
