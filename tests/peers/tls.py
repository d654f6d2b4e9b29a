"""Real TLS peers on loopback for the recipe proofs: a test PKI, openssl s_server, nginx and Apache as
throwaway unprivileged instances, openssl s_client, curl, Python ssl and a Java SSLSocket client, and a
tap that keeps the bytes each side sent so a test can build the record from what the peers offered.

Every server listens on 127.0.0.1 on an ephemeral port with its configuration in a temporary folder;
a missing binary skips the test, or fails it under KEXPROXY_REQUIRE_PEERS=1 (base.which_or_skip).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from tests.peers.base import (
    LOOPBACK,
    PeerResult,
    _wait_listening,
    free_port,
    kill_tree,
    run_command,
    which_or_skip,
)

#: Debian packages for the binaries used here (scripts/setup installs them).
TLS_PACKAGES = {"openssl": "openssl", "curl": "curl", "nginx": "nginx", "apache2": "apache2"}
APACHE_MODULES = Path("/usr/lib/apache2/modules")

VERSION_NAMES = {
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
}
GROUP_NAMES = {
    0x0017: "secp256r1",
    0x0018: "secp384r1",
    0x0019: "secp521r1",
    0x001D: "x25519",
    0x001E: "x448",
    0x0100: "ffdhe2048",
    0x0101: "ffdhe3072",
    0x0102: "ffdhe4096",
    0x0103: "ffdhe6144",
    0x0104: "ffdhe8192",
    0x11EC: "X25519MLKEM768",
}


@cache
def suite_names() -> dict[int, str]:
    """IANA suite names by code, from the installed openssl (`ciphers -V -stdname`)."""
    openssl = which_or_skip("openssl")
    out = subprocess.run(
        [openssl, "ciphers", "-V", "-stdname", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # TLS 1.3 suites OpenSSL does not enable by default, and the renegotiation SCSV.
    names = {
        0x1304: "TLS_AES_128_CCM_SHA256",
        0x1305: "TLS_AES_128_CCM_8_SHA256",
        0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    }
    for line in out.splitlines():
        parts = line.split()
        hi, lo = parts[0].split(",")
        names[(int(hi, 16) << 8) | int(lo, 16)] = parts[2]
    return names


def _grease(code: int) -> bool:
    return (code & 0x0F0F) == 0x0A0A and (code >> 8) == (code & 0xFF)


def _name(table: dict[int, str], code: int) -> str:
    return table.get(code, f"0x{code:04X}")


def client_hello_offer(data: bytes) -> dict[str, list[str]]:
    """The ClientHello's lists, by name, read from the client's first bytes (one record is enough here)."""
    assert data[:1] == b"\x16", f"not a TLS handshake record: {data[:8].hex()}"
    body = data[5 + 4 :]
    legacy = struct.unpack_from(">H", body, 0)[0]
    pos = 2 + 32
    pos += 1 + body[pos]
    (n,) = struct.unpack_from(">H", body, pos)
    suites = [struct.unpack_from(">H", body, pos + 2 + i)[0] for i in range(0, n, 2)]
    pos += 2 + n
    pos += 1 + body[pos]
    versions: list[int] = []
    groups: list[int] = []
    if pos < len(body):
        (total,) = struct.unpack_from(">H", body, pos)
        pos += 2
        end = pos + total
        while pos + 4 <= end:
            kind, size = struct.unpack_from(">HH", body, pos)
            ext = body[pos + 4 : pos + 4 + size]
            if kind == 43:
                versions = [struct.unpack_from(">H", ext, 1 + i)[0] for i in range(0, ext[0], 2)]
            elif kind == 10:
                groups = [
                    struct.unpack_from(">H", ext, 2 + i)[0] for i in range(0, len(ext) - 2, 2)
                ]
            pos += 4 + size
    return {
        "versions": [_name(VERSION_NAMES, v) for v in (versions or [legacy]) if not _grease(v)],
        "cipher_suites": [_name(suite_names(), s) for s in suites if not _grease(s)],
        "supported_groups": [_name(GROUP_NAMES, g) for g in groups if not _grease(g)],
    }


@dataclass
class Tap:
    """A loopback relay in front of a server that keeps the first bytes each way (the offers)."""

    upstream: int
    port: int = field(default_factory=free_port)
    client_bytes: bytearray = field(default_factory=bytearray)
    server_bytes: bytearray = field(default_factory=bytearray)

    def serve(self, listener: socket.socket, stop: threading.Event) -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn, socket.create_connection((LOOPBACK, self.upstream)) as up:
                pumps = [
                    threading.Thread(target=_pump, args=(conn, up, self.client_bytes), daemon=True),
                    threading.Thread(target=_pump, args=(up, conn, self.server_bytes), daemon=True),
                ]
                for pump in pumps:
                    pump.start()
                for pump in pumps:
                    pump.join(timeout=20)

    def offer(self) -> dict[str, list[str]]:
        return client_hello_offer(bytes(self.client_bytes))

    def server_alert(self) -> int | None:
        """The description of the alert the server sent in clear before anything else, if any."""
        data = bytes(self.server_bytes)
        return data[6] if data[:1] == b"\x15" and len(data) >= 7 else None


def _pump(src: socket.socket, dst: socket.socket, keep: bytearray) -> None:
    with contextlib.suppress(OSError):
        while chunk := src.recv(65536):
            if len(keep) < 65536:
                keep += chunk
            dst.sendall(chunk)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def tapped(upstream: int) -> Iterator[Tap]:
    """A Tap running in a thread for the duration of the block (one connection at a time)."""
    tap = Tap(upstream)
    stop = threading.Event()
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, tap.port))
        listener.listen(4)
        thread = threading.Thread(target=tap.serve, args=(listener, stop), daemon=True)
        thread.start()
        try:
            yield tap
        finally:
            stop.set()
            thread.join(timeout=5)


# ---------------------------------------------------------------------------------------
# The test PKI


@dataclass(frozen=True)
class Pki:
    """A CA (ca.pem, the file name a trust recipe prints) and a server certificate it issued for 127.0.0.1."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def key(self) -> Path:
        return self.folder / "server.key"


def make_pki(folder: Path) -> Pki:
    """Make the CA and the server certificate (RSA 2048, SAN 127.0.0.1) with the openssl command."""
    openssl = which_or_skip("openssl")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=kexproxy test CA",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    )
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )
    return Pki(folder)


# ---------------------------------------------------------------------------------------
# Servers


@contextlib.contextmanager
def _server(
    argv: Sequence[str],
    port: int,
    what: str,
    log: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[int]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    try:
        _wait_listening(port, proc, 10.0, what, log)
        yield port
    finally:
        kill_tree(proc)


def s_server(
    pki: Pki, folder: Path, args: Sequence[str] = (), conf: Path | None = None
) -> contextlib.AbstractContextManager[int]:
    """openssl s_server -www with `args`; `conf` is given as OPENSSL_CONF (an openssl_conf recipe)."""
    import os

    openssl = which_or_skip("openssl")
    port = free_port()
    env = dict(os.environ)
    if conf is not None:
        env["OPENSSL_CONF"] = str(conf)
    argv = [
        openssl,
        "s_server",
        "-accept",
        f"{LOOPBACK}:{port}",
        "-cert",
        str(pki.cert),
        "-key",
        str(pki.key),
        "-www",
        *args,
    ]
    return _server(argv, port, "s_server", folder / f"s_server-{port}.log", env=env, cwd=folder)


def nginx(pki: Pki, folder: Path, lines: str) -> contextlib.AbstractContextManager[int]:
    """An unprivileged nginx (no daemon, one process) serving TLS with `lines` in its server block."""
    binary = which_or_skip("nginx")
    port = free_port()
    # A fresh folder even when the kernel hands the same free port out twice in one test.
    root = Path(tempfile.mkdtemp(prefix=f"nginx-{port}-", dir=folder))
    (root / "nginx.conf").write_text(f"""
daemon off;
master_process off;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 16; }}
http {{
    access_log off;
    client_body_temp_path {root}; proxy_temp_path {root}; fastcgi_temp_path {root};
    uwsgi_temp_path {root}; scgi_temp_path {root};
    server {{
        listen {LOOPBACK}:{port} ssl;
        ssl_certificate {pki.cert};
        ssl_certificate_key {pki.key};
{lines}
        location / {{ return 200 "ok\\n"; }}
    }}
}}
""")
    argv = [binary, "-p", str(root), "-c", str(root / "nginx.conf"), "-e", str(root / "error.log")]
    return _server(argv, port, "nginx", root / "stdout.log")


def apache(pki: Pki, folder: Path, lines: str) -> contextlib.AbstractContextManager[int]:
    """An unprivileged Apache httpd in the foreground serving TLS with `lines` in its VirtualHost."""
    binary = which_or_skip("apache2")
    port = free_port()
    # A fresh folder even when the kernel hands the same free port out twice in one test.
    root = Path(tempfile.mkdtemp(prefix=f"apache-{port}-", dir=folder))
    modules = ["mpm_event", "authz_core", "ssl", "socache_shmcb"]
    loads = "\n".join(f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so" for m in modules)
    (root / "httpd.conf").write_text(f"""
ServerRoot {root}
ServerName localhost
{loads}
PidFile {root}/httpd.pid
ErrorLog {root}/error.log
LogLevel info
Mutex file:{root} default
DefaultRuntimeDir {root}
SSLSessionCache shmcb:{root}/scache(51200)
Listen {LOOPBACK}:{port} https
DocumentRoot {root}
<VirtualHost {LOOPBACK}:{port}>
    SSLEngine on
    SSLCertificateFile {pki.cert}
    SSLCertificateKeyFile {pki.key}
{lines}
</VirtualHost>
""")
    (root / "index.html").write_text("ok\n")
    argv = [binary, "-f", str(root / "httpd.conf"), "-DFOREGROUND"]
    return _server(argv, port, "apache2", root / "stdout.log")


# ---------------------------------------------------------------------------------------
# Clients: each returns the PeerResult; `ok` tells whether the handshake (and a request) worked.


def s_client(port: int, args: Sequence[str], cwd: Path) -> PeerResult:
    """openssl s_client that verifies (aborts on a bad certificate) and sends one request."""
    openssl = which_or_skip("openssl")
    argv = [
        openssl,
        "s_client",
        "-connect",
        f"{LOOPBACK}:{port}",
        "-verify_return_error",
        "-quiet",
        *args,
    ]
    return run_command(argv, stdin=b"GET / HTTP/1.0\r\n\r\n", cwd=cwd, timeout=15)


def curl(port: int, args: Sequence[str], cwd: Path) -> PeerResult:
    binary = which_or_skip("curl")
    return run_command(
        [binary, "-sS", "--max-time", "10", *args, f"https://{LOOPBACK}:{port}/"], cwd=cwd
    )


PYTHON_CLIENT = """
import socket, ssl, sys
ctx = ssl.create_default_context()
{settings}
with socket.create_connection(("{host}", {port}), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="{host}") as tls:
        print(tls.version(), tls.cipher()[0])
"""


def python_client(port: int, settings: str, cwd: Path) -> PeerResult:
    """Python's ssl with the default context plus `settings` (lines that use `ctx`)."""
    source = PYTHON_CLIENT.format(settings=settings, host=LOOPBACK, port=port)
    return run_command([sys.executable, "-c", source], cwd=cwd)


JAVA_CLIENT = """
import java.io.FileInputStream;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import javax.net.ssl.*;

public final class TlsClient {
    public static void main(String[] args) throws Exception {
        KeyStore trust = KeyStore.getInstance(KeyStore.getDefaultType());
        trust.load(null, null);
        try (FileInputStream in = new FileInputStream(args[2])) {
            trust.setCertificateEntry("ca", CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);
        try (SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket(args[0], Integer.parseInt(args[1]))) {
            s.startHandshake();
            System.out.println(s.getSession().getProtocol() + " " + s.getSession().getCipherSuite());
        }
    }
}
"""


@cache
def java_client() -> Path:
    """The Java SSLSocket client compiled once; returns its class folder."""
    import atexit
    import shutil
    import tempfile

    javac = which_or_skip("javac")
    folder = Path(tempfile.mkdtemp(prefix="kexproxy-tls-java-"))
    atexit.register(shutil.rmtree, folder, True)
    (folder / "TlsClient.java").write_text(JAVA_CLIENT)
    subprocess.run(
        [javac, "-d", str(folder), str(folder / "TlsClient.java")], check=True, capture_output=True
    )
    return folder


def java(port: int, ca: Path, java_options: Sequence[str], cwd: Path) -> PeerResult:
    binary = which_or_skip("java")
    argv = [
        binary,
        *java_options,
        "-cp",
        str(java_client()),
        "TlsClient",
        LOOPBACK,
        str(port),
        str(ca),
    ]
    return run_command(argv, cwd=cwd, timeout=30)
