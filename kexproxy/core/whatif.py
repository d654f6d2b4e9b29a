"""What a configuration change does to the peers that connect: "who will I break?".

A change (an sshd_config line such as ``KexAlgorithms -diffie-hellman-group14-sha1``, or an
``ssh -o`` option) is applied to one side's offer with OpenSSH's own list arithmetic
(`kexproxy.core.openssh_lists`), then every recorded or catalogued offer of the other side
is negotiated against the result with `kexproxy.core.negotiation.negotiate`, the same code
that explains recorded failures. So the prediction names the list that fails and both
sides' "Unable to negotiate" lines exactly as a recorded failure would.

What a changed offer is, beyond the arithmetic: the change edits the list the side sent,
markers (``ext-info-s``, ``kex-strict-*``) stay at its end; a server offers only host key
algorithms for the key types (and certificates) it has, read off its offer; a name the
side's release cannot do is refused with one line, as is a value its OpenSSH would refuse.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol, TypeVar

from kexproxy.core.catalogue import CATEGORIES, Catalogue, Category, catalogue
from kexproxy.core.events import KexInit
from kexproxy.core.implementations import Peer, identify, implementations
from kexproxy.core.lists import KINDS, LISTS, MARKERS, RFC_NAMES
from kexproxy.core.negotiation import Failure, Negotiation, Rejection, Role, negotiate
from kexproxy.core.openssh_lists import (
    BAD_VALUE,
    ConfigLine,
    Keyword,
    ListError,
    assemble_names,
    bad_names,
    parse_line,
)
from kexproxy.core.record import SessionRecord

#: A change's effect on one peer: broken by it, fixed by it, or the same outcome as before.
Effect = Literal["breaks", "still_fails", "fixed", "still_negotiates"]
#: Worst first: the order tables lead with.
EFFECTS: tuple[Effect, ...] = ("breaks", "still_fails", "fixed", "still_negotiates")
#: Addresses the predicted "Unable to negotiate with ..." lines name (nobody connected).
CLIENT_ADDR = ("CLIENT", 0)
SERVER_ADDR = ("SERVER", 22)
#: Key types a stock OpenSSH install generates (ssh-keygen -A), for a server known only by
#: its release: RSA, ECDSA P-256 and Ed25519 keys, no certificates.
STOCK_HOST_KEYS = frozenset({("rsa", False), ("ecdsa", False), ("ed25519", False)})
_STOCK_ECDSA = "ecdsa-sha2-nistp256"

KEYWORD_CATEGORY: dict[str, Category] = {k.keyword: k.kind for k in KINDS}


class ChangeRefused(ValueError):
    """The change cannot be made on this peer; the message is one line fit for the user."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Side:
    """One peer's offer and what its banner says it runs (which bounds what it can offer)."""

    banner: str | None
    kexinit: KexInit
    hassh: str | None = None

    @property
    def peer(self) -> Peer:
        return identify(self.banner)

    @property
    def software(self) -> str | None:
        return self.peer.software


def kexinit_of(lists: Mapping[str, Sequence[str]]) -> KexInit:
    """A KEXINIT with these lists (RFC names; a missing list is empty), cookie zero."""
    return KexInit(
        cookie=bytes(16),
        raw_lists=tuple(",".join(lists.get(name, ())) for name in RFC_NAMES),
        first_kex_packet_follows=False,
        reserved=0,
    )


def kexinit_from_record(data: Mapping[str, object] | None) -> KexInit | None:
    """The offer a record's ``client_kexinit``/``server_kexinit`` holds, or None."""
    if not data:
        return None
    lists: dict[str, Sequence[str]] = {}
    for name in RFC_NAMES:
        value = data.get(name)
        if isinstance(value, list):
            lists[name] = [str(v) for v in value]
    return kexinit_of(lists)


def _rfc_lists(category: Category) -> tuple[str, ...]:
    return tuple(n.rfc for n in LISTS if n.kind == category)


def release_side(text: str, role: Role, cat: Catalogue | None = None) -> Side:
    """``OpenSSH_9.2`` or ``PuTTY_0.70``: the offer that release sends untouched as `role`.

    Raises ChangeRefused when kexproxy does not know the release's default lists. A server
    known only by its release offers the host key algorithms of a stock install's keys.
    """
    cat = cat or catalogue()
    banner = _banner_for(text)
    peer = identify(banner)
    lists: dict[str, Sequence[str]] = {}
    for category in CATEGORIES:
        if category == "marker":
            continue
        names = peer.defaults(role, category, cat)
        if names is None and category == "compression":
            names = ("none",)
        if names is None:
            raise ChangeRefused(
                f"{text!r}: kexproxy does not know the {category} list this release sends "
                f"as {role} (known: {', '.join(i.name for i in implementations().values())})"
            )
        if category == "host_key" and role == "server" and peer.key in ("openssh", None):
            names = _with_keys(names, STOCK_HOST_KEYS, cat, stock=True)
        for rfc in _rfc_lists(category):
            lists[rfc] = names
    return Side(banner=banner, kexinit=kexinit_of(lists))


def _banner_for(text: str) -> str:
    """A banner for what a user typed: ``OpenSSH_7.4``, ``PuTTY_0.70``, ``dropbear 2022.83``."""
    text = text.strip().removeprefix("SSH-2.0-")
    banner = f"SSH-2.0-{text.replace(' ', '_')}"
    if identify(banner).implementation is not None:
        return banner
    name, _, version = text.replace(" ", "_").rpartition("_")
    for impl in implementations().values():
        if name.lower() in (impl.key, impl.name.lower()):
            for pattern in impl.patterns:
                for candidate in (f"{impl.name}_{version}", f"{impl.name}_Release_{version}"):
                    if pattern.search(candidate):
                        return f"SSH-2.0-{candidate}"
    raise ChangeRefused(f"{text!r}: not a release kexproxy knows (e.g. OpenSSH_9.2, PuTTY_0.78)")


def _key_of(name: str, cat: Catalogue) -> tuple[str, bool] | None:
    found = cat.lookup(name, "host_key")
    if found is None or found.key_type is None:
        return None
    return (found.key_type, bool(found.certificate))


def _with_keys(
    names: Iterable[str], keys: frozenset[tuple[str, bool]], cat: Catalogue, *, stock: bool = False
) -> tuple[str, ...]:
    """The names whose key type (and certificate) the server has; ECDSA stock keys are P-256."""
    out = []
    for name in names:
        key = _key_of(name, cat)
        if key is None or key not in keys:
            continue
        if stock and key[0] == "ecdsa" and not name.startswith(_STOCK_ECDSA):
            continue
        out.append(name)
    return tuple(out)


def known_names(
    peer: Peer, category: Category, offered: Sequence[str], cat: Catalogue
) -> tuple[str, ...]:
    """Every name the side can do in `category` (its release's, else the catalogue's), plus
    the names it already offers: OpenSSH's ``all`` list, which patterns expand against."""
    can = peer.can_offer(category, cat)
    names = [
        a.name
        for a in cat
        if a.category == category and not a.prefix and (can is None or a.name in can)
    ]
    return tuple(dict.fromkeys([*names, *(n for n in offered if n not in MARKERS)]))


def _refusal(line: ConfigLine, bad: Sequence[str], peer: Peer, role: Role, cat: Catalogue) -> str:
    """Why `line` cannot be made: the name this release lacks, or OpenSSH's own complaint."""
    category = KEYWORD_CATEGORY[line.keyword]
    for name in bad:
        if "*" in name or "?" in name:
            complaint = BAD_VALUE[line.keyword][role].format(line.value)
            return (
                f'{line}: refused: OpenSSH would stop with "{complaint}" ({line.keyword} takes'
                " exact names; patterns only after '-')"
            )
        known = cat.lookup(name, category)
        if known is None:
            return f"{line}: refused: {name} is not a {category} algorithm kexproxy knows"
        since = f" (OpenSSH has it from {known.openssh_added})" if known.openssh_added else ""
        return f"{line}: refused: {peer.label} cannot do {name}{since}"
    raise AssertionError("no bad name")  # pragma: no cover - callers pass a non-empty `bad`


def apply_change(
    side: Side, line: ConfigLine | str, role: Role, cat: Catalogue | None = None
) -> Side:
    """`side` after one config line, as its OpenSSH would assemble it; ChangeRefused if it cannot."""
    cat = cat or catalogue()
    line = parse_line(line) if isinstance(line, str) else line
    category = KEYWORD_CATEGORY[line.keyword]
    rfcs = _rfc_lists(category)
    offered = side.kexinit.names(rfcs[0])
    current = tuple(n for n in offered if n not in MARKERS)
    peer = side.peer
    known = known_names(peer, category, offered, cat)
    bad = bad_names(line.keyword, line.value, known)
    if bad:
        raise ChangeRefused(_refusal(line, bad, peer, role, cat))
    try:
        names = assemble_names(line.value, current, known)
    except ListError as exc:
        raise ChangeRefused(f"{line}: refused: {exc}") from None
    if category == "host_key" and role == "server":
        keys = frozenset(k for k in (_key_of(n, cat) for n in current) if k is not None)
        names = tuple(n for n in names if n in current or (_key_of(n, cat) in keys))
        if not names:
            raise ChangeRefused(
                f"{line}: refused: the server has no host key for any of these algorithms"
            )
    if category == "kex":
        names = (*names, *(n for n in offered if n in MARKERS))
    raw = list(side.kexinit.raw_lists)
    for rfc in rfcs:
        raw[RFC_NAMES.index(rfc)] = ",".join(names)
    return replace(side, kexinit=replace(side.kexinit, raw_lists=tuple(raw)), hassh=None)


def apply_changes(
    side: Side, lines: Sequence[str], role: Role, cat: Catalogue | None = None
) -> Side:
    """Every line in turn; a keyword given twice is refused (sshd and ssh keep the first)."""
    parsed = [parse_line(text) for text in lines]
    seen: set[Keyword] = set()
    for line in parsed:
        if line.keyword in seen:
            raise ChangeRefused(
                f"{line}: refused: {line.keyword} is given twice; OpenSSH keeps only the first"
            )
        seen.add(line.keyword)
    for line in parsed:
        side = apply_change(side, line, role, cat)
    return side


@dataclass(frozen=True, slots=True, kw_only=True)
class Prediction:
    """One peer group against the changed side: what happens, before and after."""

    effect: Effect
    before: Negotiation
    after: Negotiation

    @property
    def failures(self) -> tuple[Failure, ...]:
        return self.after.failures

    @property
    def rejections(self) -> dict[Role, Rejection | None]:
        return self.after.rejections


def predict(
    client_before: KexInit, server_before: KexInit, client_after: KexInit, server_after: KexInit
) -> Prediction:
    """Negotiate both pairs of offers and say how the change moved the outcome."""
    before = negotiate(
        client_before, server_before, client_addr=CLIENT_ADDR, server_addr=SERVER_ADDR
    )
    after = negotiate(client_after, server_after, client_addr=CLIENT_ADDR, server_addr=SERVER_ADDR)
    effect: Effect
    if after.ok:
        effect = "still_negotiates" if before.ok else "fixed"
    else:
        effect = "breaks" if before.ok else "still_fails"
    return Prediction(effect=effect, before=before, after=after)


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    """Sessions whose peer sent the same banner and the same offer, counted."""

    banner: str | None
    hassh: str | None
    count: int
    kexinit: KexInit

    @property
    def software(self) -> str | None:
        """The banner after ``SSH-2.0-``: software and comments, as the peer wrote them."""
        if self.banner is None:
            return None
        parts = self.banner.split("-", 2)
        return parts[2] if len(parts) == 3 else self.banner

    @property
    def side(self) -> Side:
        return Side(banner=self.banner, kexinit=self.kexinit, hassh=self.hassh)


def group_offers(
    offers: Iterable[tuple[str | None, str | None, KexInit]],
) -> list[Group]:
    """(banner, HASSH, offer) per session -> groups, most sessions first.

    HASSH leaves out the host key list, which OpenSSH clients reorder per known host, so
    one HASSH can hold several offers: each becomes its own group, since it may fare
    differently.
    """
    counts: dict[tuple[str | None, str | None, tuple[str, ...]], int] = {}
    first: dict[tuple[str | None, str | None, tuple[str, ...]], KexInit] = {}
    for banner, hassh, kexinit in offers:
        key = (banner, hassh, kexinit.raw_lists)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, kexinit)
    groups = [
        Group(banner=key[0], hassh=key[1], count=n, kexinit=first[key]) for key, n in counts.items()
    ]
    return sorted(groups, key=lambda g: (-g.count, g.banner or "", g.hassh or ""))


def record_offers(
    records: Iterable[SessionRecord], role: Role
) -> list[tuple[str | None, str | None, KexInit]]:
    """(banner, HASSH, offer) of `role` in each SSH record that holds its KEXINIT."""
    out = []
    for record in records:
        if record.protocol != "ssh":
            continue
        raw = record.client_kexinit if role == "client" else record.server_kexinit
        kexinit = kexinit_from_record(raw)
        if kexinit is None:
            continue
        banner = record.client_banner if role == "client" else record.server_banner
        hassh = record.hassh if role == "client" else record.hassh_server
        out.append((banner, hassh, kexinit))
    return out


def predict_groups(
    clients: Sequence[Group],
    servers: Sequence[Group],
    server_change: Sequence[str],
    client_change: Sequence[str],
) -> list[tuple[Group, Prediction]]:
    """Each group of the population against the one peer on the other side, worst first.

    One server: the clients are the population; else one client against the servers.
    Raises ChangeRefused (or ListError) when a change cannot be made.
    """
    changed_server = [apply_changes(s.side, server_change, "server") for s in servers]
    changed_client = [apply_changes(c.side, client_change, "client") for c in clients]
    rows: list[tuple[Group, Prediction]] = []
    if len(servers) == 1:
        for group, after in zip(clients, changed_client, strict=True):
            p = predict(group.kexinit, servers[0].kexinit, after.kexinit, changed_server[0].kexinit)
            rows.append((group, p))
    else:
        for group, after in zip(servers, changed_server, strict=True):
            p = predict(clients[0].kexinit, group.kexinit, changed_client[0].kexinit, after.kexinit)
            rows.append((group, p))
    order = {e: i for i, e in enumerate(EFFECTS)}
    rows = _merged(rows)
    rows.sort(key=lambda row: (order[row[1].effect], -(row[0].count or 0)))
    return rows


def _merged(rows: list[tuple[Group, Prediction]]) -> list[tuple[Group, Prediction]]:
    """Groups of one banner and HASSH whose offers differ only where it changes nothing
    (OpenSSH reorders host key algorithms per known host) become one row, their counts added."""
    merged: dict[tuple[object, ...], tuple[Group, Prediction]] = {}
    for group, p in rows:
        after = p.after
        key = (
            group.banner,
            group.hassh,
            p.effect,
            json.dumps(after.to_dict() if after.ok else None),
            json.dumps([f.to_dict() for f in after.failures]),
        )
        if key in merged and group.hassh is not None:
            kept, _ = merged[key]
            merged[key] = (replace(kept, count=kept.count + group.count), p)
        else:
            merged.setdefault(key if group.hassh is not None else (id(group),), (group, p))
    return list(merged.values())


_E_co = TypeVar("_E_co", covariant=True)
_E = TypeVar("_E")


class _Counted(Protocol):
    @property
    def count(self) -> int: ...


class _Predicted(Protocol[_E_co]):
    @property
    def effect(self) -> _E_co: ...


def tally(
    rows: Iterable[tuple[_Counted, _Predicted[_E]]], effects: Sequence[_E]
) -> tuple[dict[_E, int], dict[_E, int]]:
    """Sessions (or logged records) and groups per effect, every one of `effects` counted
    even when 0, for the summary line over a prediction's rows."""
    sessions: dict[_E, int] = dict.fromkeys(effects, 0)
    groups: dict[_E, int] = dict.fromkeys(effects, 0)
    for group, p in rows:
        sessions[p.effect] += group.count
        groups[p.effect] += 1
    return sessions, groups
