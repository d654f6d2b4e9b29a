"""The filter language of the dashboard, ``read --filter`` and ``sessions --filter``: a short
query parsed once, matched per session.

Pure (no Textual, no I/O) and outside the commands and the TUI, so that all three speak one
language; a filter over 10,000 sessions costs one parse and one cheap `matches` call per
session, against a `Subject` that the caller computes once per record.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Literal, get_args

from kexproxy.core.catalogue import GRADES
from kexproxy.core.lists import KIND, NEGOTIATED, rfc_names_of
from kexproxy.core.record import OUTCOMES, SessionRecord
from kexproxy.present import TLS_LIST_LABEL, endpoint, list_label, side_label, summary

FILTER_HELP = """\
Terms are separated by spaces and must all match; `!` before a term negates it.
  outcome:failed          negotiated, failed, aborted, incomplete, not_ssh, in_progress
                          (a prefix will do)
  list:kex                a list that had no match: kex, hostkey, cipher, mac, compression,
                          cipher_c2s, mac_s2c, ... or the RFC name (kex_algorithms, ...)
  client:10.0.0.0/8       the client: a network, an address, ADDR:PORT, :PORT, or text
  server:db1              the server, the same forms
  software:PuTTY          text in either side's banner (case-insensitive)
  csw:PuTTY  ssw:dropbear the client's / the server's banner only
  offers:hmac-md5         an algorithm either side OFFERED (not only the chosen one)
  hassh:ec7378c1          the start of the client's HASSH or the server's HASSHServer
  protocol:tls            ssh or tls
  ja3:e7d705a3            the start of the client's JA3 or the server's JA3S (TLS)
  ja4:t13d1516h2          the start of the client's JA4 (TLS)
  list:cipher_suites      TLS lists too: versions, cipher_suites (suites), groups, sigalgs,
                          sni, alpn, certificate
  software:example.com    for TLS, the name the client asked for (SNI) and its newest version
  capture:ssh.pcap        text in the capture file's name
  id:40e4f3a6             the start of the session id
  grade:weak              the grade of what was negotiated: strong, good, weak, broken
  policy:violated         sessions a --policy found in violation (policy:ok, the others)
  OpenSSH_7.4             free text: anywhere in the row, the lists, the algorithms chosen
                          and offered by either side
  "two words"             quotes keep spaces in a term (also software:"Foo 1.0")
  outcome:failed,aborted  a comma gives alternatives within one key
  outcome=failed          `=` works as `:`
Examples: outcome:failed list:kex   !outcome:negotiated client:10.0.0.0/8   csw:putty !hassh:ec73
          offers:diffie-hellman-group14-sha1 outcome:failed
"""

Key = Literal[
    "outcome",
    "list",
    "client",
    "server",
    "software",
    "csw",
    "ssw",
    "offers",
    "hassh",
    "protocol",
    "ja3",
    "ja4",
    "capture",
    "id",
    "grade",
    "policy",
    "text",
]
#: The keys a term may name (free text is the term without one).
KEYS: tuple[Key, ...] = tuple(k for k in get_args(Key) if k != "text")
_ALIASES: dict[str, Key] = {
    "sw": "software",
    "list": "list",
    "lists": "list",
    "offer": "offers",
    "offered": "offers",
}

#: Short list names a user types -> the RFC names in `record.failures`: each kind (both
#: directions), each record key (``cipher_c2s``), each RFC name, and two abbreviations.
LIST_NAMES: dict[str, frozenset[str]] = {
    **{kind: rfc_names_of(kind) for kind in KIND},
    **{n.field: frozenset({n.rfc}) for n in NEGOTIATED if n.field is not None},
    **{n.rfc: frozenset({n.rfc}) for n in NEGOTIATED},
    "hostkey": rfc_names_of("host_key"),
    "comp": rfc_names_of("compression"),
    # TLS lists (issue 12): the record's names and what a user types.
    **{name: frozenset({name}) for name in TLS_LIST_LABEL},
    "version": frozenset({"versions"}),
    "suites": frozenset({"cipher_suites"}),
    "suite": frozenset({"cipher_suites"}),
    "groups": frozenset({"supported_groups"}),
    "group": frozenset({"supported_groups"}),
    "curves": frozenset({"supported_groups"}),
    "sigalgs": frozenset({"signature_algorithms"}),
    "sigalg": frozenset({"signature_algorithms"}),
    "sni": frozenset({"server_name"}),
    "cert": frozenset({"certificate"}),
}


class FilterError(ValueError):
    """A filter that cannot be parsed; the message says what to type instead."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    port: int | None
    text: str

    @classmethod
    def of(cls, ep: dict[str, object]) -> Endpoint:
        ip = parse_ip(str(ep.get("ip", "")))
        port = ep.get("port")
        return cls(ip, port if isinstance(port, int) else None, endpoint(ep).lower())


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """`ipaddress.ip_address(text)`, or None when it is no address.

    A dotted IPv4 address goes through `inet_pton` first, five times faster: a filter first
    used over 100,000 sessions parses 200,000 addresses. glibc's `inet_pton` takes exactly
    the four plain decimal parts (no leading zeros) that `ip_address` takes; anything else
    falls back to `ip_address`.
    """
    try:
        return ipaddress.IPv4Address(socket.inet_pton(socket.AF_INET, text))
    except (OSError, ValueError):
        pass
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Subject:
    """What a filter looks at in one record, computed once per record."""

    id: str
    outcome: str
    failing: frozenset[str]
    client: Endpoint
    server: Endpoint
    banners: str
    hassh: tuple[str, ...]
    capture: str
    text: str
    #: The negotiated set's grade ("" when nothing was negotiated).
    grade: str = ""
    #: "violated" or "ok" when a policy judged the session, else "".
    policy: str = ""
    #: Each side's banner alone, lower case.
    client_banner: str = ""
    server_banner: str = ""
    #: Every algorithm either side offered, one per line, lower case (a store's summary
    #: record gives all but the host key lists, from its HASSH inputs).
    offers: str = ""
    protocol: str = "ssh"
    #: JA3 and JA3S, and JA4, lower case (TLS).
    ja3: tuple[str, ...] = ()
    ja4: str = ""

    @classmethod
    def of(cls, record: SessionRecord) -> Subject:
        failing = frozenset(record.failing_lists)
        hassh = tuple(h.lower() for h in (record.hassh, record.hassh_server) if h)
        if record.protocol == "tls":
            # TLS has no banners: who a side is, as the tables say it (SNI, newest version).
            client_banner = side_label(record, "client")
            server_banner = side_label(record, "server")
        else:
            client_banner = record.client_banner or ""
            server_banner = record.server_banner or ""
        banners = "\n".join(b for b in (client_banner, server_banner) if b)
        ja3 = tuple(h.lower() for h in (record.ja3, record.ja3s) if h)
        negotiated = [str(v) for v in (record.negotiated or {}).values() if v]
        offers = offered_text(record)
        words = [
            record.id,
            endpoint(record.client),
            endpoint(record.server),
            banners,
            record.outcome,
            summary(record),
            *failing,
            *(list_label(name) for name in failing),
            *negotiated,
            *hassh,
            *ja3,
            record.ja4 or "",
            record.capture or "",
        ]
        return cls(
            id=record.id.lower(),
            outcome=record.outcome,
            failing=failing,
            client=Endpoint.of(record.client),
            server=Endpoint.of(record.server),
            banners=banners.lower(),
            hassh=hassh,
            capture=(record.capture or "").lower(),
            # The offers are lower case already: joined after, not lowered twice.
            text="\n".join(words).lower() + "\n" + offers,
            grade=str((record.diagnosis or {}).get("grade") or ""),
            policy=_policy_state(record),
            client_banner=client_banner.lower(),
            server_banner=server_banner.lower(),
            offers=offers,
            protocol=record.protocol,
            ja3=ja3,
            ja4=(record.ja4 or "").lower(),
        )


def offered_text(record: SessionRecord) -> str:
    """Every algorithm name in either side's KEXINIT, one a line, lower case.

    An incident starts from what was offered ("who still offers hmac-md5?"), which the
    negotiated set and the failures alone do not show. Built in C-level joins: it is
    computed for each of 10,000 sessions when a filter first needs them.
    """
    names: list[object] = []
    hello = record.client_hello
    if isinstance(hello, dict):
        for field in _TLS_OFFER_FIELDS:
            offered = hello.get(field)
            if isinstance(offered, list):
                names += offered
    for kexinit, hassh in (
        (record.client_kexinit, record.hassh_algorithms),
        (record.server_kexinit, record.hassh_server_algorithms),
    ):
        if not kexinit:
            # A store's summary keeps only the HASSH inputs: the kex, cipher, MAC and
            # compression lists as "a,b;c;d;e" (all but the host key list).
            if isinstance(hassh, str):
                names += hassh.replace(";", ",").split(",")
            continue
        for field in _OFFER_FIELDS:
            offered = kexinit.get(field)
            if isinstance(offered, list):
                names += offered
    return "\n".join(map(str, names)).lower()


#: The KEXINIT name-lists, looked up once rather than per record.
_OFFER_FIELDS: tuple[str, ...] = tuple(n.rfc for n in NEGOTIATED)
#: The ClientHello's lists (a TLS record's offers).
_TLS_OFFER_FIELDS = (
    "versions",
    "cipher_suites",
    "supported_groups",
    "signature_algorithms",
    "alpn",
    "extensions",
)


def _policy_state(record: SessionRecord) -> str:
    policy = record.policy
    if not isinstance(policy, dict) or not policy.get("evaluated"):
        return ""
    return "ok" if policy.get("compliant") else "violated"


@dataclass(frozen=True, slots=True)
class AddressMatch:
    """One alternative of ``client:``/``server:``: a network, an address, a port, or text."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    port: int | None = None
    text: str | None = None

    def matches(self, ep: Endpoint) -> bool:
        if self.text is not None:
            return self.text in ep.text
        if self.port is not None and ep.port != self.port:
            return False
        if self.network is not None:
            return ep.ip is not None and ep.ip in self.network
        return True

    @classmethod
    def parse(cls, value: str) -> AddressMatch:
        if "/" in value:
            try:
                return cls(network=ipaddress.ip_network(value, strict=False))
            except ValueError:
                raise FilterError(f"{value!r} is not a network such as 10.0.0.0/8") from None
        host, port = _split_port(value)
        if host == "" and port is not None:
            return cls(port=port)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return cls(text=value.lower())
        return cls(network=ipaddress.ip_network(ip), port=port)


def _split_port(value: str) -> tuple[str, int | None]:
    """``[::1]:22``, ``10.0.0.1:22`` and ``:22`` to host and port; anything else unchanged."""
    if value.startswith("[") and "]:" in value:
        host, _, port = value[1:].partition("]:")
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:
        return value.strip("[]"), None
    return (host, int(port)) if port.isdigit() else (value, None)


@dataclass(frozen=True, slots=True)
class Term:
    """One key and its alternatives; `negate` from a leading ``!``."""

    key: Key
    values: tuple[str, ...]
    negate: bool = False
    outcomes: frozenset[str] = frozenset()
    lists: frozenset[str] = frozenset()
    addresses: tuple[AddressMatch, ...] = ()

    def matches(self, s: Subject) -> bool:
        return self._test(s) != self.negate

    def _test(self, s: Subject) -> bool:
        match self.key:
            case "outcome":
                return s.outcome in self.outcomes
            case "list":
                return not self.lists.isdisjoint(s.failing)
            case "client":
                return any(a.matches(s.client) for a in self.addresses)
            case "server":
                return any(a.matches(s.server) for a in self.addresses)
            case "software":
                return any(v in s.banners for v in self.values)
            case "csw":
                return any(v in s.client_banner for v in self.values)
            case "ssw":
                return any(v in s.server_banner for v in self.values)
            case "offers":
                return any(v in s.offers for v in self.values)
            case "hassh":
                return any(h.startswith(v) for v in self.values for h in s.hassh)
            case "protocol":
                return s.protocol in self.values
            case "ja3":
                return any(h.startswith(v) for v in self.values for h in s.ja3)
            case "ja4":
                return any(s.ja4.startswith(v) for v in self.values)
            case "capture":
                return any(v in s.capture for v in self.values)
            case "id":
                return any(s.id.startswith(v) for v in self.values)
            case "grade":
                return s.grade in self.values
            case "policy":
                return s.policy in self.values
            case "text":
                return all(v in s.text for v in self.values)


@dataclass(frozen=True, slots=True)
class Filter:
    """A parsed filter: every term must match. The empty filter matches everything."""

    text: str
    terms: tuple[Term, ...]
    #: Why the text could not be parsed: such a filter matches nothing, so that no
    #: screen or command shows rows that answer some other question.
    error: str | None = None

    def matches(self, subject: Subject) -> bool:
        return self.error is None and all(term.matches(subject) for term in self.terms)

    def __bool__(self) -> bool:
        return bool(self.terms) or self.error is not None


MATCH_ALL = Filter("", ())


def parse_filter(text: str) -> Filter:
    """Parses the filter language in `FILTER_HELP`; raises `FilterError` with a hint."""
    terms = tuple(_term(word) for word in _words(text))
    return Filter(text.strip(), terms)


def broken_filter(text: str, error: FilterError) -> Filter:
    """The filter a screen keeps while its text does not parse: it matches nothing."""
    return Filter(text.strip(), (), str(error))


def _words(text: str) -> list[str]:
    """Splits on spaces outside double quotes; the quotes themselves are dropped."""
    words: list[str] = []
    current: list[str] = []
    quoted = False
    started = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
            started = True
        elif ch.isspace() and not quoted:
            if started:
                words.append("".join(current))
            current, started = [], False
        else:
            current.append(ch)
            started = True
    if quoted:
        raise FilterError('a quote (") is not closed')
    if started:
        words.append("".join(current))
    return [w for w in words if w not in ("", "!")]


def _term(word: str) -> Term:
    negate = word.startswith("!")
    if negate:
        word = word[1:]
    name, sep, value = _split_key(word)
    key = _ALIASES.get(name.lower(), name.lower())
    if not sep or not (name.isalpha() or key in ("ja3", "ja4")):
        # Addresses (10.0.0.1:22) and algorithm names with colons are free text.
        return Term("text", (word.lower(),), negate)
    if key not in KEYS:
        raise FilterError(f"unknown key {name!r}: use one of {', '.join(KEYS)}, or free text")
    values = tuple(v for v in value.split(",") if v)
    if not values:
        raise FilterError(f"{name}: needs a value, e.g. {_EXAMPLES[key]}")
    match key:
        case "outcome":
            return Term(key, values, negate, outcomes=_outcomes(values))
        case "list":
            return Term(key, values, negate, lists=_lists(values))
        case "client" | "server":
            return Term(key, values, negate, addresses=tuple(map(AddressMatch.parse, values)))
        case "grade" | "policy" | "protocol":
            return Term(key, _choices(key, values), negate)
        case _:
            return Term(key, tuple(v.lower() for v in values), negate)


def _split_key(word: str) -> tuple[str, str, str]:
    """``key:value`` or ``key=value`` at whichever separator comes first."""
    cut = min((i for i in (word.find(":"), word.find("=")) if i >= 0), default=-1)
    if cut < 0:
        return word, "", ""
    return word[:cut], word[cut], word[cut + 1 :]


_EXAMPLES: dict[str, str] = {
    "outcome": "outcome:failed",
    "list": "list:kex",
    "client": "client:10.0.0.0/8",
    "server": "server:10.0.0.5:22",
    "software": "software:PuTTY",
    "csw": "csw:PuTTY",
    "ssw": "ssw:dropbear",
    "offers": "offers:hmac-md5",
    "hassh": "hassh:ec7378c1",
    "protocol": "protocol:tls",
    "ja3": "ja3:e7d705a3",
    "ja4": "ja4:t13d1516h2",
    "capture": "capture:ssh.pcap",
    "id": "id:40e4",
    "grade": "grade:weak",
    "policy": "policy:violated",
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "protocol": ("ssh", "tls"),
    "grade": GRADES,
    "policy": ("violated", "ok"),
}


def _choices(key: str, values: tuple[str, ...]) -> tuple[str, ...]:
    """Each value as one of the key's choices (a prefix will do)."""
    out: list[str] = []
    for value in values:
        found = [c for c in _CHOICES[key] if c.startswith(value.lower())]
        if not found:
            raise FilterError(f"{key}:{value}: use one of {', '.join(_CHOICES[key])}")
        out += found
    return tuple(out)


def _outcomes(values: tuple[str, ...]) -> frozenset[str]:
    out: set[str] = set()
    for value in values:
        found = [o for o in OUTCOMES if o.startswith(value.lower())]
        if not found:
            raise FilterError(f"outcome:{value}: use one of {', '.join(OUTCOMES)}")
        out.update(found)
    return frozenset(out)


def _lists(values: tuple[str, ...]) -> frozenset[str]:
    out: set[str] = set()
    for value in values:
        names = LIST_NAMES.get(value.lower().replace("-", "_"))
        if names is None:
            raise FilterError(
                f"list:{value}: use kex, hostkey, cipher, mac, compression, "
                "cipher_c2s, cipher_s2c, ... or an RFC list name; for TLS versions, "
                "cipher_suites, groups, sigalgs, sni, alpn, certificate"
            )
        out.update(names)
    return frozenset(out)


__all__ = [
    "FILTER_HELP",
    "MATCH_ALL",
    "Filter",
    "FilterError",
    "Subject",
    "broken_filter",
    "offered_text",
    "parse_filter",
]
