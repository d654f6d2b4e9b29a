"""The record's certificate fields, held against `openssl x509` on certificates openssl made."""

from __future__ import annotations

import hashlib
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexproxy.core.tls.certificate import describe
from tests.peers.base import which_or_skip

#: openssl -newkey arguments, the key type describe() must name and openssl's key algorithm.
KEYS = {
    "rsa2048": (["-newkey", "rsa:2048"], "rsa"),
    "ec-p256": (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "ec"),
    "ec-p384": (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"], "ec"),
    "ed25519": (["-newkey", "ed25519"], "ed25519"),
}
KEYS_FOR_ED = {"ed25519": 256}

KEYS_OPENSSL_BITS = re.compile(r"Public-Key: \((\d+) bit\)")
SUBJECT = "/CN=test.example/O=Org, Inc./C=DE"


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout


def openssl_certificate(tmp: Path, name: str) -> tuple[bytes, str]:
    """(DER, `openssl x509 -noout -fingerprint -sha256 -subject -issuer -dates -text` of it)."""
    openssl = which_or_skip("openssl")
    args, _ = KEYS[name]
    pem, der = tmp / f"{name}.pem", tmp / f"{name}.der"
    _run(
        openssl, "req", "-x509", *args, "-nodes", "-keyout", str(tmp / f"{name}.key"),
        "-out", str(pem), "-days", "30", "-subj", SUBJECT,
    )  # fmt: skip
    _run(openssl, "x509", "-in", str(pem), "-outform", "DER", "-out", str(der))
    text = _run(
        openssl, "x509", "-in", str(der), "-inform", "DER", "-noout", "-nameopt", "RFC2253",
        "-fingerprint", "-sha256", "-subject", "-issuer", "-dates", "-text",
    )  # fmt: skip
    return der.read_bytes(), text


def _line(text: str, prefix: str) -> str:
    return next(line for line in text.splitlines() if line.strip().startswith(prefix)).strip()


def _openssl_time(text: str, prefix: str) -> str:
    value = _line(text, prefix).split("=", 1)[1]
    moment = datetime.strptime(value, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000000Z")


@pytest.mark.parametrize("name", list(KEYS))
def test_describe_agrees_with_openssl_x509(tmp_path: Path, name: str) -> None:
    der, text = openssl_certificate(tmp_path, name)
    got = describe(der)
    assert got is not None
    fingerprint = _line(text, "sha256 Fingerprint=").split("=", 1)[1]
    assert got["sha256"] == fingerprint.replace(":", "").lower()
    assert got["sha256"] == hashlib.sha256(der).hexdigest()
    assert got["subject"] == _line(text, "subject=").split("=", 1)[1]
    assert got["issuer"] == _line(text, "issuer=").split("=", 1)[1]
    assert got["subject"] == r"C=DE,O=Org\, Inc.,CN=test.example"
    assert got["not_before"] == _openssl_time(text, "notBefore=")
    assert got["not_after"] == _openssl_time(text, "notAfter=")
    assert got["signature_algorithm"] == _line(text, "Signature Algorithm:").split(": ", 1)[1]
    assert got["key_type"] == KEYS[name][1]
    bits = KEYS_OPENSSL_BITS.search(text)
    assert got["bits"] == (int(bits.group(1)) if bits else KEYS_FOR_ED[name])


def test_signature_algorithm_names_are_openssls_and_the_key_sizes_are_the_curves(
    tmp_path: Path,
) -> None:
    expected = {
        "rsa2048": ("sha256WithRSAEncryption", 2048),
        "ec-p256": ("ecdsa-with-SHA256", 256),
        "ec-p384": ("ecdsa-with-SHA256", 384),
        "ed25519": ("ED25519", 256),
    }
    for name, (algorithm, bits) in expected.items():
        got = describe(openssl_certificate(tmp_path, name)[0])
        assert got is not None
        assert (got["signature_algorithm"], got["bits"]) == (algorithm, bits), name


@pytest.fixture(scope="module")
def real_der(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return openssl_certificate(tmp_path_factory.mktemp("cert"), "ec-p256")[0]


def _well_formed(got: dict[str, object] | None, der: bytes) -> None:
    if got is None:
        return
    assert set(got) == {
        "sha256", "subject", "issuer", "key_type", "bits", "not_before", "not_after",
        "signature_algorithm",
    }  # fmt: skip
    assert got["sha256"] == hashlib.sha256(der).hexdigest()


def test_truncated_certificates_give_none_never_an_exception(real_der: bytes) -> None:
    for length in range(len(real_der)):
        got = describe(real_der[:length])
        _well_formed(got, real_der[:length])
        assert got is None, length  # DER lengths make every truncation unreadable


def test_bit_flipped_certificates_give_none_or_partial_fields(real_der: bytes) -> None:
    partial = 0
    for bit in range(len(real_der) * 8):
        flipped = bytearray(real_der)
        flipped[bit // 8] ^= 1 << (bit % 8)
        got = describe(bytes(flipped))
        _well_formed(got, bytes(flipped))
        if got is not None and None in got.values():
            partial += 1
    assert partial > 0  # some flips must leave a loadable certificate with an unreadable field


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_any_bytes_give_none_or_a_description(data: bytes) -> None:
    _well_formed(describe(data), data)


@settings(max_examples=200)
@given(st.data())
def test_splices_of_a_real_certificate_never_raise(real_der: bytes, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(real_der)))
    junk = data.draw(st.binary(max_size=40))
    der = real_der[:start] + junk + real_der[start + len(junk) :]
    _well_formed(describe(der), der)
