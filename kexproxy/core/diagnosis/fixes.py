"""Per-list fixes for a failed negotiation: names one side could add that the other offers.

A fix needs nothing the peer lacks, so candidates come from the other side's own offer on
every failing list of a kind, kept only when the side's software can offer them (its
capability file says so; unknown software is not ruled out, only ranked later). They are
ranked by the catalogue's grade (a weak or broken one never above a good one), then
post-quantum first, then the work beyond a config line, then fewer known issues, then the
client (a local, reversible change) before the server, then the peer's own preference. The
recipes (recipes.py) pick from these; this module's `detail` is the per-list view of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from kexproxy.core.catalogue import GRADE_ORDER, LIST_CATEGORY, Algorithm, Catalogue, Category
from kexproxy.core.diagnosis.software import ROLES, offered
from kexproxy.core.diagnosis.steps import COMPRESSION_VALUES
from kexproxy.core.implementations import Peer
from kexproxy.core.lists import SERVER_HOST_KEY_ALGORITHMS, kind_of
from kexproxy.core.negotiation import Role
from kexproxy.core.record import JSONDict, SessionRecord

#: Fixes kept per failing kind and side in the detail: enough choice, not the peer's list.
MAX_FIXES_PER_SIDE = 4
#: Names a fix may paste into a command line or a config file: the characters OpenSSH's
#: own names use, at most RFC 4251's 64. A name with a space, quote, newline or ``$`` in it
#: could turn "add this algorithm" into another option or sshd_config line.
PASTABLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
#: Names of the other side's offer looked at for fixes (a hostile offer can hold 50,000).
MAX_SCANNED = 256
#: sshd dropped pre-authentication zlib compression in this release.
SSHD_NO_ZLIB = "7.4"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One name `side` could add to fix the failing lists of one unit."""

    side: Role
    kind: str
    lists: tuple[str, ...]
    name: str
    algorithm: Algorithm | None
    position: int
    #: Work beyond the config line: 0 none, 1 a new host key or a rebuild, 2 a certificate.
    cost: int = 0
    #: The side's software is unknown, so whether it can offer the name is not known.
    unverified: bool = False

    @property
    def grade(self) -> str:
        return (self.algorithm.grade if self.algorithm else None) or "unknown"

    def key(self, cat: Catalogue) -> tuple[int, int, int, int, int, int, int]:
        pq = 0 if self.algorithm is not None and self.algorithm.post_quantum else 1
        issues = cat.counted_issues(self.algorithm) if self.algorithm else 9
        side = 0 if self.side == "client" else 1
        return (
            GRADE_ORDER.get(self.grade, len(GRADE_ORDER)),
            pq,
            self.cost,
            int(self.unverified),
            issues,
            side,
            self.position,
        )


@dataclass(frozen=True, slots=True)
class Unit:
    """Failing lists fixed together: one kind, both directions when both sides allow it."""

    kind: str
    lists: tuple[str, ...]


def units(record: SessionRecord) -> list[Unit]:
    """The failing lists grouped by kind, then split where the two directions differ."""
    by_kind: dict[str, list[str]] = {}
    for failure in record.failures:
        by_kind.setdefault(kind_of(failure["list"]).kind, []).append(failure["list"])
    return [
        Unit(kind, tuple(group))
        for kind, lists in by_kind.items()
        for group in _groups(record, lists)
    ]


def _groups(record: SessionRecord, lists: Sequence[str]) -> list[list[str]]:
    """Both directions at once when each side offers the same names both ways (OpenSSH
    sets both with one option), else one by one."""
    for kexinit in (record.client_kexinit, record.server_kexinit):
        offers = [offered(kexinit, rfc) for rfc in lists]
        if any(offer != offers[0] for offer in offers[1:]):
            return [[rfc] for rfc in lists]
    return [list(lists)]


def candidates(
    side: Role, unit: Unit, record: SessionRecord, *, cat: Catalogue, peer: Peer
) -> list[Candidate]:
    """Names the other side offers on every list of `unit` that `side` could add, ranked."""
    other = record.server_kexinit if side == "client" else record.client_kexinit
    if other is None:
        # A record from a server's log has no KEXINITs: the peer's offer is in `failures`.
        offers = [_failure_offer(record, _other_role(side), rfc) for rfc in unit.lists]
    else:
        offers = [offered(other, rfc) for rfc in unit.lists]
    category = LIST_CATEGORY[unit.lists[0]]
    can = peer.can_offer(category, cat)
    defaults = peer.defaults(side, category, cat)
    held = held_key_types(record, cat) if side == "server" and unit.kind == "host_key" else None
    out: list[Candidate] = []
    also = [frozenset(offer) for offer in offers[1:]]
    seen: set[str] = set()
    # A hostile peer may offer tens of thousands of names: the ones a fix could use are
    # among the first (OpenSSH itself reads only 40 of a server's list).
    for position, name in enumerate(offers[0][:MAX_SCANNED]):
        if not name or name in seen or cat.is_marker(name) or any(name not in o for o in also):
            continue
        if not PASTABLE.fullmatch(name):
            continue  # never a config line or a shell word made of a stranger's bytes
        seen.add(name)
        algorithm = cat.lookup(name, category)
        if not can_add(side, peer, name, category, can):
            continue
        cost = 0
        if peer.key == "dropbear" and not (
            side == "client" and category in ("cipher", "mac") and name in (defaults or ())
        ):
            cost = 1  # chosen when Dropbear is built
        if held is not None:
            cost = max(cost, host_key_cost(algorithm, held))
        out.append(
            Candidate(
                side, unit.kind, unit.lists, name, algorithm, position, cost, unverified=can is None
            )
        )
    out.sort(key=lambda c: c.key(cat))
    return out


def _other_role(side: Role) -> Role:
    return "server" if side == "client" else "client"


def _failure_offer(record: SessionRecord, role: Role, rfc: str) -> list[str]:
    """`role`'s offer for the failing list `rfc` as `failures` keeps it (empty if unknown)."""
    for failure in record.failures:
        if failure.get("list") == rfc:
            names = failure.get(f"{role}_offer") or []
            return [n for n in names if isinstance(n, str)]
    return []


def can_add(
    side: Role, peer: Peer, name: str, category: Category, can: frozenset[str] | None
) -> bool:
    """Whether `side`'s software can be made to offer `name` (unknown software: maybe)."""
    if can is not None and name not in can:
        return False
    impl = peer.implementation
    if impl is not None and impl.derived == "openssh" and category == "compression":
        if name not in COMPRESSION_VALUES:
            return False  # OpenSSH's Compression is yes/no: it cannot offer other names
        if side == "server" and name == "zlib" and not peer.predates(SSHD_NO_ZLIB):
            return False
    return True


def held_key_types(record: SessionRecord, cat: Catalogue) -> set[str]:
    """Key types the server evidently has, from the plain host key algorithms it offers."""
    held: set[str] = set()
    for name in offered(record.server_kexinit, SERVER_HOST_KEY_ALGORITHMS):
        algorithm = cat.lookup(name, "host_key")
        if algorithm is not None and not algorithm.certificate and algorithm.key_type:
            held.add(algorithm.key_type)
    return held


def host_key_cost(algorithm: Algorithm | None, held: set[str]) -> int:
    if algorithm is None or algorithm.certificate:
        return 2
    return 0 if algorithm.key_type in held else 1


def detail(
    record: SessionRecord, cat: Catalogue, found: dict[tuple[Role, Unit], list[Candidate]]
) -> list[JSONDict]:
    """The per-list view: for each failing unit, the best few names each side could add."""
    out: list[JSONDict] = []
    for unit in dict.fromkeys(u for _, u in found):
        ranked: list[Candidate] = []
        for side in ROLES:
            ranked += found.get((side, unit), [])[:MAX_FIXES_PER_SIDE]
        ranked.sort(key=lambda c: c.key(cat))
        for rank, cand in enumerate(ranked, 1):
            out.append(
                {
                    "rank": rank,
                    "side": cand.side,
                    "list": unit.lists[0],
                    "lists": list(unit.lists),
                    "add": cand.name,
                    "grade": cand.grade,
                    "post_quantum": bool(cand.algorithm and cand.algorithm.post_quantum),
                    "reason": cand.algorithm.reason
                    if cand.algorithm
                    else "not in kexproxy's catalogue",
                    "cost": cand.cost,
                    "verified": not cand.unverified,
                }
            )
    return out
