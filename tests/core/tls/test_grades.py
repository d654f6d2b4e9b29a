"""The TLS grades: each name's grade, reason and source, held against Mozilla's server-side TLS guidelines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kexproxy.core.tls.grades import (
    GROUPS,
    SIGNATURE_SCHEMES,
    VERSIONS,
    VERSUS_MOZILLA,
    grade,
    grade_dh_bits,
    grade_suite,
    overall,
)

MOZILLA = json.loads((Path(__file__).parents[1] / "data" / "mozilla_tls_levels.json").read_text())
#: The mapping stated in the table: modern/intermediate ~ good or strong, old only ~ weak.
EXPECTED = {"modern": {"good", "strong"}, "intermediate": {"good", "strong"}, "old": {"weak"}}
LISTS = ("versions", "cipher_suites", "supported_groups", "signature_algorithms")


def test_every_difference_from_mozilla_is_explained() -> None:
    differ = set()
    compared = 0
    for list_name in LISTS:
        for name, level in MOZILLA[list_name].items():
            found = grade(list_name, name)
            assert found is not None, f"kexproxy cannot grade {name}, which Mozilla lists"
            compared += 1
            if found.grade not in EXPECTED[level]:
                differ.add(name)
    assert compared == 41
    assert differ == set(VERSUS_MOZILLA), (
        "a difference from Mozilla without a written reason, or a stale reason"
    )


@pytest.mark.parametrize(
    ("name", "expected", "why"),
    [
        ("TLS_AES_128_GCM_SHA256", "strong", "TLS 1.3"),
        ("TLS_AES_128_CCM_8_SHA256", "weak", "64-bit"),
        ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "good", "AEAD"),
        ("TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "good", "AEAD"),
        ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "weak", "CBC"),
        ("TLS_RSA_WITH_AES_128_GCM_SHA256", "weak", "forward secrecy"),
        ("TLS_DHE_DSS_WITH_AES_128_GCM_SHA256", "weak", "DSA"),
        ("TLS_RSA_WITH_RC4_128_SHA", "broken", "RC4"),
        ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", "broken", "Sweet32"),
        ("TLS_RSA_WITH_DES_CBC_SHA", "broken", "DES"),
        ("TLS_RSA_EXPORT_WITH_RC4_40_MD5", "broken", "export"),
        ("TLS_DH_anon_WITH_AES_128_GCM_SHA256", "broken", "anonymous"),
        ("TLS_RSA_WITH_NULL_SHA256", "broken", "no encryption"),
        ("TLS_ECDHE_ECDSA_WITH_NULL_SHA", "broken", "no encryption"),
        ("TLS_SHA256_SHA256", "broken", "integrity only"),
    ],
)
def test_suite_grades_name_their_weakest_part(name: str, expected: str, why: str) -> None:
    found = grade_suite(name)
    assert found is not None
    assert (found.grade, why in found.reason) == (expected, True), found
    assert found.source


def test_signalling_and_unknown_suites_are_not_graded() -> None:
    assert grade_suite("TLS_EMPTY_RENEGOTIATION_INFO_SCSV") is None
    assert grade_suite("TLS_FALLBACK_SCSV") is None
    assert grade_suite("0x1A2B") is None
    assert grade("supported_groups", "0x1234") is None


def test_versions_groups_and_schemes() -> None:
    assert {n: g.grade for n, g in VERSIONS.items()} == {
        "SSL 2.0": "broken",
        "SSL 3.0": "broken",
        "TLS 1.0": "broken",
        "TLS 1.1": "broken",
        "TLS 1.2": "good",
        "TLS 1.3": "strong",
    }
    assert "RFC 8996" in VERSIONS["TLS 1.0"].source
    assert GROUPS["X25519MLKEM768"].grade == "strong" and GROUPS["X25519MLKEM768"].post_quantum
    assert GROUPS["x25519"].grade == "good" and not GROUPS["x25519"].post_quantum
    assert GROUPS["ffdhe2048"].grade == "good"
    assert GROUPS["secp192r1"].grade == "broken" and GROUPS["sect283k1"].grade == "weak"
    assert (
        SIGNATURE_SCHEMES["rsa_pkcs1_sha1"].grade == "broken"
        and "RFC 9155" in SIGNATURE_SCHEMES["rsa_pkcs1_sha1"].source
    )
    assert (
        SIGNATURE_SCHEMES["rsa_pkcs1_sha256"].grade == "good"
        and "PSS" in SIGNATURE_SCHEMES["rsa_pkcs1_sha256"].reason
    )
    assert SIGNATURE_SCHEMES["rsa_pss_rsae_sha256"].grade == "good"
    assert grade("versions", "TLS 1.3 draft 23") is not None
    assert [grade_dh_bits(b).grade for b in (768, 1024, 2048)] == ["broken", "weak", "good"]


def test_negotiated_set_is_strong_only_over_tls13_and_a_post_quantum_group() -> None:
    def parts(version: str, suite: str, group: str) -> dict[str, object]:
        out = {
            "versions": grade("versions", version),
            "cipher_suites": grade("cipher_suites", suite),
            "supported_groups": grade("supported_groups", group),
        }
        return {k: v for k, v in out.items() if v is not None}

    assert overall(parts("TLS 1.3", "TLS_AES_128_GCM_SHA256", "X25519MLKEM768"))[0] == "strong"  # type: ignore[arg-type]
    grade_, reasons = overall(parts("TLS 1.3", "TLS_AES_128_GCM_SHA256", "x25519"))  # type: ignore[arg-type]
    assert grade_ == "good" and "no post-quantum" in reasons[0]
    grade_, reasons = overall(parts("TLS 1.2", "TLS_RSA_WITH_AES_128_CBC_SHA", "x25519"))  # type: ignore[arg-type]
    assert grade_ == "weak" and "TLS_RSA_WITH_AES_128_CBC_SHA is weak" in reasons[0]
    assert overall(parts("TLS 1.0", "TLS_RSA_WITH_AES_128_CBC_SHA", "x25519"))[0] == "broken"  # type: ignore[arg-type]
    assert overall({}) == (None, [])


def test_every_registry_name_is_graded_or_named_ungraded() -> None:
    """Each IANA name the parser can put in a record (tls/names.py) gets a grade, or is knowingly left out."""
    names = pytest.importorskip("kexproxy.core.tls.names")
    from kexproxy.core.tls.grades import SIGNALLING, UNGRADED_PREFIXES

    tables = {
        "cipher_suites": names.CIPHER_SUITES,
        "supported_groups": names.GROUPS,
        "signature_algorithms": names.SIGNATURE_SCHEMES,
    }
    for list_name, table in tables.items():
        for name in table.values():
            if name in SIGNALLING or name.startswith(UNGRADED_PREFIXES):
                continue
            assert grade(list_name, name) is not None, f"{list_name}: {name} is not graded"
