"""The TLS record builder: a `TlsTracker`'s legs in, a `SessionRecord` (protocol "tls") out.

Names everything by role (the leg that sent the ClientHello is the client), decodes the
leaf certificate, computes JA3, JA3S and JA4, and asks `tls.outcome` who refused what. The
SSH fields of the record are empty. Pure: the same tracker state always gives the same record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from kexproxy.core import limits
from kexproxy.core.observer import LEGS, Endpoint, InitiatorEvidence, Leg, other_leg
from kexproxy.core.record import JSONDict, SessionRecord, no_ssh_handshake, rfc3339
from kexproxy.core.tls.certificate import describe
from kexproxy.core.tls.events import AlertReceived, ServerKeyExchangeReceived
from kexproxy.core.tls.fingerprints import ja3, ja3s, ja4
from kexproxy.core.tls.hello import ClientHello, ServerHello
from kexproxy.core.tls.legs import TlsLeg
from kexproxy.core.tls.names import (
    alert_name,
    group_name,
    openssl_alert_error,
    scheme_name,
    suite_name,
    version_name,
)
from kexproxy.core.tls.outcome import TLS13, Alert, Handshake, alert_sized, judge
from kexproxy.core.tracking import ordered_closes


class TlsTracker(Protocol):
    """What the builder reads of a `tls.tracker.TlsTracker` (named structurally, so that the
    tracker may import the builder)."""

    endpoints: dict[Leg, Endpoint]
    initiator: InitiatorEvidence
    session_id: str
    source: str
    capture: str | None
    legs: dict[Leg, TlsLeg]
    notes: list[str]
    timeline: list[tuple[float, Leg | None, str, str | None]]
    first_ts: float | None
    last_ts: float | None
    timeout: tuple[float, str] | None
    abort_reason: str | None
    close_order: list[Leg]

    def client_leg(self) -> tuple[Leg, str]: ...


def build_tls_record(t: TlsTracker) -> SessionRecord:
    """The record of what `t` has seen so far, without the diagnosis."""
    client_leg, how = t.client_leg()
    server_leg = other_leg(client_leg)
    c, s = t.legs[client_leg], t.legs[server_leg]

    def role(leg: Leg | None) -> str | None:
        if leg is None:
            return None
        return "client" if leg == client_leg else "server"

    notes: list[str] = []
    hello, retry_hello = _hellos(c)
    server_hello, retry = _server_hellos(s)
    sh_ts = next((ts for h, ts in s.server_hellos if not h.retry), None)
    alerts: list[tuple[float, Leg, AlertReceived]] = []
    for leg in LEGS:
        for alert, ts in t.legs[leg].alerts:
            alerts.append((ts, leg, alert))
    alerts.sort(key=lambda item: item[0])
    view_alerts = [
        Alert(
            sender=role(leg) or "client",
            level=a.level,
            description=a.description,
            encrypted=a.encrypted,
            at=ts,
            before_server_hello=sh_ts is None or ts < sh_ts,
        )
        for ts, leg, a in alerts
    ]
    if server_hello is not None and server_hello.version == TLS13 and c.encrypted is not None:
        record_, ts = c.encrypted
        if alert_sized(record_.length, server_hello) and not any(
            a.sender == "client" for a in view_alerts
        ):
            view_alerts.append(
                Alert(
                    sender="client",
                    level=None,
                    description=None,
                    encrypted=True,
                    at=ts,
                    before_server_hello=False,
                    sized=True,
                )
            )
            view_alerts.sort(key=lambda a: a.at)
    kx = s.key_exchange
    handshake = Handshake(
        client_hello=hello,
        server_hello=server_hello,
        retry=retry,
        retry_hello=retry_hello,
        alerts=view_alerts,
        certificate=bool(s.certificates),
        client_encrypted=c.encrypted[0].length if c.encrypted else None,
        server_encrypted=s.encrypted[0].length if s.encrypted else None,
        client_ccs=c.ccs is not None,
        server_ccs=s.ccs is not None,
        closed=c.close is not None or s.close is not None or t.abort_reason is not None,
        server_group=kx.group if kx is not None else None,
        server_scheme=kx.signature_scheme if kx is not None else None,
        server_ssl2=s.ssl2,
        client_ssl2=c.ssl2,
    )
    verdict = judge(handshake)
    if how == "port":
        notes.append("no hello was seen; TLS roles guessed from who sent first")
    for note in t.notes:
        notes.append(note.replace("{a}", role("a") or "").replace("{b}", role("b") or ""))
    if hello is not None and hello.grease():
        notes.append(
            f"the client's hello holds {hello.grease()} GREASE value(s) (RFC 8701), left out "
            "of its lists"
        )
    if retry is not None and retry_hello is not None:
        notes.append(
            "the server asked for another key share (HelloRetryRequest"
            + (
                f" for {group_name(retry.key_share_group)})"
                if retry.key_share_group is not None
                else ")"
            )
            + " and the client sent a second ClientHello"
        )
    if hello is not None and hello.sslv2:
        notes.append("the client's hello is in the SSLv2-compatible format (RFC 5246 E.2)")
    notes += verdict.notes
    certificate = None
    if s.certificates:
        certificate = describe(s.certificates[0])
        if certificate is None:
            notes.append("the server's certificate could not be decoded")
    # tshark computes no JA3 for an SSLv2-format hello, and neither does kexproxy.
    ja3_full, ja3_hash = (ja3(hello) if hello is not None else None) or (None, None)
    ja3s_full, ja3s_hash = ja3s(server_hello) if server_hello is not None else (None, None)
    client_ep, server_ep = t.endpoints[client_leg], t.endpoints[server_leg]
    return SessionRecord(
        **no_ssh_handshake(),
        protocol="tls",
        id=t.session_id,
        source=t.source,  # type: ignore[arg-type]
        capture=t.capture,
        started=rfc3339(t.first_ts),
        ended=rfc3339(t.last_ts),
        client={"ip": client_ep.ip, "port": client_ep.port},
        server={"ip": server_ep.ip, "port": server_ep.port},
        outcome=verdict.outcome,
        negotiated=(
            _negotiated(server_hello, kx, ssl2=s.ssl2) if verdict.outcome == "negotiated" else None
        ),
        failures=verdict.failures,
        rejections=verdict.rejections,
        evidence=_evidence(t, role, view_alerts),
        bytes={"c2s": c.bytes, "s2c": s.bytes},
        notes=notes[: limits.MAX_NOTES],
        roles={
            "determined_by": how,
            "tcp_initiator": (
                None
                if t.initiator == "first-packet"
                else ("client" if client_leg == "a" else "server")
            ),
        },
        timeline=[
            {"at": rfc3339(ts), "from": role(leg), "event": name, "detail": detail}
            for ts, leg, name, detail in t.timeline
        ],
        client_hello=hello.to_dict() if hello is not None else None,
        server_hello=server_hello.to_dict() if server_hello is not None else None,
        hello_retry_request=(
            {
                "cipher_suite": suite_name(retry.cipher_suite),
                "selected_group": (
                    group_name(retry.key_share_group) if retry.key_share_group is not None else None
                ),
            }
            if retry is not None
            else None
        ),
        alerts=[_alert_dict(a) for a in view_alerts],
        certificate=certificate,
        ja3=ja3_hash,
        ja3_string=ja3_full,
        ja3s=ja3s_hash,
        ja3s_string=ja3s_full,
        ja4=ja4(hello) if hello is not None else None,
    )


def _hellos(c: TlsLeg) -> tuple[ClientHello | None, ClientHello | None]:
    hellos = [h for h, _ts in c.client_hellos]
    return (hellos[0] if hellos else None, hellos[1] if len(hellos) > 1 else None)


def _server_hellos(s: TlsLeg) -> tuple[ServerHello | None, ServerHello | None]:
    real = next((h for h, _ts in s.server_hellos if not h.retry), None)
    retry = next((h for h, _ts in s.server_hellos if h.retry), None)
    return real, retry


def _negotiated(
    sh: ServerHello | None, kx: ServerKeyExchangeReceived | None, *, ssl2: bool = False
) -> JSONDict | None:
    if sh is None:
        if not ssl2:
            return None
        # SSL 2.0's SERVER-HELLO is not parsed further: the version is all that is known.
        return {
            "versions": "SSL 2.0",
            "cipher_suites": None,
            "supported_groups": None,
            "signature_algorithms": None,
            "alpn": None,
        }
    group = sh.key_share_group
    scheme = None
    if kx is not None:
        group = group if group is not None else kx.group
        scheme = kx.signature_scheme
    return {
        "versions": version_name(sh.version),
        "cipher_suites": suite_name(sh.cipher_suite),
        "supported_groups": group_name(group) if group is not None else None,
        "signature_algorithms": scheme_name(scheme) if scheme is not None else None,
        "alpn": sh.alpn,
    }


def _alert_dict(a: Alert) -> JSONDict:
    level = {1: "warning", 2: "fatal"}.get(a.level) if a.level is not None else None
    return {
        "from": a.sender,
        "level": level,
        "description": alert_name(a.description) if a.description is not None else None,
        "code": a.description,
        "encrypted": a.encrypted,
        # What OpenSSL prints on receiving it, so a user can grep the peer's log for it.
        "message": (
            openssl_alert_error(a.description)
            if a.description is not None and a.level == 2
            else None
        ),
    }


def _evidence(
    t: TlsTracker, role: Callable[[Leg | None], str | None], alerts: list[Alert]
) -> JSONDict:
    closes = ordered_closes({leg: t.legs[leg].close for leg in LEGS}, t.close_order)
    fatal = next((a for a in alerts if a.level == 2 or a.encrypted), None)
    first_close: str | None = None
    how: str | None = None
    if fatal is not None and (not closes or fatal.at <= closes[0][0]):
        first_close, how = fatal.sender, "alert"
    elif closes:
        first_close, how = role(closes[0][1]), closes[0][2]
    elif t.timeout is not None:
        how = "timeout"
    return {
        "first_close": first_close,
        "how": how,
        "disconnects": [],
        "banner_error": None,
        "closes": [{"side": role(leg), "how": kind, "at": rfc3339(ts)} for ts, leg, kind in closes],
        "timeout": t.timeout[1] if t.timeout else None,
        "aborted": t.abort_reason,
    }
