"""Every TLS recipe kind applied to the real peer: the handshake fails, the printed text is applied
exactly, and the handshake then works (issue 12, "Diagnosis and recipes").

Each test starts the real failing pair on 127.0.0.1 (openssl s_server, nginx and Apache as throwaway
unprivileged instances; openssl s_client, curl, Python ssl and a Java SSLSocket client), keeps the
client's real ClientHello through a loopback tap, builds the failing record from it
(`record_from_peers`), asks `diagnose_tls` for the recipes, and applies each one whose steps are not
notes: a configuration file or block replaced by the recipe's text, or the client's flags or
settings replaced by the recipe's. `apply_all` fails when a printed recipe has no harness here, so a
new kind cannot go unproven.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kexproxy.core.tls.advice import diagnose_tls
from kexproxy.core.tls.steps import CA_FILE, JAVA_OVERRIDE, OPENSSL_FILE, openssl_cipher_names
from tests.peers.base import PeerResult, which_or_skip
from tests.peers.tls import (
    Pki,
    Tap,
    apache,
    curl,
    java,
    make_pki,
    nginx,
    python_client,
    s_client,
    s_server,
    tapped,
)

pytestmark = pytest.mark.peers

VERSION_FLAGS = {
    "TLS 1.0": "-tls1",
    "TLS 1.1": "-tls1_1",
    "TLS 1.2": "-tls1_2",
    "TLS 1.3": "-tls1_3",
}
ALERT_NAMES = {
    40: "handshake_failure",
    48: "unknown_ca",
    70: "protocol_version",
    80: "internal_error",
}


def record_from_peers(
    tap: Tap, lists: Sequence[str], *, server_offer: Mapping[str, list[str]] | None = None
) -> dict[str, Any]:
    """The failed record of the tapped handshake, in tls-spec.md's shape, until the pipeline exists.

    The offers are the client's real ClientHello; `lists` is which list failed (the test knows: it
    configured the pair); `server_offer` is what a probe of the server found. The lead replaces
    this with kexproxy's own record of the tapped bytes once the TLS tracker is merged.
    """
    offer = tap.offer()
    alert = tap.server_alert()
    failures = [
        {
            "list": name,
            "client_offer": list(offer.get(name, [])) if name != "certificate" else [],
            "server_offer": (server_offer or {}).get(name),
        }
        for name in lists
    ]
    return {
        "protocol": "tls",
        "outcome": "failed",
        "server": {"ip": "127.0.0.1", "port": tap.upstream},
        "client_hello": offer,
        "server_hello": None,
        "negotiated": None,
        "alerts": [
            {
                "from": "server",
                "level": "fatal",
                "description": ALERT_NAMES.get(alert),
                "code": alert,
                "encrypted": False,
            }
        ]
        if alert is not None
        else [],
        "failures": failures,
    }


def worked(result: PeerResult) -> bool:
    return result.returncode == 0 and not result.timed_out


@dataclass
class Pair:
    """How to run the failing pair, and each side's failing and base settings, for `apply_all`."""

    pki: Pki
    tmp: Path
    #: Starts the server as it was (the failing configuration) or with a server recipe's text.
    server: Callable[[str, str | None], contextlib.AbstractContextManager[int]]
    #: Runs the client as it was (the failing settings) or with a client recipe's text.
    client: Callable[[int, str | None], PeerResult]
    #: The kinds this pair can apply on each side.
    server_kinds: tuple[str, ...] = ()
    client_kinds: tuple[str, ...] = ()
    applied: list[str] = field(default_factory=list)


def apply_all(
    pair: Pair, diagnosis: Mapping[str, Any], *, server_kind: str, client_kind: str
) -> None:
    """Apply every recipe of `diagnosis` that this pair's harness can run; fail on an unknown kind.

    `server_kind` is the kind of server this pair runs (a server recipe for another server software is
    applied by the test that runs that software), `client_kind` likewise.
    """
    for recipe in diagnosis["recipes"]:
        steps = [s for s in recipe["steps"] if s["kind"] != "note"]
        if not steps:
            continue
        (step,) = steps
        kind, text = step["kind"], step["text"]
        assert kind in (*pair.server_kinds, *pair.client_kinds), (
            f"no harness proves {kind}: {recipe}"
        )
        if kind not in (server_kind, client_kind):
            continue
        if recipe["side"] == "server":
            with pair.server(kind, text) as port:
                result = pair.client(port, None)
        else:
            with pair.server("", None) as port:
                result = pair.client(port, text)
        assert worked(result), f"recipe {recipe['rank']} ({kind}) did not fix it:\n{text}\n{result}"
        pair.applied.append(kind)


SERVER_KINDS = ("openssl_conf", "nginx_conf", "apache_conf")
CLIENT_KINDS = ("s_client_option", "curl_option", "python_ssl", "java_security")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _servers(
    pki: Pki, tmp: Path, failing: Mapping[str, str]
) -> Callable[[str, str | None], contextlib.AbstractContextManager[int]]:
    """A server starter: `failing[kind]` is the failing configuration of that server kind."""

    def start(kind: str, text: str | None) -> contextlib.AbstractContextManager[int]:
        kind = kind or failing["serve"]
        lines = text if text is not None else failing.get(kind, "")
        if kind == "openssl_conf":
            conf = tmp / (OPENSSL_FILE if text is not None else "failing.cnf")
            conf.write_text(lines + "\n")
            return s_server(pki, tmp, failing.get("s_server_args", "").split(), conf=conf)
        if kind == "nginx_conf":
            return nginx(pki, tmp, lines)
        return apache(pki, tmp, lines)

    return start


def _conf(lines: str) -> str:
    """A failing OpenSSL configuration file with `lines` in its system default section."""
    return (
        "openssl_conf = openssl_init\n[openssl_init]\nssl_conf = ssl_sect\n[ssl_sect]\n"
        f"system_default = system_default_sect\n[system_default_sect]\n{lines}"
    )


def _client(
    kind: str, pki: Pki, failing: str, base: str = ""
) -> Callable[[int, str | None], PeerResult]:
    """A client runner: `failing` its failing settings, `base` what it keeps (trust), a recipe replaces `failing`."""

    def run(port: int, text: str | None) -> PeerResult:
        settings = failing if text is None else text
        if kind == "s_client_option":
            return s_client(port, [*base.split(), *settings.split()], pki.folder)
        if kind == "curl_option":
            return curl(port, [*base.split(), *settings.split()], pki.folder)
        if kind == "python_ssl":
            return python_client(port, f"{base}\n{settings}", pki.folder)
        options = [f"-Djava.security.properties={JAVA_OVERRIDE}"] if text is not None else []
        if text is not None:
            (pki.folder / JAVA_OVERRIDE).write_text(text + "\n")
        return java(port, pki.ca, options, pki.folder)

    return run


TRUST = {
    "s_client_option": f"-CAfile {CA_FILE}",
    "curl_option": f"--cacert {CA_FILE}",
    "python_ssl": f'ctx.load_verify_locations("{CA_FILE}")',
    "java_security": "",
}


def _fail_then_diagnose(pair: Pair, lists: Sequence[str], **record: Any) -> dict[str, Any]:
    """Run the failing pair through the tap, show it fails, and diagnose the record of what was sent."""
    with pair.server("", None) as port, tapped(port) as tap:
        result = pair.client(tap.port, None)
    assert not worked(result), f"the pair was meant to fail:\n{result}"
    diagnosis = diagnose_tls(record_from_peers(tap, lists, **record))
    assert diagnosis["recipes"], diagnosis
    return diagnosis


# ---------------------------------------------------------------------------------------
# Versions: a TLS 1.0 client against an OpenSSL 3 server at its default security level.

TLS10_CLIENT = {
    "s_client_option": "-tls1 -cipher DEFAULT:@SECLEVEL=0",
    "curl_option": "--tlsv1.0 --tls-max 1.0 --ciphers DEFAULT:@SECLEVEL=0",
    "python_ssl": "ctx.minimum_version = ssl.TLSVersion.TLSv1\nctx.maximum_version = ssl.TLSVersion.TLSv1\n"
    'ctx.set_ciphers("DEFAULT:@SECLEVEL=0")',
}


@pytest.mark.parametrize("client_kind", list(TLS10_CLIENT))
def test_tls10_client_fixed_on_either_side(pki: Pki, tmp_path: Path, client_kind: str) -> None:
    """The client recipe moves it to TLS 1.2+ (good); each server recipe re-enables TLS 1.0 (broken, warned)."""
    servers = _servers(pki, tmp_path, {"serve": "openssl_conf", "openssl_conf": _conf("")})
    client = _client(client_kind, pki, TLS10_CLIENT[client_kind], TRUST[client_kind])
    pair = Pair(pki, tmp_path, servers, client, SERVER_KINDS, CLIENT_KINDS)
    diagnosis = _fail_then_diagnose(pair, ["versions"])
    assert (
        diagnosis["recipes"][0]["side"] == "client" and diagnosis["recipes"][0]["grade"] == "good"
    )
    server_recipes = [r for r in diagnosis["recipes"] if r["side"] == "server"]
    assert {r["grade"] for r in server_recipes} == {"broken"}
    assert all("TLS 1.0 is broken" in r["warnings"][0] for r in server_recipes)
    for server_kind in SERVER_KINDS:
        apply_all(pair, diagnosis, server_kind=server_kind, client_kind=client_kind)
    assert sorted(set(pair.applied)) == sorted({*SERVER_KINDS, client_kind})


# ---------------------------------------------------------------------------------------
# Versions the other way: modern clients against a server that speaks TLS 1.0 only.

MODERN_CLIENT = {"s_client_option": "", "curl_option": "", "python_ssl": "", "java_security": ""}


def probe_versions(pki: Pki, port: int) -> list[str]:
    """The versions the server accepts, found as `kexproxy probe --tls` would: one handshake each."""
    found = []
    for version, flag in VERSION_FLAGS.items():
        args = [flag, "-cipher", "DEFAULT:@SECLEVEL=0", "-CAfile", str(pki.ca)]
        if worked(s_client(port, args, pki.folder)):
            found.append(version)
    return found


@pytest.mark.parametrize("client_kind", list(MODERN_CLIENT))
def test_modern_client_reaches_tls10_only_server(
    pki: Pki, tmp_path: Path, client_kind: str
) -> None:
    """Without the server's offer no client recipe guesses; with a probe's, the client re-enables TLS 1.0."""
    servers = _servers(
        pki,
        tmp_path,
        {
            "serve": "openssl_conf",
            "openssl_conf": _conf(""),
            "s_server_args": "-tls1 -cipher DEFAULT:@SECLEVEL=0",
        },
    )
    client = _client(client_kind, pki, MODERN_CLIENT[client_kind], TRUST[client_kind])
    pair = Pair(pki, tmp_path, servers, client, SERVER_KINDS, CLIENT_KINDS)
    blind = _fail_then_diagnose(pair, ["versions"])
    assert not [r for r in blind["recipes"] if r["side"] == "client"]
    assert any("probe" in line for line in blind["real_fix"])
    with servers("", None) as port:
        offer = probe_versions(pki, port)
    assert offer == ["TLS 1.0"]
    diagnosis = _fail_then_diagnose(pair, ["versions"], server_offer={"versions": offer})
    mine = [r for r in diagnosis["recipes"] if r["side"] == "client" and r["software"]["client"]]
    assert mine and all(r["grade"] == "broken" for r in mine)
    apply_all(pair, diagnosis, server_kind="-", client_kind=client_kind)
    assert pair.applied == [client_kind]


# ---------------------------------------------------------------------------------------
# Cipher suites (TLS 1.2 and TLS 1.3) and groups, against each server software.

SUITE12_SERVER = {
    "openssl_conf": _conf("MaxProtocol = TLSv1.2\nCipherString = ECDHE-RSA-AES256-GCM-SHA384"),
    "nginx_conf": "ssl_protocols TLSv1.2;\nssl_ciphers ECDHE-RSA-AES256-GCM-SHA384;",
    "apache_conf": "SSLProtocol -all +TLSv1.2\nSSLCipherSuite ECDHE-RSA-AES256-GCM-SHA384",
}
SUITE12_CLIENT = {
    "s_client_option": "-tls1_2 -cipher AES128-SHA",
    "curl_option": "--tls-max 1.2 --ciphers AES128-SHA",
    "python_ssl": 'ctx.maximum_version = ssl.TLSVersion.TLSv1_2\nctx.set_ciphers("AES128-SHA")',
}
SUITE13_SERVER = {
    "openssl_conf": _conf("MinProtocol = TLSv1.3\nCiphersuites = TLS_AES_256_GCM_SHA384"),
    "nginx_conf": "ssl_protocols TLSv1.3;\nssl_conf_command Ciphersuites TLS_AES_256_GCM_SHA384;",
    "apache_conf": "SSLProtocol -all +TLSv1.3\nSSLCipherSuite TLSv1.3 TLS_AES_256_GCM_SHA384",
}
SUITE13_CLIENT = {
    "s_client_option": "-tls1_3 -ciphersuites TLS_AES_128_CCM_SHA256",
    "curl_option": "--tlsv1.3 --tls13-ciphers TLS_AES_128_CCM_SHA256",
}
GROUP_SERVER = {
    "openssl_conf": _conf("Groups = x25519"),
    "nginx_conf": "ssl_ecdh_curve x25519;",
    "apache_conf": "SSLOpenSSLConfCmd Curves x25519",
}
# TLS 1.3 only, so that the pair cannot fall back to TLS 1.2 with static RSA and no group at all.
GROUP_CLIENT = {
    "s_client_option": "-tls1_3 -groups secp521r1",
    "curl_option": "--tlsv1.3 --curves secp521r1",
    "python_ssl": 'ctx.minimum_version = ssl.TLSVersion.TLSv1_3\nctx.set_ecdh_curve("secp521r1")',
}
CASES = {
    "cipher_suites 1.2": (SUITE12_SERVER, SUITE12_CLIENT, "weak"),
    "cipher_suites 1.3": (SUITE13_SERVER, SUITE13_CLIENT, "strong"),
    "supported_groups": (GROUP_SERVER, GROUP_CLIENT, "good"),
}


@pytest.mark.parametrize("server_kind", SERVER_KINDS)
@pytest.mark.parametrize("case", list(CASES))
def test_list_failures_fixed_on_either_side(
    pki: Pki, tmp_path: Path, case: str, server_kind: str
) -> None:
    """Each server software's recipe adds the client's strongest name; each client's adds the modern names."""
    server_conf, clients, server_grade = CASES[case]
    servers = _servers(pki, tmp_path, {"serve": server_kind, **server_conf})
    for client_kind, failing in clients.items():
        client = _client(client_kind, pki, failing, TRUST[client_kind])
        pair = Pair(pki, tmp_path, servers, client, SERVER_KINDS, CLIENT_KINDS)
        diagnosis = _fail_then_diagnose(pair, [case.split(maxsplit=1)[0]])
        grades = {r["grade"] for r in diagnosis["recipes"] if r["side"] == "server"}
        assert grades == {server_grade}, diagnosis["recipes"]
        apply_all(pair, diagnosis, server_kind=server_kind, client_kind=client_kind)
        assert server_kind in pair.applied
        assert client_kind in pair.applied or (case.endswith("1.3") and client_kind == "python_ssl")


# ---------------------------------------------------------------------------------------
# A certificate the client refuses: it trusts the CA (never a switch that stops verifying).

CERT_CLIENT = {"s_client_option": "", "curl_option": "", "python_ssl": ""}


@pytest.mark.parametrize("client_kind", list(CERT_CLIENT))
def test_refused_certificate_fixed_by_trusting_the_ca(
    pki: Pki, tmp_path: Path, client_kind: str
) -> None:
    servers = _servers(pki, tmp_path, {"serve": "openssl_conf", "openssl_conf": _conf("")})
    client = _client(client_kind, pki, CERT_CLIENT[client_kind])
    pair = Pair(pki, tmp_path, servers, client, SERVER_KINDS, CLIENT_KINDS)
    diagnosis = _fail_then_diagnose(pair, ["certificate"])
    texts = " ".join(s["text"] for r in diagnosis["recipes"] for s in r["steps"])
    assert "-k " not in texts and "--insecure" not in texts and "CERT_NONE" not in texts
    assert all(
        "Never turn certificate verification off" in " ".join(r["warnings"])
        for r in diagnosis["recipes"]
    )
    apply_all(pair, diagnosis, server_kind="-", client_kind=client_kind)
    assert pair.applied == [client_kind]


def test_openssl_names_match_the_installed_openssl() -> None:
    """data/tls-software/openssl-ciphers.toml says what this machine's openssl says."""
    out = subprocess.run(
        [which_or_skip("openssl"), "ciphers", "-stdname", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pairs = {line.split()[0]: line.split()[2] for line in out.splitlines() if "TLSv1.3" not in line}
    assert pairs == dict(openssl_cipher_names())
