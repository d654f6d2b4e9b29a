"""Who refused which list in a TLS handshake, and how sure kexproxy is of it.

Theory of operation: TLS says less than SSH. A server that refuses sends one alert and no offer
of its own, so the list it refused is often not on the wire. The sender of the first fatal
alert refused; the alert and the moment it came (before the ServerHello, after the
certificate, after the server's choice) narrow which list. Where the alert names the list
(protocol_version, unrecognized_name, no_application_protocol, the certificate alerts) the
rejection is `certain`; otherwise the list is inferred from the ClientHello against what
servers accept by default (OpenSSL 3's lists), `certain` is false and `reason` says why. A later
stage may sharpen an inference with an earlier handshake or a probe of the same server.

The words are OpenSSL 3's: `message` is the line the refusing side prints, as
`openssl errstr` shows it (ssl/ssl_err.c; the error code is 0x0A000000 + the reason number of
include/openssl/sslerr.h).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kexproxy.core.record import JSONDict, Outcome
from kexproxy.core.tls.hello import ClientHello, ServerHello
from kexproxy.core.tls.names import (
    alert_name,
    group_name,
    is_grease,
    scheme_name,
    suite_name,
    version_name,
)

Role = str  # "client" | "server"

#: OpenSSL 3's reason codes (include/openssl/sslerr.h) and texts (ssl/ssl_err.c).
OPENSSL_REASONS: dict[str, tuple[int, str]] = {
    "cipher_suites": (193, "no shared cipher"),
    "versions": (258, "unsupported protocol"),
    "supported_groups": (101, "no suitable key share"),
    "signature_algorithms": (118, "no suitable signature algorithm"),
    "certificate": (134, "certificate verify failed"),
    "server_name": (234, "callback failed"),
    "alpn": (235, "no application protocol"),
}
#: Alerts that name the list they refuse (RFC 8446 6.2, RFC 6066 3, RFC 7301 3.2).
_NAMED_BY_ALERT = {
    70: "versions",  # protocol_version
    112: "server_name",  # unrecognized_name
    120: "alpn",  # no_application_protocol
    42: "certificate",  # bad_certificate
    43: "certificate",  # unsupported_certificate
    44: "certificate",  # certificate_revoked
    45: "certificate",  # certificate_expired
    46: "certificate",  # certificate_unknown
    48: "certificate",  # unknown_ca
    116: "certificate",  # certificate_required
}
#: Alerts a peer sends when it shares no suite, group, signature scheme or version.
_NEGOTIATION_ALERTS = frozenset({40, 71, 47, 80, 109})
#: OpenSSL 3.0's defaults, what a server accepts untouched (ssl/t1_lib.c supported_groups_default,
#: ssl/ssl_ciph.c TLS_DEFAULT_CIPHERSUITES, the DEFAULT cipher string at security level 1).
_DEFAULT_GROUPS = frozenset(
    {0x001D, 0x0017, 0x001E, 0x0019, 0x0018, 0x0100, 0x0101, 0x0102, 0x0103, 0x0104}
)
_DEFAULT_TLS13_SUITES = frozenset({0x1301, 0x1302, 0x1303})
#: TLS 1.2 suites an OpenSSL 3 server accepts untouched: ECDHE/DHE/RSA with AES or ChaCha20.
_DEFAULT_TLS12_SUITES = frozenset(
    {0xC02B, 0xC02C, 0xC02F, 0xC030, 0xCCA8, 0xCCA9, 0x009E, 0x009F, 0xCCAA}
    | {0xC009, 0xC00A, 0xC013, 0xC014, 0xC023, 0xC024, 0xC027, 0xC028, 0x0033, 0x0039}
    | {0x009C, 0x009D, 0x002F, 0x0035, 0x003C, 0x003D, 0x0067, 0x006B}
)
TLS12 = 0x0303
TLS13 = 0x0304


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One alert with its sender's role; `before_server_hello` says when it came."""

    sender: Role
    level: int | None
    description: int | None
    encrypted: bool
    at: float
    before_server_hello: bool
    #: Not an alert record but a TLS 1.3 encrypted record of exactly an alert's size.
    sized: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Handshake:
    """What the record builder knows of one TLS connection, by role."""

    client_hello: ClientHello | None
    server_hello: ServerHello | None
    retry: ServerHello | None
    retry_hello: ClientHello | None
    alerts: Sequence[Alert]
    certificate: bool
    client_encrypted: int | None  # length of the client's first encrypted record
    server_encrypted: int | None
    client_ccs: bool
    server_ccs: bool
    closed: bool
    server_group: int | None  # TLS 1.2 ServerKeyExchange's named group
    server_scheme: int | None  # TLS 1.2 ServerKeyExchange's signature scheme
    #: Each side went on in SSL 2.0 (the server's SERVER-HELLO, the client's next message).
    server_ssl2: bool = False
    client_ssl2: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Judgement:
    outcome: Outcome
    failures: list[JSONDict]
    rejections: JSONDict
    notes: list[str]


def client_versions(hello: ClientHello) -> list[int]:
    """The versions the client offers, newest first as it sent them, GREASE left out."""
    if hello.supported_versions:
        return [v for v in hello.supported_versions if not is_grease(v)]
    return [hello.legacy_version]


def offers(hello: ClientHello) -> dict[str, list[str] | None]:
    """The client's offer of each list, as the record names them."""
    return {
        "versions": [version_name(v) for v in client_versions(hello)],
        "cipher_suites": [suite_name(c) for c in hello.cipher_suites if not is_grease(c)],
        "supported_groups": [group_name(g) for g in hello.supported_groups if not is_grease(g)],
        "signature_algorithms": [scheme_name(s) for s in hello.signature_algorithms],
        "server_name": [hello.server_name] if hello.server_name is not None else [],
        "alpn": list(hello.alpn),
        "certificate": None,
    }


def openssl_line(reason: int, text: str) -> str:
    """An OpenSSL 3 error line as `openssl errstr` prints it (no thread, function or file)."""
    return f"error:{0x0A000000 + reason:08X}:SSL routines::{text}"


def judge(h: Handshake) -> Judgement:
    """The outcome, the lists that failed and who refused them."""
    notes: list[str] = []
    fatal = next((a for a in h.alerts if a.level == 2 or a.encrypted), None)
    tls13 = h.server_hello is not None and h.server_hello.version == TLS13
    if fatal is not None and fatal.sized:
        notes.append(
            f"the client's first encrypted record is {h.client_encrypted} bytes, the size of "
            "an encrypted TLS 1.3 alert (2 bytes, the content type and the AEAD tag)"
        )
    if h.client_hello is None:
        return Judgement(outcome="incomplete", failures=[], rejections=_none(), notes=notes)
    if fatal is not None:
        return _refused(h, fatal, notes)
    if h.server_ssl2 and h.client_ssl2:
        notes.append("the server answered in SSL 2.0 and the client went on in it")
        return Judgement(outcome="negotiated", failures=[], rejections=_none(), notes=notes)
    if h.server_hello is not None and _went_on(h, tls13):
        return Judgement(outcome="negotiated", failures=[], rejections=_none(), notes=notes)
    if h.closed or any(a.level is not None for a in h.alerts):
        return Judgement(outcome="aborted", failures=[], rejections=_none(), notes=notes)
    return Judgement(outcome="incomplete", failures=[], rejections=_none(), notes=notes)


def _none() -> JSONDict:
    return {"client": None, "server": None}


def alert_sized(length: int, server_hello: ServerHello | None) -> bool:
    """A TLS 1.3 record holding only an alert: 2 bytes, the inner content type, the tag."""
    tag = 8 if server_hello is not None and server_hello.cipher_suite == 0x1305 else 16
    return length == 2 + 1 + tag


def _went_on(h: Handshake, tls13: bool) -> bool:
    if tls13:
        return h.client_encrypted is not None
    return h.client_ccs and h.server_ccs


def _refused(h: Handshake, alert: Alert, notes: list[str]) -> Judgement:
    hello = h.retry_hello or h.client_hello
    assert hello is not None
    lst, certain, why = _which_list(h, hello, alert)
    if lst is None:
        notes.append(
            f"the {alert.sender} ended the handshake with an alert that names no list it refused"
        )
        return Judgement(outcome="aborted", failures=[], rejections=_none(), notes=notes)
    rejection = {
        "list": lst,
        "reason": why,
        "message": openssl_line(
            *openssl_reason(
                lst, tls13=TLS13 in client_versions(hello), alert_code=alert.description
            )
        ),
        "certain": certain,
    }
    rejections = _none()
    rejections[alert.sender] = rejection
    failure = {
        "list": lst,
        "client_offer": offers(hello)[lst],
        "server_offer": _server_offer(h, lst),
    }
    return Judgement(outcome="failed", failures=[failure], rejections=rejections, notes=notes)


def openssl_reason(lst: str, *, tls13: bool, alert_code: int | None) -> tuple[int, str]:
    """What OpenSSL 3 itself prints when it refuses `lst` (to a client that offers TLS 1.3
    or not, with this alert), which is not always the list's own name: recorded from
    s_server (captures/tls-*.json, `server_says`)."""
    if lst == "versions" and alert_code == 80:
        # A TLS 1.0/1.1 client at OpenSSL 3's default security level: no SHA-1 signature
        # is allowed, so the server finds nothing to sign with (captures/tls-tls10-vs-openssl3).
        return OPENSSL_REASONS["signature_algorithms"]
    if lst in ("supported_groups", "signature_algorithms") and not tls13:
        # TLS 1.2 chooses the suite with the group and the signature: no usable curve or
        # scheme leaves no usable suite (tls12-ecdhe-no-common-curve, tls12-sigalgs-ecdsa-vs-rsa).
        return OPENSSL_REASONS["cipher_suites"]
    return OPENSSL_REASONS[lst]


def _server_offer(h: Handshake, lst: str) -> list[str] | None:
    """What the server showed of the list: only its choice, where it made one."""
    sh = h.server_hello
    if sh is None:
        return None
    if lst == "versions":
        return [version_name(sh.version)]
    if lst == "cipher_suites":
        return [suite_name(sh.cipher_suite)]
    if lst == "supported_groups":
        group = sh.key_share_group if sh.key_share_group is not None else h.server_group
        return [group_name(group)] if group is not None else None
    if lst == "signature_algorithms" and h.server_scheme is not None:
        return [scheme_name(h.server_scheme)]
    return None


def _which_list(h: Handshake, hello: ClientHello, alert: Alert) -> tuple[str | None, bool, str]:
    """The list `alert`'s sender refused, whether the wire shows it, and why kexproxy says so."""
    code = alert.description
    who = alert.sender
    if alert.encrypted:
        if who == "client" and h.server_hello is not None:
            return (
                "certificate",
                False,
                "the client sent an encrypted alert right after the server's encrypted "
                "certificate and before its own Finished: most often it did not accept the "
                "certificate (the alert's text is encrypted)",
            )
        return None, False, ""
    name = f"the {who} sent {_alert_label(code)}"
    if code in _NAMED_BY_ALERT:
        lst = _NAMED_BY_ALERT[code]
        if lst == "versions" and who == "client" and h.server_hello is not None:
            return (
                lst,
                True,
                f"{name} after the server chose {version_name(h.server_hello.version)}",
            )
        return lst, True, f"{name}, which names the list it refused"
    if code not in _NEGOTIATION_ALERTS:
        return None, False, ""
    if who == "client" and h.server_hello is not None:
        return _client_refused_choice(h, hello, name)
    if who == "server" and alert.before_server_hello:
        return _server_refused_offer(h, hello, name)
    return None, False, ""


def _alert_label(code: int | None) -> str:
    return "an alert" if code is None else f"a {alert_name(code)} alert"


def _client_refused_choice(
    h: Handshake, hello: ClientHello, name: str
) -> tuple[str | None, bool, str]:
    """The server chose; the client refused the choice: find what it never offered."""
    sh = h.server_hello
    assert sh is not None
    if sh.version not in client_versions(hello):
        return "versions", True, f"{name}: the server chose {version_name(sh.version)}, not offered"
    if sh.cipher_suite not in hello.cipher_suites:
        return (
            "cipher_suites",
            True,
            f"{name}: the server chose {suite_name(sh.cipher_suite)}, not offered",
        )
    group = sh.key_share_group if sh.key_share_group is not None else h.server_group
    if group is not None and hello.supported_groups and group not in hello.supported_groups:
        return (
            "supported_groups",
            True,
            f"{name}: the server chose {group_name(group)}, not offered",
        )
    scheme = h.server_scheme
    if (
        scheme is not None
        and hello.signature_algorithms
        and scheme not in hello.signature_algorithms
    ):
        return (
            "signature_algorithms",
            True,
            f"{name}: the server signed with {scheme_name(scheme)}, not offered",
        )
    if h.certificate:
        return (
            "certificate",
            False,
            f"{name} after the server's certificate, and every choice the server made was one "
            "the client offered: most likely it refused the certificate",
        )
    return None, False, ""


def _server_refused_offer(h: Handshake, hello: ClientHello, name: str) -> tuple[str, bool, str]:
    """A server refused before choosing: infer the list from the offer against OpenSSL 3's
    defaults; the server's own list is not on the wire."""
    unsure = " (the server's lists are not on the wire; `kexproxy probe --tls` or `proxy --probe-failures` names the list for certain)"
    versions = client_versions(hello)
    newest = max(versions) if versions else hello.legacy_version
    if newest < TLS12:
        return (
            "versions",
            False,
            f"{name} before choosing, and the client's newest version is "
            f"{version_name(newest)}: servers at their defaults (OpenSSL 3, RFC 8996) refuse "
            f"TLS 1.1 and older{unsure}",
        )
    suites = [c for c in hello.cipher_suites if not is_grease(c)]
    accepted = _DEFAULT_TLS12_SUITES | (_DEFAULT_TLS13_SUITES if TLS13 in versions else frozenset())
    if not accepted.intersection(suites):
        return (
            "cipher_suites",
            False,
            f"{name} before choosing, and none of the client's {len(suites)} cipher suites is "
            f"one OpenSSL 3 accepts by default{unsure}",
        )
    groups = [g for g in hello.supported_groups if not is_grease(g)]
    if groups and not _DEFAULT_GROUPS.intersection(groups):
        return (
            "supported_groups",
            False,
            f"{name} before choosing, and none of the client's groups is one OpenSSL 3 "
            f"accepts by default{unsure}",
        )
    schemes = hello.signature_algorithms
    if schemes and not any(scheme_name(x).startswith("rsa_") for x in schemes):
        return (
            "signature_algorithms",
            False,
            f"{name} before choosing, and the client offers no RSA signature scheme: a server "
            f"with an RSA certificate, the most common kind, cannot sign for it{unsure}",
        )
    if TLS13 in versions and suites and not _DEFAULT_TLS13_SUITES.intersection(suites):
        return (
            "cipher_suites",
            False,
            f"{name} before choosing, and the client offers no TLS 1.3 suite OpenSSL 3 "
            f"enables by default{unsure}",
        )
    return (
        "cipher_suites",
        False,
        f"{name} before choosing: a server that shares no cipher suite, group or signature "
        "scheme with the client says only this; the cipher suites are the most common cause "
        f"(OpenSSL's 'no shared cipher'){unsure}",
    )
