"""kexproxy's recipes for a PuTTY client that gave up, applied to real plink and sshd.

plink reads the server's KEXINIT before sending its own and, in batch mode, abandons the
connection when what it would choose is below the WARN line of its settings. The capture
then holds no client KEXINIT; kexproxy replays PuTTY's choice from its release's default
settings and offers two recipes: the PuTTY saved-session line that moves the token above
WARN (applied here as a user would: the line in ~/.putty/sessions/<name>, then
``plink -load <name>``), or the sshd_config line that has the server offer something PuTTY
does not warn about (applied by editing sshd's existing line). Each must make real plink log in.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kexproxy.core.record import JSONDict, SessionRecord
from kexproxy.pipeline import capture_records
from tests.integration.test_recipes_openssh import edit_sshd_config
from tests.peers import PeerResult, Sshd, Tcpdump, run_plink_session

pytestmark = pytest.mark.peers

#: sshd offering only a key exchange PuTTY keeps below its warning line by default.
OLD_SERVER = ["KexAlgorithms diffie-hellman-group1-sha1"]


def plink(port: int, fingerprint: str, session: str | None) -> PeerResult:
    return run_plink_session(port, fingerprint, session)


def recorded_give_up(tmp_path: Path, sshd: Sshd) -> SessionRecord:
    path = tmp_path / "putty.pcap"
    with Tcpdump(path, sshd.port):
        result = plink(sshd.port, sshd.host_key_fingerprint("ed25519"), None)
    assert result.returncode != 0
    assert "Cannot confirm a weak crypto primitive in batch mode" in result.stderr
    [record] = capture_records(str(path))
    # plink may or may not have sent its KEXINIT before it judged the server's: both are
    # diagnosed, from the record's choice or from PuTTY's default settings replayed.
    assert record.outcome in ("aborted", "incomplete") and record.server_kexinit is not None
    return record


def recipe_for(record: SessionRecord, side: str) -> JSONDict:
    diagnosis = record.diagnosis or {}
    found: list[JSONDict] = [r for r in diagnosis["recipes"] if r["side"] == side]
    assert len(found) == 1, diagnosis["recipes"]
    return found[0]


def test_the_putty_setting_recipe_makes_plink_log_in(tmp_path: Path) -> None:
    with Sshd(OLD_SERVER, host_keys=("ed25519",)) as sshd:
        record = recorded_give_up(tmp_path, sshd)
        diagnosis = record.diagnosis or {}
        assert any("below its warning line" in line for line in diagnosis["real_fix"])
        recipe = recipe_for(record, "client")
        [step] = recipe["steps"]
        assert (step["kind"], step["software"]) == ("putty_setting", "PuTTY 0.78")
        assert step["text"].startswith("KEX=") and step["text"].endswith(",dh-group1-sha1,WARN")
        assert recipe["grade"] == "broken" and recipe["warnings"]
        result = plink(sshd.port, sshd.host_key_fingerprint("ed25519"), step["text"] + "\n")
    assert result.returncode == 0, (step["text"], result.stderr)


def test_the_server_recipe_makes_default_plink_log_in(tmp_path: Path) -> None:
    with Sshd(OLD_SERVER, host_keys=("ed25519",)) as sshd:
        record = recorded_give_up(tmp_path, sshd)
    recipe = recipe_for(record, "server")
    assert (record.diagnosis or {})["recipes"][0] is recipe  # stronger than trusting group1
    config = OLD_SERVER
    for step in recipe["steps"]:
        assert step["kind"] == "sshd_config"
        config = edit_sshd_config(config, step["text"])
    with Sshd(config, host_keys=("ed25519",)) as sshd:
        result = plink(sshd.port, sshd.host_key_fingerprint("ed25519"), None)
    assert result.returncode == 0, (config, result.stderr)
