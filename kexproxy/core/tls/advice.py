"""The diagnosis of one TLS record: the negotiated set's grade, and recipes for a failure.

Theory of operation: `diagnose_tls` reads a TLS record dict (tls-spec.md) and returns its
``diagnosis`` object. A success is graded by grades.py. A failure gets recipes in the SSH advice
format (README "Reading the advice"): each alone makes the failing lists match. A server that
refuses usually sends no offer, so what the client offered is known and what the server offers
often is not: the server is told to add the strongest name the client offered, and the client
to add what the server offered when a probe knows it, else the modern names it lacks (never a
weaker one than needed). TLS has no banner, so each side's change is written once per common
software (steps.py). Pure: the only data read is package data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kexproxy.core.catalogue import GRADE_ORDER
from kexproxy.core.tls.grades import GRADED_LISTS, Graded, grade, overall
from kexproxy.core.tls.steps import (
    ANY_SERVER,
    CLIENT_SOFTWARE,
    SERVER_SOFTWARE,
    Change,
    Written,
    client_steps,
    is_tls13_suite,
    openssl_cipher_names,
    server_steps,
)

JSONDict = dict[str, Any]

#: What a client is told to add when the server's offer is unknown: TLS 1.3 and 1.2, Mozilla's
#: intermediate TLS 1.2 suites and groups (ssl-config.mozilla.org guidelines 5.8/6.0).
MODERN: Mapping[str, tuple[str, ...]] = {
    "versions": ("TLS 1.3", "TLS 1.2"),
    "cipher_suites": (
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    "supported_groups": ("x25519", "secp256r1", "secp384r1"),
}
#: The lists a recipe can change; other failures get a note.
CHANGEABLE = ("versions", "cipher_suites", "supported_groups", "certificate")
ROLES = ("client", "server")


def _names(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def graded_parts(negotiated: Mapping[str, Any] | None) -> dict[str, Graded]:
    """Each negotiated part kexproxy can grade, by list name."""
    out: dict[str, Graded] = {}
    for list_name in GRADED_LISTS:
        name = (negotiated or {}).get(list_name)
        found = grade(list_name, str(name)) if name else None
        if found is not None:
            out[list_name] = found
    return out


def post_quantum(record: Mapping[str, Any]) -> JSONDict:
    """Whether the key exchange is post-quantum, and whether the client offered one at all."""
    hello = record.get("client_hello") or {}
    offered = [
        n
        for n in _names(hello.get("supported_groups"))
        if (g := grade("supported_groups", n)) and g.post_quantum
    ]
    negotiated = (record.get("negotiated") or {}).get("supported_groups")
    found = grade("supported_groups", str(negotiated)) if negotiated else None
    return {
        "post_quantum": None if negotiated is None else bool(found and found.post_quantum),
        "group": negotiated,
        "client_offered": offered,
    }


def _strongest(names: Sequence[str], list_name: str) -> list[str]:
    """Gradeable names, strongest first, ties in the offer's order."""
    graded = [(n, grade(list_name, n)) for n in names]
    known = [(n, g) for n, g in graded if g is not None]
    known.sort(key=lambda p: GRADE_ORDER.get(p[1].grade, len(GRADE_ORDER)))
    return [n for n, _ in known]


def _pick(list_name: str, offer: Sequence[str], client_versions: Sequence[str]) -> tuple[str, ...]:
    """The one name to add (per TLS 1.2 / 1.3 family for suites) from the other side's offer."""
    best = _strongest(offer, list_name)
    if list_name != "cipher_suites":
        return tuple(best[:1])
    out: list[str] = []
    if "TLS 1.3" in client_versions:
        out += [n for n in best if is_tls13_suite(n)][:1]
    if any(v != "TLS 1.3" for v in client_versions):
        out += [n for n in best if not is_tls13_suite(n) and n in openssl_cipher_names()][:1]
    return tuple(out)


def _family_offered(suite: str, client_versions: Sequence[str]) -> bool:
    if is_tls13_suite(suite):
        return "TLS 1.3" in client_versions
    return any(v != "TLS 1.3" for v in client_versions)


def _change(adds: Mapping[str, tuple[str, ...]], client_versions: Sequence[str]) -> Change:
    suites = adds.get("cipher_suites", ())
    return Change(
        versions=adds.get("versions", ()),
        suites12=tuple(s for s in suites if not is_tls13_suite(s)),
        suites13=tuple(s for s in suites if is_tls13_suite(s)),
        groups=adds.get("supported_groups", ()),
        trust_ca="certificate" in adds and "client" in adds["certificate"],
        full_chain="certificate" in adds and "server" in adds["certificate"],
        client_tls13="TLS 1.3" in client_versions,
    )


def _adds(
    side: str, failures: Sequence[Mapping[str, Any]], client_versions: Sequence[str]
) -> dict[str, tuple[str, ...]] | None:
    """Per failing list, what `side` adds; None when it cannot know what would work."""
    out: dict[str, tuple[str, ...]] = {}
    for failure in failures:
        list_name = str(failure.get("list"))
        if list_name == "certificate":
            out["certificate"] = (side,)
            continue
        client_offer = _names(failure.get("client_offer"))
        server_offer = failure.get("server_offer")
        if side == "server":
            picked = _pick(list_name, client_offer, client_versions)
        elif isinstance(server_offer, list):
            picked = _pick(list_name, _names(server_offer), MODERN["versions"])
        else:
            lacking = [n for n in MODERN.get(list_name, ()) if n not in client_offer]
            if list_name == "cipher_suites":
                # Suites of a version the client does not offer would be dead weight.
                lacking = [n for n in lacking if _family_offered(n, client_versions)]
            picked = tuple(lacking)
        if not picked:
            return None
        out[list_name] = picked
    return out


def _weakest(adds: Mapping[str, tuple[str, ...]]) -> str:
    grades = [g.grade for lst, names in adds.items() for n in names if (g := grade(lst, n))]
    return max(grades, key=lambda g: GRADE_ORDER.get(g, len(GRADE_ORDER)), default="good")


def _warnings(adds: Mapping[str, tuple[str, ...]]) -> list[str]:
    out: list[str] = []
    for list_name, names in adds.items():
        for name in names:
            found = grade(list_name, name)
            if found is not None and found.grade in ("weak", "broken"):
                tail = (
                    "this makes the handshake work, not safe."
                    if found.grade == "weak"
                    else ("use it only to reach the peer and upgrade it.")
                )
                out.append(f"{name} is {found.grade} ({found.reason}; {found.source}): {tail}")
    if "certificate" in adds:
        out.append(
            "Never turn certificate verification off instead: anyone on the path could then pose as the server."
        )
    return out


def _recipe(
    side: str, written: Written, adds: Mapping[str, tuple[str, ...]], target_host: str
) -> JSONDict:
    grade_ = _weakest(adds)
    weakens = GRADE_ORDER.get(grade_, 9) > GRADE_ORDER["good"]
    if side == "server":
        scope = f"Server: every client of this {written.software} configuration."
        if weakens:
            scope += (
                " To keep other clients off it, serve this client from a separate instance or port."
            )
    else:
        scope = f"Client: only connections made with these settings; servers other than {target_host} are not affected."
    return {
        "rank": 0,
        "side": side,
        "software": {side: written.software},
        "grade": grade_,
        "covers": list(adds),
        "adds": [
            {
                "side": side,
                "name": n,
                "lists": [lst],
                "grade": g.grade if (g := grade(lst, n)) else "unknown",
                "post_quantum": bool(g and g.post_quantum),
            }
            for lst, names in adds.items()
            if lst != "certificate"
            for n in names
        ],
        "steps": written.steps,
        "command": written.command,
        "persist": written.persist,
        "effort": 0 if side == "client" else 1,
        "scope": scope,
        "warnings": _warnings(adds),
        "notes": written.notes,
    }


def _target(record: Mapping[str, Any]) -> str:
    server = record.get("server") or {}
    ip, port = server.get("ip"), server.get("port")
    host = str(ip) if ip else "SERVER"
    return (
        f"[{host}]:{port}" if ":" in host and port else f"{host}:{port}" if port else f"{host}:443"
    )


def plan(record: Mapping[str, Any]) -> tuple[list[JSONDict], list[str]]:
    """The recipes for a failed record, strongest first, and what no recipe can do."""
    failures = [f for f in record.get("failures") or [] if isinstance(f, Mapping)]
    hello = record.get("client_hello") or {}
    client_versions = _names(hello.get("versions")) or ["TLS 1.2"]
    target = _target(record)
    recipes: list[JSONDict] = []
    advice: list[str] = []
    other = [str(f.get("list")) for f in failures if f.get("list") not in CHANGEABLE]
    if other:
        advice.append(
            f"kexproxy writes no recipe for {', '.join(other)}: see the rejection message."
        )
    failures = [f for f in failures if f.get("list") in CHANGEABLE]
    if not failures:
        return [], advice
    for side in ROLES:
        adds = _adds(side, failures, client_versions)
        if adds is None:
            advice.append(
                f"The {side} cannot be told what to add: the server's offer is not on the wire; "
                "`kexproxy probe HOST:PORT --tls` finds it."
            )
            continue
        change = _change(adds, client_versions)
        softwares: tuple[str, ...] = SERVER_SOFTWARE if side == "server" else CLIENT_SOFTWARE
        if side == "server" and set(adds) == {"certificate"}:
            softwares = (ANY_SERVER,)
        for software in softwares:
            written = (
                server_steps(software, change)
                if side == "server"
                else client_steps(software, change, target)
            )
            if written.steps:
                recipes.append(_recipe(side, written, adds, target.rsplit(":", 1)[0]))
    recipes.sort(key=lambda r: (GRADE_ORDER.get(r["grade"], 9), not _applies(r), r["effort"]))
    for rank, recipe in enumerate(recipes, 1):
        recipe["rank"] = rank
    return recipes, advice


def _applies(recipe: JSONDict) -> bool:
    return any(s["kind"] != "note" for s in recipe["steps"])


def diagnose_tls(record: Mapping[str, Any]) -> JSONDict:
    """The TLS record's ``diagnosis`` object: grade, reasons, the graded parts, recipes, post-quantum."""
    negotiated = record.get("negotiated") if isinstance(record.get("negotiated"), Mapping) else None
    parts = graded_parts(negotiated)
    failed = bool(record.get("failures")) or record.get("outcome") == "failed"
    grade_, reasons = (None, []) if failed or not negotiated else overall(parts)
    recipes, advice = plan(record) if failed else ([], [])
    return {
        "grade": grade_,
        "reasons": reasons,
        "parts": {k: v.to_dict() for k, v in parts.items()},
        "recipes": recipes,
        "real_fix": advice,
        "post_quantum": post_quantum(record),
    }
