"""Text for people: endpoints, software, one-line summaries and verdict lines of a record.

The console tables, the proxy's per-session lines, ``explain`` and the TUI all say the same
things about a session; writing each phrase once here keeps them in agreement. Plain
strings only (no Rich, no Textual), so that every outer layer may use it; the labels of
the name-lists come from the core's registry (`kexproxy.core.lists`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kexproxy.core.implementations import identify
from kexproxy.core.lists import BY_RFC, DIRECTIONAL_PAIRS, NEGOTIATED
from kexproxy.core.record import SessionRecord

#: Short label of each negotiated list for tables and counters ("cipher c2s").
LIST_LABEL: dict[str, str] = {n.rfc: n.label for n in NEGOTIATED}
#: Short label of each kind of list, both directions as one ("cipher"): the lists that
#: have no direction keep their own label ("kex" rather than "key exchange").
KIND_LABEL: dict[str, str] = {
    **{n.kind: n.label for n in NEGOTIATED if n.kind is not None and n.direction == "both"},
    **{kind.kind: kind.label for _c2s, _s2c, kind in DIRECTIONAL_PAIRS},
}


def plural(count: int, word: str) -> str:
    """`count` and `word`, with an s when the count is not one ("1 session", "2 sessions")."""
    return f"{count} {word}{'s' * (count != 1)}"


def address(host: object, port: object) -> str:
    """``host:port``, with an IPv6 host in brackets (``[::1]:22``) so the port stays readable."""
    text = str(host)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


def endpoint(ep: Mapping[str, object]) -> str:
    """A record's ``client`` or ``server`` object as an address (``?`` for a missing IP or
    port: a record from a server's log may not know the server's)."""
    ip, port = ep.get("ip"), ep.get("port")
    return address("?" if ip is None else ip, "?" if port is None else port)


def software(banner: str | None) -> str:
    """The software part of an identification line: ``OpenSSH_9.2p1`` of ``SSH-2.0-OpenSSH_9.2p1``."""
    if not banner:
        return "-"
    parts = banner.split("-", 2)
    return parts[2] if len(parts) == 3 else banner


def software_name(banner: str | None) -> str:
    """The software token alone (``OpenSSH_9.2p1``), without the banner's comments."""
    return software(banner).split(" ", 1)[0]


def software_short(banner: str | None) -> str:
    """``OpenSSH 9.2``, ``PuTTY 0.78``, ``dropbear 2022.83``: who a side is, in a few cells.

    The implementation's own name and release from the catalogue of implementations; a banner
    it does not know is shown as `software` shows it (comments and all: they may be all it
    says), and a missing banner is ``-``.
    """
    if not banner:
        return "-"
    peer = identify(banner)
    return peer.label if peer.implementation is not None else software(banner)


def native_words(record: SessionRecord, role: str) -> tuple[str, str] | None:
    """(software name, its own line) for a side whose software words the failure unlike OpenSSH.

    Shown beside OpenSSH's line so a user can grep their own logs; None for an OpenSSH side
    (its line is the message) or when the software's words are unknown. Both parts are raw.
    """
    rejection = record.rejections.get(role)
    if not isinstance(rejection, dict):
        return None
    native = rejection.get("native")
    if not isinstance(native, str) or native == rejection.get("message"):
        return None
    banner = record.client_banner if role == "client" else record.server_banner
    return software_name(banner), native


#: Labels of the TLS lists (the record's list names are the TLS registries' own words).
TLS_LIST_LABEL: dict[str, str] = {
    "versions": "version",
    "cipher_suites": "cipher suite",
    "supported_groups": "group",
    "signature_algorithms": "signature scheme",
    "server_name": "SNI",
    "alpn": "ALPN",
    "certificate": "certificate",
}


def list_label(rfc: str) -> str:
    """The short label of an RFC list name (``cipher c2s``) or a TLS list (``cipher suite``);
    an unknown name as it is."""
    return LIST_LABEL.get(rfc) or TLS_LIST_LABEL.get(rfc, rfc)


def kind_label(rfc: str) -> str:
    """The label of an RFC list's kind (``cipher`` for either cipher list), for totals that
    count both directions once; an unknown name as it is."""
    entry = BY_RFC.get(rfc)
    if entry is None or entry.kind is None:
        return TLS_LIST_LABEL.get(rfc, rfc)
    return KIND_LABEL[entry.kind]


def side_label(record: SessionRecord, role: str) -> str:
    """Who a side is, in a few cells: the SSH software from its banner; for TLS, which
    carries no software name, the client's newest version offered and the server's name
    as the client asked for it (SNI)."""
    if record.protocol != "tls":
        return software_name(record.client_banner if role == "client" else record.server_banner)
    hello = record.client_hello if isinstance(record.client_hello, Mapping) else {}
    if role == "client":
        versions = [v for v in hello.get("versions") or [] if isinstance(v, str)]
        return versions[0] if versions else "TLS"
    name = hello.get("server_name")
    return str(name) if isinstance(name, str) and name else "TLS server"


def tls_summary(record: SessionRecord) -> str:
    """The TLS line of `summary`: the refused list and who refused it, or what was chosen."""
    if record.outcome == "failed":
        parts = []
        for role in ("client", "server"):
            rejection = record.rejections.get(role)
            if isinstance(rejection, Mapping):
                sure = "" if rejection.get("certain") else ", inferred"
                parts.append(f"{list_label(str(rejection.get('list')))} ({role}{sure})")
        return "refused: " + ", ".join(parts or [list_label(n) for n in record.failing_lists])
    neg = record.negotiated
    if isinstance(neg, Mapping) and neg.get("cipher_suites"):
        words = [neg.get("versions"), neg.get("cipher_suites"), neg.get("supported_groups")]
        return " ".join(str(w) for w in words if w)
    for alert in record.alerts:
        if isinstance(alert, Mapping) and alert.get("level") == "fatal":
            return f"{alert.get('from')} sent {alert.get('description')}"
    for key in ("aborted", "timeout"):
        if record.evidence.get(key):
            return str(record.evidence[key])
    return ""


def failing_kinds(record: SessionRecord) -> str:
    """The failing lists said once per kind (``cipher, MAC``): a cipher that fails in one
    direction fails in the other too, and a table row has no room to say it twice."""
    return ", ".join(dict.fromkeys(kind_label(name) for name in record.failing_lists))


def summary(record: SessionRecord) -> str:
    """One line on what happened: the failing lists, what an ending means where the record
    shows it (`ending`), or the chosen kex and cipher."""
    if record.protocol == "tls":
        return tls_summary(record)
    if record.outcome == "failed":
        return "no match: " + ", ".join(list_label(name) for name in record.failing_lists)
    meaning = ending(record)
    if meaning is not None:
        return meaning
    neg = record.negotiated
    if neg and neg.get("kex"):
        return f"{neg['kex']} / {neg.get('cipher_c2s')}"
    if record.evidence.get("banner_error"):
        return f"refused: {record.evidence['banner_error']}"
    for key in ("aborted", "timeout"):
        if record.evidence.get(key):
            return str(record.evidence[key])
    return ""


HOST_KEY_NOT_ACCEPTED = "client closed after the server's host key: host key not accepted"
UPSTREAM_NOT_SSH_HTTP = "the upstream is not SSH (it answered HTTP)"
NO_CLIENT_KEXINIT = "no client KEXINIT: the client gave up before sending its offer"

#: How a web server's answer starts or its page reads; a line with one of these, sent
#: where the server's identification belonged, means the upstream speaks HTTP.
_HTTP_STATUS_PREFIX = "HTTP/"
_HTML_MARKS = ("<html", "</html", "<!doctype html")


def ending(record: SessionRecord) -> str | None:
    """What an ending means, when the record shows it plainly; None otherwise.

    A bare outcome ("aborted", "incomplete") or the last line a web server sent
    ("refused: </html>") leaves the reader to guess; these are the endings whose cause the
    record itself proves, said in words an operator can act on.
    """
    if _closed_after_host_key(record):
        return HOST_KEY_NOT_ACCEPTED
    if _server_answered_http(record):
        return UPSTREAM_NOT_SSH_HTTP
    if (
        record.outcome == "incomplete"
        and record.server_kexinit is not None
        and record.client_kexinit is None
    ):
        return NO_CLIENT_KEXINIT
    return None


def _sent(record: SessionRecord, side: str, event: str) -> bool:
    """Whether the timeline shows `side` sending `event` (an SSH message name)."""
    return any(
        isinstance(entry, Mapping) and entry.get("from") == side and entry.get("event") == event
        for entry in record.timeline
    )


def _closed_after_host_key(record: SessionRecord) -> bool:
    """Every list agreed, the server sent its key exchange reply (its host key) and NEWKEYS,
    and the client closed without its own NEWKEYS: ssh or plink refusing the host key.

    The record builder calls that ending "aborted" only when every byte of the client was
    read, so a capture gap is not taken for a refusal.
    """
    negotiated = record.negotiated
    return (
        record.outcome == "aborted"
        and not record.failures
        and isinstance(negotiated, Mapping)
        and bool(negotiated.get("kex"))
        and record.evidence.get("first_close") == "client"
        and (record.host_key is not None or _sent(record, "server", "SSH_MSG_NEWKEYS"))
        and not _sent(record, "client", "SSH_MSG_NEWKEYS")
    )


def _server_answered_http(record: SessionRecord) -> bool:
    """The server sent no identification but a line of an HTTP answer (status line or
    page); the banner error alone counts too, as store summaries keep only it."""
    if record.server_banner is not None:
        return False
    lines = record.pre_banner_lines.get("server")
    texts = [line for line in lines if isinstance(line, str)] if isinstance(lines, list) else []
    error = record.evidence.get("banner_error")
    if isinstance(error, str):
        texts.append(error)
    return any(_looks_like_http(text) for text in texts)


def _looks_like_http(line: str) -> bool:
    text = line.strip()
    lowered = text.lower()
    return text.startswith(_HTTP_STATUS_PREFIX) or any(mark in lowered for mark in _HTML_MARKS)


def verdict_line(record: SessionRecord) -> str:
    """One line for the sessions table: the grade and its weakest part, or the top recipe."""
    return _verdict(record, short=False)


def verdict_short(record: SessionRecord) -> str:
    """`verdict_line` in a column headed "fix": ``client: add aes128-ctr``, without the word
    "fix" and the recipe's grade (the detail screen has both), so that the side and the
    names fit a narrow terminal."""
    return _verdict(record, short=True)


def _verdict(record: SessionRecord, *, short: bool) -> str:
    diagnosis = record.diagnosis or {}
    words: list[str] = []
    recipes = [r for r in diagnosis.get("recipes") or [] if isinstance(r, Mapping)]
    if record.outcome == "failed" or recipes:
        top = recipes[0] if recipes else None  # the strongest, as `explain` ranks them
        if top is None:
            words.append("no fix: upgrade a side" if record.failures else "")
        elif short:
            words.append(recipe_short(top))
        else:
            words.append(f"fix {recipe_short(top)} ({top.get('grade')})")
    elif diagnosis.get("grade"):
        text = str(diagnosis["grade"])
        weakest = diagnosis.get("weakest") or _tls_weakest(diagnosis)
        if weakest:
            first = weakest[0]
            text += f": {first.get('name') or first.get('what')}"
            if len(weakest) > 1:
                text += f" (+{len(weakest) - 1} more)"
        words.append(text)
    policy = record.policy
    if policy and policy.get("evaluated"):
        count = len(policy.get("violations", []))
        words.append(
            "policy ok" if count == 0 else f"policy: {count} violation{'s' * (count != 1)}"
        )
    return "; ".join(w for w in words if w)


def _tls_weakest(diagnosis: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A TLS diagnosis's parts of its overall grade, worst first (SSH's `weakest`)."""
    parts = diagnosis.get("parts")
    if not isinstance(parts, Mapping) or diagnosis.get("grade") in (None, "good", "strong"):
        return []
    grade = diagnosis.get("grade")
    return [p for p in parts.values() if isinstance(p, Mapping) and p.get("grade") == grade]


#: How a recipe's side is said in a heading.
_WHO = {"client": "Client", "server": "Server", "both": "Both sides"}
#: Where each kind of recipe step's text goes, as explain and the dashboard introduce it.
STEP_LABEL = {
    "ssh_option": "ssh option",
    "ssh_config": "~/.ssh/config",
    "sshd_config": "sshd_config line",
    "dbclient_option": "dbclient option",
    "dropbear_build": "localoptions.h (Dropbear's build)",
    "putty_setting": "PuTTY saved-session line",
    "library_setting": "in the program's code",
    "network_device": "on the device",
    "host_key": "host key, then its sshd_config line",
    "upgrade": "upgrade",
    "note": "by hand",
    "openssl_conf": "OpenSSL configuration file (OPENSSL_CONF)",
    "nginx_conf": "nginx server block",
    "apache_conf": "Apache VirtualHost lines",
    "s_client_option": "openssl s_client options",
    "curl_option": "curl options",
    "python_ssl": "in the program's Python ssl.SSLContext code",
    "java_security": "java.security override file (-Djava.security.properties=)",
}


def _steps(recipe: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The recipe's steps that have the shape of steps (a stored record is a stranger's)."""
    return [s for s in recipe.get("steps") or [] if isinstance(s, Mapping)]


def _adds(recipe: Mapping[str, Any]) -> list[str]:
    adds = [a for a in recipe.get("adds") or [] if isinstance(a, Mapping)]
    return list(dict.fromkeys(str(a.get("name")) for a in adds))


def recipe_heading(recipe: Mapping[str, Any]) -> str:
    """``Client (OpenSSH 9.2): add aes128-ctr`` -- who changes, their software, and what."""
    side = str(recipe.get("side"))
    software = recipe.get("software")
    software = software if isinstance(software, Mapping) else {}
    names = ", ".join(f"{role} {label}" for role, label in software.items())
    if side in ("client", "server"):
        names = str(software.get(side, "unknown software"))
    return f"{_WHO.get(side, side)} ({names}): {_action(recipe)}"


def _action(recipe: Mapping[str, Any]) -> str:
    adds = _adds(recipe)
    steps = _steps(recipe)
    lists = {
        str(name)
        for add in recipe.get("adds") or []
        if isinstance(add, Mapping)
        for name in add.get("lists") or []
    }
    if len(adds) > 1 and len(lists) == 1 and lists <= TLS_LIST_LABEL.keys():
        # TLS names are long (TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384): a cell says how many.
        return f"add {len(adds)} {TLS_LIST_LABEL[lists.pop()]}s"
    if adds:
        return "add " + ", ".join(adds)
    if steps and steps[0].get("kind") == "upgrade":
        return "upgrade"
    return "change"


def recipe_action(recipe: Mapping[str, Any]) -> str:
    """The recipe as one thing to paste: the client's command when it has one, then every
    step the command does not carry (a two-sided recipe's server lines among them)."""
    command = recipe.get("command")
    lines = [str(command)] if command else []
    for step in _steps(recipe):
        if command and step.get("kind") in ("ssh_option", "dbclient_option"):
            continue
        lines.append(str(step.get("text")))
    return "\n".join(lines)


def recipe_short(recipe: Mapping[str, Any]) -> str:
    """The recipe in a table cell: who changes and what it adds (the text is in explain)."""
    side = str(recipe.get("side"))
    steps = _steps(recipe)
    if steps and steps[0].get("kind") == "upgrade" and not _adds(recipe):
        words = str(steps[0].get("text")).split(":", 1)[0]
        return f"{side}: {words[:1].lower()}{words[1:]}"
    return f"{side}: {_action(recipe)}"
