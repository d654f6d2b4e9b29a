"""The catalogue's grades held against ssh-audit's levels: the same, or a written reason.

tests/core/data/ssh_audit_levels.json is derived by scripts/ssh_audit_levels.py from
ssh-audit's published expected results at the commit it names. The mapping: ssh-audit's
``fail`` ~ broken, ``warn`` ~ weak, ``info`` or no note ~ good or strong (ssh-audit has no
grade above "no complaint"). Markers such as kexguess2@matt.ucc.asn.au are not graded here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from kexproxy.core.catalogue import Algorithm, Catalogue, Category, catalogue
from scripts.ssh_audit_levels import derive_levels

TABLE = Path(__file__).resolve().parent / "data" / "ssh_audit_levels.json"
#: ssh-audit's section names -> the catalogue's categories.
SECTION_CATEGORY: dict[str, Category] = {
    "kex": "kex",
    "key": "host_key",
    "enc": "cipher",
    "mac": "mac",
}
#: kexproxy's grade -> the ssh-audit level it corresponds to.
GRADE_LEVEL = {"strong": "none", "good": "none", "weak": "warn", "broken": "fail"}
#: ssh-audit's level, with its two "no complaint" levels as one.
LEVEL = {"none": "none", "info": "none", "warn": "warn", "fail": "fail"}


@pytest.fixture(scope="module")
def table() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(TABLE.read_text())
    return data


def _both_know(table: dict[str, Any], cat: Catalogue) -> list[tuple[Algorithm, str]]:
    out = []
    for section, names in table["levels"].items():
        for name, seen in names.items():
            algorithm = cat.lookup(name, SECTION_CATEGORY[section])
            if algorithm is not None and not algorithm.is_marker:
                out.append((algorithm, LEVEL[seen["level"]]))
    return out


def test_the_table_names_its_source(table: dict[str, Any]) -> None:
    assert table["source"] == "https://github.com/jtesta/ssh-audit"
    assert re.fullmatch(r"[0-9a-f]{40}", table["commit"])
    assert len(table["files"]) > 20
    assert all(f.startswith("test/docker/expected_results/") for f in table["files"])
    assert set(table["levels"]) == set(SECTION_CATEGORY)


def test_every_algorithm_both_know_agrees_or_says_why(table: dict[str, Any]) -> None:
    cat = catalogue()
    both = _both_know(table, cat)
    assert len(both) >= 50  # 53 at the recorded commit
    unexplained = [
        (a.name, a.grade, level)
        for a, level in both
        if GRADE_LEVEL[str(a.grade)] != level and not a.versus_ssh_audit
    ]
    assert unexplained == []
    # A reason for a difference that is not there any more is stale.
    stale = [
        a.name for a, level in both if GRADE_LEVEL[str(a.grade)] == level and a.versus_ssh_audit
    ]
    assert stale == []


def test_every_reason_against_ssh_audit_is_for_a_name_it_grades(table: dict[str, Any]) -> None:
    cat = catalogue()
    compared = {(a.category, a.name) for a, _level in _both_know(table, cat)}
    orphans = [a.name for a in cat if a.versus_ssh_audit and (a.category, a.name) not in compared]
    assert orphans == []
    for algorithm in cat:
        if algorithm.versus_ssh_audit:
            assert "ssh-audit" in algorithm.versus_ssh_audit
            assert "\n" not in algorithm.versus_ssh_audit


def test_where_the_views_differ_on_purpose(table: dict[str, Any]) -> None:
    """The differences the catalogue argues for, pinned so that a change is deliberate."""
    cat = catalogue()
    by_name = {(a.category, a.name): level for a, level in _both_know(table, cat)}
    kept = {
        # Post-quantum is the diagnosis's own verdict, not a grade of every classical kex.
        ("kex", "curve25519-sha256"): ("good", "warn"),
        # NIST curves: approved (SP 800-186), distrust said as a note.
        ("kex", "ecdh-sha2-nistp256"): ("good", "fail"),
        ("host_key", "ecdsa-sha2-nistp256"): ("good", "fail"),
        # Terrapin is judged per pair (strict KEX), not per name.
        ("cipher", "chacha20-poly1305@openssh.com"): ("good", "warn"),
        # HMAC does not need collision resistance.
        ("mac", "hmac-sha1"): ("weak", "fail"),
    }
    for (category, name), (grade, level) in kept.items():
        algorithm = cat.lookup(name, category)  # type: ignore[arg-type]
        assert algorithm is not None and algorithm.grade == grade, name
        assert by_name[(category, name)] == level, name
    # SHA-1 signatures and 64-bit blocks: ssh-audit's fail is kexproxy's broken too.
    for category, name in (("host_key", "ssh-rsa"), ("cipher", "blowfish-cbc")):
        algorithm = cat.lookup(name, category)  # type: ignore[arg-type]
        assert algorithm is not None and algorithm.grade == "broken"
        assert by_name[(category, name)] == "fail" and not algorithm.versus_ssh_audit


def test_the_derivation_keeps_the_mildest_level_per_name() -> None:
    """A stricter level in one result comes from that server's sizes, not from the name."""
    results = [
        {
            "kex": [
                {
                    "algorithm": "diffie-hellman-group-exchange-sha256",
                    "notes": {"fail": ["using small 1024-bit modulus"], "warn": ["not PQ"]},
                }
            ],
            "enc": [{"algorithm": "aes128-ctr", "notes": {"info": ["available since 3.7"]}}],
        },
        {
            "kex": [
                {"algorithm": "diffie-hellman-group-exchange-sha256", "notes": {"warn": ["not PQ"]}}
            ],
            "mac": [{"algorithm": "made-up-mac", "notes": {}}],
        },
    ]
    levels = derive_levels(results)
    assert levels["kex"]["diffie-hellman-group-exchange-sha256"] == {
        "level": "warn",
        "notes": ["not PQ"],
    }
    assert levels["enc"]["aes128-ctr"] == {"level": "info", "notes": []}
    assert levels["mac"]["made-up-mac"] == {"level": "none", "notes": []}
    assert levels["key"] == {}
