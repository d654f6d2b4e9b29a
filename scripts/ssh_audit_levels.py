"""Derives ssh-audit's level per algorithm from its published expected results, for the test
that holds kexproxy's grades against them (tests/core/test_ssh_audit_levels.py).

ssh-audit's repository keeps, for each server it tests in Docker, the JSON it must print
(test/docker/expected_results/*.json): every algorithm the server offered, with ``fail``,
``warn`` and ``info`` notes. This reads them from a clone (bare or not) at its HEAD and
writes the small table the test reads, with the commit it came from:

    git clone --bare https://github.com/jtesta/ssh-audit /tmp/ssh-audit.git
    python scripts/ssh_audit_levels.py /tmp/ssh-audit.git > tests/core/data/ssh_audit_levels.json
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from typing import Any

SOURCE = "https://github.com/jtesta/ssh-audit"
RESULTS = "test/docker/expected_results"
#: ssh-audit's sections of a result, in its own names (key = host key, enc = cipher).
SECTIONS = ("kex", "key", "enc", "mac")
#: Mildest first: the table keeps the mildest level an algorithm gets in any result.
LEVELS = ("none", "info", "warn", "fail")
DERIVATION = (
    "For each algorithm in each result file: fail if it has a fail note, else warn if it has "
    "a warn note, else info if it has an info note, else none. The table keeps the mildest "
    "level over all files, with that observation's fail and warn notes: a stricter level in "
    "some file comes from that server's group or key size (ssh-audit's group-exchange and "
    "host key tests), which kexproxy judges per connection from the capture, not per name."
)


def level_of(notes: Mapping[str, Any]) -> str:
    """An entry's level from its notes: the most severe kind of note it has."""
    for level in ("fail", "warn", "info"):
        if notes.get(level):
            return level
    return "none"


def derive_levels(results: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per section and algorithm, the mildest level seen and its fail and warn notes."""
    table: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for result in results:
        for section in SECTIONS:
            for entry in result.get(section) or []:
                notes = entry.get("notes") or {}
                seen = {
                    "level": level_of(notes),
                    "notes": [*notes.get("fail", []), *notes.get("warn", [])],
                }
                known = table[section].get(entry["algorithm"])
                if known is None or LEVELS.index(seen["level"]) < LEVELS.index(known["level"]):
                    table[section][entry["algorithm"]] = seen
    return {section: dict(sorted(names.items())) for section, names in table.items()}


def _git(repo: str, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", repo, *args], check=True, capture_output=True, text=True
    ).stdout


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    repo = argv[0]
    commit = _git(repo, "rev-parse", "HEAD").strip()
    files = sorted(
        name
        for name in _git(repo, "ls-tree", "--name-only", f"HEAD:{RESULTS}").split()
        if name.endswith(".json")
    )
    results = [json.loads(_git(repo, "show", f"HEAD:{RESULTS}/{name}")) for name in files]
    table = {
        "source": SOURCE,
        "commit": commit,
        "files": [f"{RESULTS}/{name}" for name in files],
        "derivation": DERIVATION,
        "generated_by": "scripts/ssh_audit_levels.py",
        "levels": derive_levels(results),
    }
    sys.stdout.write(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
