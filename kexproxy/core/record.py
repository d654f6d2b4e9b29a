"""The session record (schema ``kexproxy/session/1``): the one shape every output speaks.

The record is JSON-shaped data in a frozen dataclass, so that the pcap reader, the proxy,
the store and the TUI pass around one immutable value and `to_dict` is the only encoder.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal, TypedDict

SCHEMA = "kexproxy/session/1"

Outcome = Literal["negotiated", "failed", "aborted", "incomplete", "not_ssh", "in_progress"]
#: `in_progress` is a live relayed session's first record, written when it is accepted so
#: that a crash still leaves a row for it; a finished session never has it.
OUTCOMES: tuple[Outcome, ...] = (
    "negotiated",
    "failed",
    "aborted",
    "incomplete",
    "not_ssh",
    "in_progress",
)

JSONDict = dict[str, Any]
Protocol = Literal["ssh", "tls"]
PROTOCOLS: tuple[Protocol, ...] = ("ssh", "tls")
#: The fields only a TLS record carries (`SessionRecord.to_dict` leaves them out of SSH ones).
TLS_FIELDS = frozenset(
    {
        "client_hello",
        "server_hello",
        "hello_retry_request",
        "alerts",
        "certificate",
        "ja3",
        "ja3_string",
        "ja3s",
        "ja3s_string",
        "ja4",
    }
)


def rfc3339(ts: float | None) -> str | None:
    """POSIX seconds as an RFC 3339 UTC string with microseconds."""
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (ValueError, OverflowError, OSError):
        # A capture's timestamp is wire data too: one past year 9999 is no time at all.
        return None


def parse_rfc3339(text: str) -> float:
    """The inverse of `rfc3339`, for filters over stored records."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


class NoSshHandshake(TypedDict):
    """The SSH handshake fields of a record that saw none (`no_ssh_handshake`)."""

    client_banner: None
    server_banner: None
    client_kexinit: None
    server_kexinit: None
    host_key: None
    hassh: None
    hassh_server: None
    hassh_algorithms: None
    hassh_server_algorithms: None
    strict_kex: JSONDict


def no_ssh_handshake() -> NoSshHandshake:
    """The SSH handshake fields, empty, for a record built without one (a TLS session, a log
    line, the relay's own record): `SessionRecord(**no_ssh_handshake(), ...)`."""
    return NoSshHandshake(
        client_banner=None,
        server_banner=None,
        client_kexinit=None,
        server_kexinit=None,
        host_key=None,
        hassh=None,
        hassh_server=None,
        hassh_algorithms=None,
        hassh_server_algorithms=None,
        strict_kex={"client": False, "server": False},
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord:
    """One connection's handshake as seen on the wire; see docs/session-record.md."""

    id: str
    source: Literal["proxy", "pcap", "probe", "log"]
    capture: str | None
    started: str | None
    ended: str | None
    client: JSONDict
    server: JSONDict
    client_banner: str | None
    server_banner: str | None
    client_kexinit: JSONDict | None
    server_kexinit: JSONDict | None
    outcome: Outcome
    negotiated: JSONDict | None
    failures: list[JSONDict]
    rejections: JSONDict
    evidence: JSONDict
    host_key: JSONDict | None
    hassh: str | None
    hassh_server: str | None
    hassh_algorithms: str | None
    hassh_server_algorithms: str | None
    strict_kex: JSONDict
    bytes: JSONDict
    notes: list[str]
    kex_family: str | None = None
    dh_gex: JSONDict | None = None
    roles: JSONDict = field(default_factory=dict)
    pre_banner_lines: JSONDict = field(default_factory=dict)
    timeline: list[JSONDict] = field(default_factory=list)
    diagnosis: JSONDict | None = None
    policy: JSONDict | None = None
    #: The server's host name as its own log names it (`source` "log"); left out of the JSON
    #: when None, so records of other sources are unchanged.
    server_host: str | None = None
    #: The server's software as its log shows it ("OpenSSH" for sshd's lines, "Dropbear" for
    #: dropbear's): a log record has no banner, and this names whose settings a fix is written
    #: in. Only on `source` "log" records; left out of the JSON when None.
    server_software: str | None = None
    #: "ssh" or "tls"; the fields below it are TLS's, and an SSH record does not carry them.
    protocol: Protocol = "ssh"
    client_hello: JSONDict | None = None
    server_hello: JSONDict | None = None
    hello_retry_request: JSONDict | None = None
    alerts: list[JSONDict] = field(default_factory=list)
    certificate: JSONDict | None = None
    ja3: str | None = None
    ja3_string: str | None = None
    ja3s: str | None = None
    ja3s_string: str | None = None
    ja4: str | None = None

    def to_dict(self) -> JSONDict:
        out: JSONDict = {"schema": SCHEMA, "protocol": self.protocol}
        tls = self.protocol == "tls"
        for f in fields(self):
            if f.name == "protocol" or (not tls and f.name in TLS_FIELDS):
                continue
            value = getattr(self, f.name)
            if f.name in _OMITTED_WHEN_NONE and value is None:
                continue
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: object) -> SessionRecord:
        """Rebuilds a record from its JSON form (the store, a JSON-lines file).

        Raises ValueError, naming the field, for data of the wrong shape: a damaged store row
        must be one clear message, never an AttributeError deep inside a table.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a record is a JSON object, not {type(data).__name__}")
        names = _field_names()
        kept = {k: v for k, v in data.items() if k in names}
        for name, kinds in _SHAPES.items():
            if name not in kept:
                if name in _REQUIRED:
                    raise ValueError(f"field {name!r} is missing")
                continue
            if not isinstance(kept[name], kinds):
                raise ValueError(f"field {name!r} has the wrong type")
        if kept.get("protocol", "ssh") not in PROTOCOLS:
            raise ValueError(f"field 'protocol' is not one of {', '.join(PROTOCOLS)}")
        if kept["outcome"] not in OUTCOMES:
            raise ValueError(f"field 'outcome' is not one of {', '.join(OUTCOMES)}")
        try:
            return cls(**kept)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc

    @property
    def failing_lists(self) -> list[str]:
        return [f["list"] for f in self.failures]


#: Fields left out of the JSON when None, so that records without them are unchanged.
_OMITTED_WHEN_NONE = frozenset({"diagnosis", "policy", "server_host", "server_software"})


@cache
def _field_names() -> frozenset[str]:
    return frozenset(f.name for f in fields(SessionRecord))


_NONE = type(None)
#: The types each field may have in a record's JSON form, for `SessionRecord.from_dict`.
_SHAPES: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "source": (str,),
    "capture": (str, _NONE),
    "started": (str, _NONE),
    "ended": (str, _NONE),
    "client": (dict,),
    "server": (dict,),
    "client_banner": (str, _NONE),
    "server_banner": (str, _NONE),
    "client_kexinit": (dict, _NONE),
    "server_kexinit": (dict, _NONE),
    "outcome": (str,),
    "negotiated": (dict, _NONE),
    "failures": (list,),
    "rejections": (dict,),
    "evidence": (dict,),
    "host_key": (dict, _NONE),
    "hassh": (str, _NONE),
    "hassh_server": (str, _NONE),
    "hassh_algorithms": (str, _NONE),
    "hassh_server_algorithms": (str, _NONE),
    "strict_kex": (dict,),
    "bytes": (dict,),
    "notes": (list,),
    "kex_family": (str, _NONE),
    "dh_gex": (dict, _NONE),
    "roles": (dict,),
    "pre_banner_lines": (dict,),
    "timeline": (list,),
    "diagnosis": (dict, _NONE),
    "policy": (dict, _NONE),
    "server_host": (str, _NONE),
    "server_software": (str, _NONE),
    "protocol": (str,),
    "client_hello": (dict, _NONE),
    "server_hello": (dict, _NONE),
    "hello_retry_request": (dict, _NONE),
    "alerts": (list,),
    "certificate": (dict, _NONE),
    "ja3": (str, _NONE),
    "ja3_string": (str, _NONE),
    "ja3s": (str, _NONE),
    "ja3s_string": (str, _NONE),
    "ja4": (str, _NONE),
}
#: The fields a record's JSON must have: those without a default.
_REQUIRED = frozenset(
    f.name for f in fields(SessionRecord) if f.default is MISSING and f.default_factory is MISSING
)
