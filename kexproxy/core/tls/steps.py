"""One TLS change written in each common software's own syntax: the steps of a TLS recipe.

TLS has no banner, so the software at either end is usually unknown: a recipe is written once
per common software of the side that changes (servers: an OpenSSL configuration file, nginx,
Apache; clients: openssl s_client, curl, Java, Python's ssl), each text exactly what is pasted,
because tests/integration/test_tls_recipes.py applies it verbatim to the real program. OpenSSL
3 allows TLS 1.0 and 1.1 only at security level 0 (SSL_CTX_set_security_level(3)), so a change
that adds them lowers the level, and says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from kexproxy.core.data import load_toml

JSONDict = dict[str, Any]

SERVER_SOFTWARE = ("OpenSSL (openssl.cnf)", "nginx", "Apache httpd")
#: The software named when the change is the same words for every server (a certificate chain).
ANY_SERVER = "the server's TLS software"
CLIENT_SOFTWARE = ("openssl s_client", "curl", "Python ssl", "Java")

#: OpenSSL 3.0's built-in TLS 1.3 suite list (ssl/ssl_ciph.c TLS_DEFAULT_CIPHERSUITES).
OPENSSL_TLS13_DEFAULT = (
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_GCM_SHA256",
)
#: JDK 17/21's jdk.tls.disabledAlgorithms (conf/security/java.security); JDK 24+ adds TLS_RSA_* and
#: SHA-1 handshake signatures, which a note says.
JAVA_DISABLED = (
    "SSLv3",
    "TLSv1",
    "TLSv1.1",
    "DTLSv1.0",
    "RC4",
    "DES",
    "MD5withRSA",
    "DH keySize < 1024",
    "EC keySize < 224",
    "3DES_EDE_CBC",
    "anon",
    "NULL",
    "ECDH",
)
#: The override file a Java recipe writes, named on the command line by -Djava.security.properties=.
JAVA_OVERRIDE = "tls-override.security"
#: The configuration file an OpenSSL recipe writes, named by the OPENSSL_CONF environment variable.
OPENSSL_FILE = "tls-override.cnf"
#: The CA certificate file a trust recipe names (the issuer's certificate, saved by the user).
CA_FILE = "ca.pem"

_OPENSSL_VERSION = {
    "TLS 1.0": "TLSv1",
    "TLS 1.1": "TLSv1.1",
    "TLS 1.2": "TLSv1.2",
    "TLS 1.3": "TLSv1.3",
    "SSL 3.0": "SSLv3",
}
_CURL_VERSION = {"TLS 1.0": "1.0", "TLS 1.1": "1.1", "TLS 1.2": "1.2", "TLS 1.3": "1.3"}
_PYTHON_VERSION = {
    "TLS 1.0": "TLSv1",
    "TLS 1.1": "TLSv1_1",
    "TLS 1.2": "TLSv1_2",
    "TLS 1.3": "TLSv1_3",
}
#: Python's set_ecdh_curve takes OpenSSL's short name (OBJ_sn2nid), not the IANA name.
_PYTHON_CURVE = {"secp256r1": "prime256v1", "x25519": "X25519", "x448": "X448"}
_ORDER = ("SSL 3.0", "TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3")
LOW_VERSIONS = frozenset({"SSL 3.0", "TLS 1.0", "TLS 1.1"})
SECLEVEL0 = "DEFAULT:@SECLEVEL=0"


@cache
def openssl_cipher_names() -> Mapping[str, str]:
    """IANA -> OpenSSL names of the TLS 1.2-and-older suites (data/tls-software/openssl-ciphers.toml)."""
    names: Mapping[str, str] = load_toml("tls-software/openssl-ciphers.toml")["cipher_names"]
    return names


def is_tls13_suite(name: str) -> bool:
    """Whether `name` is a TLS 1.3 suite (no key exchange in its name: RFC 8446 B.4)."""
    return name.startswith("TLS_") and "_WITH_" not in name


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """What one side adds, per list: versions, TLS 1.2 suites, TLS 1.3 suites, groups, a CA."""

    versions: tuple[str, ...] = ()
    suites12: tuple[str, ...] = ()
    suites13: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    trust_ca: bool = False
    full_chain: bool = False
    #: The client offers TLS 1.3: nginx before 1.23.4 leaves TLS 1.3 out of its default protocols.
    client_tls13: bool = False

    @property
    def low(self) -> bool:
        return any(v in LOW_VERSIONS for v in self.versions)

    def version_range(self) -> tuple[str, str] | None:
        """The lowest and highest version the side ends up allowing: the added ones and TLS 1.2 up to 1.3."""
        if not self.versions:
            return None
        known = [v for v in self.versions if v in _ORDER]
        if not known:
            return None
        lo = min(known, key=_ORDER.index)
        hi = max((*known, "TLS 1.3"), key=_ORDER.index)
        return lo, hi


@dataclass(slots=True)
class Written:
    """One software's steps for a change, or None-like `ok=False` when it cannot be told how."""

    software: str
    side: str
    steps: list[JSONDict] = field(default_factory=list)
    command: str | None = None
    persist: JSONDict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return any(s["kind"] != "note" for s in self.steps)

    def step(self, kind: str, text: str) -> None:
        self.steps.append(
            {"side": self.side, "software": self.software, "kind": kind, "text": text}
        )


def _openssl_names(suites: Sequence[str]) -> list[str]:
    table = openssl_cipher_names()
    return [table[s] for s in suites if s in table]


def _cipher_string(change: Change) -> str | None:
    """The TLS 1.2 cipher string: OpenSSL's default plus what is added, at level 0 only when needed."""
    names = _openssl_names(change.suites12)
    if not names and not change.low:
        return None
    parts = ["DEFAULT", *names]
    if change.low or any("3DES" in s or "_RC4_" in s or "_DES_" in s for s in change.suites12):
        parts.append("@SECLEVEL=0")
    return ":".join(parts)


def _tls13(change: Change) -> str | None:
    if not change.suites13:
        return None
    return ":".join(dict.fromkeys((*OPENSSL_TLS13_DEFAULT, *change.suites13)))


def _groups(change: Change) -> str | None:
    if not change.groups:
        return None
    return ":".join(dict.fromkeys((*change.groups, "x25519", "secp256r1", "secp384r1")))


def server_steps(software: str, change: Change) -> Written:
    """The server's change in `software`'s syntax (one of SERVER_SOFTWARE)."""
    out = Written(software, "server")
    span = change.version_range()
    ciphers = _cipher_string(change)
    tls13 = _tls13(change)
    groups = _groups(change)
    if software.startswith("OpenSSL"):
        lines = [
            "openssl_conf = openssl_init",
            "[openssl_init]",
            "ssl_conf = ssl_sect",
            "[ssl_sect]",
            "system_default = system_default_sect",
            "[system_default_sect]",
        ]
        if span:
            lines += [
                f"MinProtocol = {_OPENSSL_VERSION[span[0]]}",
                f"MaxProtocol = {_OPENSSL_VERSION[span[1]]}",
            ]
        lines += [f"CipherString = {ciphers}"] if ciphers else []
        lines += [f"Ciphersuites = {tls13}"] if tls13 else []
        lines += [f"Groups = {groups}"] if groups else []
        if len(lines) > 6:
            out.step("openssl_conf", "\n".join(lines))
            out.command = f"OPENSSL_CONF={OPENSSL_FILE} <the server's command>"
            out.notes.append(
                f"Save the lines as {OPENSSL_FILE} and start the server with OPENSSL_CONF pointing at it, "
                "or merge the sections into /etc/ssl/openssl.cnf (every OpenSSL program on the host then uses them); "
                "a program that sets its own protocols or ciphers overrides these defaults."
            )
    elif software == "nginx":
        lines = []
        if span:
            lines.append(f"ssl_protocols {' '.join(_span(change))};")
        elif change.client_tls13 and (change.suites13 or change.groups):
            # nginx's default ssl_protocols gained TLSv1.3 only in 1.23.4 (CHANGES: "TLSv1.3 is
            # now enabled by default"); Debian 12 ships 1.22.
            lines.append("ssl_protocols TLSv1.2 TLSv1.3;")
        lines += [f"ssl_ciphers {ciphers};"] if ciphers else []
        lines += [f"ssl_conf_command Ciphersuites {tls13};"] if tls13 else []
        lines += [f"ssl_ecdh_curve {groups};"] if groups else []
        if lines:
            out.step("nginx_conf", "\n".join(lines))
            out.persist = {"file": "the server block of nginx.conf", "reload": "nginx -s reload"}
            out.notes.append(
                "Replace the server block's existing lines with the same directives; reload nginx."
            )
    elif software == "Apache httpd":
        lines = []
        if span:
            lines.append("SSLProtocol -all " + " ".join(f"+{v}" for v in _span(change)))
        lines += [f"SSLCipherSuite {ciphers}"] if ciphers else []
        lines += [f"SSLCipherSuite TLSv1.3 {tls13}"] if tls13 else []
        lines += [f"SSLOpenSSLConfCmd Curves {groups}"] if groups else []
        if lines:
            out.step("apache_conf", "\n".join(lines))
            out.persist = {"file": "the VirtualHost of the site", "reload": "apachectl graceful"}
            out.notes.append(
                "Replace the VirtualHost's existing lines with the same directives; reload Apache."
            )
    if change.full_chain:
        # Offline, an incomplete chain and an untrusted root look the same (TLS 1.3 encrypts the
        # chain), so the server is told what to check, not given a line to paste.
        out.step(
            "note",
            "If the server sends its certificate without the intermediate CA certificates, serve "
            "the full chain: the leaf followed by its intermediates (nginx ssl_certificate, Apache "
            "SSLCertificateFile, OpenSSL -cert_chain). A certificate from a private CA needs the "
            "client to trust that CA instead.",
        )
    return out


def _span(change: Change) -> list[str]:
    """The versions a server that lists them (nginx, Apache) enables: from the lowest needed to TLS 1.3.

    A contiguous range, because Apache's mod_ssl turns a list with holes into its top run only
    (ssl_engine_init.c, ssl_init_ctx_protocol: "we do not allow holes between max and min"):
    `+TLSv1 +TLSv1.2` would still refuse TLS 1.0.
    """
    span = change.version_range()
    if span is None:
        return []
    lo, hi = _ORDER.index(span[0]), _ORDER.index(span[1])
    return [_OPENSSL_VERSION[v] for v in _ORDER[lo : hi + 1]]


def client_steps(software: str, change: Change, target: str) -> Written:
    """The client's change in `software`'s syntax (one of CLIENT_SOFTWARE); `target` is HOST:PORT."""
    out = Written(software, "client")
    span = change.version_range()
    ciphers = _cipher_string(change)
    tls13 = _tls13(change)
    groups = _groups(change)
    if software == "openssl s_client":
        flags = []
        if span:
            flags += [
                "-min_protocol",
                _OPENSSL_VERSION[span[0]],
                "-max_protocol",
                _OPENSSL_VERSION[span[1]],
            ]
        flags += ["-cipher", ciphers] if ciphers else []
        flags += ["-ciphersuites", tls13] if tls13 else []
        flags += ["-groups", groups] if groups else []
        flags += ["-CAfile", CA_FILE] if change.trust_ca else []
        if flags:
            out.step("s_client_option", " ".join(flags))
            out.command = f"openssl s_client -connect {target} " + " ".join(flags)
    elif software == "curl":
        flags = []
        if span:
            flags += [f"--tlsv{_CURL_VERSION[span[0]]}", "--tls-max", _CURL_VERSION[span[1]]]
        flags += ["--ciphers", ciphers] if ciphers else []
        flags += ["--tls13-ciphers", tls13] if tls13 else []
        flags += ["--curves", groups] if groups else []
        flags += ["--cacert", CA_FILE] if change.trust_ca else []
        if flags:
            out.step("curl_option", " ".join(flags))
            out.command = f"curl {' '.join(flags)} https://{target}/"
    elif software == "Python ssl":
        lines = []
        if span:
            lines += [
                f"ctx.minimum_version = ssl.TLSVersion.{_PYTHON_VERSION[span[0]]}",
                f"ctx.maximum_version = ssl.TLSVersion.{_PYTHON_VERSION[span[1]]}",
            ]
        lines += [f'ctx.set_ciphers("{ciphers}")'] if ciphers else []
        if change.groups:
            lines.append(
                f'ctx.set_ecdh_curve("{_PYTHON_CURVE.get(change.groups[0], change.groups[0])}")'
            )
        lines += [f'ctx.load_verify_locations("{CA_FILE}")'] if change.trust_ca else []
        if lines:
            out.step("python_ssl", "\n".join(lines))
            out.notes.append("ctx is the program's ssl.SSLContext, set before it wraps the socket.")
        if tls13:
            out.step(
                "note",
                f"Python's ssl cannot choose TLS 1.3 suites: set Ciphersuites = {tls13} in {OPENSSL_FILE} "
                "and run the program with OPENSSL_CONF pointing at it.",
            )
    elif software == "Java":
        _java(out, change)
    return out


def _java(out: Written, change: Change) -> None:
    """Java re-enables what jdk.tls.disabledAlgorithms turns off; anything else is the program's code."""
    enable = [_OPENSSL_VERSION[v] for v in change.versions if v in LOW_VERSIONS]
    if any("3DES_EDE_CBC" in s for s in change.suites12):
        enable.append("3DES_EDE_CBC")
    if any("_RSA_WITH_" in s and s.startswith("TLS_RSA_") for s in change.suites12):
        out.notes.append(
            "JDK 24 and later also disable TLS_RSA_* suites: remove TLS_RSA_* from the line there."
        )
    if enable:
        kept = [a for a in JAVA_DISABLED if a not in enable]
        out.step("java_security", "jdk.tls.disabledAlgorithms=" + ", ".join(kept))
        out.command = f"java -Djava.security.properties={JAVA_OVERRIDE} <the program>"
        out.notes.append(
            f"Save the line as {JAVA_OVERRIDE}; it replaces the JDK's own list (JDK 17/21 default, "
            f"less {', '.join(enable)}). JDK 24+ lists more: start from its conf/security/java.security."
        )
        if change.low:
            out.notes.append(
                "A Java client offers TLS 1.0/1.1 again only with this line; TLS 1.2 and 1.3 stay first."
            )
    elif change.trust_ca:
        out.step(
            "note",
            f"Import {CA_FILE} into a trust store (keytool -importcert -file {CA_FILE} -keystore "
            "trust.p12) and run with -Djavax.net.ssl.trustStore=trust.p12.",
        )
    elif change.versions or change.suites12 or change.suites13 or change.groups:
        out.step(
            "note",
            "Java enables modern TLS by default: the program's own setEnabledProtocols / "
            "setEnabledCipherSuites calls, or -Djdk.tls.namedGroups, limit it.",
        )
