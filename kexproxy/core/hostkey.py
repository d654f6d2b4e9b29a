"""Host keys from the server's KEX reply: type, size and the fingerprint ``ssh-keygen -l`` prints.

The blob comes from a stranger, so it is walked with bounded reads first (type and size
survive a corrupt key) and then loaded with `cryptography`, whose verdict decides whether
the key is valid; a blob that does not load is reported, never raised.
"""

from __future__ import annotations

import base64
import hashlib
import warnings
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from kexproxy.core.codec import Cursor, DecodeError, decode_text

#: ssh-keygen's key type names (sshkey.c keytypes[].shortname, lowercased).
_PLAIN_TYPES: dict[str, str] = {
    "ssh-rsa": "rsa",
    "ssh-dss": "dsa",
    "ecdsa-sha2-nistp256": "ecdsa",
    "ecdsa-sha2-nistp384": "ecdsa",
    "ecdsa-sha2-nistp521": "ecdsa",
    "ssh-ed25519": "ed25519",
    "ssh-ed448": "ed448",
    "sk-ecdsa-sha2-nistp256@openssh.com": "ecdsa-sk",
    "sk-ssh-ed25519@openssh.com": "ed25519-sk",
    "webauthn-sk-ecdsa-sha2-nistp256@openssh.com": "ecdsa-sk",
}
_CURVE_BITS = {"nistp256": 256, "nistp384": 384, "nistp521": 521}
_CERT_SUFFIX = "-cert-v01@openssh.com"


@dataclass(frozen=True, slots=True, kw_only=True)
class HostKey:
    """What the record says of the server's host key."""

    algorithm: str
    key_type: str | None
    bits: int | None
    sha256: str
    certificate: bool
    blob_sha256: str
    error: str | None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "algorithm": self.algorithm,
            "key_type": self.key_type,
            "bits": self.bits,
            "sha256": self.sha256,
            "certificate": self.certificate,
        }
        if self.certificate:
            out["blob_sha256"] = self.blob_sha256
        if self.error:
            out["error"] = self.error
        return out


def fingerprint(blob: bytes) -> str:
    """``SHA256:`` and unpadded base64, as ``ssh-keygen -l`` prints it."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii")
    return "SHA256:" + digest.rstrip("=")


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def _key_fields(cursor: Cursor, plain: str) -> tuple[list[bytes], int | None]:
    """Reads the public key fields of `plain`; returns them raw (for re-encoding) and the size."""
    if plain == "ssh-rsa":
        e = cursor.string("rsa e")
        n = cursor.string("rsa n")
        return [e, n], int.from_bytes(n, "big").bit_length()
    if plain == "ssh-dss":
        fields = [cursor.string(f"dsa {name}") for name in ("p", "q", "g", "y")]
        return fields, int.from_bytes(fields[0], "big").bit_length()
    if plain.startswith("ecdsa-sha2-") or plain.startswith(("sk-ecdsa-", "webauthn-sk-ecdsa-")):
        curve = cursor.string("ecdsa curve")
        point = cursor.string("ecdsa point")
        fields = [curve, point]
        if plain.startswith(("sk-", "webauthn-")):
            fields.append(cursor.string("sk application"))
        return fields, _CURVE_BITS.get(decode_text(curve))
    if plain in ("ssh-ed25519", "sk-ssh-ed25519@openssh.com"):
        key = cursor.string("ed25519 key")
        fields = [key]
        if plain.startswith("sk-"):
            fields.append(cursor.string("sk application"))
        return fields, 256 if len(key) == 32 else None
    if plain == "ssh-ed448":
        key = cursor.string("ed448 key")
        return [key], 456 if len(key) == 57 else None
    return [], None


def parse_host_key(blob: bytes) -> HostKey:
    """Decodes a host key blob (RFC 4253 6.6, RFC 5656, RFC 8709, OpenSSH PROTOCOL.certkeys)."""
    blob_fp = fingerprint(blob)
    cursor = Cursor(blob)
    try:
        algorithm = decode_text(cursor.string("key type"))
    except DecodeError as exc:
        return HostKey(
            algorithm="",
            key_type=None,
            bits=None,
            sha256=blob_fp,
            certificate=False,
            blob_sha256=blob_fp,
            error=f"host key blob: {exc}",
        )
    certificate = algorithm.endswith(_CERT_SUFFIX)
    plain = algorithm[: -len(_CERT_SUFFIX)] if certificate else algorithm
    key_type = _PLAIN_TYPES.get(plain)
    error: str | None = None
    bits: int | None = None
    sha = blob_fp
    try:
        if certificate:
            cursor.string("certificate nonce")
        fields, bits = _key_fields(cursor, plain)
        if certificate and fields:
            sha = fingerprint(_string(plain.encode()) + b"".join(_string(f) for f in fields))
        elif not certificate and key_type is not None and cursor.remaining:
            error = f"host key blob has {cursor.remaining} bytes after the key"
    except DecodeError as exc:
        error = f"host key blob is corrupt: {exc}"
        bits = None
    if key_type is not None and error is None:
        error = _cryptography_verdict(algorithm, blob, certificate)
    if key_type is None:
        error = error or f"unknown host key type {algorithm!r}"
    if certificate and key_type is not None:
        key_type += "-cert"
    return HostKey(
        algorithm=algorithm,
        key_type=key_type,
        bits=bits,
        sha256=sha,
        certificate=certificate,
        blob_sha256=blob_fp,
        error=error,
    )


def _cryptography_verdict(algorithm: str, blob: bytes, certificate: bool) -> str | None:
    """None if `cryptography` loads the key, else why it refused (an invalid point, say)."""
    line = algorithm.encode() + b" " + base64.b64encode(blob)
    try:
        # A peer's DSA key must not make cryptography print a deprecation warning on stderr.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if certificate:
                serialization.load_ssh_public_identity(line)
            else:
                serialization.load_ssh_public_key(line)
    except (ValueError, TypeError) as exc:
        if "Unsupported" in str(exc) or "unsupported" in str(exc):
            return None
        return f"host key does not load: {exc}"
    except UnsupportedAlgorithm:
        return None  # a type cryptography cannot load (ssh-ed448, webauthn-sk-*) is not invalid
    except Exception as exc:  # cryptography's parser is not ours: never let it end a session
        return f"host key does not load: {type(exc).__name__}"
    return None
