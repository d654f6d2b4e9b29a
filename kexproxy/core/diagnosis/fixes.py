"""Fixes for a failed negotiation: names one side could add that the other already offers, ranked.

A fix needs nothing the peer lacks, so candidates come from the other side's own offer on
every failing list of a kind. They are ranked by the catalogue's grade (a weak or broken one
never above a good one), then post-quantum first, then the work beyond a config line, then
fewer known issues, then the client (a local, reversible change) before the server, then the
peer's own preference; when no good candidate exists the advice is to upgrade the other side.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from kexproxy.core.catalogue import GRADE_ORDER, LIST_CATEGORY, Algorithm, Catalogue
from kexproxy.core.diagnosis.recipes import combined_forms, forms, warning
from kexproxy.core.diagnosis.software import ROLES, Software, offered
from kexproxy.core.lists import KIND, SERVER_HOST_KEY_ALGORITHMS, kind_of
from kexproxy.core.negotiation import Role
from kexproxy.core.record import JSONDict, SessionRecord

#: Fixes kept per failing kind and side: enough choice, not the peer's whole list.
MAX_FIXES_PER_SIDE = 4
#: Names a fix may paste into a command line or a config file: the characters OpenSSH's
#: own names use, at most RFC 4251's 64. A name with a space, quote, newline or ``$`` in it
#: could turn "add this algorithm" into another option or sshd_config line.
PASTABLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
#: Names of the other side's offer looked at for fixes (a hostile offer can hold 50,000).
MAX_SCANNED = 256


@dataclass(frozen=True, slots=True)
class _Candidate:
    side: Role
    kind: str
    name: str
    algorithm: Algorithm | None
    position: int
    #: Work beyond the config line: 0 none, 1 a new host key or a rebuild, 2 a certificate.
    cost: int = 0

    def key(self, cat: Catalogue) -> tuple[int, int, int, int, int, int]:
        grade = (self.algorithm.grade if self.algorithm else None) or "unknown"
        pq = 0 if self.algorithm is not None and self.algorithm.post_quantum else 1
        issues = cat.counted_issues(self.algorithm) if self.algorithm else 9
        side = 0 if self.side == "client" else 1
        return (GRADE_ORDER[grade], pq, self.cost, issues, side, self.position)


def _candidates(
    side: Role,
    kind: str,
    lists: Sequence[str],
    record: SessionRecord,
    *,
    cat: Catalogue,
    software: Software,
) -> list[_Candidate]:
    """Names the other side offers on every failing list of `kind` that `side` could add."""
    other = record.server_kexinit if side == "client" else record.client_kexinit
    offers = [offered(other, rfc) for rfc in lists]
    category = LIST_CATEGORY[lists[0]]
    held = _held_key_types(record, cat) if side == "server" and kind == "host_key" else None
    out: list[_Candidate] = []
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
        if not software.implements(algorithm, category):
            continue
        if (
            side == "server"
            and name == "zlib"
            and software.version is not None
            and not software.predates("7.4")
        ):
            continue  # sshd dropped pre-authentication compression in 7.4
        cost = 0 if software.known_to_offer(algorithm, side) else 1
        if held is not None:
            cost = max(cost, _host_key_cost(algorithm, held))
        out.append(_Candidate(side, kind, name, algorithm, position, cost))
    return out


def _held_key_types(record: SessionRecord, cat: Catalogue) -> set[str]:
    """Key types the server evidently has, from the plain host key algorithms it offers."""
    held: set[str] = set()
    for name in offered(record.server_kexinit, SERVER_HOST_KEY_ALGORITHMS):
        algorithm = cat.lookup(name, "host_key")
        if algorithm is not None and not algorithm.certificate and algorithm.key_type:
            held.add(algorithm.key_type)
    return held


def _host_key_cost(algorithm: Algorithm | None, held: set[str]) -> int:
    if algorithm is None or algorithm.certificate:
        return 2
    return 0 if algorithm.key_type in held else 1


def _real_fix(
    side: Role, kind: str, candidates: Sequence[_Candidate], software: Software
) -> str | None:
    """When every name `side` could add is broken (or none exists), the other side is too old."""
    label = KIND[kind].label
    old = "server" if side == "client" else "client"
    grades = {(c.algorithm.grade if c.algorithm else "unknown") for c in candidates}
    if not candidates:
        return (
            f"The {side} can add none of the {old}'s {label} algorithms"
            f"{' (its OpenSSH release lacks them)' if software.is_openssh else ''}: "
            f"upgrading the {old} is the real fix."
        )
    if grades == {"broken"}:
        names = ", ".join(c.name for c in candidates[:3])
        return (
            f"The only {label} algorithms the {old} offers that the {side} could add are broken "
            f"({names}): upgrading the {old} is the real fix."
        )
    return None


def ranked_fixes(
    record: SessionRecord, cat: Catalogue
) -> tuple[list[JSONDict], list[str], JSONDict | None]:
    """Ranked fixes per failing kind, the "upgrade" advice, and the combined forms."""
    by_kind: dict[str, list[str]] = {}
    for failure in record.failures:
        by_kind.setdefault(kind_of(failure["list"]).kind, []).append(failure["list"])
    software: dict[Role, Software] = {
        "client": Software.from_banner(record.client_banner),
        "server": Software.from_banner(record.server_banner),
    }
    server_ip = str(record.server.get("ip", "<server>"))
    out: list[JSONDict] = []
    advice: list[str] = []
    tops: dict[Role, list[JSONDict]] = {"client": [], "server": []}
    units = [(kind, group) for kind, lists in by_kind.items() for group in _groups(record, lists)]
    for kind, lists in units:
        ranked: list[_Candidate] = []
        for side in ROLES:
            found = _candidates(side, kind, lists, record, cat=cat, software=software[side])
            found.sort(key=lambda c: c.key(cat))
            ranked += found[:MAX_FIXES_PER_SIDE]
            real = _real_fix(side, kind, found, software[side])
            if real:
                advice.append(real)
        ranked.sort(key=lambda c: c.key(cat))
        for rank, cand in enumerate(ranked, 1):
            mine = record.client_kexinit if cand.side == "client" else record.server_kexinit
            current = offered(mine, lists[0])
            fix: JSONDict = {
                "rank": rank,
                "side": cand.side,
                "list": lists[0],
                "lists": list(lists),
                "add": cand.name,
                "grade": (cand.algorithm.grade if cand.algorithm else None) or "unknown",
                "post_quantum": bool(cand.algorithm and cand.algorithm.post_quantum),
                "reason": cand.algorithm.reason
                if cand.algorithm
                else "not in kexproxy's catalogue",
                **forms(
                    cand.side,
                    kind,
                    cand.name,
                    server_ip=server_ip,
                    software=software[cand.side],
                    current=current,
                ),
                "warning": warning(
                    cand.side,
                    kind,
                    cand.algorithm,
                    cand.name,
                    cat=cat,
                    software=software[cand.side],
                    server_list_length=len(current) + 1 if cand.side == "server" else 0,
                    held_key=cand.side == "server" and kind == "host_key" and cand.cost == 0,
                ),
            }
            out.append(fix)
        for role in ROLES:
            best = next(
                (
                    f
                    for f in out
                    if f["side"] == role
                    and f["lists"] == list(lists)
                    and (f["ssh_config"] or f["sshd_config"])
                ),
                None,
            )
            if best is not None:
                tops[role].append(best)
    combined = combined_forms(tops, server_ip) if len(units) > 1 else None
    return out, list(dict.fromkeys(advice)), combined


def _groups(record: SessionRecord, lists: Sequence[str]) -> list[list[str]]:
    """Failing lists of one kind fixed together: both directions at once when each side
    offers the same names both ways (OpenSSH sets both with one option), else one by one."""
    for kexinit in (record.client_kexinit, record.server_kexinit):
        offers = [offered(kexinit, rfc) for rfc in lists]
        if any(offer != offers[0] for offer in offers[1:]):
            return [[rfc] for rfc in lists]
    return [list(lists)]
