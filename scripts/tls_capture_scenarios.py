"""The scenarios scripts/record_tls_captures.py records: which real TLS server and client, their
options, and what each side must be seen to do. Data, one entry per capture.

In options, ``{ca}`` is the CA that signed the server's certificate, ``{stranger_ca}`` one that
did not, ``{cert}``/``{key}`` the server's own leaf (s_server's ``-cert2``/``-key2``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ServerKind = Literal["s_server", "gnutls-serv"]
ClientKind = Literal["s_client", "gnutls-cli", "python-ssl", "curl"]
Outcome = Literal["negotiated", "failed", "aborted"]

SERVER_TOOLS: dict[str, tuple[str, ...]] = {
    "s_server": ("openssl",),
    "gnutls-serv": ("gnutls-serv", "gcc"),
}
CLIENT_TOOLS: dict[str, tuple[str, ...]] = {
    "s_client": ("openssl",),
    "gnutls-cli": ("gnutls-cli",),
    "python-ssl": (),
    "curl": ("curl",),
}
COMMON_TOOLS = ("tcpdump", "tshark", "openssl")


@dataclass(frozen=True)
class TlsScenario:
    """One capture: server and client with their options, and what must be observed when recording.

    Every expectation is checked against the peers' own output and tshark's decode on each
    recording, so a peer that starts behaving differently fails the script instead of
    committing a capture that says the wrong thing.
    """

    name: str
    description: str
    server: ServerKind
    client: ClientKind
    outcome: Outcome
    server_options: tuple[str, ...] = ()
    #: Key type of the server's leaf certificate (tests/peers/tls_peers.KEY_TYPES).
    leaf: str = "rsa"
    #: s_server -www (answers curl's GET).
    www: bool = False
    client_options: tuple[str, ...] = ()
    #: Python ssl client keyword arguments (tls_peers.run_python_ssl); "{ca}" allowed in values.
    python_options: tuple[tuple[str, str], ...] = ()
    #: Which side refused, and which list (None for a success).
    refused_by: Literal["client", "server"] | None = None
    list: str | None = None
    #: IANA name of the fatal alert the refusing side sent (None: none, or none in clear).
    alert: str | None = None
    #: Whether that alert went encrypted (TLS 1.3 after the server's Finished keys).
    alert_encrypted: bool = False
    #: The server's own reason text ("no shared cipher"), exactly; None when it prints none.
    server_says: str | None = None
    #: The client's own reason text, exactly; None when it prints none.
    client_says: str | None = None
    #: Text the client's stdout must contain on success ("New, TLSv1.3, Cipher is ...").
    client_shows: str | None = None
    #: How many ServerHellos tshark must decode (a HelloRetryRequest counts).
    server_hellos: int = 1


S_CLIENT_VERIFY = ("-CAfile", "{ca}", "-verify_return_error", "-servername", "localhost")

SCENARIOS: tuple[TlsScenario, ...] = (
    # --- successes
    TlsScenario(
        name="openssl-tls13-success",
        description="s_client -tls1_3 to s_server (RSA certificate), verified against the CA.",
        server="s_server", client="s_client", outcome="negotiated",
        client_options=("-tls1_3", *S_CLIENT_VERIFY),
        client_shows="New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384",
    ),
    TlsScenario(
        name="openssl-tls12-success",
        description="s_client -tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256 to s_server.",
        server="s_server", client="s_client", outcome="negotiated",
        client_options=("-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256", *S_CLIENT_VERIFY),
        client_shows="New, TLSv1.2, Cipher is ECDHE-RSA-AES128-GCM-SHA256",
    ),
    TlsScenario(
        name="gnutls-success",
        description="gnutls-cli to gnutls-serv (ECDSA P-256 certificate), both at their defaults.",
        server="gnutls-serv", client="gnutls-cli", outcome="negotiated", leaf="ecdsa",
        client_options=("--x509cafile={ca}",),
        client_shows="- Handshake was completed",
    ),
    TlsScenario(
        name="python-ssl-success",
        description="Python ssl (create_default_context, verifying) to s_server (Ed25519 certificate); Python closes without close_notify, which s_server reports.",
        server="s_server", client="python-ssl", outcome="negotiated", leaf="ed25519",
        python_options=(("cafile", "{ca}"),),
        server_says="unexpected eof while reading",
        client_shows="negotiated: TLSv1.3 TLS_AES_256_GCM_SHA384",
    ),
    TlsScenario(
        name="curl-success",
        description="curl to s_server -www (status page over HTTP/1.0), verified against the CA.",
        server="s_server", client="curl", outcome="negotiated", www=True,
        client_options=("--cacert", "{ca}"),
        client_shows="Ciphers supported in s_server binary",
    ),
    TlsScenario(
        name="gnutls-cli-openssl-success",
        description="gnutls-cli to s_server (ECDSA P-256 certificate).",
        server="s_server", client="gnutls-cli", outcome="negotiated", leaf="ecdsa",
        client_options=("--x509cafile={ca}",),
        client_shows="- Handshake was completed",
    ),
    # --- versions
    TlsScenario(
        name="tls10-vs-openssl3",
        description="s_client -tls1 -cipher DEFAULT@SECLEVEL=0 to s_server at its default security level: the server finds no SHA-1-free signature for TLS 1.0 and answers internal_error.",
        server="s_server", client="s_client", outcome="failed",
        client_options=("-tls1", "-cipher", "DEFAULT@SECLEVEL=0"),
        refused_by="server", list="versions", alert="internal_error",
        server_says="no suitable signature algorithm", client_says="tlsv1 alert internal error",
        server_hellos=0,
    ),
    TlsScenario(
        name="tls13-only-vs-tls12-max",
        description="s_client -tls1_3 to s_server -tls1_2: protocol_version.",
        server="s_server", client="s_client", outcome="failed",
        server_options=("-tls1_2",), client_options=("-tls1_3",),
        refused_by="server", list="versions", alert="protocol_version",
        server_says="unsupported protocol", client_says="tlsv1 alert protocol version",
        server_hellos=0,
    ),
    # --- cipher suites
    TlsScenario(
        name="tls12-no-shared-cipher",
        description="TLS 1.2: client -cipher AES128-SHA, server -cipher ECDHE-RSA-AES256-GCM-SHA384: no shared cipher.",
        server="s_server", client="s_client", outcome="failed",
        server_options=("-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"),
        client_options=("-tls1_2", "-cipher", "AES128-SHA"),
        refused_by="server", list="cipher_suites", alert="handshake_failure",
        server_says="no shared cipher", client_says="sslv3 alert handshake failure",
        server_hellos=0,
    ),
    TlsScenario(
        name="tls13-no-shared-cipher",
        description="TLS 1.3: client -ciphersuites TLS_AES_128_GCM_SHA256, server TLS_CHACHA20_POLY1305_SHA256: no shared cipher.",
        server="s_server", client="s_client", outcome="failed",
        server_options=("-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"),
        client_options=("-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"),
        refused_by="server", list="cipher_suites", alert="handshake_failure",
        server_says="no shared cipher", client_says="sslv3 alert handshake failure",
        server_hellos=0,
    ),
    # --- groups
    TlsScenario(
        name="tls13-no-common-group",
        description="TLS 1.3: client -groups x25519, server -groups secp384r1: no group to retry with, no suitable key share.",
        server="s_server", client="s_client", outcome="failed",
        server_options=("-groups", "secp384r1"), client_options=("-tls1_3", "-groups", "x25519"),
        refused_by="server", list="supported_groups", alert="handshake_failure",
        server_says="no suitable key share", client_says="sslv3 alert handshake failure",
        server_hellos=0,
    ),
    TlsScenario(
        name="tls13-hello-retry-success",
        description="TLS 1.3: client -groups x25519:secp384r1 (one key share, x25519), server -groups secp384r1: HelloRetryRequest for secp384r1, then success.",
        server="s_server", client="s_client", outcome="negotiated",
        server_options=("-groups", "secp384r1"),
        client_options=("-tls1_3", "-groups", "x25519:secp384r1", *S_CLIENT_VERIFY),
        client_shows="Server Temp Key: ECDH, secp384r1, 384 bits",
        server_hellos=2,
    ),
    TlsScenario(
        name="tls12-ecdhe-no-common-curve",
        description="TLS 1.2: ECDHE-only suite, client -groups x25519, server -groups secp384r1: OpenSSL drops the ECDHE suite and says no shared cipher.",
        server="s_server", client="s_client", outcome="failed",
        server_options=("-groups", "secp384r1", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"),
        client_options=("-tls1_2", "-groups", "x25519", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"),
        refused_by="server", list="supported_groups", alert="handshake_failure",
        server_says="no shared cipher", client_says="sslv3 alert handshake failure",
        server_hellos=0,
    ),
    # --- signature algorithms
    TlsScenario(
        name="tls12-sigalgs-ecdsa-vs-rsa",
        description="TLS 1.2: client -sigalgs ECDSA+SHA256, server has an RSA certificate: OpenSSL finds no suite it can sign for and says no shared cipher.",
        server="s_server", client="s_client", outcome="failed",
        client_options=("-tls1_2", "-sigalgs", "ECDSA+SHA256"),
        refused_by="server", list="signature_algorithms", alert="handshake_failure",
        server_says="no shared cipher", client_says="sslv3 alert handshake failure",
        server_hellos=0,
    ),
    TlsScenario(
        name="tls13-sigalgs-ecdsa-vs-rsa",
        description="TLS 1.3: client -sigalgs ECDSA+SHA256, server has an RSA certificate: no suitable signature algorithm.",
        server="s_server", client="s_client", outcome="failed",
        client_options=("-tls1_3", "-sigalgs", "ECDSA+SHA256"),
        refused_by="server", list="signature_algorithms", alert="handshake_failure",
        server_says="no suitable signature algorithm", client_says="sslv3 alert handshake failure",
        server_hellos=0,
    ),
    # --- SNI
    TlsScenario(
        name="sni-unrecognized-name",
        description="s_server -servername good.example -servername_fatal, client -servername bad.example: unrecognized_name.",
        server="s_server", client="s_client", outcome="failed",
        server_options=("-servername", "good.example", "-servername_fatal", "-cert2", "{cert}", "-key2", "{key}"),
        client_options=("-servername", "bad.example"),
        refused_by="server", list="server_name", alert="unrecognized_name",
        server_says="callback failed", client_says="tlsv1 unrecognized name",
        server_hellos=0,
    ),
    # --- certificate refused by the client
    TlsScenario(
        name="tls12-certificate-refused",
        description="TLS 1.2: s_client -verify_return_error trusting a CA that did not sign the server's certificate: unknown_ca in clear.",
        server="s_server", client="s_client", outcome="failed",
        client_options=("-tls1_2", "-CAfile", "{stranger_ca}", "-verify_return_error"),
        refused_by="client", list="certificate", alert="unknown_ca",
        server_says="tlsv1 alert unknown ca", client_says="certificate verify failed",
    ),
    TlsScenario(
        name="tls13-certificate-refused",
        description="TLS 1.3: s_client -verify_return_error with a stranger CA: OpenSSL 3.0 sends unknown_ca IN CLEAR (its write side is not yet on handshake keys), though the certificate was encrypted.",
        server="s_server", client="s_client", outcome="failed",
        client_options=("-tls1_3", "-CAfile", "{stranger_ca}", "-verify_return_error"),
        refused_by="client", list="certificate", alert="unknown_ca",
        server_says="tlsv1 alert unknown ca", client_says="certificate verify failed",
    ),
    TlsScenario(
        name="tls13-certificate-refused-encrypted",
        description="TLS 1.3: gnutls-cli trusting a stranger CA against s_server: CCS, then an encrypted alert (bad_certificate, as s_server reports it), then RST.",
        server="s_server", client="gnutls-cli", outcome="failed",
        server_options=("-tls1_3",), client_options=("--x509cafile={stranger_ca}",),
        refused_by="client", list="certificate", alert="bad_certificate", alert_encrypted=True,
        server_says="sslv3 alert bad certificate", client_says="Error in the certificate.",
    ),
    # --- other clients failing
    TlsScenario(
        name="gnutls-no-shared-cipher",
        description="gnutls-cli --priority ...:+CHACHA20-POLY1305 vs gnutls-serv --priority ...:+AES-128-GCM, TLS 1.2 only: no cipher suite in common.",
        server="gnutls-serv", client="gnutls-cli", outcome="failed",
        server_options=("--priority=NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM",),
        client_options=("--x509cafile={ca}", "--priority=NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+CHACHA20-POLY1305"),
        refused_by="server", list="cipher_suites", alert="handshake_failure",
        server_says="No supported cipher suites have been found.", client_says="Handshake failed",
        server_hellos=0,
    ),
    TlsScenario(
        name="curl-tls13-vs-tls12-max",
        description="curl --tlsv1.3 to s_server -tls1_2: protocol_version.",
        server="s_server", client="curl", outcome="failed",
        server_options=("-tls1_2",), client_options=("--tlsv1.3", "--cacert", "{ca}"),
        refused_by="server", list="versions", alert="protocol_version",
        server_says="unsupported protocol", client_says="tlsv1 alert protocol version",
        server_hellos=0,
    ),
)  # fmt: skip
