"""Verdicts on a handshake: the grade and its weakest parts, Terrapin, post-quantum, key sizes."""

from __future__ import annotations

from typing import Any

from kexproxy.core.record import JSONDict
from tests.core.diagnosis.records import CLIENT, SERVER, diag, make_record


def test_a_good_handshake() -> None:
    record = make_record()
    d = diag(record)
    assert record.negotiated and record.negotiated["kex"] == "sntrup761x25519-sha512@openssh.com"
    assert (d["grade"], d["reasons"], d["fixes"]) == ("good", [], [])
    assert d["post_quantum"]["post_quantum"] is True
    assert d["terrapin"] == {
        "cve": "CVE-2023-48795",
        "exposed": False,
        "strict_kex": True,
        "affected_modes": ["chacha20-poly1305@openssh.com"],
        "reason": "chacha20-poly1305@openssh.com is affected, but strict KEX is in effect on both sides",
    }
    assert d["host_key_size"]["grade"] == "good" and d["dh_gex"] is None


def test_grade_names_the_weakest_parts() -> None:
    record = make_record(
        client={"kex": "curve25519-sha256", "cipher": "aes128-cbc", "mac": "hmac-sha1"},
        server={"cipher": "aes128-cbc,3des-cbc", "mac": "hmac-sha1"},
    )
    d = diag(record)
    assert d["grade"] == "weak"
    assert d["reasons"][0].startswith("key exchange curve25519-sha256 is weak: no post-quantum")
    assert any(r.startswith("cipher aes128-cbc is weak: CBC mode") for r in d["reasons"])
    assert sum("aes128-cbc" in r for r in d["reasons"]) == 1  # both directions said once
    broken = make_record(client={"cipher": "3des-cbc"}, server={"cipher": "3des-cbc"})
    assert diag(broken)["grade"] == "broken"
    assert diag(broken)["reasons"][0].startswith("cipher 3des-cbc is broken")


def test_terrapin_needs_both_markers() -> None:
    no_strict = {"kex": CLIENT["kex"].replace(",kex-strict-c-v00@openssh.com", "")}
    record = make_record(client=no_strict)
    terrapin = diag(record)["terrapin"]
    assert terrapin["exposed"] is True and terrapin["strict_kex"] is False
    assert "only the server offers strict KEX" in terrapin["reason"]
    assert any(r.startswith("Terrapin:") for r in diag(record)["reasons"])
    neither = make_record(
        client=no_strict, server={"kex": SERVER["kex"].replace(",kex-strict-s-v00@openssh.com", "")}
    )
    assert "only" not in diag(neither)["terrapin"]["reason"]


def test_terrapin_modes() -> None:
    no_strict = {"kex": "curve25519-sha256"}
    cbc_etm = make_record(
        client={**no_strict, "cipher": "aes128-cbc", "mac": "hmac-sha2-256-etm@openssh.com"},
        server={"cipher": "aes128-cbc"},
    )
    assert diag(cbc_etm)["terrapin"]["exposed"] is True
    assert diag(cbc_etm)["terrapin"]["affected_modes"] == [
        "aes128-cbc with hmac-sha2-256-etm@openssh.com"
    ]
    cbc_em = make_record(
        client={**no_strict, "cipher": "aes128-cbc", "mac": "hmac-sha2-256"},
        server={"cipher": "aes128-cbc"},
    )
    assert diag(cbc_em)["terrapin"]["exposed"] is False
    ctr_etm = make_record(
        client={**no_strict, "cipher": "aes128-ctr", "mac": "hmac-sha2-256-etm@openssh.com"}
    )
    assert diag(ctr_etm)["terrapin"]["exposed"] is False
    gcm = make_record(client={**no_strict, "cipher": "aes256-gcm@openssh.com"})
    assert diag(gcm)["terrapin"]["exposed"] is False
    failed = make_record(client={"cipher": "aes128-cbc"})
    assert diag(failed)["terrapin"]["exposed"] is None


def test_post_quantum_reasons() -> None:
    preferred_classical = make_record(
        client={"kex": "curve25519-sha256,sntrup761x25519-sha512@openssh.com"}
    )
    pq = diag(preferred_classical)["post_quantum"]
    assert pq["post_quantum"] is False
    assert "both sides offer sntrup761x25519-sha512@openssh.com" in pq["reason"]
    server_lacks = make_record(server={"kex": "curve25519-sha256"})
    assert (
        "the server offers no post-quantum method" in diag(server_lacks)["post_quantum"]["reason"]
    )
    mlkem = make_record(
        client={"kex": "mlkem768x25519-sha256"}, server={"kex": "mlkem768x25519-sha256"}
    )
    assert diag(mlkem)["post_quantum"]["post_quantum"] is True


def test_host_key_sizes() -> None:
    def size(key_type: str, bits: int | None) -> Any:
        record = make_record(host_key={"algorithm": "x", "key_type": key_type, "bits": bits})
        return diag(record)["host_key_size"]["grade"]

    assert size("rsa", 768) == "broken"
    assert size("rsa", 1024) == "weak"
    assert size("rsa", 2047) == "weak"
    assert size("rsa", 2048) == "good"
    assert size("rsa-cert", 1024) == "weak"
    assert size("rsa", None) is None
    assert size("dsa", 1024) == "broken"
    assert size("ed25519", 256) == "good"
    record = make_record(host_key={"algorithm": "ssh-rsa", "key_type": "rsa", "bits": 1024})
    assert any("1024-bit RSA" in r for r in diag(record)["reasons"])
    nothing = make_record(host_key={})
    assert diag(nothing)["host_key_size"] is None


def test_group_exchange_sizes() -> None:
    gex = {"kex": "diffie-hellman-group-exchange-sha256"}

    def verdict(p_bits: int | None, request: JSONDict | None = None) -> Any:
        record = make_record(
            client=gex, server=gex, dh_gex={"request": request, "p_bits": p_bits, "g": 2}
        )
        return diag(record)["dh_gex"]

    assert verdict(768)["grade"] == "broken"
    assert verdict(1024)["grade"] == "weak"
    assert verdict(2048)["grade"] == "good"
    assert verdict(None)["grade"] is None
    small = verdict(1024, {"min": 1024, "n": 2048, "max": 8192})
    assert "accepts groups from 1024 bits" in small["notes"][0]
    outside = verdict(1024, {"min": 2048, "n": 3072, "max": 8192})
    assert "outside the range" in outside["notes"][0]
    rsa = make_record(
        client={"kex": "rsa2048-sha256"},
        server={"kex": "rsa2048-sha256", "host_key": "ssh-rsa"},
        dh_gex={"transient_rsa_bits": 1024},
    )
    assert diag(rsa)["dh_gex"]["kind"] == "rsa" and diag(rsa)["dh_gex"]["grade"] == "weak"
