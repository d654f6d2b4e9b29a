"""Earlier handshakes with the same server sharpen a refusal the wire does not name.

Theory of operation: a server's `handshake_failure` before its ServerHello is the same alert
for no shared cipher suite, group, signature scheme or version, so `tls.outcome` can only
infer the list. But a server that negotiated before has shown names it accepts: the version,
suite, group and signature scheme it chose. If the refused client offered one of those too,
that list was shared, so it was not the one refused. `ServerMemory` keeps, per server
address, what its successful handshakes chose (bounded, least recently seen forgotten
first), and when the lists left standing after that are down to one, names it, still
`certain: false` but with the earlier session as its reason. Used as a pipeline stage,
before the diagnosis (whose recipes follow the list); it learns from every record it sees,
in the order the source finishes them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from kexproxy.core.record import JSONDict, SessionRecord
from kexproxy.core.tls.outcome import openssl_line, openssl_reason

#: Servers remembered at most (one entry is a few names); the oldest is forgotten first.
MAX_SERVERS = 4096
#: Names and accepted offers kept per list and server; names read from one offer.
MAX_KEPT = 16
MAX_KEPT_NAMES = 256
#: The lists a server's silent handshake_failure may be about, and what each chose.
_LISTS = ("versions", "cipher_suites", "supported_groups", "signature_algorithms")


class ServerMemory:
    """What each server chose in its successful TLS handshakes, and the stage that uses it."""

    def __init__(self, max_servers: int = MAX_SERVERS) -> None:
        self._max = max_servers
        #: Per server: the latest successful session, the names it chose per list, and the
        #: offers it accepted per list (the chosen name is among them even where the wire
        #: hides it, as TLS 1.3 hides the signature scheme).
        self._seen: OrderedDict[tuple[str, int], _Known] = OrderedDict()

    def __call__(self, record: SessionRecord) -> SessionRecord:
        if record.protocol != "tls":
            return record
        key = (str(record.server.get("ip")), _port(record.server))
        if record.outcome == "negotiated" and isinstance(record.negotiated, Mapping):
            hello = record.client_hello if isinstance(record.client_hello, Mapping) else {}
            self._learn(key, record.id, record.negotiated, hello)
            return record
        if record.outcome != "failed" or record.diagnosis is not None:
            return record  # a stored record keeps what it said
        return self._sharpen(key, record)

    def _learn(
        self,
        key: tuple[str, int],
        session: str,
        chosen: Mapping[str, Any],
        hello: Mapping[str, Any],
    ) -> None:
        known = self._seen.pop(key, None) or _Known()
        known.session = session
        for lst in _LISTS:
            name = chosen.get(lst)
            if isinstance(name, str) and len(known.chosen[lst]) < MAX_KEPT:
                known.chosen[lst].add(name)
            offer = _names(hello, lst)
            if offer and len(known.offers[lst]) < MAX_KEPT:
                known.offers[lst].add(offer)
        self._seen[key] = known
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)

    def _sharpen(self, key: tuple[str, int], record: SessionRecord) -> SessionRecord:
        rejection = record.rejections.get("server")
        known = self._seen.get(key)
        hello = record.client_hello
        if not isinstance(rejection, dict) or rejection.get("certain") or known is None:
            return record
        if not isinstance(hello, Mapping):
            return record
        session = known.session
        shared = set()
        for lst in _LISTS:
            offer = _names(hello, lst)
            # Shared if the server chose a name this client offers, or accepted an offer
            # all of whose names this client offers too (its choice was among them).
            if known.chosen[lst] & offer or any(o <= offer for o in known.offers[lst]):
                shared.add(lst)
        standing = [lst for lst in _LISTS if lst not in shared and lst in _offered(hello)]
        if len(standing) != 1 or standing[0] == rejection.get("list"):
            return record
        lst = standing[0]
        why = (
            f"the server sent handshake_failure before choosing; in session {session} it "
            f"accepted {', '.join(sorted(shared))} this client offers too, which leaves only "
            f"the {lst.replace('_', ' ')} (the server's own list is not on the wire)"
        )
        changed = {**rejection, "list": lst, "reason": why}
        fatal = next((a for a in record.alerts if a.get("level") == "fatal"), {})
        changed["message"] = openssl_line(
            *openssl_reason(
                lst,
                tls13="TLS 1.3" in (hello.get("versions") or ()),
                alert_code=fatal.get("code"),
            )
        )
        failures = [
            {**f, "list": lst, "client_offer": hello.get(lst), "server_offer": None}
            if f.get("list") == rejection.get("list")
            else f
            for f in record.failures
        ]
        rejections: JSONDict = {**record.rejections, "server": changed}
        return replace(record, rejections=rejections, failures=failures)


class _Known:
    """What one server has accepted."""

    __slots__ = ("chosen", "offers", "session")

    def __init__(self) -> None:
        self.session = ""
        self.chosen: dict[str, set[str]] = {lst: set() for lst in _LISTS}
        self.offers: dict[str, set[frozenset[str]]] = {lst: set() for lst in _LISTS}


def _names(hello: Mapping[str, Any], lst: str) -> frozenset[str]:
    value = hello.get(lst)
    if not isinstance(value, list):
        return frozenset()
    return frozenset(n for n in value[:MAX_KEPT_NAMES] if isinstance(n, str))


def _offered(hello: Mapping[str, Any]) -> set[str]:
    return {lst for lst in _LISTS if hello.get(lst)}


def _port(endpoint: Mapping[str, Any]) -> int:
    port = endpoint.get("port")
    return port if isinstance(port, int) else 0
