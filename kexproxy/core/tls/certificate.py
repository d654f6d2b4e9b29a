"""The record's `certificate`: what a server's leaf certificate says, read from its DER with `cryptography`.

A certificate arrives from the wire, so it is hostile until read: anything that does not load
as X.509 gives None, and a field that cannot be read (a malformed name, an unknown key, a date
out of range) is None on its own while the others are still reported.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.utils import CryptographyDeprecationWarning

from kexproxy.core.record import rfc3339

if TYPE_CHECKING:
    from cryptography import x509

#: Signature algorithm OIDs by the long name OpenSSL prints for them (`openssl x509 -text`,
#: "Signature Algorithm: ..."; crypto/objects/objects.txt). Others are given as dotted OIDs.
SIGNATURE_ALGORITHMS = {
    "1.2.840.113549.1.1.2": "md2WithRSAEncryption",
    "1.2.840.113549.1.1.4": "md5WithRSAEncryption",
    "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
    "1.2.840.113549.1.1.10": "rsassaPss",
    "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
    "1.2.840.113549.1.1.12": "sha384WithRSAEncryption",
    "1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
    "1.2.840.113549.1.1.14": "sha224WithRSAEncryption",
    "1.2.840.10045.4.1": "ecdsa-with-SHA1",
    "1.2.840.10045.4.3.1": "ecdsa-with-SHA224",
    "1.2.840.10045.4.3.2": "ecdsa-with-SHA256",
    "1.2.840.10045.4.3.3": "ecdsa-with-SHA384",
    "1.2.840.10045.4.3.4": "ecdsa-with-SHA512",
    "1.3.101.112": "ED25519",
    "1.3.101.113": "ED448",
    "1.2.840.10040.4.3": "dsaWithSHA1",
    "2.16.840.1.101.3.4.3.1": "dsa_with_SHA224",
    "2.16.840.1.101.3.4.3.2": "dsa_with_SHA256",
}

#: Sizes of the Edwards-curve public keys (RFC 8032 section 5: 32 and 57 octets), which
#: `cryptography` gives no key_size for.
EDWARDS_BITS = {"ed25519": 256, "ed448": 456}

_T = TypeVar("_T")


def _field(read: Callable[[], _T]) -> _T | None:
    """One field of a loaded certificate, or None when the DER behind it is malformed.

    `cryptography` parses lazily, so a certificate that loads can still fail on a field; any
    exception here is wire data being wrong, never a bug worth stopping a session for.
    """
    try:
        return read()
    except Exception:
        return None


def _key(certificate: x509.Certificate) -> tuple[str | None, int | None]:
    """The subject key's type (rsa, ec, ed25519, ed448, dsa) and size in bits; None for others."""
    key = _field(certificate.public_key)
    match key:
        case rsa.RSAPublicKey():
            return "rsa", key.key_size
        case ec.EllipticCurvePublicKey():
            return "ec", key.curve.key_size
        case ed25519.Ed25519PublicKey():
            return "ed25519", EDWARDS_BITS["ed25519"]
        case ed448.Ed448PublicKey():
            return "ed448", EDWARDS_BITS["ed448"]
        case dsa.DSAPublicKey():
            return "dsa", key.key_size
        case _:
            return None, None


def _time(read: Callable[[], datetime]) -> str | None:
    """A validity bound as the record's RFC 3339 UTC string."""
    moment = _field(read)
    return None if moment is None else rfc3339(moment.timestamp())


def _signature_algorithm(certificate: x509.Certificate) -> str | None:
    """OpenSSL's name of the signature algorithm, else its dotted OID."""
    oid = _field(lambda: certificate.signature_algorithm_oid.dotted_string)
    return None if oid is None else SIGNATURE_ALGORITHMS.get(oid, oid)


def describe(der: bytes) -> dict[str, object] | None:
    """The record's `certificate` for one DER certificate, or None when it is not X.509 at all.

    Keys: sha256 (hex of the DER), subject and issuer (RFC 4514), key_type, bits, not_before,
    not_after (RFC 3339 UTC), signature_algorithm; each None when that part cannot be read.
    `cryptography` warns about what it will stop accepting (DSA keys, non-positive serial
    numbers); what a peer sent is still a fact to report, so those warnings are silenced here.
    """
    # cryptography.x509 imports email.utils, which imports socket: loaded only when a
    # certificate is read, so importing the core still loads no I/O module (test_import_hygiene)
    from cryptography import x509

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            certificate = x509.load_der_x509_certificate(der)
        except Exception:
            return None
        key_type, bits = _key(certificate)
        return {
            "sha256": hashlib.sha256(der).hexdigest(),
            # the lambdas matter: reading .subject / .issuer is itself the lazy parse that may fail
            "subject": _field(lambda: certificate.subject.rfc4514_string()),  # noqa: PLW0108
            "issuer": _field(lambda: certificate.issuer.rfc4514_string()),  # noqa: PLW0108
            "key_type": key_type,
            "bits": bits,
            "not_before": _time(lambda: certificate.not_valid_before_utc),
            "not_after": _time(lambda: certificate.not_valid_after_utc),
            "signature_algorithm": _signature_algorithm(certificate),
        }
