"""Grades strong/good/weak/broken for TLS versions, cipher suites, groups and signature schemes.

The scale is the SSH catalogue's (README "Grades"): `broken` is a practical attack, under
112-bit security, or an RFC's MUST NOT; `weak` is deprecated or structurally weak without a
practical break (no forward secrecy, CBC's MAC-then-encrypt, SHA-224, binary curves); `good` is
modern with no known weakness; `strong` is TLS 1.3 and its suites, and a post-quantum hybrid
group. A negotiated set is `strong` only when it is TLS 1.3 over a post-quantum hybrid group
with every part good, as an SSH set is strong only over a post-quantum key exchange, so that
`strong` keeps meaning "post-quantum and everything else modern". Each grade carries its
reason and its source; tests/core/tls/test_grades.py holds them against Mozilla's server-side
TLS guidelines and `VERSUS_MOZILLA` says why where they differ. Names are the IANA registry
names the record carries (tls-spec.md); a name kexproxy cannot grade gets None, never a guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kexproxy.core.catalogue import GRADE_ORDER

RFC6176 = "RFC 6176 (SSL 2.0 prohibited)"
RFC7568 = "RFC 7568 (SSL 3.0 deprecated)"
RFC8996 = "RFC 8996 (TLS 1.0 and 1.1 deprecated)"
RFC9325 = "RFC 9325 (BCP 195)"
RFC7465 = "RFC 7465 (RC4 prohibited)"
RFC9155 = "RFC 9155 (SHA-1 signatures deprecated in TLS 1.2)"
RFC8422 = "RFC 8422 5.1.1 (curves deprecated)"
RFC7919 = "RFC 7919 (ffdhe groups)"
RFC8446 = "RFC 8446 (TLS 1.3)"
SP800_52 = "NIST SP 800-52r2"
SP800_131 = "NIST SP 800-131A r2"
HYBRID = "draft-ietf-tls-ecdhe-mlkem; FIPS 203 (ML-KEM)"

#: The lists a TLS record grades, in the order a reason names them.
GRADED_LISTS = ("versions", "cipher_suites", "supported_groups", "signature_algorithms")


@dataclass(frozen=True, slots=True, kw_only=True)
class Graded:
    """One name's grade with the reason and the source a reader can check it against."""

    name: str
    grade: str
    reason: str
    source: str
    post_quantum: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "grade": self.grade,
            "reason": self.reason,
            "source": self.source,
            "post_quantum": self.post_quantum,
        }


def _g(name: str, grade: str, reason: str, source: str, pq: bool = False) -> Graded:
    return Graded(name=name, grade=grade, reason=reason, source=source, post_quantum=pq)


VERSIONS: Mapping[str, Graded] = {
    g.name: g
    for g in (
        _g("SSL 2.0", "broken", "SSL 2.0 is prohibited (MUST NOT)", RFC6176),
        _g("SSL 3.0", "broken", "POODLE; SSL 3.0 MUST NOT be used", RFC7568),
        _g("TLS 1.0", "broken", "MUST NOT be negotiated: SHA-1/MD5 PRF, no AEAD", RFC8996),
        _g("TLS 1.1", "broken", "MUST NOT be negotiated: SHA-1/MD5 PRF, no AEAD", RFC8996),
        _g("TLS 1.2", "good", "supported by BCP 195 with AEAD forward-secret suites", RFC9325),
        _g(
            "TLS 1.3",
            "strong",
            "BCP 195's preferred version: AEAD and forward secrecy only",
            RFC9325,
        ),
    )
}

_SSL_HYBRIDS = ("X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024")
GROUPS: Mapping[str, Graded] = {
    g.name: g
    for g in (
        *(
            _g(n, "strong", "post-quantum hybrid: ML-KEM with a classical ECDH", HYBRID, True)
            for n in _SSL_HYBRIDS
        ),
        _g("MLKEM768", "strong", "ML-KEM alone, NIST category 3", HYBRID, True),
        _g("MLKEM1024", "strong", "ML-KEM alone, NIST category 5", HYBRID, True),
        _g(
            "MLKEM512",
            "good",
            "ML-KEM alone at NIST category 1, without a classical part",
            HYBRID,
            True,
        ),
        *(
            _g(
                n,
                "good",
                "pre-standard Kyber hybrid, since replaced by the ML-KEM hybrids",
                HYBRID,
                True,
            )
            for n in ("X25519Kyber768Draft00", "SecP256r1Kyber768Draft00")
        ),
        _g("x25519", "good", "128-bit classical ECDH", RFC9325),
        _g("x448", "good", "224-bit classical ECDH", RFC9325),
        _g("secp256r1", "good", "128-bit classical ECDH (P-256)", SP800_52),
        _g("secp384r1", "good", "192-bit classical ECDH (P-384)", SP800_52),
        _g("secp521r1", "good", "256-bit classical ECDH (P-521)", SP800_52),
        *(
            _g(
                f"brainpoolP{b}r1{t}",
                "good",
                f"{b}-bit Brainpool curve, rarely supported",
                "RFC 7027, RFC 8734",
            )
            for b in (256, 384, 512)
            for t in ("", "tls13")
        ),
        *(
            _g(f"ffdhe{b}", "good", f"{b}-bit finite-field group of RFC 7919", RFC7919)
            for b in (2048, 3072, 4096, 6144, 8192)
        ),
        _g("secp224r1", "weak", "112-bit security only; deprecated for TLS", RFC8422),
        *(
            _g(n, "weak", "Koblitz curve deprecated for TLS", RFC8422)
            for n in ("secp224k1", "secp256k1")
        ),
        *(
            _g(n, "weak", "binary curve deprecated for TLS", RFC8422)
            for n in (
                "sect233k1",
                "sect233r1",
                "sect239k1",
                "sect283k1",
                "sect283r1",
                "sect409k1",
                "sect409r1",
                "sect571k1",
                "sect571r1",
            )
        ),
        *(
            _g(n, "broken", "under 112-bit security", SP800_131)
            for n in (
                "secp160k1",
                "secp160r1",
                "secp160r2",
                "secp192k1",
                "secp192r1",
                "sect163k1",
                "sect163r1",
                "sect163r2",
                "sect193r1",
                "sect193r2",
            )
        ),
        *(
            _g(
                n,
                "broken",
                "explicit curve parameters: curve substitution (CVE-2020-0601)",
                RFC8422,
            )
            for n in ("arbitrary_explicit_prime_curves", "arbitrary_explicit_char2_curves")
        ),
    )
}

_SHA1 = "SHA-1 handshake signatures: transcript collisions (SLOTH), chosen-prefix collisions"
SIGNATURE_SCHEMES: Mapping[str, Graded] = {
    g.name: g
    for g in (
        *(_g(n, "broken", _SHA1, RFC9155) for n in ("rsa_pkcs1_sha1", "ecdsa_sha1", "dsa_sha1")),
        *(
            _g(n, "broken", "MD5 signatures: practical collisions", "RFC 6151")
            for n in ("rsa_pkcs1_md5", "ecdsa_md5", "dsa_md5")
        ),
        *(
            _g(n, "weak", "SHA-224: 112-bit, dropped from TLS 1.3", RFC8446)
            for n in ("rsa_pkcs1_sha224", "ecdsa_sha224")
        ),
        *(
            _g(f"dsa_{h}", "weak", "DSA: removed from TLS 1.3 and from FIPS 186-5", RFC8446)
            for h in ("sha224", "sha256", "sha384", "sha512")
        ),
        *(
            _g(
                f"rsa_pkcs1_{h}",
                "good",
                "RSA PKCS#1 v1.5: fine in TLS 1.2 and in certificates; TLS 1.3 handshakes sign with PSS",
                "RFC 8446 4.2.3",
            )
            for h in ("sha256", "sha384", "sha512")
        ),
        *(
            _g(
                f"rsa_pkcs1_{h}_legacy",
                "good",
                "RSA PKCS#1 v1.5 in TLS 1.3, only for client keys on hardware that cannot sign PSS",
                "draft-ietf-tls-tls13-pkcs1",
            )
            for h in ("sha256", "sha384", "sha512")
        ),
        *(
            _g(f"rsa_pss_{k}_{h}", "good", "RSA-PSS", "RFC 8446 4.2.3")
            for k in ("rsae", "pss")
            for h in ("sha256", "sha384", "sha512")
        ),
        _g("ecdsa_secp256r1_sha256", "good", "ECDSA P-256", RFC8446),
        _g("ecdsa_secp384r1_sha384", "good", "ECDSA P-384", RFC8446),
        _g("ecdsa_secp521r1_sha512", "good", "ECDSA P-521", RFC8446),
        _g("ed25519", "good", "EdDSA", "RFC 8422, RFC 8446"),
        _g("ed448", "good", "EdDSA", "RFC 8422, RFC 8446"),
        *(
            _g(
                f"ecdsa_brainpoolP{b}r1tls13_sha{h}",
                "good",
                "ECDSA on a Brainpool curve",
                "RFC 8734",
            )
            for b, h in ((256, 256), (384, 384), (512, 512))
        ),
        *(
            _g(n, "good", "ML-DSA post-quantum signature", "FIPS 204", True)
            for n in ("mldsa44", "mldsa65", "mldsa87")
        ),
    )
}

#: TLS 1.3 suites (RFC 8446 B.4, RFC 9150 for the integrity-only ones).
TLS13_SUITES: Mapping[str, Graded] = {
    g.name: g
    for g in (
        *(
            _g(n, "strong", "TLS 1.3 AEAD suite", RFC8446)
            for n in (
                "TLS_AES_128_GCM_SHA256",
                "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256",
                "TLS_AES_128_CCM_SHA256",
            )
        ),
        _g(
            "TLS_AES_128_CCM_8_SHA256",
            "weak",
            "64-bit authentication tag (IANA: not recommended)",
            "RFC 8446 B.4; IANA",
        ),
        *(
            _g(n, "strong", "TLS 1.3 AEAD suite (AEGIS)", "draft-irtf-cfrg-aegis-aead")
            for n in ("TLS_AEGIS_128L_SHA256", "TLS_AEGIS_256_SHA512")
        ),
        *(
            _g(n, "good", "TLS 1.3 suite with SM4, rarely supported outside China", "RFC 8998")
            for n in ("TLS_SM4_GCM_SM3", "TLS_SM4_CCM_SM3")
        ),
        *(
            _g(n, "broken", "integrity only: no encryption", "RFC 9150")
            for n in ("TLS_SHA256_SHA256", "TLS_SHA384_SHA384")
        ),
    )
}

#: Registry names kexproxy does not grade: national or niche algorithms (GOST, SM2, ECCPWD, IBS)
#: with no review it can cite; they are named ungraded rather than guessed.
UNGRADED_PREFIXES = (
    "GC256",
    "GC512",
    "curveSM2",
    "gostr",
    "eccsi",
    "iso_",
    "sm2sig",
    "TLS_GOSTR",
    "TLS_ECCPWD_",
)

#: Suites that signal, not encrypt (RFC 5746, RFC 7507): never graded, never recommended.
SIGNALLING = frozenset({"TLS_EMPTY_RENEGOTIATION_INFO_SCSV", "TLS_FALLBACK_SCSV"})

#: Where kexproxy differs from Mozilla's guidelines (tests/core/data/mozilla_tls_levels.json), and why.
VERSUS_MOZILLA: Mapping[str, str] = {
    "TLS 1.0": "Mozilla's 'old' profile keeps it for ancient clients; RFC 8996 (2021) says MUST NOT, and "
    "Mozilla's guidelines 6.0 dropped the 'old' profile",
    "TLS 1.1": "as TLS 1.0: RFC 8996 MUST NOT",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "Mozilla's 'old' keeps it for IE8 on Windows XP; a 64-bit block cipher "
    "is broken by Sweet32 (CVE-2016-2183) and NIST SP 800-131A r2 disallows 3DES after 2023",
}

# Ordered worst first: the first rule that matches a suite's part decides that part.
_CIPHER_RULES: tuple[tuple[str, str, str, str], ...] = (
    ("NULL", "broken", "no encryption", "RFC 9325 4.1"),
    ("RC4", "broken", "RC4 is prohibited", RFC7465),
    ("3DES", "broken", "64-bit block cipher: Sweet32 (CVE-2016-2183)", SP800_131),
    ("DES", "broken", "56-bit or export DES", "RFC 5469; RFC 9325 4.1"),
    ("RC2", "broken", "40-bit export RC2", "RFC 9325 4.1"),
    ("IDEA", "broken", "64-bit block cipher", "RFC 5469"),
)


def _worst(parts: Iterable[Graded]) -> Graded | None:
    return max(parts, key=lambda g: GRADE_ORDER.get(g.grade, len(GRADE_ORDER)), default=None)


def grade_suite(name: str) -> Graded | None:
    """A cipher suite's grade from its IANA name: the worst of its key exchange, cipher, mode and MAC."""
    if name in TLS13_SUITES:
        return TLS13_SUITES[name]
    if name in SIGNALLING or "_WITH_" not in name or not name.startswith("TLS_"):
        return None
    kx, rest = name[len("TLS_") :].split("_WITH_", 1)
    issues: list[Graded] = []
    if "anon" in kx:
        issues.append(_g(name, "broken", "anonymous: no authentication", "RFC 9325 4.1"))
    if "EXPORT" in name:
        issues.append(_g(name, "broken", "export-grade (FREAK, Logjam)", "RFC 9325 4.1"))
    for token, grade, reason, source in _CIPHER_RULES:
        if (
            rest.startswith(token)
            or f"_{token}" in rest
            or (token == "DES" and rest.startswith("DES"))
        ):
            issues.append(_g(name, grade, reason, source))
            break
    if kx in ("RSA", "PSK", "RSA_PSK", "KRB5") or kx.startswith(("DH_", "ECDH_", "SRP_")):
        issues.append(_g(name, "weak", "static key exchange: no forward secrecy", "RFC 9325 4.1"))
    if "DSS" in kx:
        issues.append(_g(name, "weak", "DSA authentication: removed from TLS 1.3", RFC8446))
    if "_CBC" in rest:
        issues.append(
            _g(
                name,
                "weak",
                "CBC with MAC-then-encrypt: Lucky Thirteen; prefer AEAD",
                "RFC 9325 4.2",
            )
        )
    elif rest.endswith("CCM_8"):
        issues.append(
            _g(name, "weak", "64-bit authentication tag (IANA: not recommended)", "RFC 6655; IANA")
        )
    if rest.endswith("_MD5"):
        issues.append(_g(name, "weak", "HMAC-MD5", "RFC 6151"))
    worst = _worst(issues)
    if worst is not None:
        return worst
    aead = any(m in rest for m in ("_GCM", "CHACHA20_POLY1305", "_CCM"))
    if kx.startswith(("ECDHE_", "DHE_")) and aead:
        return _g(name, "good", "forward-secret key exchange with AEAD", "RFC 9325 4.2")
    return None


def grade(list_name: str, name: str) -> Graded | None:
    """The grade of `name` in one of the record's lists, or None when kexproxy cannot grade it."""
    if list_name == "versions":
        found = VERSIONS.get(name)
        if found is None and name.startswith("TLS 1.3 draft"):
            return _g(name, "weak", "a pre-standard TLS 1.3 draft", RFC8446)
        return found
    if list_name == "cipher_suites":
        return grade_suite(name)
    if list_name == "supported_groups":
        return GROUPS.get(name)
    if list_name == "signature_algorithms":
        return SIGNATURE_SCHEMES.get(name)
    return None


def grade_dh_bits(bits: int) -> Graded:
    """A finite-field DH group by its size (ServerKeyExchange), as the SSH grades judge DH groups."""
    name = f"DH {bits} bits"
    if bits < 1024:
        return _g(name, "broken", "under 1024 bits: Logjam", "RFC 9325 4.1")
    if bits < 2048:
        return _g(name, "weak", "under 2048 bits: under 112-bit security", SP800_52)
    return _g(name, "good", "2048 bits or more", RFC7919)


def is_better(a: str, b: str) -> bool:
    """Whether grade `a` is stronger than grade `b`."""
    return GRADE_ORDER.get(a, len(GRADE_ORDER)) < GRADE_ORDER.get(b, len(GRADE_ORDER))


def overall(parts: Mapping[str, Graded]) -> tuple[str | None, list[str]]:
    """A negotiated set's grade and reasons: the worst part, or strong for TLS 1.3 over a post-quantum group."""
    if not parts:
        return None, []
    worst = _worst(parts.values())
    assert worst is not None
    if GRADE_ORDER[worst.grade] > GRADE_ORDER["good"]:
        bad = [p for p in parts.values() if p.grade == worst.grade]
        return worst.grade, [f"{p.name} is {p.grade}: {p.reason} ({p.source})" for p in bad]
    version = parts.get("versions")
    group = parts.get("supported_groups")
    if (
        version is not None
        and version.name == "TLS 1.3"
        and group is not None
        and group.grade == "strong"
    ):
        return "strong", [
            f"TLS 1.3 over {group.name}: post-quantum hybrid key exchange, every part modern"
        ]
    if group is not None and not group.post_quantum:
        return "good", [f"{group.name}: modern classical key exchange, no post-quantum protection"]
    return "good", ["every part modern"]
