"""`kexproxy probe --tls` against real servers on 127.0.0.1: it must report them exactly as configured.

Each server is configured with known versions, suites, groups and schemes (and
``-serverpref``, so the order found is the server's); the probe must find exactly those.
Loopback listeners count connections for the bounds, and hostile ones (garbage, a drip, a
huge record) must end the probe in one clear note.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kexproxy.cli import main
from kexproxy.sources.tls_probe import ProbeLimits, probe_tls
from tests.peers.base import LOOPBACK, skip_or_fail, which_or_skip
from tests.peers.tls_peers import GnutlsServer, OpensslServer, Pki, make_pki

pytestmark = pytest.mark.peers

FAST = ProbeLimits(rate=20, timeout=3)


class ManyOpensslServer(OpensslServer):
    """``s_server`` serving connection after connection (a probe makes dozens)."""

    def _command(self, port: int) -> list[str]:
        argv = super()._command(port)
        at = argv.index("-naccept")
        return argv[:at] + argv[at + 2 :]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    which_or_skip("openssl")
    return make_pki(tmp_path_factory.mktemp("pki"))


OPENSSL_CONFIG = (
    "-cipher", "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA",
    "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384",
    "-groups", "secp384r1:x25519",
    "-sigalgs", "rsa_pss_rsae_sha384:rsa_pkcs1_sha256",
    "-serverpref",
)  # fmt: skip


def test_probe_reports_s_server_as_configured(pki: Pki) -> None:
    with ManyOpensslServer(pki.leaf("rsa"), *OPENSSL_CONFIG) as server:
        started = time.monotonic()
        report = probe_tls(LOOPBACK, server.port, server_name="localhost", limits=FAST)
        seconds = time.monotonic() - started
    assert report["versions"] == ["TLS 1.3", "TLS 1.2"]
    assert report["cipher_suites"] == {
        "TLS 1.3": ["TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_256_GCM_SHA384"],
        "TLS 1.2": [
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_RSA_WITH_AES_128_CBC_SHA",
        ],
    }
    assert report["supported_groups"] == ["secp384r1", "x25519"]
    assert sorted(report["signature_algorithms"]) == ["rsa_pkcs1_sha256", "rsa_pss_rsae_sha384"]
    certs = report["certificates"]
    assert isinstance(certs, list) and certs[0]["subject"] == "O=kexproxy rsa,CN=localhost"
    assert report["server_name"] == "localhost"
    assert not any("client's order" in n for n in report["notes"])  # -serverpref was found
    assert isinstance(report["handshakes"], int) and report["handshakes"] < 60
    print(f"s_server probe: {report['handshakes']} handshakes, {seconds:.1f} s")


def test_probe_reports_gnutls_serv_as_configured(pki: Pki) -> None:
    priority = (
        "--priority=NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:+CHACHA20-POLY1305"
        ":-GROUP-ALL:+GROUP-SECP384R1:-SIGN-ALL:+SIGN-ECDSA-SHA256:+SIGN-ECDSA-SHA384"
    )
    with GnutlsServer(pki.leaf("ecdsa"), priority) as server:
        report = probe_tls(LOOPBACK, server.port, server_name="localhost", limits=FAST)
    assert report["versions"] == ["TLS 1.2"]
    assert sorted(report["cipher_suites"]["TLS 1.2"]) == [  # type: ignore[index]
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ]
    assert report["supported_groups"] == ["secp384r1"]
    assert sorted(report["signature_algorithms"]) == [
        "ecdsa_secp256r1_sha256",
        "ecdsa_secp384r1_sha384",
    ]
    assert report["certificates"][0]["key_type"] == "ec"  # type: ignore[index]


def _sslyze() -> str:
    """The sslyze 6 CLI: $KEXPROXY_SSLYZE, else on PATH (it pins cryptography<47, so it lives in its own venv)."""
    cached = Path.home() / ".cache/kexproxy/sslyze/bin/sslyze"
    path = os.environ.get("KEXPROXY_SSLYZE") or shutil.which("sslyze")
    path = path or (str(cached) if cached.exists() else None)
    if not path:
        skip_or_fail(
            "sslyze is not installed (scripts/setup puts it in its own venv; set KEXPROXY_SSLYZE)"
        )
    return path


#: sslyze names curves as OpenSSL does; the IANA names the record uses.
_SSLYZE_CURVES = {"X25519": "x25519", "X448": "x448", "prime256v1": "secp256r1"}


def test_probe_agrees_with_sslyze(pki: Pki, tmp_path: Path) -> None:
    sslyze = _sslyze()
    with ManyOpensslServer(pki.leaf("rsa"), *OPENSSL_CONFIG) as server:
        report = probe_tls(LOOPBACK, server.port, server_name="localhost", limits=FAST)
        out = tmp_path / "sslyze.json"
        argv = [sslyze, "--tlsv1_2", "--tlsv1_3", "--elliptic_curves", f"--json_out={out}"]
        ran = subprocess.run(
            [*argv, f"localhost:{server.port}{{{LOOPBACK}}}"],
            check=False,
            capture_output=True,
            timeout=300,
        )
    assert ran.returncode == 0, ran.stderr
    scan = json.loads(out.read_text())["server_scan_results"][0]["scan_result"]
    for version, key in (
        ("TLS 1.2", "tls_1_2_cipher_suites"),
        ("TLS 1.3", "tls_1_3_cipher_suites"),
    ):
        accepted = {
            s["cipher_suite"]["name"] for s in scan[key]["result"]["accepted_cipher_suites"]
        }
        assert set(report["cipher_suites"][version]) == accepted  # type: ignore[index]
    curves = scan["elliptic_curves"]["result"]["supported_curves"]
    names = {_SSLYZE_CURVES.get(c["name"], c["name"]) for c in curves}
    assert set(report["supported_groups"]) == names  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- bounds


class Listener:
    """A loopback listener that records when each connection arrives and answers it with `reply`."""

    def __init__(self, reply: Callable[[socket.socket], None]) -> None:
        self.sock = socket.create_server((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        self.arrivals: list[float] = []
        self._reply = reply
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.arrivals.append(time.monotonic())
            with conn, contextlib.suppress(OSError):
                self._reply(conn)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Callable[[Callable[[socket.socket], None]], Listener]]:
    made: list[Listener] = []

    def make(reply: Callable[[socket.socket], None]) -> Listener:
        made.append(Listener(reply))
        return made[-1]

    yield make
    for one in made:
        one.close()


def _alert_protocol_version(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(bytes([21, 3, 3, 0, 2, 2, 70]))


def test_rate_and_cap_are_honoured(listener: Callable[..., Listener]) -> None:
    server = listener(_alert_protocol_version)
    limits = ProbeLimits(rate=4, max_handshakes=3, timeout=2)
    report = probe_tls(LOOPBACK, server.port, server_name=None, limits=limits)
    time.sleep(0.2)
    assert len(server.arrivals) == 3
    gaps = [b - a for a, b in zip(server.arrivals, server.arrivals[1:], strict=False)]
    assert min(gaps) >= 0.24
    assert any("cap of 3 handshakes" in n for n in report["notes"])  # type: ignore[union-attr]


def test_rate_above_the_ceiling_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", f"{LOOPBACK}:1", "--tls", "--rate", "50"]) == 2
    assert "at most 20" in capsys.readouterr().err


def test_without_tls_the_probe_speaks_ssh(
    listener: Callable[..., Listener], capsys: pytest.CaptureFixture[str]
) -> None:
    server = listener(_alert_protocol_version)
    assert main(["probe", f"{LOOPBACK}:{server.port}", "--timeout", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "binary data before any SSH identification line" in err[0]


def test_unreachable_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    sock = socket.create_server((LOOPBACK, 0))
    port = sock.getsockname()[1]
    sock.close()
    assert main(["probe", f"{LOOPBACK}:{port}", "--tls", "--json"]) == 2
    assert "cannot connect" in capsys.readouterr().err


def _garbage(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")


def _drip(conn: socket.socket) -> None:
    conn.recv(65536)
    for byte in bytes([22, 3, 3, 0, 80]) + b"\x02" * 80:
        conn.sendall(bytes([byte]))
        time.sleep(0.3)


def _huge(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(bytes([22, 3, 3, 0xFF, 0xFF]) + b"\x00" * 65535)


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (_garbage, "not TLS"),
        (_drip, "stopped answering"),
        (_huge, "not TLS"),
    ],
)
def test_hostile_server_ends_in_one_clear_line(
    listener: Callable[..., Listener],
    capsys: pytest.CaptureFixture[str],
    reply: Callable[[socket.socket], None],
    words: str,
) -> None:
    server = listener(reply)
    argv = ["probe", f"{LOOPBACK}:{server.port}", "--tls", "--rate", "20", "--timeout", "1"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    ended = [line for line in out.splitlines() if "probe ended early" in line]
    assert len(ended) == 1 and words in ended[0], out
    assert len(server.arrivals) == 1
