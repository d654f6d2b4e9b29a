"""scripts/abuse_proxy, briefly: the live relay under attack keeps every invariant the script checks.

A few seconds of each attack (garbage, slowloris, silent, 20,000-name KEXINITs, RST at
each stage, half-close) against a real sshd behind `kexproxy proxy`, with a real ssh loop
alongside; the long run is the script itself (see its --help).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import peers

pytestmark = [pytest.mark.peers, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "abuse_proxy"


def test_a_short_abuse_run_holds_every_invariant(tmp_path: Path) -> None:
    peers.which_or_skip("sshd")
    peers.which_or_skip("ssh")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--seconds", "4", "--slowloris", "40", "--silent", "20",
         "--calm", "2", "--settle", "2"],
        capture_output=True, text=True, timeout=90, cwd=tmp_path, check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tui")])},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("invariants: all held ("), result.stdout
    made = next(line for line in lines if line.startswith("connections made"))
    # Every attack really ran: a silent attacker would make the invariants hold trivially.
    for kind in ("slowloris", "silent", "garbage", "huge", "rst", "half-close", "ssh"):
        count = re.search(rf"\b{kind} (\d+)", made)
        assert count is not None and int(count.group(1)) > 0, made
