"""TLS client and server fingerprints: JA3 and JA3S as Wireshark computes them, and FoxIO's JA4.

Theory of operation: a fingerprint is only worth logging if it equals the one other tools log
for the same hello, so each function follows one published computation to the character,
quirks included, rather than an idealised reading of it.

JA3 / JA3S follow Wireshark 4.0 (epan/dissectors/packet-tls-utils.c: ssl_dissect_hnd_cli_hello,
ssl_dissect_hnd_srv_hello, ssl_dissect_hnd_extension and the supported_groups and
ec_point_formats dissectors), which is what `tshark -e tls.handshake.ja3_full` prints; each
rule below was checked against tshark 4.0.17 on hand-built hellos (tests/core/tls):

- decimal values; fields joined by ",", values by "-"; MD5 of the string, lower-case hex;
- the version is the hello's legacy `version` field, never supported_versions (so a TLS 1.3
  ClientHello and ServerHello both say 771);
- RFC 8701's sixteen GREASE values (0x0a0a, 0x1a1a, ... 0xfafa) are left out of the cipher
  suites, extension types and supported groups wherever they stand, first, middle or last;
  look-alikes such as 0x1a2a are kept; EC point formats are one byte and never GREASE;
- a ClientHello always has five fields ("769,47-53,,," with no extensions, with an empty
  extension block or with none at all); the groups and formats fields are empty when their
  extension is absent or empty; a ServerHello has three, the last empty without extensions
  ("771,49199,"); JA3S has no groups or formats;
- an SSLv2 CLIENT-HELLO (RFC 5246 appendix E.2) gets no JA3 at all: Wireshark dissects it in
  dissect_ssl2_hnd_client_hello, which computes none, so `ja3` returns None for it.

Wireshark's development branch once wrote the "-" after each kept value by position, leaving
"...-18-0-," when Chrome ends its extensions with GREASE, and tested GREASE as
``v & 0x0f0f == 0x0a0a``; 4.0 does neither, and 4.0 is the reference here.

JA4 follows FoxIO's specification (github.com/FoxIO-LLC/ja4, technical_details/JA4.md, BSD
3-Clause); JA4S and the other JA4+ methods are under a licence that is not open source and are
deliberately not implemented here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from kexproxy.core.tls.hello import ClientHello, ServerHello

#: Transports JA4's first character names: TLS over TCP, QUIC, DTLS (JA4.md "QUIC and DTLS").
JA4_TRANSPORTS = frozenset({"t", "q", "d"})

#: JA4's two-character version codes (JA4.md "TLS and DTLS Version"); anything else is "00".
JA4_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}

#: Extension types JA4 counts but leaves out of its extension hash: SNI and ALPN (JA4.md).
JA4_HASH_SKIPS = frozenset({0x0000, 0x0010})

#: What JA4 writes instead of a hash of an empty list (JA4.md "Cipher hash").
JA4_EMPTY_HASH = "000000000000"

_SERVER_NAME = 0x0000


def _is_grease(value: int) -> bool:
    """RFC 8701 section 2's sixteen GREASE values, as JA3 and JA4 skip them (names.is_grease's rule, kept here so fingerprints need only hello.py)."""
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


def _ja3_list(values: Iterable[int]) -> str:
    """One JA3 field: the non-GREASE values in wire order, in decimal, joined by "-"."""
    return "-".join(str(v) for v in values if not _is_grease(v))


def _md5(text: str) -> str:
    """MD5 as JA3 defines it; not a security measure, only what the published fingerprints use."""
    return hashlib.md5(text.encode("ascii"), usedforsecurity=False).hexdigest()


def ja3(hello: ClientHello) -> tuple[str, str] | None:
    """The JA3 string and its MD5 exactly as Wireshark 4.0 prints ja3_full / ja3; None for SSLv2.

    The groups and point-format fields are empty when the extension is absent, as when it is
    present but empty, because Wireshark writes the "," either way.
    """
    if hello.sslv2:
        return None
    text = ",".join(
        (
            str(hello.legacy_version),
            _ja3_list(hello.cipher_suites),
            _ja3_list(hello.extensions),
            _ja3_list(hello.supported_groups),
            _ja3_list(hello.ec_point_formats),
        )
    )
    return text, _md5(text)


def ja3s(hello: ServerHello) -> tuple[str, str]:
    """The JA3S string and its MD5 exactly as Wireshark 4.0 prints ja3s_full / ja3s.

    The version is the ServerHello's legacy field (771 for TLS 1.3 too), as Wireshark reads it.
    """
    text = f"{hello.legacy_version},{hello.cipher_suite},{_ja3_list(hello.extensions)}"
    return text, _md5(text)


def _ja4_version(hello: ClientHello) -> str:
    """The highest non-GREASE supported_versions entry, else the legacy version, as two characters."""
    offered = [v for v in hello.supported_versions if not _is_grease(v)]
    version = max(offered) if offered else hello.legacy_version
    return JA4_VERSIONS.get(version, "00")


def _alphanumeric(char: int) -> bool:
    """ASCII 0-9, A-Z, a-z: the only bytes JA4 prints as themselves."""
    return 0x30 <= char <= 0x39 or 0x41 <= char <= 0x5A or 0x61 <= char <= 0x7A


def _ja4_alpn(hello: ClientHello) -> str:
    """First and last character of the first ALPN value; its hex ends when either is not alphanumeric."""
    if not hello.alpn or not hello.alpn[0]:
        return "00"
    raw = hello.alpn[0].encode("latin-1")
    if _alphanumeric(raw[0]) and _alphanumeric(raw[-1]):
        return chr(raw[0]) + chr(raw[-1])
    hexed = raw.hex()
    return hexed[0] + hexed[-1]


def _ja4_count(values: list[int]) -> str:
    """A two-digit count, 99 at most (JA4.md "Number of Ciphers")."""
    return f"{min(len(values), 99):02d}"


def _sha256_12(text: str) -> str:
    """JA4's truncated hash: the first 12 lower-case hex digits of SHA-256."""
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:12]


def _hex_list(values: Iterable[int]) -> str:
    """Four-digit lower-case hex values joined by ",", as JA4 hashes them."""
    return ",".join(f"{v:04x}" for v in values)


def ja4_parts(hello: ClientHello, transport: str = "t") -> tuple[str, str, str]:
    """JA4's three parts before hashing: the prefix, the sorted ciphers, the sorted extensions_sigalgs.

    These are JA4's "raw" (JA4_r) sections; kept apart so a test can compare them with the raw
    fingerprints FoxIO publishes and so a reader of a record can see what was hashed.
    """
    if transport not in JA4_TRANSPORTS:
        raise ValueError(f"JA4 transport must be one of t, q, d, not {transport!r}")
    ciphers = sorted(c for c in hello.cipher_suites if not _is_grease(c))
    extensions = [e for e in hello.extensions if not _is_grease(e)]
    hashed_extensions = sorted(e for e in extensions if e not in JA4_HASH_SKIPS)
    sigalgs = [s for s in hello.signature_algorithms if not _is_grease(s)]
    sni = "d" if _SERVER_NAME in extensions else "i"
    prefix = (
        f"{transport}{_ja4_version(hello)}{sni}"
        f"{_ja4_count(ciphers)}{_ja4_count(extensions)}{_ja4_alpn(hello)}"
    )
    extension_text = _hex_list(hashed_extensions)
    if sigalgs:
        extension_text += "_" + _hex_list(sigalgs)
    return prefix, _hex_list(ciphers), extension_text if hashed_extensions else ""


def ja4(hello: ClientHello, transport: str = "t") -> str:
    """FoxIO's JA4 client fingerprint, e.g. "t13d1516h2_8daaf6152771_e5627efa2ab1".

    `transport` is "t" (TLS over TCP), "q" (QUIC) or "d" (DTLS); kexproxy sees TLS over TCP.
    """
    prefix, ciphers, extensions = ja4_parts(hello, transport)
    cipher_hash = _sha256_12(ciphers) if ciphers else JA4_EMPTY_HASH
    extension_hash = _sha256_12(extensions) if extensions else JA4_EMPTY_HASH
    return f"{prefix}_{cipher_hash}_{extension_hash}"
