"""Policies: parsing that refuses what it does not understand, verdicts, and `read --policy` in CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from kexproxy.core.policy import Policy, PolicyError
from kexproxy.core.record import SessionRecord
from kexproxy.schema import session_record_schema
from tests.core.diagnosis.records import CLIENT, SERVER, make_record

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
PUBLIC = ROOT / "tests" / "data" / "public"
#: OpenSSH 10.2 client and 9.9 server: ML-KEM, chacha20-poly1305 under strict KEX, Ed25519.
CLEAN = PUBLIC / "zeek-ssh-ssh_kex_mlkem.pcap"
#: OpenSSH 7.4 and 7.5: curve25519 (no post-quantum), chacha20-poly1305 without strict KEX.
WEAK = PUBLIC / "zeek-ssh-ssh_kex_curve25519.pcap"


def load(name: str) -> Policy:
    with open(POLICIES / f"{name}.toml", "rb") as handle:
        return Policy.from_dict(tomllib.load(handle))


def rules(result: dict[str, Any]) -> list[str]:
    return [v["rule"] for v in result["violations"]]


def test_shipped_policies_parse() -> None:
    modern = load("modern")
    assert modern.name == "modern" and modern.post_quantum_kex and modern.strict_kex
    assert modern.min_grade == "strong" and modern.min_rsa_bits == 3072
    legacy = load("legacy-tolerant")
    assert legacy.name == "legacy-tolerant" and legacy.min_grade == "weak"
    assert not legacy.post_quantum_kex


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kexx": {}}, "unknown key(s) kexx"),
        ({"kex": {"allowed": ["x"]}}, "[kex] has unknown key(s) allowed"),
        ({"kex": {"allow": "curve25519-sha256"}}, "kex.allow must be a list"),
        ({"kex": {"forbid": [""]}}, "non-empty strings"),
        ({"kex": ["x"]}, "[kex] must be a table"),
        ({"require": {"min_rsa_bits": "2048"}}, "positive integer"),
        ({"require": {"min_rsa_bits": True}}, "positive integer"),
        ({"require": {"strict_kex": "yes"}}, "true or false"),
        ({"require": {"min_grade": "ok"}}, "must be strong, good, weak or broken"),
        ({"require": {"post_quantum": True}}, "unknown key(s) post_quantum"),
        ({"require": []}, "[require] must be a table"),
        ({"name": 3}, "name must be a string"),
        ({"cipher": {"allow": []}}, "cipher.allow is empty: it would allow nothing"),
    ],
)
def test_a_policy_that_does_not_parse_says_why(data: dict[str, Any], message: str) -> None:
    with pytest.raises(
        PolicyError,
        match=message.replace("[", r"\[")
        .replace("]", r"\]")
        .replace("(", r"\(")
        .replace(")", r"\)"),
    ):
        Policy.from_dict(data)


def test_a_good_handshake_passes_the_modern_policy() -> None:
    result = load("modern").evaluate(make_record())
    assert (result["evaluated"], result["compliant"], result["violations"]) == (True, True, [])


def test_globs_allow_and_forbid() -> None:
    policy = Policy.from_dict(
        {"kex": {"forbid": ["*sha1*"]}, "cipher": {"allow": ["aes*-gcm@openssh.com"]}}
    )
    record = make_record(
        client={"kex": "diffie-hellman-group14-sha1"}, server={"kex": "diffie-hellman-group14-sha1"}
    )
    result = policy.evaluate(record)
    assert rules(result) == ["kex.forbid", "cipher.allow"]
    assert (
        result["violations"][0]["message"]
        == "kex diffie-hellman-group14-sha1 matches forbidden pattern '*sha1*'"
    )
    assert result["violations"][1]["value"] == "chacha20-poly1305@openssh.com"
    # The implicit MAC of an AEAD cipher is no algorithm to judge.
    macs = Policy.from_dict({"mac": {"allow": ["hmac-sha2-512-etm@openssh.com"]}})
    assert macs.evaluate(make_record())["compliant"] is True


def test_sizes() -> None:
    policy = Policy.from_dict({"require": {"min_rsa_bits": 3072, "min_dh_bits": 3072}})
    rsa = make_record(host_key={"algorithm": "rsa-sha2-512", "key_type": "rsa", "bits": 2048})
    assert rules(policy.evaluate(rsa)) == ["require.min_rsa_bits"]
    group14 = {"kex": "diffie-hellman-group14-sha256"}
    fixed = make_record(client=group14, server=group14)
    result = policy.evaluate(fixed)
    assert rules(result) == ["require.min_dh_bits"]
    assert "2048-bit group" in result["violations"][0]["message"]
    gex = {"kex": "diffie-hellman-group-exchange-sha256"}
    small = make_record(client=gex, server=gex, dh_gex={"request": None, "p_bits": 2048, "g": 2})
    assert rules(policy.evaluate(small)) == ["require.min_dh_bits"]
    unseen = make_record(
        client=gex, server=gex, dh_gex={"request": None, "p_bits": None, "g": None}
    )
    result = policy.evaluate(unseen)
    assert result["compliant"] is True and result["unchecked"]
    big = make_record(client=gex, server=gex, dh_gex={"request": None, "p_bits": 4096, "g": 2})
    assert policy.evaluate(big)["compliant"] is True


def test_requirements() -> None:
    policy = Policy.from_dict(
        {
            "require": {
                "strict_kex": True,
                "post_quantum_kex": True,
                "no_terrapin_exposure": True,
                "min_grade": "good",
            }
        }
    )
    no_strict = make_record(
        client={"kex": "curve25519-sha256"},
        server={"kex": SERVER["kex"].replace(",kex-strict-s-v00@openssh.com", "")},
    )
    assert rules(policy.evaluate(no_strict)) == [
        "require.strict_kex",
        "require.no_terrapin_exposure",
        "require.post_quantum_kex",
        "require.min_grade",
    ]
    tolerant = Policy.from_dict({"require": {"min_grade": "weak"}})
    assert tolerant.evaluate(no_strict)["compliant"] is True
    broken = make_record(client={"cipher": "3des-cbc"}, server={"cipher": "3des-cbc"})
    assert rules(tolerant.evaluate(broken)) == ["require.min_grade"]


def test_min_grade_strong_asks_for_post_quantum_and_everything_else_good() -> None:
    strong = Policy.from_dict({"require": {"min_grade": "strong"}})
    good = Policy.from_dict({"require": {"min_grade": "good"}})
    post_quantum = make_record()
    classical = make_record(client={"kex": "curve25519-sha256,kex-strict-c-v00@openssh.com"})
    assert (post_quantum.diagnosis or {})["grade"] == "strong"
    assert (classical.diagnosis or {})["grade"] == "good"
    assert strong.evaluate(post_quantum)["compliant"] is True
    result = strong.evaluate(classical)
    assert rules(result) == ["require.min_grade"]
    assert (
        result["violations"][0]["message"] == "the negotiated set is good, the policy needs strong"
    )
    # At least good: strong is better than good, so both pass.
    assert good.evaluate(post_quantum)["compliant"] is True
    assert good.evaluate(classical)["compliant"] is True


def test_legacy_tolerant_passes_classical_and_refuses_what_is_broken() -> None:
    legacy = load("legacy-tolerant")
    cbc = {"cipher": "aes128-cbc"}
    classical = make_record(client={"kex": "curve25519-sha256", **cbc}, server=cbc)
    assert (classical.diagnosis or {})["grade"] == "weak"
    assert legacy.evaluate(classical)["compliant"] is True
    sha1_signatures = make_record(client={"host_key": "ssh-rsa"}, server={"host_key": "ssh-rsa"})
    assert rules(legacy.evaluate(sha1_signatures)) == ["require.min_grade"]
    blowfish = make_record(client={"cipher": "blowfish-cbc"}, server={"cipher": "blowfish-cbc"})
    assert rules(legacy.evaluate(blowfish)) == ["cipher.forbid", "require.min_grade"]


def test_nothing_negotiated_is_not_judged() -> None:
    failed = make_record(client={"kex": "diffie-hellman-group1-sha1"})
    result = load("modern").evaluate(failed)
    assert result == {
        "name": "modern",
        "evaluated": False,
        "compliant": None,
        "reason": "nothing negotiated to check (outcome failed)",
        "violations": [],
    }


def test_a_record_without_a_diagnosis_is_diagnosed_on_the_way() -> None:
    record: SessionRecord = replace(
        make_record(client={"kex": "curve25519-sha256"}), diagnosis=None
    )
    assert "require.post_quantum_kex" in rules(load("modern").evaluate(record))


def test_the_core_does_no_io() -> None:
    """The policy, diagnosis and catalogue modules import nothing that does I/O or UI."""
    code = (
        "import sys, kexproxy.core.policy, kexproxy.core.diagnosis, kexproxy.core.catalogue\n"
        "print([m for m in ('rich', 'textual', 'asyncio', 'socket', 'sqlite3', 'scapy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    core = ROOT / "kexproxy" / "core"
    paths = [core / "policy.py", core / "catalogue.py", *sorted((core / "diagnosis").glob("*.py"))]
    assert len(paths) >= 5
    for path in paths:
        source = path.read_text()
        assert "open(" not in source and "tomllib.load(" not in source, path


# -- `kexproxy read --policy` as CI runs it -----------------------------------------------------


def kexproxy(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "kexproxy", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
        check=False,
    )


def test_ci_run_fails_on_a_weak_negotiation_and_passes_a_clean_one() -> None:
    weak = kexproxy("read", "--policy", "policies/modern.toml", str(WEAK))
    assert weak.returncode == 1, weak.stderr
    # Under the table, one unwrapped line per violation.
    assert "  policy: kex curve25519-sha256 is not among the allowed patterns" in weak.stdout
    assert "  policy: the key exchange is not post-quantum" in weak.stdout
    clean = kexproxy("read", "--policy", "policies/modern.toml", str(CLEAN))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "policy ok" in clean.stdout and "  policy:" not in clean.stdout
    both = kexproxy("read", "--policy", "policies/modern.toml", str(CLEAN), str(WEAK))
    assert both.returncode == 1
    tolerant = kexproxy("read", "--policy", "policies/legacy-tolerant.toml", str(WEAK))
    assert tolerant.returncode == 0


def test_ci_run_puts_the_verdict_in_each_json_record() -> None:
    result = kexproxy("read", "--json", "--policy", "policies/modern.toml", str(WEAK))
    assert result.returncode == 1
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["policy"]["name"] == "modern" and record["policy"]["compliant"] is False
    assert record["policy"]["file"] == "policies/modern.toml"
    assert record["diagnosis"]["grade"] == "weak"
    jsonschema.validate(record, session_record_schema())


def test_a_policy_that_is_not_utf8_says_where(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'name = "x\xff"\n')
    result = kexproxy("read", "--policy", str(bad), str(CLEAN))
    assert result.returncode == 2
    assert result.stderr == f"kexproxy: policy {bad}: not UTF-8 text (byte 0xff at offset 9)\n"


def test_an_unusable_policy_file_is_bad_input(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[kex]\nallow = 'x'\n")
    result = kexproxy("read", "--policy", str(broken), str(CLEAN))
    assert result.returncode == 2
    assert "kex.allow must be a list" in result.stderr and result.stdout == ""
    missing = kexproxy("read", "--policy", str(tmp_path / "none.toml"), str(CLEAN))
    assert missing.returncode == 2
    garbage = tmp_path / "garbage.toml"
    garbage.write_text("this is = = not toml")
    assert kexproxy("read", "--policy", str(garbage), str(CLEAN)).returncode == 2


def test_client_lists_from_the_fixture_are_real() -> None:
    assert "kex-strict-c-v00@openssh.com" in CLIENT["kex"]
