"""Which list a server refused, learnt by replaying the client's own offer with one list widened.

A server that refuses a ClientHello says only "handshake_failure" (or less), so the record can
only guess which list it was (`certain: false`). `proxy --probe-failures` asks the upstream
instead: the client's offer, exactly as the record holds it, sent again with ONE list
widened to everything kexproxy knows (or SNI / ALPN dropped). A variant the server answers
with a ServerHello (for groups a HelloRetryRequest is as good: it names a group the server
accepts) shows that list was the one refused, for certain. This module is the pure part:
the variants, what the answers mean, and the record's new rejection.

What is kept of the client's offer: every list the record names (versions, suites, groups,
key-share groups, schemes, ALPN, SNI), in the client's order; a widened list keeps the
client's names first. Extensions that carry no list (session_ticket, extended_master_secret,
...) are not replayed: a server does not refuse a handshake over their absence. A widened
list sometimes needs a companion the client never sent because it had no use for it, and
gets it only then (a list the client sent is never changed, except as said here):
versions bring kexproxy's suites for the older versions when the client offered none, and
signature schemes when it sent none (TLS 1.2 without them means SHA-1, RFC 5246 7.4.1.4.1,
which OpenSSL 3 refuses); suites bring groups (OpenSSL chooses no ECDHE suite without them)
and schemes likewise; and since up to TLS 1.2 a suite names its signature algorithm too,
widening the schemes adds each offered suite's twin with the other signature
(ECDHE_ECDSA <-> ECDHE_RSA). Each was found necessary on a real OpenSSL server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from kexproxy.core.record import JSONDict
from kexproxy.core.tls import names
from kexproxy.core.tls.outcome import OPENSSL_REASONS, openssl_line
from kexproxy.core.tls.probing import (
    ALL_GROUPS,
    ALL_SCHEMES,
    KEY_SHARE_GROUPS,
    LEGACY_SUITES,
    PROBED_VERSIONS,
    TLS13,
    TLS13_SUITES,
    Answer,
    HelloSpec,
)

#: The lists tried, in this order; each variant changes exactly one.
PROBED_LISTS = (
    "versions",
    "cipher_suites",
    "supported_groups",
    "signature_algorithms",
    "server_name",
    "alpn",
)


def _reverse(table: Mapping[int, str]) -> Mapping[str, int]:
    return MappingProxyType({name: code for code, name in table.items()})


_CODES = {
    "versions": _reverse(names.VERSIONS),
    "cipher_suites": _reverse(names.CIPHER_SUITES),
    "supported_groups": _reverse(names.GROUPS),
    "key_share_groups": _reverse(names.GROUPS),
    "signature_algorithms": _reverse(names.SIGNATURE_SCHEMES),
}


def _codes(hello: JSONDict, key: str) -> tuple[int, ...]:
    """The record's names of one list back to codes ("0xHHHH" for a code with no name)."""
    table = _CODES[key]
    out: list[int] = []
    for name in hello.get(key) or []:
        text = str(name)
        if text in table:
            out.append(table[text])
        elif text.startswith("0x"):
            try:
                out.append(int(text, 16))
            except ValueError:
                continue
    return tuple(out)


def client_offer(hello: JSONDict) -> HelloSpec | None:
    """The record's `client_hello` as a `HelloSpec`, or None when it cannot be replayed (SSLv2, no version)."""
    if hello.get("sslv2"):
        return None
    versions = _codes(hello, "versions")
    if not versions:
        return None
    server_name = hello.get("server_name")
    return HelloSpec(
        version=max(versions),
        versions=versions if max(versions) == TLS13 else (),
        cipher_suites=_codes(hello, "cipher_suites"),
        groups=_codes(hello, "supported_groups"),
        key_shares=tuple(g for g in _codes(hello, "key_share_groups") if g in KEY_SHARE_GROUPS),
        signature_algorithms=_codes(hello, "signature_algorithms"),
        server_name=server_name if isinstance(server_name, str) else None,
        alpn=tuple(str(p) for p in hello.get("alpn") or []),
        purpose="the client's own offer",
    )


def _widened(base: Sequence[int], everything: Sequence[int]) -> tuple[int, ...]:
    """The client's list, then everything else kexproxy knows (the client's order first)."""
    return (*base, *(c for c in everything if c not in base))


def variant(offer: HelloSpec, list_name: str) -> HelloSpec | None:
    """The client's offer with only `list_name` widened (or SNI / ALPN dropped); None when it would change nothing."""
    purpose = f"the client's offer, only {list_name} widened"
    match list_name:
        case "versions":
            # A server picks the version first: TLS 1.3 added for a client with no TLS 1.3
            # suite (or key share) could only fail on those, so it is added only when the
            # client's suites can use it. Older versions bring kexproxy's suites along when
            # the client offered none for them (it had no use for any).
            suites = offer.cipher_suites
            has13 = any(c in TLS13_SUITES for c in suites)
            usable = [v for v in PROBED_VERSIONS if v != TLS13 or has13]
            if not any(c in LEGACY_SUITES for c in suites):
                suites = _widened(suites, LEGACY_SUITES)
            versions = _widened(offer.versions or (offer.version,), usable)
            top = max(versions)
            schemes = offer.signature_algorithms or ALL_SCHEMES
            return HelloSpec(
                version=top,
                versions=versions if top == TLS13 else (),
                cipher_suites=suites,
                groups=offer.groups or ALL_GROUPS,
                key_shares=offer.key_shares,
                signature_algorithms=schemes,
                server_name=offer.server_name,
                alpn=offer.alpn,
                purpose=purpose,
            )
        case "cipher_suites":
            # ECDHE suites need supported_groups and signed ones signature_algorithms: a
            # client that offered no such suite may have sent neither, so they come along
            # (only when the client sent none of that list; a list it sent is never changed).
            suites = _widened(offer.cipher_suites, (*TLS13_SUITES, *LEGACY_SUITES))
            return _replace(
                offer,
                purpose,
                cipher_suites=suites,
                groups=offer.groups or ALL_GROUPS,
                signature_algorithms=offer.signature_algorithms or ALL_SCHEMES,
            )
        case "supported_groups":
            return _replace(offer, purpose, groups=_widened(offer.groups, ALL_GROUPS))
        case "signature_algorithms":
            # Up to TLS 1.2 a suite names its signature too (ECDHE_ECDSA, ECDHE_RSA): a
            # client that can verify only ECDSA offers only ECDSA suites, so widening the
            # schemes adds each offered suite's twin with the other signature.
            schemes = _widened(offer.signature_algorithms, ALL_SCHEMES)
            suites = _widened(offer.cipher_suites, _signature_twins(offer.cipher_suites))
            return _replace(offer, purpose, signature_algorithms=schemes, cipher_suites=suites)
        case "server_name":
            if offer.server_name is None:
                return None
            return _replace(offer, "the client's offer without server_name", server_name=None)
        case "alpn":
            if not offer.alpn:
                return None
            return _replace(offer, "the client's offer without ALPN", alpn=())
        case _:
            return None


#: The signature halves of TLS 1.2 suite names that are interchangeable (RFC 8422, RFC 5246).
_TWINS = (("_ECDHE_ECDSA_", "_ECDHE_RSA_"), ("_DHE_DSS_", "_DHE_RSA_"))


def _signature_twins(suites: Sequence[int]) -> tuple[int, ...]:
    """Each suite's twin with the other signature algorithm, where the registry has one."""
    codes = _CODES["cipher_suites"]
    out: list[int] = []
    for code in suites:
        name = names.suite_name(code)
        for left, right in _TWINS:
            for a, b in ((left, right), (right, left)):
                twin = codes.get(name.replace(a, b)) if a in name else None
                if twin is not None and twin not in out:
                    out.append(twin)
    return tuple(out)


def _replace(offer: HelloSpec, purpose: str, **changes: object) -> HelloSpec:
    from dataclasses import replace

    return replace(offer, purpose=purpose, **changes)  # type: ignore[arg-type]


def accepted(list_name: str, answer: Answer) -> bool:
    """Whether the server accepted the variant: a ServerHello, or for groups a HelloRetryRequest."""
    if answer.hello is not None:
        return True
    return list_name == "supported_groups" and answer.retry is not None


def rejection(found: Sequence[str], hello: JSONDict, previous: JSONDict | None) -> JSONDict | None:
    """The record's new `rejections.server` from the lists whose widening got a ServerHello; None if none did.

    One list found is certain; more than one (each alone was enough) names the first and is not.
    """
    if not found:
        return None
    lst = found[0]
    if len(found) == 1:
        reason = (
            f"a probe of the upstream with the client's own offer, only {lst} widened, "
            "got a ServerHello"
        )
    else:
        reason = (
            "probes of the upstream with the client's own offer got a ServerHello when any "
            f"one of {', '.join(found)} was widened"
        )
    kept = previous.get("message") if previous is not None and previous.get("list") == lst else None
    if isinstance(kept, str) and kept.startswith("error:"):
        # The record's own line came from the alert on the wire (OpenSSL's exact words).
        message = kept
    else:
        message = openssl_line(*_openssl_reason(lst, hello))
    return {"list": lst, "reason": reason, "message": message, "certain": len(found) == 1}


def _openssl_reason(lst: str, hello: JSONDict) -> tuple[int, str]:
    """OpenSSL's words for `lst`; in TLS 1.2 a missing group or scheme leaves no usable suite."""
    tls13 = "TLS 1.3" in (hello.get("versions") or [])
    if lst in ("supported_groups", "signature_algorithms") and not tls13:
        return OPENSSL_REASONS["cipher_suites"]
    return OPENSSL_REASONS.get(lst, OPENSSL_REASONS["cipher_suites"])
