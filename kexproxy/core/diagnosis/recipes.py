"""Recipes for a failed handshake: each alone makes every failing list match, strongest first.

A user asks "what do I change, where, and what does it cost", so a recipe is one side's
whole change (or both sides' when that is stronger), in that side's own syntax, with the
weakest thing it adds as its grade and the reach of the change as its scope. The planner
takes each side's best candidate per failing unit (fixes.py), writes the steps for the
side's software (steps.py), and, when a side can add nothing that works, says which later
release could, or that the other side must change. Pure: the catalogues are package data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from kexproxy.core.catalogue import GRADE_ORDER, LIST_CATEGORY, Catalogue, version_key
from kexproxy.core.diagnosis.fixes import (
    PASTABLE,
    Candidate,
    Unit,
    can_add,
    candidates,
    detail,
    held_key_types,
    units,
)
from kexproxy.core.diagnosis.software import ROLES, offered
from kexproxy.core.diagnosis.steps import Change, Target, write
from kexproxy.core.diagnosis.warned import Warned, above_warn, below_warn, explanation
from kexproxy.core.implementations import Peer, identify, named
from kexproxy.core.limits import OPENSSH_MAX_PROPOSAL_ENTRIES
from kexproxy.core.lists import KIND, kind_of
from kexproxy.core.negotiation import Role
from kexproxy.core.record import JSONDict, SessionRecord

#: The keywords OpenSSH cannot set per client with Match (sshd_config(5), "Match").
UNMATCHABLE = "KexAlgorithms, Ciphers, MACs or HostKeyAlgorithms"


def _other(side: Role) -> Role:
    return "server" if side == "client" else "client"


def server_peer(record: SessionRecord) -> Peer:
    """The server's banner's claim; with no banner (a record from the server's own log), the
    software its log lines show, with no release."""
    if record.server_banner is None and record.server_software is not None:
        return named(record.server_software)
    return identify(record.server_banner)


def plan(record: SessionRecord, cat: Catalogue) -> tuple[list[JSONDict], list[JSONDict], list[str]]:
    """The recipes, the per-list detail, and what no recipe can do (the "upgrade" advice)."""
    peers: dict[Role, Peer] = {
        "client": identify(record.client_banner),
        "server": server_peer(record),
    }
    failing = units(record)
    found = {
        (side, unit): candidates(side, unit, record, cat=cat, peer=peers[side])
        for unit in failing
        for side in ROLES
    }
    target = Target.of(record.server)
    recipes: list[JSONDict] = []
    advice: list[str] = []
    warned = below_warn(record, peers["client"], cat)
    if warned:
        recipes = _over_warn(record, peers, warned, target, cat)
        for rank, recipe in enumerate(recipes, 1):
            recipe["rank"] = rank
        return recipes, [], [explanation(record, peers["client"], warned)]
    if not record.failures:
        return [], [], []
    for side in ROLES:
        picks = [next(iter(c for c in found[(side, u)] if c.cost < 2), None) for u in failing]
        if failing and all(p is not None for p in picks):
            made = _recipe(record, peers, {side: [p for p in picks if p]}, target, cat)
            if made is not None:
                recipes.append(made)
                continue
        if _offer_unknown(record, _other(side)):
            advice.append(_unknown_offer(side))
            continue
        lacking = [u for u, p in zip(failing, picks, strict=True) if p is None]
        upgrade = _upgrade(side, peers[side], failing, record, cat)
        if upgrade is not None:
            recipes.append(upgrade)
        advice.append(_cannot(side, peers[side], lacking or failing, upgrade=upgrade is not None))
    both = _both_sides(record, peers=peers, failing=failing, made=recipes, target=target, cat=cat)
    if both is not None:
        recipes.append(both)
    recipes.sort(key=_rank_key)
    for rank, recipe in enumerate(recipes, 1):
        recipe["rank"] = rank
    return recipes, detail(record, cat, found), advice


def _over_warn(
    record: SessionRecord,
    peers: Mapping[Role, Peer],
    warned: Sequence[Warned],
    target: Target,
    cat: Catalogue,
) -> list[JSONDict]:
    """PuTTY's two ways past its warning line: trust the name, or the server offers better."""
    client_picks = [
        Candidate("client", w.category, (w.rfc,), w.name, cat.lookup(w.name, w.category), 0)
        for w in warned
    ]
    out = [r for r in [_recipe(record, peers, {"client": client_picks}, target, cat)] if r]
    # The server's candidates come from what PuTTY offers without asking first.
    lists = dict.fromkeys(w.rfc for w in warned)
    trusted = {rfc: above_warn(peers["client"], LIST_CATEGORY[rfc], cat) for rfc in lists}
    replay = replace(record, client_kexinit=trusted)
    server_picks: list[Candidate] = []
    for rfc in lists:
        found = candidates(
            "server", Unit(kind_of(rfc).kind, (rfc,)), replay, cat=cat, peer=peers["server"]
        )
        usable = [c for c in found if c.cost < 2]
        if not usable:
            return out
        server_picks.append(usable[0])
    made = _recipe(replay, peers, {"server": server_picks}, target, cat)
    if made is not None:
        out.append(made)
    out.sort(key=_rank_key)
    return out


def _rank_key(recipe: JSONDict) -> tuple[int, int, int, int, int]:
    upgrade = int(any(s["kind"] == "upgrade" for s in recipe["steps"]))
    notes_only = int(all(s["kind"] == "note" for s in recipe["steps"]))
    order = {"client": 0, "server": 1, "both": 2}[recipe["side"]]
    return (
        upgrade,
        GRADE_ORDER.get(recipe["grade"], len(GRADE_ORDER)),
        recipe["effort"],
        notes_only,
        order,
    )


def _weakest(grades: Sequence[str]) -> str:
    return max(grades, key=lambda g: GRADE_ORDER.get(g, len(GRADE_ORDER)), default="unknown")


def _recipe(
    record: SessionRecord,
    peers: Mapping[Role, Peer],
    picks: Mapping[Role, Sequence[Candidate]],
    target: Target,
    cat: Catalogue,
) -> JSONDict | None:
    """One recipe applying `picks` on their sides, or None when a side cannot be told how."""
    steps: list[JSONDict] = []
    notes: list[str] = []
    commands: list[str] = []
    persist: list[JSONDict] = []
    adds: list[JSONDict] = []
    for side, chosen in picks.items():
        changes = _changes(side, chosen, record, cat)
        written = write(peers[side], side, changes, target=target, cat=cat)
        if not written.ok:
            return None
        steps += written.steps
        notes += written.notes
        commands += [written.command] if written.command else []
        persist += [written.persist] if written.persist else []
        for cand in chosen:
            adds.append(
                {
                    "side": side,
                    "name": cand.name,
                    "lists": list(cand.lists),
                    "grade": cand.grade,
                    "post_quantum": bool(cand.algorithm and cand.algorithm.post_quantum),
                }
            )
    sides = list(picks)
    who: str = sides[0] if len(sides) == 1 else "both"
    grade = _weakest([a["grade"] for a in adds])
    everything = [c for chosen in picks.values() for c in chosen]
    return {
        "rank": 0,
        "side": who,
        "software": {s: peers[s].label for s in sides},
        "grade": grade,
        "covers": list(dict.fromkeys(rfc for a in adds for rfc in a["lists"])),
        "adds": adds,
        "steps": steps,
        "command": commands[0] if len(commands) == 1 else None,
        "persist": persist[0] if persist else None,
        "effort": max((c.cost for c in everything), default=0),
        "scope": _scope(who, peers, grade, target, steps),
        "warnings": _warnings(everything, record, cat, peers),
        "notes": list(dict.fromkeys(notes)),
    }


def _changes(
    side: Role, chosen: Sequence[Candidate], record: SessionRecord, cat: Catalogue
) -> list[Change]:
    """One change per category, both directions' names merged (one option sets both)."""
    mine = record.client_kexinit if side == "client" else record.server_kexinit
    held = None
    out: dict[str, Change] = {}
    for cand in chosen:
        rfc = cand.lists[0]
        category = LIST_CATEGORY[rfc]
        current = tuple(
            n for n in offered(mine, rfc) if n and PASTABLE.fullmatch(n) and not cat.is_marker(n)
        )
        new_keys: tuple[str, ...] = ()
        if side == "server" and category == "host_key" and cand.algorithm is not None:
            if held is None:
                held = held_key_types(record, cat)
            key_type = cand.algorithm.key_type
            if key_type and key_type not in held:
                new_keys = (key_type,)
        before = out.get(category)
        if before is None:
            out[category] = Change(category, (cand.name,), current, new_keys)
        elif cand.name not in before.add:
            out[category] = Change(
                category, (*before.add, cand.name), before.current, before.new_keys + new_keys
            )
    return list(out.values())


def _scope(
    side: str, peers: Mapping[Role, Peer], grade: str, target: Target, steps: Sequence[JSONDict]
) -> str:
    """Who else the change reaches, and the narrower way when it weakens a server."""
    parts: list[str] = []
    if side in ("client", "both"):
        kinds = {s["kind"] for s in steps if s["side"] == "client"}
        if "ssh_option" in kinds:
            parts.append(
                f"Client: only this command, or only {target.host} with a Host block; "
                "other servers are not affected."
            )
        elif kinds == {"dbclient_option"}:
            parts.append("Client: only this command; other servers are not affected.")
        elif "dropbear_build" in kinds:
            parts.append("Client: a rebuilt dbclient offers it to every server it connects to.")
        else:
            parts.append("Client: only connections made with these settings.")
    if side in ("server", "both"):
        weakens = GRADE_ORDER.get(grade, len(GRADE_ORDER)) > GRADE_ORDER["good"]
        server = peers["server"]
        if server.implementation is not None and server.implementation.derived == "openssh":
            text = (
                f"Server: every client of this sshd (OpenSSH cannot limit {UNMATCHABLE} "
                "to one client with Match)."
            )
            if weakens:
                text += (
                    " To keep other clients off it, run a second sshd for this client: a copy "
                    "of sshd_config with these lines and its own Port, started with "
                    "sshd -f <that file>."
                )
        else:
            text = f"Server: every client of this {server.label}."
            if weakens:
                text += " To keep other clients off it, serve this client from a separate instance."
        parts.append(text)
    return " ".join(parts)


def _needs(peer: Peer, name: str) -> str | None:
    """What optional part a library needs to offer `name` (liboqs, libnettle...), if any."""
    impl = peer.implementation
    requires = impl.extra.get("requires", {}) if impl is not None else {}
    need = requires.get(name) if isinstance(requires, Mapping) else None
    return str(need) if need else None


def _warnings(
    chosen: Sequence[Candidate],
    record: SessionRecord,
    cat: Catalogue,
    peers: Mapping[Role, Peer],
) -> list[str]:
    out: list[str] = []
    unknown = [c.name for c in chosen if c.algorithm is None]
    if unknown:
        out.append(
            f"Not in kexproxy's catalogue: {', '.join(dict.fromkeys(unknown))}: "
            "find out what they are first."
        )
    for cand in chosen:
        algorithm = cand.algorithm
        if algorithm is not None and algorithm.grade in ("weak", "broken"):
            why = "; ".join(cat.issue_texts(algorithm)) or algorithm.reason
            tail = (
                "this makes the handshake work, not safe."
                if algorithm.grade == "weak"
                else "use it only to reach the host and upgrade it."
            )
            out.append(f"{cand.name} is {algorithm.grade} ({why}): {tail}")
        if cand.side == "server":
            length = len(offered(record.server_kexinit, cand.lists[0])) + 1
            if length > OPENSSH_MAX_PROPOSAL_ENTRIES:
                out.append(
                    f"The server would offer {length} names and OpenSSH reads only the first "
                    f"{OPENSSH_MAX_PROPOSAL_ENTRIES}: remove some, or the added one goes unseen."
                )
        need = _needs(peers[cand.side], cand.name)
        if need:
            out.append(f"{peers[cand.side].label} offers {cand.name} only with {need}.")
    for side in ROLES:
        if any(c.unverified and c.side == side for c in chosen):
            out.append(f"kexproxy does not know what the {side}'s software can offer.")
    return list(dict.fromkeys(out))


def _both_sides(
    record: SessionRecord,
    *,
    peers: Mapping[Role, Peer],
    failing: Sequence[Unit],
    made: Sequence[JSONDict],
    target: Target,
    cat: Catalogue,
) -> JSONDict | None:
    """Both sides add a name neither offers, when that is stronger than either side alone."""
    picks: dict[Role, list[Candidate]] = {"client": [], "server": []}
    for unit in failing:
        category = LIST_CATEGORY[unit.lists[0]]
        can = [peers[s].can_offer(category, cat) for s in ROLES]
        if can[0] is None or can[1] is None:
            return None
        offers = {n for s in ROLES for rfc in unit.lists for n in offered(_kexinit(record, s), rfc)}
        pool = [
            a
            for name in sorted(can[0] & can[1])
            if name not in offers
            and all(can_add(s, peers[s], name, category, None) for s in ROLES)
            and not any(_needs(peers[s], name) for s in ROLES)
            and PASTABLE.fullmatch(name)
            and (a := cat.lookup(name, category)) is not None
            and not a.certificate
            and a.grade is not None
        ]
        if not pool:
            return None
        best = min(
            pool,
            key=lambda a: (
                GRADE_ORDER[a.grade or "unknown"],
                not a.post_quantum,
                cat.counted_issues(a),
            ),
        )
        for side in ROLES:
            picks[side].append(Candidate(side, unit.kind, unit.lists, best.name, best, 0))
    recipe = _recipe(record, peers, picks, target, cat)
    if recipe is None:
        return None
    strongest = min(
        (GRADE_ORDER.get(r["grade"], 9) for r in made if r["steps"][0]["kind"] != "upgrade"),
        default=9,
    )
    return recipe if GRADE_ORDER.get(recipe["grade"], 9) < strongest else None


def _kexinit(record: SessionRecord, side: Role) -> JSONDict | None:
    return record.client_kexinit if side == "client" else record.server_kexinit


def _upgrade(
    side: Role, peer: Peer, lacking: Sequence[Unit], record: SessionRecord, cat: Catalogue
) -> JSONDict | None:
    """The first later release of the side's software that could offer a name for each unit."""
    impl = peer.implementation
    if impl is None or not peer.version:
        return None
    releases = sorted(
        {r for r in (a.openssh_added for a in cat) if r and not r.startswith("<=")}
        if impl.derived == "openssh"
        else {r.since for r in impl.releases},
        key=version_key,
    )
    for release in releases:
        if version_key(release) <= version_key(peer.version):
            continue
        future = Peer(impl, release, peer.software)
        names: list[str] = []
        configured: list[str] = []
        for unit in lacking:
            usable = [c for c in candidates(side, unit, record, cat=cat, peer=future) if c.cost < 2]
            if not usable:
                break
            names.append(usable[0].name)
            category = LIST_CATEGORY[unit.lists[0]]
            if usable[0].name not in (future.defaults(side, category, cat) or ()):
                configured.append(usable[0].name)
        else:
            grades = [
                (cat.lookup(n, LIST_CATEGORY[u.lists[0]]) or None)
                for n, u in zip(names, lacking, strict=True)
            ]
            grade = _weakest([(a.grade if a else None) or "unknown" for a in grades])
            text = (
                f"Upgrade {impl.name} on the {side} to {release} or later: it can offer "
                f"{', '.join(dict.fromkeys(names))}"
            )
            if configured:
                text += f" (set it to offer {', '.join(dict.fromkeys(configured))})"
            text += "."
            return {
                "rank": 0,
                "side": side,
                "software": {side: peer.label},
                "grade": grade,
                "covers": [rfc for u in lacking for rfc in u.lists],
                "adds": [],
                "steps": [{"side": side, "software": peer.label, "kind": "upgrade", "text": text}],
                "command": None,
                "persist": None,
                "effort": 2,
                "scope": f"{side.capitalize()}: every connection it makes or takes.",
                "warnings": [],
                "notes": [],
            }
    return None


def _offer_unknown(record: SessionRecord, role: Role) -> bool:
    """True when the record holds none of `role`'s offer: a record from the other side's log."""
    kexinit = record.client_kexinit if role == "client" else record.server_kexinit
    return kexinit is None and not any(f.get(f"{role}_offer") for f in record.failures)


def _unknown_offer(side: Role) -> str:
    old = _other(side)
    return (
        f"The {old}'s own list is not in this record (it comes from the {old}'s log): "
        f"probe the {old} (kexproxy probe) to know what the {side} could add."
    )


def _cannot(side: Role, peer: Peer, lacking: Sequence[Unit], *, upgrade: bool) -> str:
    labels = ", ".join(dict.fromkeys(KIND[u.kind].label for u in lacking))
    old = _other(side)
    if peer.implementation is None or not peer.version:
        remedy = f"change the {old}, or upgrade or rebuild the {side}"
    elif upgrade:
        remedy = f"change the {old}, or upgrade the {side} (the recipe names the release)"
    else:
        remedy = (
            f"change the {old} (no release of {peer.implementation.name} that kexproxy knows "
            "offers one)"
        )
    return f"The {side} ({peer.label}) can add none of the {old}'s {labels} algorithms: {remedy}."
