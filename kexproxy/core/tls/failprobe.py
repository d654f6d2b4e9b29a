"""Which list a server refused, learnt by replaying the client's own offer with one list widened.

A server that refuses a ClientHello says only "handshake_failure" (or less), so the record can
only guess which list it was (`certain: false`). `proxy --probe-failures` asks the upstream
instead: the client's offer, exactly as the record holds it, sent again with ONE list
widened to everything kexproxy knows (or SNI / ALPN dropped). A variant the server answers
with a ServerHello (for groups a HelloRetryRequest is as good: it names a group the server
accepts) shows that list was the one refused, for certain. This module is the pure part:
the variants, what the answers mean, and the record's new rejection.

What is kept of the client's offer: every list the record names (versions, suites, groups,
key-share groups, schemes, ALPN, SNI), in the client's order. Extensions that carry no list
(session_ticket, extended_master_secret, ...) are not replayed: a server does not refuse a
handshake over their absence. One exception, said in the variant's docstring: widening the
versions of a pre-TLS-1.2 client adds kexproxy's signature schemes too, because TLS 1.2
without that extension means SHA-1 (RFC 5246 7.4.1.4.1), which OpenSSL 3 refuses.
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
    TLS12,
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
            # Only versions the client's own suites can negotiate: a server picks the version
            # first, and TLS 1.3 chosen with no TLS 1.3 suite offered fails on the suites.
            suites = set(offer.cipher_suites)
            usable = [
                v
                for v in PROBED_VERSIONS
                if suites & set(TLS13_SUITES if v == TLS13 else LEGACY_SUITES)
            ]
            versions = _widened(offer.versions or (offer.version,), usable)
            top = max(versions)
            schemes = offer.signature_algorithms
            if offer.version < TLS12 and not schemes:
                # Without signature_algorithms TLS 1.2 means SHA-1 (RFC 5246 7.4.1.4.1), which
                # OpenSSL 3 refuses: the versions would look refused when they are not.
                schemes = ALL_SCHEMES
            return HelloSpec(
                version=top,
                versions=versions if top == TLS13 else (),
                cipher_suites=offer.cipher_suites,
                groups=offer.groups,
                key_shares=offer.key_shares,
                signature_algorithms=schemes,
                server_name=offer.server_name,
                alpn=offer.alpn,
                purpose=purpose,
            )
        case "cipher_suites":
            suites = _widened(offer.cipher_suites, (*TLS13_SUITES, *LEGACY_SUITES))
            return _replace(offer, purpose, cipher_suites=suites)
        case "supported_groups":
            return _replace(offer, purpose, groups=_widened(offer.groups, ALL_GROUPS))
        case "signature_algorithms":
            schemes = _widened(offer.signature_algorithms, ALL_SCHEMES)
            return _replace(offer, purpose, signature_algorithms=schemes)
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
