"""The record builder: a tracker's frozen facts in, a `SessionRecord` (without diagnosis) out.

Theory of operation: the facts are per TCP leg, with the leg the tracker decided is the SSH
client; the builder names everything by role instead (client, server), decodes the KEX
messages (`kexreply`), names the outcome from what each side sent and how it closed, and
collects the notes a reader needs, in a fixed order: how the roles were found, what the
tracker noted, what the KEX messages showed, then what the outcome implies. Pure: the same
facts always give the same record.
"""

from __future__ import annotations

from kexproxy.core import limits
from kexproxy.core.diagnosis.software import Software
from kexproxy.core.events import Disconnect
from kexproxy.core.facts import SessionFacts
from kexproxy.core.hassh import hassh, hassh_algorithms
from kexproxy.core.kexreply import decode_kex
from kexproxy.core.lists import RFC_NAMES
from kexproxy.core.messages import disconnect_reason_name, message_name
from kexproxy.core.native import Failed, native_line
from kexproxy.core.negotiation import Role, kex_family, strict_kex
from kexproxy.core.observer import LEGS, Leg, other_leg
from kexproxy.core.record import JSONDict, Outcome, SessionRecord, rfc3339
from kexproxy.core.tracking import ordered_closes


def build_record(facts: SessionFacts) -> SessionRecord:
    """The record of `facts`, without the diagnosis (a later stage adds it)."""
    return _RecordBuilder(facts).build()


class _RecordBuilder:
    """Turns the per-leg facts into a record in terms of the SSH roles the tracker decided."""

    def __init__(self, facts: SessionFacts) -> None:
        self.t = facts
        self.client_leg = facts.client
        self.server_leg = other_leg(facts.client)
        self.how = facts.roles_by
        self.neg = facts.negotiation
        self.c = facts.leg(self.client_leg)
        self.s = facts.leg(self.server_leg)
        self.notes: list[str] = []
        self.family = kex_family(self.neg.chosen["kex"] if self.neg else None)

    def role(self, leg: Leg | None) -> Role | None:
        if leg is None:
            return None
        return "client" if leg == self.client_leg else "server"

    def build(self) -> SessionRecord:
        t = self.t
        self._role_notes()
        for note in t.notes:
            self.notes.append(
                note.replace("{a}", self.role("a") or "").replace("{b}", self.role("b") or "")
            )
        ci, si = self.c.kexinit, self.s.kexinit
        kex = decode_kex(
            family=self.family,
            client_kexinit=ci,
            server_kexinit=si,
            client_messages=[(n, p) for n, p, _ts in self.c.kex_messages],
            server_messages=[(n, p) for n, p, _ts in self.s.kex_messages],
        )
        self.notes += kex.notes
        outcome = self._outcome()
        client_ep = t.endpoint(self.client_leg)
        server_ep = t.endpoint(self.server_leg)
        neg = self.neg
        rejections: JSONDict = {"client": None, "server": None}
        if neg is not None:
            for role, rejection in neg.rejections.items():
                if rejection is not None:
                    rejections[role] = {**rejection.to_dict(), "native": self._native(role)}
        hassh_alg = hassh_algorithms(ci, "c2s")
        hassh_srv_alg = hassh_algorithms(si, "s2c")
        for role, text in (("client", hassh_alg), ("server", hassh_srv_alg)):
            if text is not None and len(text) > limits.KEPT_HASSH_CHARS:
                self.notes.append(
                    f"the {role}'s HASSH input is {len(text):,} characters; the record keeps "
                    f"the first {limits.KEPT_HASSH_CHARS:,} (the fingerprint is of all of it)"
                )
        return SessionRecord(
            id=t.session_id,
            source=t.source,  # type: ignore[arg-type]
            capture=t.capture,
            started=rfc3339(t.first_ts),
            ended=rfc3339(t.last_ts),
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
            host_key=kex.host_key,
            hassh=hassh(hassh_alg),
            hassh_server=hassh(hassh_srv_alg),
            hassh_algorithms=_kept(hassh_alg),
            hassh_server_algorithms=_kept(hassh_srv_alg),
            strict_kex={"client": strict_kex(ci, "client"), "server": strict_kex(si, "server")},
            bytes={"c2s": self.c.bytes, "s2c": self.s.bytes},
            notes=self.notes[: limits.MAX_NOTES],
            kex_family=self.family if neg else None,
            dh_gex=kex.dh_gex,
            roles={
                "determined_by": self.how,
                "tcp_initiator": (
                    None
                    if t.initiator == "first-packet"
                    else ("client" if self.client_leg == "a" else "server")
                ),
            },
            pre_banner_lines={
                "client": list(self.c.pre_banner),
                "server": list(self.s.pre_banner),
            },
            timeline=self._timeline(),
        )

    def _native(self, role: Role) -> str | None:
        """What `role`'s software itself prints for this failure (`kexproxy.core.native`)."""
        neg = self.neg
        assert neg is not None
        rejection = neg.rejections[role]
        assert rejection is not None
        own, peer = (self.c, self.s) if role == "client" else (self.s, self.c)
        if own.kexinit is None or peer.kexinit is None:
            return None
        peer_ep = self.t.endpoint(self.server_leg if role == "client" else self.client_leg)
        failed = Failed(
            role=role,
            failing=frozenset(f.list for f in neg.failures),
            own={rfc: own.kexinit.names(rfc) for rfc in RFC_NAMES},
            peer={rfc: peer.kexinit.names(rfc) for rfc in RFC_NAMES},
            peer_addr=(peer_ep.ip, peer_ep.port),
        )
        software = Software.from_banner(own.ident.line if own.ident else None)
        return native_line(software, failed, openssh_message=rejection.message)

    def _role_notes(self) -> None:
        t = self.t
        if self.how == "port":
            self.notes.append(
                "the capture does not show who opened the connection; SSH roles guessed from "
                "the port numbers"
            )
        if t.initiator != "first-packet" and self.client_leg == "b":
            self.notes.append(
                f"reverse SSH: the TCP initiator is the SSH server (shown by {self.how})"
            )
        if t.source != "pcap":
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
            if c.banner_started or s.banner_started:
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
        if c.plaintext or s.plaintext or t.abort_reason is not None:
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
        disconnects: list[tuple[float, Leg, Disconnect]] = []
        for leg in LEGS:
            for dis, ts in t.leg(leg).disconnects:
                disconnects.append((ts, leg, dis))
        disconnects.sort(key=lambda item: item[0])
        closes = ordered_closes({leg: t.leg(leg).close for leg in LEGS}, t.close_order)
        first_close: str | None = None
        how: str | None = None
        # A DISCONNECT closes first only if it came no later than the first FIN or RST.
        if disconnects and (not closes or disconnects[0][0] <= closes[0][0]):
            first_close, how = self.role(disconnects[0][1]), "disconnect"
        elif closes:
            first_close, how = self.role(closes[0][1]), closes[0][2]
        elif t.timeout is not None:
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
                    "sender": self.role(leg),
                    "reason_code": dis.reason_code,
                    "reason": disconnect_reason_name(dis.reason_code),
                    "description": dis.description,
                }
                for _ts, leg, dis in disconnects
            ],
            "banner_error": banner_error,
            "closes": [
                {"side": self.role(leg), "how": kind, "at": rfc3339(ts)} for ts, leg, kind in closes
            ],
            "timeout": t.timeout[1] if t.timeout else None,
            "aborted": t.abort_reason,
        }

    def _timeline(self) -> list[JSONDict]:
        out: list[JSONDict] = []
        for ts, leg, raw_name, detail in self.t.timeline:
            name = raw_name
            if raw_name.startswith("kex:"):
                name = message_name(int(raw_name[4:]), self.family)
            out.append({"at": rfc3339(ts), "from": self.role(leg), "event": name, "detail": detail})
        return out


def _kept(text: str | None) -> str | None:
    return text if text is None else text[: limits.KEPT_HASSH_CHARS]
