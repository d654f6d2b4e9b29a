"""Text for people about a TLS record: the offers beside the choices, alerts, rejections, facts.

``explain`` and the dashboard's detail screen lay a TLS handshake out the same way; each
phrase and each grade lookup is written once here so that they agree. Plain strings only
(no Rich, no Textual) and RAW: SNI, ALPN and certificate names are strangers' text, so the
display layer escapes every string it takes from here (`kexproxy.core.textsafe.printable`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kexproxy.core.record import SessionRecord
from kexproxy.core.tls.grades import SIGNALLING, grade
from kexproxy.present import list_label

#: One row per list of the ClientHello: (row label, the hello's key, the list it is graded
#: in, the record's list name a failure or rejection names it by). Key shares are groups.
OFFER_LISTS: tuple[tuple[str, str, str | None, str | None], ...] = (
    ("versions", "versions", "versions", "versions"),
    ("cipher suites", "cipher_suites", "cipher_suites", "cipher_suites"),
    ("groups", "supported_groups", "supported_groups", "supported_groups"),
    ("key shares", "key_share_groups", "supported_groups", None),
    ("signature schemes", "signature_algorithms", "signature_algorithms", "signature_algorithms"),
    ("ALPN", "alpn", None, "alpn"),
    ("SNI", "server_name", None, "server_name"),
)
#: The server's choice per row when the record's `negotiated` lacks it (a failed handshake
#: still may carry a ServerHello): the ServerHello's own key.
_SERVER_HELLO_KEY = {
    "versions": "version",
    "cipher_suites": "cipher_suite",
    "supported_groups": "key_share_group",
    "key_share_groups": "key_share_group",
    "alpn": "alpn",
}


#: How a line of `event_lines` is meant to look: each display maps it to its own style.
Tone = Literal["bad", "warn", "muted", "plain"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferRow:
    """One list: the client's offer in wire order and the server's choice, if it made one."""

    label: str
    client: tuple[str, ...]
    chosen: str | None
    #: The list kexproxy grades its names in (None: ALPN and SNI have no grades).
    graded_as: str | None
    #: Whether a failure or a rejection names this list.
    refused: bool


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def refused_lists(record: SessionRecord) -> set[str]:
    """The lists a failure or either side's rejection names."""
    found = set(record.failing_lists)
    for rejection in (record.rejections or {}).values():
        if isinstance(rejection, Mapping) and rejection.get("list"):
            found.add(str(rejection["list"]))
    return found


def offer_rows(record: SessionRecord) -> list[OfferRow]:
    """The ClientHello list by list with what the server chose from each."""
    hello = _mapping(record.client_hello)
    server = _mapping(record.server_hello)
    negotiated = _mapping(record.negotiated)
    refused = refused_lists(record)
    rows: list[OfferRow] = []
    for label, key, graded_as, list_name in OFFER_LISTS:
        if key == "server_name":
            name = hello.get("server_name")
            client: tuple[str, ...] = (str(name),) if isinstance(name, str) else ()
        else:
            client = _strings(hello.get(key))
        chosen = negotiated.get(key) if key != "key_share_groups" else None
        if chosen is None and key in _SERVER_HELLO_KEY:
            chosen = server.get(_SERVER_HELLO_KEY[key])
        rows.append(
            OfferRow(
                label=label,
                client=client,
                chosen=None if chosen is None else str(chosen),
                graded_as=graded_as,
                refused=list_name in refused if list_name else False,
            )
        )
    return rows


def name_grade(graded_as: str | None, name: str) -> str | None:
    """``strong``/``good``/``weak``/``broken`` for a name of a graded list, ``marker`` for a
    signalling suite, ``unknown`` for one kexproxy cannot grade; None for ungraded lists."""
    if graded_as is None:
        return None
    if graded_as == "cipher_suites" and name in SIGNALLING:
        return "marker"
    found = grade(graded_as, name)
    return "unknown" if found is None else found.grade


def client_line(record: SessionRecord) -> str:
    """What the client asked for: the server's name (SNI) and its versions."""
    hello = _mapping(record.client_hello)
    if not hello:
        return "sent no ClientHello"
    name = hello.get("server_name")
    sni = f"SNI {name}" if isinstance(name, str) and name else "no SNI"
    versions = ", ".join(_strings(hello.get("versions"))) or "?"
    line = f"{sni}; offers {versions}"
    legacy = hello.get("legacy_version")
    if legacy:
        line += f" (record version {legacy})"
    if hello.get("sslv2"):
        line += "; an SSLv2-compatible ClientHello"
    return line


def server_line(record: SessionRecord) -> str:
    """What the server answered: its version and suite, or that it sent no ServerHello."""
    server = _mapping(record.server_hello)
    if not server:
        return "sent no ServerHello"
    words = [str(server.get(k)) for k in ("version", "cipher_suite") if server.get(k)]
    line = "chose " + (" ".join(words) or "?")
    if server.get("alpn"):
        line += f", ALPN {server['alpn']}"
    return line


def hello_retry_line(record: SessionRecord) -> str | None:
    """The HelloRetryRequest (RFC 8446 4.1.4) in words, if the server sent one."""
    hrr = _mapping(record.hello_retry_request)
    if not hrr:
        return None
    group = hrr.get("selected_group") or "no group"
    return (
        f"HelloRetryRequest: the server asked the client to send a key share for {group}"
        f" (suite {hrr.get('cipher_suite') or '?'})"
    )


def alert_lines(record: SessionRecord) -> list[tuple[str, str | None]]:
    """Each alert in order: who sent what, and the line OpenSSL prints on receiving it."""
    out: list[tuple[str, str | None]] = []
    # A stored record is checked only at its top level: an alert may be of any shape.
    found: list[object] = list(record.alerts)
    for alert in found:
        if not isinstance(alert, Mapping):
            continue
        who = alert.get("from") or "?"
        if alert.get("encrypted"):
            line = f"{who} sent an encrypted alert (its level and description are not visible)"
        else:
            code = alert.get("code")
            line = f"{who} sent {alert.get('level') or '?'} alert {alert.get('description') or '?'}"
            line += f" ({code})" if code is not None else ""
        message = alert.get("message")
        out.append((line, str(message) if message else None))
    return out


def rejection_lines(record: SessionRecord) -> list[tuple[str, str, str]]:
    """(side and list, OpenSSL's message, how sure and why) for each side that refused."""
    out: list[tuple[str, str, str]] = []
    for role in ("client", "server"):
        rejection = (record.rejections or {}).get(role)
        if not isinstance(rejection, Mapping):
            continue
        what = f"the {role} refused the {list_label(str(rejection.get('list')))}"
        sure = "certain" if rejection.get("certain") else "inferred"
        reason = rejection.get("reason")
        out.append((what, str(rejection.get("message") or ""), f"{sure}: {reason}"))
    return out


def evidence_line(record: SessionRecord) -> str | None:
    """Who closed first and how, for a handshake that did not complete."""
    evidence = record.evidence or {}
    if record.outcome == "negotiated" or not evidence.get("first_close"):
        return None
    return f"closed first by the {evidence['first_close']} ({evidence.get('how') or '?'})"


def certificate_rows(record: SessionRecord) -> list[tuple[str, str]]:
    """The server's leaf certificate, label by label (TLS 1.3 sends it encrypted: none)."""
    cert = _mapping(record.certificate)
    if not cert:
        return []
    key = " ".join(str(cert[k]) for k in ("key_type", "bits") if cert.get(k))
    return [
        ("subject", str(cert.get("subject") or "-")),
        ("issuer", str(cert.get("issuer") or "-")),
        ("key", f"{key} bits" if cert.get("bits") else key or "-"),
        ("signed with", str(cert.get("signature_algorithm") or "-")),
        ("valid", f"{cert.get('not_before') or '?'} to {cert.get('not_after') or '?'}"),
        ("sha256", str(cert.get("sha256") or "-")),
    ]


def fingerprint_rows(record: SessionRecord) -> list[tuple[str, str]]:
    """JA3 and JA3S (with the strings they hash) and JA4."""
    rows = [
        ("JA3", record.ja3, record.ja3_string),
        ("JA3S", record.ja3s, record.ja3s_string),
        ("JA4", record.ja4, None),
    ]
    return [(label, value + (f"  {text}" if text else "")) for label, value, text in rows if value]


def part_rows(diagnosis: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Each graded part of the negotiated set: (list label, its grade, name and why)."""
    out: list[tuple[str, str, str]] = []
    for list_name, part in _mapping(diagnosis.get("parts")).items():
        if isinstance(part, Mapping):
            why = f"{part.get('name')}: {part.get('reason')} ({part.get('source')})"
            out.append((list_label(str(list_name)), str(part.get("grade")), why))
    return out


def post_quantum_line(diagnosis: Mapping[str, Any]) -> str | None:
    """Whether the key exchange was post-quantum, and what the client offered of that kind."""
    pq = _mapping(diagnosis.get("post_quantum"))
    if not pq:
        return None
    offered = ", ".join(_strings(pq.get("client_offered"))) or "none"
    verdict = pq.get("post_quantum")
    word = "yes" if verdict else "no" if verdict is False else "n/a (no group chosen)"
    return f"{word}; the client offered post-quantum groups: {offered}"


def recipe_copy(recipe: Mapping[str, Any]) -> str:
    """What `c` copies of a TLS recipe: its command, else its first step's text."""
    if recipe.get("command"):
        return str(recipe["command"])
    for step in recipe.get("steps") or []:
        if isinstance(step, Mapping) and step.get("text"):
            return str(step["text"])
    return ""


def event_lines(record: SessionRecord) -> list[tuple[str, Tone]]:
    """What happened after the hellos, in reading order: the HelloRetryRequest, each alert
    and what OpenSSL prints on receiving it, each side's rejection with how sure kexproxy
    is and why, and who closed first."""
    out: list[tuple[str, Tone]] = []
    retry = hello_retry_line(record)
    if retry:
        out.append((retry, "warn"))
    for line, message in alert_lines(record):
        out.append((f"alert: {line}", "bad" if " fatal " in line else "plain"))
        if message:
            out.append((f"  OpenSSL on receiving it prints: {message}", "muted"))
    for what, message, sure in rejection_lines(record):
        out += [(f"{what}: {message}", "bad"), (f"  {sure}", "muted")]
    closed = evidence_line(record)
    if closed:
        out.append((closed, "muted"))
    return out


def fact_sections(record: SessionRecord) -> list[tuple[str, list[tuple[str, str]]]]:
    """The certificate and the fingerprints, each a titled list of (label, value); a
    section with nothing to say is left out."""
    sections = [
        ("certificate (the server's leaf, sent in clear)", certificate_rows(record)),
        ("fingerprints", fingerprint_rows(record)),
    ]
    return [(title, rows) for title, rows in sections if rows]
