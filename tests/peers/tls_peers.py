"""Real TLS peers on 127.0.0.1: a throwaway PKI, ``openssl s_server`` and ``gnutls-serv``, and clients to run once.

Tests and scripts/record_tls_captures.py compare kexproxy with what OpenSSL, GnuTLS, Python's
``ssl`` and curl really put on the wire and print, so each helper keeps the peer's own words:
a server's stdout and stderr whole (s_server prints its error line, e.g.
``...:error:0A0000C1:SSL routines:tls_post_process_client_hello:no shared cipher:...``), a
client's exit code, stdout and stderr. Servers listen on 127.0.0.1 only, on an ephemeral port;
``gnutls-serv`` has no listen-address option and binds the wildcard address, so it runs with
a small LD_PRELOAD shim (loopback_bind.c) that turns every bind() into a loopback one.

Typical use::

    pki = make_pki(tmp_path)
    with OpensslServer(pki.leaf("rsa"), "-cipher", "ECDHE-RSA-AES256-GCM-SHA384", "-tls1_2") as server:
        result = run_s_client(server.port, "-tls1_2", "-cipher", "AES128-SHA")
    assert openssl_reason(server.output) == "no shared cipher"
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.peers.base import (
    APT_PACKAGE,
    LOOPBACK,
    PeerError,
    PeerResult,
    _wait_listening,
    free_port,
    kill_tree,
    run_command,
    which_or_skip,
)
from tests.peers.tls_tshark import TLS_FIELDS, tshark_tls_decode  # noqa: F401 - re-exported

APT_PACKAGE.update(
    {
        "openssl": "openssl",
        "gnutls-serv": "gnutls-bin",
        "gnutls-cli": "gnutls-bin",
        "curl": "curl",
        "nginx": "nginx",
        "apache2": "apache2",
    }
)

#: The names every leaf certificate is valid for: the loopback name, the SNI scenarios' name, the address.
LEAF_NAMES = ("localhost", "good.example")

#: openssl genpkey arguments per leaf key type (RSA 2048, ECDSA P-256, Ed25519).
KEY_TYPES: dict[str, tuple[str, ...]] = {
    "rsa": ("-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"),
    "ecdsa": ("-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"),
    "ed25519": ("-algorithm", "ED25519"),
}

#: Days a throwaway certificate is valid: long enough for a test run, short enough to be obviously disposable.
VALID_DAYS = "2"

#: OpenSSL 3's error line: "<thread>:error:<code>:<library>:<function>:<reason>:<file>:<line>:<data>".
OPENSSL_ERROR_LINE = re.compile(
    r"^(?P<thread>[0-9A-Fa-f]+):error:(?P<code>[0-9A-Fa-f]{8}):(?P<library>[^:]*):"
    r"(?P<function>[^:]*):(?P<reason>[^:]*):(?P<rest>.*)$"
)

# ---------------------------------------------------------------------------------------
# A throwaway PKI


@dataclass(frozen=True, slots=True)
class Leaf:
    """One server certificate and its key (PEM files), and the key type it was made with."""

    key_type: str
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class Pki:
    """A CA, the leaves it signed (one per key type), and a stranger CA that signed none of them.

    The stranger CA is what a client trusts in the "certificate refused by the client"
    scenarios: the server's chain is well formed but does not lead to it.
    """

    directory: Path
    ca_cert: Path
    ca_key: Path
    stranger_ca_cert: Path
    leaves: tuple[Leaf, ...]

    def leaf(self, key_type: str) -> Leaf:
        """The leaf of ``key_type`` ("rsa", "ecdsa", "ed25519")."""
        for leaf in self.leaves:
            if leaf.key_type == key_type:
                return leaf
        raise KeyError(key_type)


def _openssl(*args: str) -> None:
    """Run one openssl command for the PKI; raise PeerError with its stderr if it fails."""
    openssl = which_or_skip("openssl")
    result = run_command([openssl, *args], timeout=60)
    if result.returncode != 0:
        raise PeerError(f"openssl {' '.join(args[:2])} failed: {result.stderr}")


def _make_ca(directory: Path, stem: str, common_name: str) -> tuple[Path, Path]:
    """Make a self-signed RSA CA; return (certificate, key)."""
    cert, key = directory / f"{stem}.pem", directory / f"{stem}.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
        "-subj", f"/CN={common_name}", "-days", VALID_DAYS,
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def make_pki(directory: str | Path, key_types: Sequence[str] = tuple(KEY_TYPES)) -> Pki:
    """Make a CA, a stranger CA and one leaf per key type in ``directory``, with ``openssl`` alone.

    Fresh keys per call, so nothing secret is ever committed; the leaves name LEAF_NAMES and
    127.0.0.1, so every client can verify them by name or address.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = _make_ca(folder, "ca", "kexproxy test CA")
    stranger, _ = _make_ca(folder, "stranger-ca", "kexproxy stranger CA")
    san = ",".join([*(f"DNS:{name}" for name in LEAF_NAMES), f"IP:{LOOPBACK}"])
    leaves = []
    for key_type in key_types:
        key, cert = folder / f"{key_type}.key", folder / f"{key_type}.pem"
        _openssl("genpkey", *KEY_TYPES[key_type], "-out", str(key))
        _openssl(
            "req", "-x509", "-new", "-key", str(key), "-out", str(cert),
            "-CA", str(ca_cert), "-CAkey", str(ca_key), "-days", VALID_DAYS,
            "-subj", f"/CN=localhost/O=kexproxy {key_type}",
            "-addext", f"subjectAltName={san}",
            "-addext", "basicConstraints=critical,CA:FALSE",
            "-addext", "extendedKeyUsage=serverAuth",
        )  # fmt: skip
        leaves.append(Leaf(key_type=key_type, cert=cert, key=key))
    return Pki(
        directory=folder,
        ca_cert=ca_cert,
        ca_key=ca_key,
        stranger_ca_cert=stranger,
        leaves=tuple(leaves),
    )


# ---------------------------------------------------------------------------------------
# Servers


@cache
def loopback_bind_shim() -> Path:
    """Compile loopback_bind.c (once per process) and return the shared object for LD_PRELOAD."""
    gcc = which_or_skip("gcc")
    source = Path(__file__).with_name("loopback_bind.c")
    folder = Path(tempfile.mkdtemp(prefix="kexproxy-bindshim-"))
    atexit.register(shutil.rmtree, folder, True)
    shared = folder / "loopback_bind.so"
    built = run_command(
        [gcc, "-Wall", "-Wextra", "-Werror", "-O1", "-shared", "-fPIC", "-o", str(shared), str(source), "-ldl"],
        timeout=120,
    )  # fmt: skip
    if built.returncode != 0:
        raise PeerError(f"gcc could not build {source.name}:\n{built.stderr}")
    return shared


class TlsServer:
    """A TLS server process on 127.0.0.1, its output in files, started and stopped by a with-block.

    stdin is a pipe held open, because ``s_server`` treats end of input as "quit"; stdout and
    stderr go to separate files, kept in memory once stopped (``stdout``, ``stderr``). The
    server's own error line is what scenarios quote, so nothing of it is filtered.
    """

    name = "tls-server"

    def __init__(self, leaf: Leaf, *options: str, start_timeout: float = 10.0) -> None:
        self.leaf = leaf
        self.options = tuple(options)
        self.start_timeout = start_timeout
        self.port = 0
        self.argv: list[str] = []
        self.env: dict[str, str] | None = None
        self.stdout = ""
        self.stderr = ""
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def _command(self, port: int) -> list[str]:
        """The argv that serves on 127.0.0.1:``port`` in the foreground."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._dir = Path(tempfile.mkdtemp(prefix=f"kexproxy-{self.name}-"))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        """Start on a fresh port, again on another when a stranger took it first; return once it listens."""
        assert self._dir is not None
        for attempt in range(5):
            self.port = free_port()
            self.argv = self._command(self.port)
            out, err = self._dir / "stdout", self._dir / "stderr"
            with open(out, "wb") as out_file, open(err, "wb") as err_file:
                self._proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.PIPE,
                    stdout=out_file,
                    stderr=err_file,
                    env=self.env,
                    cwd=self._dir,
                    start_new_session=True,
                )
            try:
                _wait_listening(self.port, self._proc, self.start_timeout, self.name, err)
                return
            except PeerError:
                text = err.read_text(errors="replace") + out.read_text(errors="replace")
                self._kill()
                if attempt == 4 or "in use" not in text.lower():
                    raise

    def _kill(self) -> None:
        """Stop the process tree now (SIGTERM, then SIGKILL)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()
            kill_tree(proc)

    def output(self) -> str:
        """Everything the server printed so far, stderr then stdout (the live files, or the kept text once stopped)."""
        if self._dir is None:
            return self.stderr + self.stdout
        paths = (self._dir / "stderr", self._dir / "stdout")
        return "".join(p.read_text(errors="replace") for p in paths if p.exists())

    def wait_output(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until the server's output matches regex ``pattern`` (MULTILINE); raise PeerError after ``timeout``.

        A server prints its error a moment after the client has given up, so reading it
        right away would be a race.
        """
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.output())
            if found:
                return found
            if time.monotonic() >= deadline or (
                self._proc is not None and self._proc.poll() is not None
            ):
                found = regex.search(self.output())
                if found:
                    return found
                raise PeerError(f"{self.name} did not print {pattern!r}; output:\n{self.output()}")
            time.sleep(0.02)

    def wait_exit(self, timeout: float = 5.0) -> int | None:
        """Wait for the server to exit by itself (``s_server -naccept 1`` does after its connection); its code, or None."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """Stop the server, keep its stdout and stderr in memory, and remove its temp dir."""
        self._kill()
        if self._dir is not None:
            self.stdout = (
                (self._dir / "stdout").read_text(errors="replace")
                if (self._dir / "stdout").exists()
                else ""
            )
            self.stderr = (
                (self._dir / "stderr").read_text(errors="replace")
                if (self._dir / "stderr").exists()
                else ""
            )
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class OpensslServer(TlsServer):
    """``openssl s_server`` for one connection (``-naccept 1``) with the leaf's certificate and extra ``options``.

    One connection, so it exits by itself when that connection ends and its error line is
    complete by then; ``www=True`` adds ``-www`` (answers an HTTP GET with a status page, for curl).
    """

    name = "s_server"

    def __init__(
        self, leaf: Leaf, *options: str, www: bool = False, start_timeout: float = 10.0
    ) -> None:
        super().__init__(leaf, *options, start_timeout=start_timeout)
        self.www = www

    def _command(self, port: int) -> list[str]:
        openssl = which_or_skip("openssl")
        argv = [openssl, "s_server", "-accept", f"{LOOPBACK}:{port}", "-naccept", "1"]
        argv += ["-cert", str(self.leaf.cert), "-key", str(self.leaf.key)]
        if self.www:
            argv.append("-www")
        return [*argv, *self.options]


class GnutlsServer(TlsServer):
    """``gnutls-serv`` with the leaf's certificate and extra ``options`` (``--priority=...``), bound to loopback by the shim."""

    name = "gnutls-serv"

    def _command(self, port: int) -> list[str]:
        gnutls_serv = which_or_skip("gnutls-serv")
        self.env = {**os.environ, "LD_PRELOAD": str(loopback_bind_shim())}
        argv = [gnutls_serv, "--port", str(port)]
        argv += ["--x509certfile", str(self.leaf.cert), "--x509keyfile", str(self.leaf.key)]
        return [*argv, *self.options]


# ---------------------------------------------------------------------------------------
# Clients (each runs once, to completion or its timeout)


def run_s_client(port: int, *options: str, timeout: float = 20.0) -> PeerResult:
    """``openssl s_client -connect 127.0.0.1:PORT OPTIONS`` with empty input: it handshakes, then closes (or fails)."""
    openssl = which_or_skip("openssl")
    argv = [openssl, "s_client", "-connect", f"{LOOPBACK}:{port}", *options]
    return run_command(argv, timeout=timeout, stdin=b"")


def run_gnutls_cli(
    port: int, *options: str, server_name: str = "localhost", timeout: float = 20.0
) -> PeerResult:
    """``gnutls-cli -p PORT --sni-hostname NAME --verify-hostname NAME OPTIONS 127.0.0.1`` with empty input.

    It connects to the address (``localhost`` may resolve to ::1 first) and names
    ``server_name`` in SNI and in verification, as a client given a host name would.
    """
    gnutls_cli = client_name("gnutls-cli")
    argv = [gnutls_cli, "-p", str(port), f"--sni-hostname={server_name}"]
    argv += [f"--verify-hostname={server_name}", *options, LOOPBACK]
    return run_command(argv, timeout=timeout, stdin=b"")


def run_curl(
    port: int, *options: str, host: str = "localhost", timeout: float = 20.0
) -> PeerResult:
    """``curl -sS https://HOST:PORT/ OPTIONS`` with HOST pinned to 127.0.0.1 (``--resolve``), so SNI is sent."""
    curl = client_name("curl")
    argv = [curl, "-sS", "--max-time", str(int(timeout)), "--resolve", f"{host}:{port}:{LOOPBACK}"]
    argv += [*options, f"https://{host}:{port}/"]
    return run_command(argv, timeout=timeout + 5)


def client_name(binary: str) -> str:
    """The bare name when PATH finds it (clients quote argv[0] in their messages), else the full path; skip when missing."""
    path = which_or_skip(binary)
    return binary if shutil.which(binary) == path else path


#: A Python ``ssl`` client in a subprocess: connect, handshake, print the outcome, close.
_PYTHON_SSL_CLIENT = """
import json, socket, ssl, sys
port, options = int(sys.argv[1]), json.loads(sys.argv[2])
context = ssl.create_default_context(cafile=options.get("cafile"))
if options.get("minimum_version"):
    context.minimum_version = ssl.TLSVersion[options["minimum_version"]]
if options.get("maximum_version"):
    context.maximum_version = ssl.TLSVersion[options["maximum_version"]]
if options.get("ciphers"):
    context.set_ciphers(options["ciphers"])
if options.get("alpn"):
    context.set_alpn_protocols(options["alpn"])
with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
    with context.wrap_socket(raw, server_hostname=options.get("server_hostname")) as tls:
        print("negotiated:", tls.version(), tls.cipher()[0], tls.selected_alpn_protocol())
"""


def run_python_ssl(
    port: int,
    *,
    cafile: str | Path | None = None,
    server_hostname: str = "localhost",
    minimum_version: str | None = None,
    maximum_version: str | None = None,
    ciphers: str | None = None,
    alpn: Sequence[str] = (),
    timeout: float = 20.0,
) -> PeerResult:
    """Python's ``ssl`` (``create_default_context``, so it verifies) as a client in a subprocess.

    Prints ``negotiated: VERSION CIPHER ALPN`` on success; a refusal ends in Python's own
    traceback on stderr (``ssl.SSLError: [SSL: ...] ...``), exit 1. Versions are
    ``ssl.TLSVersion`` names ("TLSv1_2").
    """
    options = {
        "cafile": str(cafile) if cafile is not None else None,
        "server_hostname": server_hostname,
        "minimum_version": minimum_version,
        "maximum_version": maximum_version,
        "ciphers": ciphers,
        "alpn": list(alpn),
    }
    argv = [sys.executable, "-c", _PYTHON_SSL_CLIENT, str(port), json.dumps(options)]
    return run_command(argv, timeout=timeout)


# ---------------------------------------------------------------------------------------
# Reading what the peers printed


def openssl_error_lines(text: str) -> list[re.Match[str]]:
    """Every OpenSSL 3 error line in ``text`` (``...:error:0A0000C1:SSL routines:FUNC:REASON:FILE:LINE:...``), in order."""
    found = (OPENSSL_ERROR_LINE.match(line.strip()) for line in text.splitlines())
    return [match for match in found if match]


def openssl_reason(text: str) -> str | None:
    """The reason of the first SSL-library error line in ``text`` ("no shared cipher"), or None."""
    for match in openssl_error_lines(text):
        if match.group("library") == "SSL routines":
            return match.group("reason")
    return None


def openssl_error(text: str) -> str | None:
    """The first SSL-library error line in ``text`` as OpenSSL 3 prints it, without the thread id ("error:0A0000C1:SSL routines:...")."""
    for match in openssl_error_lines(text):
        if match.group("library") == "SSL routines":
            return match.group(0).split(":", 1)[1]
    return None


def gnutls_error(text: str) -> str | None:
    """GnuTLS's own words for a failure: the text after "*** Fatal error: " / "Error in handshake: " / "*** Received alert [N]: ", or None."""
    patterns = (
        r"\*\*\* Received alert \[\d+\]: (.*)",
        r"\*\*\* Fatal error: (.*)",
        r"Error in handshake: (.*)",
        r"\*\*\* handshake has failed: (.*)",
    )
    for pattern in patterns:
        found = re.search(pattern, text)
        if found:
            return found.group(1).strip()
    return None
