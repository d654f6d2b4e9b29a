"""The diagnosis of one handshake: how to fix a failure, and how strong a success is.

Theory of operation: `diagnose` reads a finished `SessionRecord` (both offers, the negotiated
set, the host key and group-exchange facts) and the algorithm catalogue, and returns the
record's ``diagnosis`` object; `diagnosed` is the pipeline stage that puts it in the record.
For a failed negotiation, `recipes` plans each side's whole change in its own software's
syntax (steps.py writes it), from the names `fixes` finds one side could add. For every handshake,
`verdicts` grades the negotiated set and gives the Terrapin, post-quantum, host key size and
group-exchange verdicts, plus a version hint from the offered lists alone, never from the
banner (`software` reads the banner only to know what a side can implement). Pure: no I/O
beyond the catalogue's package data.
"""

from __future__ import annotations

import json
from dataclasses import replace

from kexproxy.core.catalogue import Catalogue, Category, catalogue
from kexproxy.core.diagnosis.recipes import plan
from kexproxy.core.diagnosis.software import ROLES, offered
from kexproxy.core.diagnosis.verdicts import (
    dh_gex,
    graded_parts,
    host_key_size,
    overall,
    post_quantum,
    terrapin,
)
from kexproxy.core.implementations import implementations
from kexproxy.core.lists import FIELD_BY_RFC, Direction, lists_for
from kexproxy.core.negotiation import Role
from kexproxy.core.record import JSONDict, SessionRecord

#: Offered names not in the catalogue listed per side (a fuzzer may send thousands).
MAX_UNKNOWN = 20
VERSION_CAVEAT = (
    "from the offered lists only, never the banner; a hint, not a version claim: "
    "distributions backport changes and configurations change lists"
)


def _lists_for_hint(kexinit: JSONDict | None, role: Role) -> dict[Category, list[str]]:
    direction: Direction = "c2s" if role == "client" else "s2c"
    return {
        n.kind: offered(kexinit, n.rfc)
        for n in lists_for(direction)
        if n.kind is not None and n.kind != "compression"
    }


def _unknown(kexinit: JSONDict | None, cat: Catalogue) -> list[str]:
    out: list[str] = []
    for rfc in FIELD_BY_RFC:
        for name in offered(kexinit, rfc):
            if name and cat.lookup_in_list(name, rfc) is None and name not in out:
                out.append(name)
                if len(out) >= MAX_UNKNOWN:
                    return out
    return out


def diagnose(record: SessionRecord, cat: Catalogue | None = None) -> JSONDict:
    """The record's ``diagnosis`` object (see docs/session-record.md)."""
    cat = cat or catalogue()
    parts = graded_parts(record, cat)
    verdicts: JSONDict = {
        "terrapin": terrapin(record, cat),
        "post_quantum": post_quantum(record, cat),
        "host_key_size": host_key_size(record),
        "dh_gex": dh_gex(record),
    }
    complete = bool(record.negotiated) and not record.failures
    grade: str | None = None
    findings: list[JSONDict] = []
    if complete:
        grade, findings = overall(parts, verdicts)
    recipes: list[JSONDict] = []
    fix_list: list[JSONDict] = []
    advice: list[str] = []
    if record.failures or (record.outcome in ("aborted", "incomplete") and record.server_kexinit):
        recipes, fix_list, advice = plan(record, cat)
    hints: JSONDict = {"caveat": VERSION_CAVEAT}
    for role in ROLES:
        kexinit = record.client_kexinit if role == "client" else record.server_kexinit
        hints[role] = (
            cat.version_hint(_lists_for_hint(kexinit, role), role).to_dict() if kexinit else None
        )
    out: JSONDict = {
        "grade": grade,
        "reasons": [f["text"] for f in findings],
        "weakest": [{k: f[k] for k in ("grade", "what", "name")} for f in findings],
        "algorithms": parts,
        "recipes": recipes,
        "fixes": fix_list,
        "real_fix": advice,
        **verdicts,
        "version_hint": hints,
        "unknown": {
            "client": _unknown(record.client_kexinit, cat),
            "server": _unknown(record.server_kexinit, cat),
        },
    }
    return out


def preload() -> None:
    """Loads the algorithm and implementation catalogues now (about 0.15 s), so that a
    long-running recorder does not pay for them on its first failed handshake."""
    catalogue()
    implementations()


def diagnosed(record: SessionRecord, cat: Catalogue | None = None) -> SessionRecord:
    """`record` with its ``diagnosis`` filled: the stage between the tracker and the policy."""
    if record.protocol == "tls":
        from kexproxy.core.tls.advice import diagnose_tls

        return replace(record, diagnosis=diagnose_tls(record.to_dict()))
    if cat is not None:
        return replace(record, diagnosis=diagnose(record, cat))
    basis = _basis(record)
    key = json.dumps(basis.to_dict(), sort_keys=True, separators=(",", ":"))
    known = _MEMO.get(key)
    if known is None:
        known = json.dumps(diagnose(basis))
        _MEMO[key] = known
        while len(_MEMO) > MEMO_SIZE:
            del _MEMO[next(iter(_MEMO))]
    # A fresh copy each time: records are values, and no two may share a mutable part.
    return replace(record, diagnosis=json.loads(known))


#: Diagnoses kept by what they are computed from: a capture or a relay sees the same few
#: offers thousands of times (each took about a millisecond, the reader's largest cost
#: per session after the frames themselves).
MEMO_SIZE = 512
_MEMO: dict[str, str] = {}


def _without_cookie(kexinit: JSONDict | None) -> JSONDict | None:
    """A KEXINIT without its cookie: 16 random bytes per session, which no verdict reads."""
    if kexinit is None:
        return None
    return {k: v for k, v in kexinit.items() if k != "cookie"}


def _basis(record: SessionRecord) -> SessionRecord:
    """The record cut down to what the SSH diagnosis reads, so that the memo's key is the
    whole of its input by construction: a field the diagnosis does not get here, it cannot
    depend on (and tests would show it missing)."""
    return SessionRecord(
        id="",
        source=record.source,
        capture=None,
        started=None,
        ended=None,
        client={},
        server=record.server,
        client_banner=record.client_banner,
        server_banner=record.server_banner,
        server_software=record.server_software,
        client_kexinit=_without_cookie(record.client_kexinit),
        server_kexinit=_without_cookie(record.server_kexinit),
        outcome=record.outcome,
        negotiated=record.negotiated,
        failures=record.failures,
        rejections={"client": None, "server": None},
        evidence={},
        host_key=record.host_key,
        hassh=None,
        hassh_server=None,
        hassh_algorithms=None,
        hassh_server_algorithms=None,
        strict_kex=record.strict_kex,
        bytes={},
        notes=[],
        kex_family=record.kex_family,
        dh_gex=record.dh_gex,
    )
