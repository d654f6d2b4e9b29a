"""The registry of the ten SSH name-lists and of the marker names: every other table derives from it.

RFC 4253 section 7.1 defines the KEXINIT name-lists; eight of them are negotiated (the two
language lists never are, RFC 4253 7.1 "MAY be empty"). Each module that needs a label, an
OpenSSH keyword, the record's key or OpenSSH's wording for a list reads it here, so that a
new list or a new label is one edit, as asyncssh keeps one registry per algorithm type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["kex", "host_key", "cipher", "mac", "compression"]
#: One direction of data: client to server, or server to client.
Direction = Literal["c2s", "s2c"]
#: The direction a list governs; the kex and host key lists govern both.
ListDirection = Literal["both", "c2s", "s2c"]
MarkerRole = Literal["client", "server", "either"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListKind:
    """What the lists of one kind share: OpenSSH's option, a label, and ssherr.c's reason."""

    kind: Kind
    #: The ssh_config / sshd_config keyword that sets lists of this kind.
    keyword: str
    #: What people call it, in running text ("no common key exchange").
    label: str
    #: ssherr.c's reason when no name matches (OpenSSH >= 7.2 wording).
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NameList:
    """One KEXINIT name-list: its RFC name, its direction, and how records and people name it."""

    #: RFC 4253 section 7.1 field name, as in `SessionRecord.failures[].list`.
    rfc: str
    #: Key in `SessionRecord.negotiated`; None for the language lists (never negotiated).
    field: str | None
    kind: Kind | None
    direction: ListDirection
    #: Short label for tables ("cipher c2s").
    label: str


KINDS: tuple[ListKind, ...] = (
    ListKind(
        kind="kex",
        keyword="KexAlgorithms",
        label="key exchange",
        reason="no matching key exchange method found",
    ),
    ListKind(
        kind="host_key",
        keyword="HostKeyAlgorithms",
        label="host key",
        reason="no matching host key type found",
    ),
    ListKind(kind="cipher", keyword="Ciphers", label="cipher", reason="no matching cipher found"),
    ListKind(kind="mac", keyword="MACs", label="MAC", reason="no matching MAC found"),
    ListKind(
        kind="compression",
        keyword="Compression",
        label="compression",
        reason="no matching compression method found",
    ),
)
KIND: dict[str, ListKind] = {k.kind: k for k in KINDS}


def _pair(stem: str, kind: Kind, label: str) -> tuple[NameList, NameList]:
    return (
        NameList(
            rfc=f"{stem}_client_to_server",
            field=f"{kind}_c2s",
            kind=kind,
            direction="c2s",
            label=f"{label} c2s",
        ),
        NameList(
            rfc=f"{stem}_server_to_client",
            field=f"{kind}_s2c",
            kind=kind,
            direction="s2c",
            label=f"{label} s2c",
        ),
    )


#: The two lists both roles send alike, named on their own by negotiation, HASSH and roles.
KEX_ALGORITHMS = "kex_algorithms"
SERVER_HOST_KEY_ALGORITHMS = "server_host_key_algorithms"

#: The ten name-lists in wire order (RFC 4253 section 7.1).
LISTS: tuple[NameList, ...] = (
    NameList(rfc=KEX_ALGORITHMS, field="kex", kind="kex", direction="both", label="kex"),
    NameList(
        rfc=SERVER_HOST_KEY_ALGORITHMS,
        field="host_key",
        kind="host_key",
        direction="both",
        label="host key",
    ),
    *_pair("encryption_algorithms", "cipher", "cipher"),
    *_pair("mac_algorithms", "mac", "MAC"),
    *_pair("compression_algorithms", "compression", "compression"),
    NameList(
        rfc="languages_client_to_server",
        field=None,
        kind=None,
        direction="c2s",
        label="languages c2s",
    ),
    NameList(
        rfc="languages_server_to_client",
        field=None,
        kind=None,
        direction="s2c",
        label="languages s2c",
    ),
)
#: The RFC names in wire order: the order `KexInit.raw_lists` holds them in.
RFC_NAMES: tuple[str, ...] = tuple(n.rfc for n in LISTS)
#: The eight negotiated lists, in wire order.
NEGOTIATED: tuple[NameList, ...] = tuple(n for n in LISTS if n.field is not None)
BY_RFC: dict[str, NameList] = {n.rfc: n for n in LISTS}
BY_FIELD: dict[str, NameList] = {n.field: n for n in NEGOTIATED if n.field is not None}
#: RFC name -> the record's negotiated key, for the eight negotiated lists.
FIELD_BY_RFC: dict[str, str] = {n.rfc: n.field for n in NEGOTIATED if n.field is not None}
#: Pairs of lists, one per direction, that tables may show as one row: (c2s, s2c, label).
DIRECTIONAL_PAIRS: tuple[tuple[NameList, NameList, ListKind], ...] = tuple(
    (c2s, s2c, KIND[c2s.kind])
    for c2s, s2c in zip(NEGOTIATED[2::2], NEGOTIATED[3::2], strict=True)
    if c2s.kind is not None
)


def lists_for(direction: Direction) -> tuple[NameList, ...]:
    """The negotiated lists that govern one direction, in wire order: kex, host key, then
    that direction's cipher, MAC and compression (what HASSH and version hints read)."""
    return tuple(n for n in NEGOTIATED if n.direction in ("both", direction))


def kind_of(name: str) -> ListKind:
    """The kind of a negotiated list named by its RFC name or its record key (``mac_c2s``)."""
    listed = BY_RFC.get(name) or BY_FIELD[name]
    if listed.kind is None:
        raise KeyError(f"{name} is never negotiated")
    return KIND[listed.kind]


def fields_of(kind: str) -> tuple[str, ...]:
    """The record's negotiated keys a kind covers (``cipher`` -> ``cipher_c2s, cipher_s2c``)."""
    return tuple(n.field for n in NEGOTIATED if n.kind == kind and n.field is not None)


def rfc_names_of(kind: str) -> frozenset[str]:
    """The RFC list names of one kind (``mac`` -> both MAC lists)."""
    return frozenset(n.rfc for n in NEGOTIATED if n.kind == kind)


@dataclass(frozen=True, slots=True, kw_only=True)
class Marker:
    """A pseudo-algorithm in the kex list that signals a feature and is never chosen."""

    name: str
    #: The side that sends it; "either" for a marker both sides may send.
    role: MarkerRole
    #: What it signals, and where that is specified.
    meaning: str


MARKER_TABLE: tuple[Marker, ...] = (
    Marker(name="ext-info-c", role="client", meaning="extension negotiation (RFC 8308)"),
    Marker(name="ext-info-s", role="server", meaning="extension negotiation (RFC 8308)"),
    Marker(
        name="kex-strict-c-v00@openssh.com",
        role="client",
        meaning="strict key exchange, the Terrapin countermeasure (OpenSSH PROTOCOL 1.10)",
    ),
    Marker(
        name="kex-strict-s-v00@openssh.com",
        role="server",
        meaning="strict key exchange, the Terrapin countermeasure (OpenSSH PROTOCOL 1.10)",
    ),
    Marker(
        name="kexguess2@matt.ucc.asn.au",
        role="either",
        meaning="Dropbear's guessed-kex variant (Dropbear kex.h)",
    ),
)
MARKERS: frozenset[str] = frozenset(m.name for m in MARKER_TABLE)
STRICT_CLIENT = "kex-strict-c-v00@openssh.com"
STRICT_SERVER = "kex-strict-s-v00@openssh.com"
#: The markers only a client sends, and those only a server sends (role inference).
CLIENT_MARKERS: tuple[str, ...] = tuple(m.name for m in MARKER_TABLE if m.role == "client")
SERVER_MARKERS: tuple[str, ...] = tuple(m.name for m in MARKER_TABLE if m.role == "server")
