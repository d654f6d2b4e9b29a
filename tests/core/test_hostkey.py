"""Host keys: type, size and fingerprint as the real ``ssh-keygen -l`` prints them.

Keys are made with `cryptography`, written as OpenSSH ``.pub`` files and listed by the
system's ssh-keygen, so the expected values come from OpenSSH itself, not from our idea of
it. Certificates are signed by ssh-keygen with a throwaway CA.
"""

from __future__ import annotations

import base64
import re
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kexproxy.core.codec import Cursor
from kexproxy.core.hostkey import HostKey, fingerprint, parse_host_key
from tests.builders import HostKeyPair, KeyKind, host_key, mpint, string
from tests.peers import which_or_skip

KEYS: list[tuple[KeyKind, int]] = [
    ("rsa", 1024),
    ("rsa", 2048),
    ("rsa", 3072),
    ("ecdsa", 256),
    ("ecdsa", 384),
    ("ecdsa", 521),
    ("ed25519", 256),
    ("dsa", 1024),
]


@dataclass(frozen=True)
class Listed:
    """One line of ``ssh-keygen -l``: ``BITS SHA256:... COMMENT (TYPE)``."""

    bits: int
    sha256: str
    key_type: str


def keygen_list(path: Path) -> Listed:
    keygen = which_or_skip("ssh-keygen")
    out = subprocess.run(
        [keygen, "-l", "-E", "sha256", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    match = re.fullmatch(r"(\d+) (SHA256:[A-Za-z0-9+/]+) .* \((\S+)\)", out)
    assert match, out
    return Listed(bits=int(match[1]), sha256=match[2], key_type=match[3].lower())


def write_pub(tmp_path: Path, key: HostKeyPair, name: str = "key.pub") -> Path:
    path = tmp_path / name
    path.write_bytes(key.openssh + b" test@kexproxy\n")
    return path


def blob_of(pub_file: Path) -> bytes:
    return base64.b64decode(pub_file.read_text().split()[1])


@pytest.mark.parametrize(("kind", "bits"), KEYS, ids=[f"{k}{b}" for k, b in KEYS])
def test_keys_match_ssh_keygen(tmp_path: Path, kind: KeyKind, bits: int) -> None:
    key = host_key(kind, bits)
    listed = keygen_list(write_pub(tmp_path, key))
    parsed = parse_host_key(key.blob)
    assert parsed.error is None
    assert parsed.algorithm == key.algorithm
    assert parsed.certificate is False
    assert parsed.sha256 == listed.sha256
    assert parsed.blob_sha256 == listed.sha256
    assert parsed.bits == listed.bits == bits
    assert parsed.key_type == listed.key_type
    assert parsed.to_dict() == {
        "algorithm": key.algorithm,
        "key_type": listed.key_type,
        "bits": bits,
        "sha256": listed.sha256,
        "certificate": False,
    }


def test_fingerprint_is_unpadded_base64_of_sha256() -> None:
    # sha256("") = e3b0c442...; its base64 ends in "=", which ssh-keygen drops.
    assert fingerprint(b"") == "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keygen = which_or_skip("ssh-keygen")
    path = tmp_path_factory.mktemp("ca") / "ca"
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "test-ca", "-f", str(path)],
        check=True,
        timeout=30,
        capture_output=True,
    )
    return path


def sign_host_key(ca: Path, pub: Path) -> Path:
    keygen = which_or_skip("ssh-keygen")
    subprocess.run(
        [keygen, "-q", "-h", "-s", str(ca), "-I", "host-id", "-n", "host.example", str(pub)],
        check=True,
        timeout=30,
        capture_output=True,
    )
    cert = pub.with_name(pub.name.removesuffix(".pub") + "-cert.pub")
    assert cert.exists()
    return cert


@pytest.mark.parametrize(
    ("kind", "bits", "algorithm"),
    [
        ("ed25519", 256, "ssh-ed25519-cert-v01@openssh.com"),
        ("ecdsa", 384, "ecdsa-sha2-nistp384-cert-v01@openssh.com"),
        ("rsa", 2048, "ssh-rsa-cert-v01@openssh.com"),
    ],
)
def test_certificates_match_ssh_keygen(
    tmp_path: Path, ca: Path, kind: KeyKind, bits: int, algorithm: str
) -> None:
    key = host_key(kind, bits)
    cert = sign_host_key(ca, write_pub(tmp_path, key))
    listed = keygen_list(cert)
    blob = blob_of(cert)
    parsed = parse_host_key(blob)
    assert parsed.error is None
    assert parsed.algorithm == algorithm
    assert parsed.certificate is True
    assert listed.key_type == f"{kind}-cert"
    assert parsed.key_type == listed.key_type
    assert parsed.bits == listed.bits == bits
    # ssh-keygen fingerprints a certificate by the key it certifies.
    assert parsed.sha256 == listed.sha256 == fingerprint(key.blob)
    assert parsed.blob_sha256 == fingerprint(blob) != parsed.sha256
    data = parsed.to_dict()
    assert data["blob_sha256"] == parsed.blob_sha256
    assert "error" not in data


# -- blobs from strangers ----------------------------------------------------------------


def test_a_blob_without_a_type_is_an_error() -> None:
    parsed = parse_host_key(b"\x00\x00")
    assert parsed == HostKey(
        algorithm="",
        key_type=None,
        bits=None,
        sha256=fingerprint(b"\x00\x00"),
        certificate=False,
        blob_sha256=fingerprint(b"\x00\x00"),
        error="host key blob: key type length: needs 4 bytes, 2 left",
    )
    assert parsed.to_dict()["error"] == parsed.error


def test_an_unknown_type_is_reported_with_its_name() -> None:
    blob = string("ssh-quantum@example.com") + string(b"key")
    parsed = parse_host_key(blob)
    assert parsed.algorithm == "ssh-quantum@example.com"
    assert parsed.key_type is None and parsed.bits is None
    assert parsed.error == "unknown host key type 'ssh-quantum@example.com'"
    assert parsed.sha256 == fingerprint(blob)


def test_an_unknown_certificate_type_is_an_error_not_a_crash() -> None:
    blob = string("ssh-quantum-cert-v01@openssh.com") + string(b"nonce") + string(b"key")
    parsed = parse_host_key(blob)
    assert parsed.certificate is True
    assert parsed.key_type is None
    assert parsed.error == "unknown host key type 'ssh-quantum-cert-v01@openssh.com'"


def test_trailing_bytes_after_a_plain_key_are_an_error() -> None:
    key = host_key("ed25519")
    parsed = parse_host_key(key.blob + b"\x00")
    assert parsed.error == "host key blob has 1 bytes after the key"
    assert parsed.key_type == "ed25519"
    assert parsed.bits == 256


def test_an_invalid_point_keeps_type_and_size_and_says_why() -> None:
    # A well-formed P-256 blob whose point is not on the curve: cryptography refuses it.
    point = b"\x04" + b"\x01" * 64
    blob = string("ecdsa-sha2-nistp256") + string("nistp256") + string(point)
    parsed = parse_host_key(blob)
    assert parsed.key_type == "ecdsa" and parsed.bits == 256
    assert parsed.error is not None and parsed.error.startswith("host key does not load: ")


def test_a_short_ed25519_key_has_no_size_and_does_not_load() -> None:
    parsed = parse_host_key(string("ssh-ed25519") + string(bytes(31)))
    assert parsed.bits is None
    assert parsed.error is not None and parsed.error.startswith("host key does not load")


def _p256_point() -> bytes:
    cursor = Cursor(host_key("ecdsa", 256).blob)
    cursor.string("type")
    cursor.string("curve")
    return cursor.string("point")


@pytest.mark.parametrize(
    ("blob", "key_type", "bits"),
    [
        (
            string("sk-ssh-ed25519@openssh.com") + string(bytes(32)) + string("ssh:"),
            "ed25519-sk",
            256,
        ),
        (string("ssh-ed448") + string(bytes(57)), "ed448", 456),
        (
            string("sk-ecdsa-sha2-nistp256@openssh.com")
            + string("nistp256")
            + string(_p256_point())
            + string("ssh:"),
            "ecdsa-sk",
            256,
        ),
        (
            string("webauthn-sk-ecdsa-sha2-nistp256@openssh.com")
            + string("nistp256")
            + string(_p256_point())
            + string("ssh:"),
            "ecdsa-sk",
            256,
        ),
    ],
    ids=["sk-ed25519", "ed448", "sk-ecdsa", "webauthn-sk-ecdsa"],
)
def test_well_formed_keys_cryptography_cannot_load_are_not_errors(
    blob: bytes, key_type: str, bits: int
) -> None:
    # cryptography raises UnsupportedAlgorithm for some of these (Ed448 over SSH, webauthn):
    # a type it does not know is no reason to call the peer's key broken.
    parsed = parse_host_key(blob)
    assert parsed.error is None
    assert parsed.key_type == key_type and parsed.bits == bits


def test_rsa_size_ignores_the_mpint_sign_byte() -> None:
    n = (1 << 2047) | 1
    blob = string("ssh-rsa") + mpint(65537) + mpint(n)
    parsed = parse_host_key(blob)
    assert parsed.bits == 2048


@pytest.mark.parametrize(("kind", "bits"), KEYS, ids=[f"{k}{b}" for k, b in KEYS])
def test_every_truncation_of_a_valid_blob_is_an_error(kind: KeyKind, bits: int) -> None:
    blob = host_key(kind, bits).blob
    for cut in range(len(blob)):
        parsed = parse_host_key(blob[:cut])
        assert parsed.error is not None, cut
        assert parsed.sha256 == fingerprint(blob[:cut])


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=300))
def test_random_blobs_never_raise(blob: bytes) -> None:
    parsed = parse_host_key(blob)
    assert parsed.blob_sha256 == fingerprint(blob)
    assert parsed.error is not None or parsed.key_type is not None


_TYPES = [
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ssh-ed25519",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
]


@FUZZ
@given(st.sampled_from(_TYPES), st.lists(st.binary(max_size=70), max_size=6), st.binary(max_size=8))
def test_well_typed_random_fields_never_raise(
    algorithm: str, fields: list[bytes], tail: bytes
) -> None:
    blob = string(algorithm) + b"".join(string(f) for f in fields) + tail
    parsed = parse_host_key(blob)
    assert parsed.algorithm == algorithm
    assert parsed.key_type is not None


@FUZZ
@given(st.data())
def test_mutated_real_blobs_never_raise(data: st.DataObject) -> None:
    kind, bits = data.draw(st.sampled_from(KEYS[3:]))  # the fast ones to make
    blob = bytearray(host_key(kind, bits).blob)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] ^= data.draw(st.integers(1, 255))
    parse_host_key(bytes(blob))


def test_a_dsa_key_warns_nobody() -> None:
    # cryptography deprecates DSA; a peer's DSA key must not print a warning on stderr.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parsed = parse_host_key(host_key("dsa", 1024).blob)
    assert parsed.key_type == "dsa" and parsed.error is None


def test_whatever_cryptography_raises_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives import serialization

    def explode(_data: bytes) -> None:
        raise RuntimeError("internal parser error")

    monkeypatch.setattr(serialization, "load_ssh_public_key", explode)
    parsed = parse_host_key(host_key("ed25519").blob)
    assert parsed.error == "host key does not load: RuntimeError"
    assert parsed.key_type == "ed25519"


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("Unsupported key type", None),
        ("unsupported curve", None),
        (
            "Key is not in the proper format",
            "host key does not load: Key is not in the proper format",
        ),
    ],
)
def test_a_value_error_from_cryptography(
    monkeypatch: pytest.MonkeyPatch, message: str, error: str | None
) -> None:
    from cryptography.hazmat.primitives import serialization

    def refuse(_data: bytes) -> None:
        raise ValueError(message)

    monkeypatch.setattr(serialization, "load_ssh_public_key", refuse)
    assert parse_host_key(host_key("ed25519").blob).error == error
