"""Shared checks for the tests that apply kexproxy's recipes to real non-OpenSSH peers (no tests here).

A recipe is only proven when the real peer, changed exactly as the recipe says, then
negotiates: these helpers record a handshake with tcpdump and read it with the code behind
``kexproxy read``, pick the top recipe for one side, check that it is written in that side's
own syntax, and check that an added name was chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

from kexproxy.core.record import JSONDict, SessionRecord
from kexproxy.pipeline import capture_records
from tests.peers import PeerResult, Tcpdump

#: Step kinds that only OpenSSH (and Windows OpenSSH) reads: never for another side.
OPENSSH_KINDS = frozenset({"ssh_option", "ssh_config", "sshd_config"})


def recorded(
    pcap: Path, port: int, run: Callable[[int], PeerResult]
) -> tuple[SessionRecord, PeerResult]:
    """One client run against `port` under tcpdump, and the record kexproxy reads from it."""
    with Tcpdump(pcap, port):
        result = run(port)
    [record] = capture_records(str(pcap))
    return record, result


def top(record: SessionRecord, side: str) -> JSONDict:
    """The best recipe for `side`, checked to cover every failing list."""
    assert record.outcome == "failed", record.outcome
    recipes = [r for r in (record.diagnosis or {})["recipes"] if r["side"] == side]
    assert recipes, (record.diagnosis or {})["recipes"]
    recipe: JSONDict = min(recipes, key=lambda r: r["rank"])
    assert set(recipe["covers"]) == set(record.failing_lists), recipe
    return recipe


def assert_own_syntax(
    record: SessionRecord, recipe: JSONDict, software: str, kinds: Collection[str]
) -> None:
    """Every step is the changing side's, in its software's own kind of setting, and no recipe
    of the record gives that side an OpenSSH option or config line."""
    side = recipe["side"]
    assert recipe["software"] == {side: software}, recipe["software"]
    assert recipe["steps"], recipe
    for step in recipe["steps"]:
        assert step["side"] == side and step["software"] == software, step
        assert step["kind"] in kinds, step
    persist = recipe["persist"]
    assert persist is None or persist["kind"] not in OPENSSH_KINDS, persist
    for other in (record.diagnosis or {})["recipes"]:
        for step in other["steps"]:
            assert step["side"] != side or step["kind"] not in OPENSSH_KINDS, other


def added(recipe: JSONDict) -> set[str]:
    """The names the recipe adds on its own side."""
    return {a["name"] for a in recipe["adds"] if a["side"] == recipe["side"]}


def negotiated_names(record: SessionRecord) -> set[str]:
    """Every algorithm the handshake chose (key exchange, host key, ciphers, MACs, compression)."""
    return {str(v) for v in (record.negotiated or {}).values() if isinstance(v, str)}


def assert_negotiates_with(record: SessionRecord, names: set[str]) -> None:
    """The handshake negotiated, and chose one of `names` (the recipe's additions)."""
    assert record.outcome == "negotiated", (record.outcome, record.failing_lists)
    assert names & negotiated_names(record), (names, record.negotiated)
