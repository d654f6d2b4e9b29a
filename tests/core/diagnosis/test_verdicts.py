"""Verdicts on a handshake: the grade and its weakest parts, Terrapin, post-quantum, key sizes."""

from __future__ import annotations

from typing import Any

from kexproxy.core.catalogue import catalogue
from kexproxy.core.diagnosis.verdicts import OPENSSH_PQ_KEX, OPENSSH_WARNS_FROM
from kexproxy.core.record import JSONDict
from tests.core.diagnosis.records import CLIENT, SERVER, diag, make_record


def test_a_post_quantum_modern_handshake_is_strong() -> None:
    record = make_record()
    d = diag(record)
    assert record.negotiated and record.negotiated["kex"] == "sntrup761x25519-sha512@openssh.com"
    assert (d["grade"], d["reasons"], d["fixes"]) == ("strong", [], [])
    assert d["post_quantum"]["post_quantum"] is True
    assert d["post_quantum"]["openssh_warning"] is False
    assert d["post_quantum"]["openssh_warning_text"] is None
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
    # The classical key exchange is good: post-quantum is its own verdict, not a reason.
    assert d["reasons"][0].startswith("cipher aes128-cbc is weak: CBC mode")
    assert not any("curve25519" in r or "post-quantum" in r for r in d["reasons"])
    assert any(r.startswith("MAC hmac-sha1 is weak: SHA-1") for r in d["reasons"])
    assert sum("aes128-cbc" in r for r in d["reasons"]) == 1  # both directions said once
    broken = make_record(client={"cipher": "3des-cbc"}, server={"cipher": "3des-cbc"})
    assert diag(broken)["grade"] == "broken"
    assert diag(broken)["reasons"][0].startswith("cipher 3des-cbc is broken")


def test_a_modern_classical_handshake_is_good() -> None:
    record = make_record(client={"kex": "curve25519-sha256,kex-strict-c-v00@openssh.com"})
    d = diag(record)
    assert record.negotiated and record.negotiated["kex"] == "curve25519-sha256"
    assert (d["grade"], d["reasons"], d["weakest"]) == ("good", [], [])
    assert d["post_quantum"]["post_quantum"] is False
    assert d["post_quantum"]["openssh_warning"] is True


def test_strong_needs_everything_else_good() -> None:
    assert diag(make_record())["grade"] == "strong"
    # A weak MAC, an exposed pair, a small RSA key: each takes a post-quantum handshake down.
    weak_mac = make_record(
        client={"cipher": "aes128-ctr", "mac": "hmac-sha2-256"}, server={"cipher": "aes128-ctr"}
    )
    assert diag(weak_mac)["grade"] == "weak"
    exposed = make_record(
        client={"kex": CLIENT["kex"].replace(",kex-strict-c-v00@openssh.com", "")}
    )
    assert diag(exposed)["terrapin"]["exposed"] is True and diag(exposed)["grade"] == "weak"
    small_key = make_record(host_key={"algorithm": "rsa-sha2-512", "key_type": "rsa", "bits": 1024})
    assert diag(small_key)["grade"] == "weak"
    # A note (UMAC's 64-bit tag, a NIST curve) does not; a name not in the catalogue does.
    umac = make_record(
        client={"cipher": "aes128-ctr", "mac": "umac-64-etm@openssh.com"},
        server={"cipher": "aes128-ctr", "host_key": "ecdsa-sha2-nistp256"},
    )
    assert diag(umac)["grade"] == "strong"
    unknown = make_record(client={"cipher": "made-up-cipher"}, server={"cipher": "made-up-cipher"})
    assert diag(unknown)["grade"] == "good"
    assert diag(unknown)["weakest"] == [
        {"grade": "unknown", "what": "cipher", "name": "made-up-cipher"}
    ]


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


def test_the_openssh_warning() -> None:
    """ssh 10.1+ warns about every negotiated key exchange its table does not mark PQ."""
    classical = diag(make_record(server={"kex": "curve25519-sha256"}))["post_quantum"]
    assert classical["openssh_warning"] is True
    assert classical["openssh_warning_text"] == (
        "** WARNING: connection is not using a post-quantum key exchange algorithm.\n"
        '** This session may be vulnerable to "store now, decrypt later" attacks.\n'
        "** The server may need to be upgraded. See https://openssh.com/pq.html"
    )
    assert "KexAlgorithms" in classical["openssh_warning_reason"]
    assert "WarnWeakCrypto" in classical["openssh_warning_reason"]
    for name in ("mlkem768x25519-sha256", "sntrup761x25519-sha512"):
        pq = diag(make_record(client={"kex": name}, server={"kex": name}))["post_quantum"]
        assert (pq["openssh_warning"], pq["openssh_warning_text"]) == (False, None)
    # A failed negotiation never gets that far; a name OpenSSH lacks is not its question.
    failed = diag(make_record(client={"cipher": "aes128-cbc"}))["post_quantum"]
    assert failed["kex"] is not None and failed["openssh_warning"] is None
    tectia = "diffie-hellman-group14-sha256@ssh.com"
    other = diag(make_record(client={"kex": tectia}, server={"kex": tectia}))["post_quantum"]
    assert other["openssh_warning"] is None
    assert (
        "cannot negotiate diffie-hellman-group14-sha256@ssh.com" in other["openssh_warning_reason"]
    )


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


def test_openssh_post_quantum_table_matches_the_catalogue() -> None:
    """The names OpenSSH's kex-names.c marks KEX_IS_PQ are the catalogue's hybrids it has."""
    cat = catalogue()
    latest = cat.history.releases[-1]
    in_openssh = {
        a.name
        for a in cat
        if a.category == "kex"
        and a.post_quantum
        and (a.in_openssh(OPENSSH_WARNS_FROM) or a.in_openssh(latest))
    }
    assert in_openssh == OPENSSH_PQ_KEX
    assert all(cat.grade(name, "kex") == "strong" for name in OPENSSH_PQ_KEX)
