"""The IANA TLS registries and the names kexproxy prints for codes, so every front end agrees.

The tables live in ``data/tls-registries.toml`` (one reviewable file, each section naming its
IANA registry); this module loads them once and adds what is not a registry: protocol version
names, GREASE (RFC 8701) and the words OpenSSL prints when it receives an alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from kexproxy.core.data import load_toml


def _load() -> dict[str, Mapping[int, str]]:
    raw = load_toml("tls-registries.toml")
    return {
        section: MappingProxyType({int(code, 0): str(name) for code, name in table.items()})
        for section, table in raw.items()
    }


_TABLES = _load()

#: TLS Cipher Suites (IANA tls-parameters-4).
CIPHER_SUITES: Mapping[int, str] = _TABLES["cipher_suites"]
#: TLS Supported Groups (IANA tls-parameters-8), X25519MLKEM768 (0x11ec) among them.
GROUPS: Mapping[int, str] = _TABLES["groups"]
#: TLS SignatureScheme (IANA tls-signaturescheme).
SIGNATURE_SCHEMES: Mapping[int, str] = _TABLES["signature_schemes"]
#: TLS ExtensionType Values (IANA tls-extensiontype-values-1).
EXTENSIONS: Mapping[int, str] = _TABLES["extensions"]
#: TLS Alerts (IANA tls-parameters-6): code -> description.
ALERTS: Mapping[int, str] = _TABLES["alerts"]
#: TLS HandshakeType (IANA tls-parameters-7).
HANDSHAKE_TYPES: Mapping[int, str] = _TABLES["handshake_types"]

#: Protocol versions as they appear in legacy_version and supported_versions (RFC 8446
#: appendix B.3.1 and section 4.2.1; SSL 2.0 is the version of an SSLv2 CLIENT-HELLO).
VERSIONS: Mapping[int, str] = MappingProxyType(
    {
        0x0304: "TLS 1.3",
        0x0303: "TLS 1.2",
        0x0302: "TLS 1.1",
        0x0301: "TLS 1.0",
        0x0300: "SSL 3.0",
        0x0002: "SSL 2.0",
    }
)
#: Draft versions of TLS 1.3 were 0x7f00 + the draft number (draft-ietf-tls-tls13 section 4.2.1).
_DRAFT_PREFIX = 0x7F00

#: Alert levels (RFC 8446 section 6).
ALERT_LEVELS: Mapping[int, str] = MappingProxyType({1: "warning", 2: "fatal"})

#: OpenSSL's reason text when it receives an alert: the SSL_R_SSLV3_ALERT_* and
#: SSL_R_TLSV1_ALERT_* strings of openssl ssl/ssl_err.c, reason code 1000 + the alert
#: (SSL_AD_REASON_OFFSET, ssl/record/rec_layer_s3.c), as OpenSSL 3.0 prints them.
_OPENSSL_RECEIVED: Mapping[int, str] = MappingProxyType(
    {
        10: "sslv3 alert unexpected message",
        20: "sslv3 alert bad record mac",
        21: "tlsv1 alert decryption failed",
        22: "tlsv1 alert record overflow",
        30: "sslv3 alert decompression failure",
        40: "sslv3 alert handshake failure",
        41: "sslv3 alert no certificate",
        42: "sslv3 alert bad certificate",
        43: "sslv3 alert unsupported certificate",
        44: "sslv3 alert certificate revoked",
        45: "sslv3 alert certificate expired",
        46: "sslv3 alert certificate unknown",
        47: "sslv3 alert illegal parameter",
        48: "tlsv1 alert unknown ca",
        49: "tlsv1 alert access denied",
        50: "tlsv1 alert decode error",
        51: "tlsv1 alert decrypt error",
        60: "tlsv1 alert export restriction",
        70: "tlsv1 alert protocol version",
        71: "tlsv1 alert insufficient security",
        80: "tlsv1 alert internal error",
        86: "tlsv1 alert inappropriate fallback",
        90: "tlsv1 alert user cancelled",
        100: "tlsv1 alert no renegotiation",
        109: "tlsv13 alert missing extension",
        110: "tlsv1 unsupported extension",
        111: "tlsv1 certificate unobtainable",
        112: "tlsv1 unrecognized name",
        113: "tlsv1 bad certificate status response",
        114: "tlsv1 bad certificate hash value",
        115: "tlsv1 alert unknown psk identity",
        116: "tlsv13 alert certificate required",
        120: "tlsv1 alert no application protocol",
    }
)
#: ERR_LIB_SSL (20) << 23: OpenSSL 3 error codes of the SSL library start here (err.h).
_OPENSSL_SSL_LIB = 0x0A000000
#: SSL_AD_REASON_OFFSET (ssl/ssl_local.h): the reason code of a received alert is 1000 + it.
_OPENSSL_ALERT_OFFSET = 1000


def is_grease(code: int) -> bool:
    """RFC 8701 GREASE values 0x0a0a, 0x1a1a, ... 0xfafa, in any two-byte registry."""
    return (code & 0x0F0F) == 0x0A0A and (code >> 8) == (code & 0xFF)


def _hex4(code: int) -> str:
    return f"0x{code:04x}"


def _named(table: Mapping[int, str], code: int) -> str:
    name = table.get(code)
    return _hex4(code) if name is None else name


def version_name(code: int) -> str:
    """``TLS 1.3`` ... ``SSL 2.0``, ``TLS 1.3 draft 23``, else ``0xHHHH``."""
    name = VERSIONS.get(code)
    if name is not None:
        return name
    if code & 0xFF00 == _DRAFT_PREFIX:
        return f"TLS 1.3 draft {code & 0xFF}"
    return _hex4(code)


def suite_name(code: int) -> str:
    """The IANA name of a cipher suite; an SSLv2 cipher spec (three bytes) as 0xHHHHHH."""
    if code > 0xFFFF:
        return f"0x{code:06x}"
    return _named(CIPHER_SUITES, code)


def group_name(code: int) -> str:
    return _named(GROUPS, code)


def scheme_name(code: int) -> str:
    return _named(SIGNATURE_SCHEMES, code)


def extension_name(code: int) -> str:
    return _named(EXTENSIONS, code)


def handshake_name(code: int) -> str:
    return HANDSHAKE_TYPES.get(code, f"0x{code:02x}")


def alert_name(code: int) -> str:
    return ALERTS.get(code, f"0x{code:02x}")


def alert_level_name(level: int) -> str:
    return ALERT_LEVELS.get(level, f"0x{level:02x}")


def openssl_alert_text(code: int) -> str:
    """What OpenSSL prints on receiving alert `code`; ``reason(10NN)`` where it has no text."""
    text = _OPENSSL_RECEIVED.get(code)
    return text if text is not None else f"reason({_OPENSSL_ALERT_OFFSET + code})"


def openssl_alert_error(code: int) -> str:
    """The whole OpenSSL 3 error line for a received alert, as ``openssl errstr`` prints it."""
    number = _OPENSSL_SSL_LIB + _OPENSSL_ALERT_OFFSET + code
    return f"error:{number:08X}:SSL routines::{openssl_alert_text(code)}"
