"""The IANA tables agree with scapy's TLS layer and Wireshark's, name for name; GREASE and OpenSSL's alert words."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

import pytest

from kexproxy.core.tls import names
from tests.peers.base import which_or_skip

scapy_suites = pytest.importorskip("scapy.layers.tls.crypto.suites")
scapy_groups = pytest.importorskip("scapy.layers.tls.crypto.groups")
scapy_keyexchange = pytest.importorskip("scapy.layers.tls.keyexchange")
scapy_extensions = pytest.importorskip("scapy.layers.tls.extensions")
scapy_record = pytest.importorskip("scapy.layers.tls.record")

#: Where scapy 2.x spells a code differently from the IANA registry (IANA is right).
SCAPY_SPELLS_DIFFERENTLY: dict[str, dict[int, str]] = {
    "cipher_suites": {
        # IANA: "..._DES_CBC_40_..." for both Kerberos export suites.
        0x0026: "TLS_KRB5_EXPORT_WITH_DES40_CBC_SHA",
        0x0029: "TLS_KRB5_EXPORT_WITH_DES40_CBC_MD5",
        # IANA really registered these two as TLS_PSK_DHE_WITH_... (RFC 6655).
        0xC0AA: "TLS_DHE_PSK_WITH_AES_128_CCM_8",
        0xC0AB: "TLS_DHE_PSK_WITH_AES_256_CCM_8",
    },
    # scapy names TLS 1.2 hash/signature pairs "hash+signature"; IANA's SignatureScheme names
    # are the TLS 1.3 ones.
    "signature_schemes": {
        0x0201: "sha1+rsa",
        0x0203: "sha1+ecdsa",
        0x0401: "sha256+rsa",
        0x0403: "sha256+ecdsa",
        0x0501: "sha384+rsa",
        0x0503: "sha384+ecdsa",
        0x0601: "sha512+rsa",
        0x0603: "sha512+ecdsa",
        0x0804: "sha256+rsaepss",
        0x0805: "sha384+rsaepss",
        0x0806: "sha512+rsaepss",
        0x0809: "sha256+rsapss",
        0x080A: "sha384+rsapss",
        0x080B: "sha512+rsapss",
    },
    "extensions": {0x0010: "alpn", 0x002A: "early_data_indication"},
    # IANA marks these descriptions _RESERVED; scapy keeps the old names.
    "alerts": {
        21: "decryption_failed",
        30: "decompression_failure",
        100: "no_renegotiation",
        111: "certificate_unobtainable",
        114: "bad_certificate_hash_value",
    },
}

#: Codes scapy names that IANA does not assign (so kexproxy prints 0xHHHH for them).
SCAPY_ONLY: dict[str, set[int]] = {
    # Pre-RFC 7905 ChaCha20 suites (Chrome's "_OLD" draft codes), unassigned at IANA.
    "cipher_suites": {0xCC13, 0xCC14, 0xCC15},
    "groups": set(),
    # TLS 1.2 hash/signature pairs that have no SignatureScheme: anonymous, DSA, MD5, SHA-224.
    "signature_schemes": {
        (hash_ << 8) | sig
        for hash_ in range(7)
        for sig in range(4)
        if ((hash_ << 8) | sig) not in names.SIGNATURE_SCHEMES
    },
    # Next Protocol Negotiation (a Google draft) and ESNI (a withdrawn draft).
    "extensions": {0x3374, 0xFFCE},
    "alerts": set(),
}


def _scapy() -> dict[str, Mapping[int, str]]:
    return {
        "cipher_suites": {
            code: name
            for code, name in scapy_suites._tls_cipher_suites.items()
            if code <= 0xFFFF  # SSLv2 cipher specs are three bytes
        },
        "groups": scapy_groups._tls_named_groups,
        "signature_schemes": scapy_keyexchange._tls_hash_sig,
        "extensions": scapy_extensions._tls_ext,
        "alerts": scapy_record._tls_alert_description,
    }


OURS: dict[str, Mapping[int, str]] = {
    "cipher_suites": names.CIPHER_SUITES,
    "groups": names.GROUPS,
    "signature_schemes": names.SIGNATURE_SCHEMES,
    "extensions": names.EXTENSIONS,
    "alerts": names.ALERTS,
}


@pytest.mark.parametrize("table", sorted(OURS))
def test_every_code_scapy_knows_has_the_same_iana_name(table: str) -> None:
    theirs = _scapy()[table]
    ours = OURS[table]
    differ = {code: theirs[code] for code in set(theirs) & set(ours) if theirs[code] != ours[code]}
    assert differ == SCAPY_SPELLS_DIFFERENTLY.get(table, {})
    assert set(theirs) - set(ours) == SCAPY_ONLY[table]
    assert len(set(theirs) & set(ours)) >= 16  # the comparison is not vacuous


def test_post_quantum_groups() -> None:
    assert names.group_name(0x11EC) == "X25519MLKEM768"
    assert names.group_name(0x11EB) == "SecP256r1MLKEM768"
    assert names.group_name(0x6399) == "X25519Kyber768Draft00"
    assert [names.group_name(c) for c in range(0x100, 0x105)] == [
        "ffdhe2048",
        "ffdhe3072",
        "ffdhe4096",
        "ffdhe6144",
        "ffdhe8192",
    ]


#: Wireshark 4.0 fields whose value strings are IANA names (the alerts are title-cased there).
WIRESHARK_FIELDS = {
    "cipher_suites": "tls.handshake.ciphersuite",
    "groups": "tls.handshake.extensions_supported_group",
    "signature_schemes": "tls.handshake.sig_hash_alg",
    "extensions": "tls.handshake.extension.type",
}
#: Where Wireshark 4.0 differs from today's IANA registry.
WIRESHARK_DIFFERS: dict[str, dict[int, str]] = {
    # Assigned to ML-KEM in 2024; Wireshark 4.0 still carries Open Quantum Safe's test codes.
    "groups": {0x0200: "frodo640aes", 0x0201: "frodo640shake", 0x0202: "frodo976aes"},
    # RFC 9345's registered name is singular.
    "extensions": {0x0022: "delegated_credentials"},
}


def test_every_code_wireshark_knows_has_the_same_iana_name() -> None:
    tshark = which_or_skip("tshark")
    out = subprocess.run(
        [tshark, "-G", "values"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    theirs: dict[str, dict[int, str]] = {field: {} for field in WIRESHARK_FIELDS.values()}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[0] == "V" and parts[1] in theirs:
            theirs[parts[1]][int(parts[2], 0)] = parts[3]
    for table, field in WIRESHARK_FIELDS.items():
        ws = theirs[field]
        ours = OURS[table]
        differ = {code: ws[code] for code in set(ws) & set(ours) if ws[code] != ours[code]}
        assert differ == WIRESHARK_DIFFERS.get(table, {}), table
    # Wireshark's suites beyond IANA's are GREASE, vendor (GM/T, Salsa20) and draft codes.
    assert len(set(theirs["tls.handshake.ciphersuite"]) & set(names.CIPHER_SUITES)) == 350


def test_grease() -> None:
    grease = [0x0A0A + 0x1010 * i for i in range(16)]
    assert grease[-1] == 0xFAFA
    assert all(names.is_grease(code) for code in grease)
    assert not any(names.is_grease(code) for code in (0x0A1A, 0x1301, 0x0A0B, 0x001D, 0xFAFB))
    assert names.suite_name(0x0A0A) == "0x0a0a"


def test_unknown_codes_and_versions() -> None:
    assert names.suite_name(0xFFFF) == "0xffff"
    assert names.suite_name(0x010080) == "0x010080"
    assert names.alert_name(200) == "0xc8"
    assert names.alert_name(40) == "handshake_failure"
    assert names.version_name(0x0304) == "TLS 1.3"
    assert names.version_name(0x0002) == "SSL 2.0"
    assert names.version_name(0x7F17) == "TLS 1.3 draft 23"
    assert names.version_name(0xFEFD) == "0xfefd"
    assert names.handshake_name(2) == "server_hello"
    assert names.alert_level_name(2) == "fatal"


def test_openssl_alert_words() -> None:
    assert names.openssl_alert_text(40) == "sslv3 alert handshake failure"
    assert names.openssl_alert_text(70) == "tlsv1 alert protocol version"
    assert names.openssl_alert_text(112) == "tlsv1 unrecognized name"
    assert names.openssl_alert_text(121) == "reason(1121)"
    assert (
        names.openssl_alert_error(40)
        == "error:0A000410:SSL routines::sslv3 alert handshake failure"
    )


def test_openssl_alert_words_match_the_installed_openssl() -> None:
    """`openssl errstr` prints the library's own reason strings (ssl/ssl_err.c)."""
    openssl = which_or_skip("openssl")
    codes = sorted(names.ALERTS)
    hexes = [f"{0x0A000000 + 1000 + code:08X}" for code in codes]
    out = subprocess.run(
        [openssl, "errstr", *hexes], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out == [names.openssl_alert_error(code) for code in codes]
