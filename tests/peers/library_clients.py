"""SSH clients that are libraries: Go's x/crypto/ssh and JSch, built from tests/peers once per test process.

Neither ships a command-line client, so tests/peers/go_client/main.go and
tests/peers/JschClient.java wrap them: each connects to 127.0.0.1, sets the algorithm lists
the way the library's own users do (ssh.Config fields, Session.setConfig), and exits 0 once
the key exchange is done or 1 with the library's own error text. They build offline against
what Debian installs (golang-go with golang-golang-x-crypto-dev in GOPATH mode; javac with
libjsch-java), into a temporary directory removed when the process exits. A missing
toolchain or library skips the test, or fails it under KEXPROXY_REQUIRE_PEERS=1.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.peers.base import (
    LOOPBACK,
    PeerError,
    PeerResult,
    run_command,
    skip_or_fail,
    which_or_skip,
)

HERE = Path(__file__).resolve().parent
GO_CLIENT_SOURCE = HERE / "go_client" / "main.go"
JSCH_CLIENT_SOURCE = HERE / "JschClient.java"
#: Debian's Go library tree (golang-golang-x-crypto-dev puts golang.org/x/crypto there).
DEBIAN_GOPATH = Path("/usr/share/gocode")
X_CRYPTO_SSH = DEBIAN_GOPATH / "src" / "golang.org" / "x" / "crypto" / "ssh"
#: libjsch-java's jar, and jzlib (its dependency) for zlib compression.
JSCH_JAR = Path("/usr/share/java/jsch.jar")
JZLIB_JAR = Path("/usr/share/java/jzlib.jar")
#: Building a small program takes a few seconds; a cold Go cache on a busy machine, longer.
BUILD_TIMEOUT = 300.0


@functools.cache
def _build_root() -> Path:
    """One temporary directory per process for every build, removed at exit."""
    root = Path(tempfile.mkdtemp(prefix="kexproxy-libclients-"))
    atexit.register(shutil.rmtree, root, True)
    return root


def _checked(result: PeerResult, what: str) -> None:
    if result.returncode != 0 or result.timed_out:
        raise PeerError(f"building {what} failed ({result.returncode}):\n{result.stderr[-4000:]}")


def debian_package_version(package: str) -> str | None:
    """The upstream version dpkg records for `package` (``1:0.4.0-1`` -> ``0.4.0``), or None."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.fullmatch(r"(?:\d+:)?([^-]+)(?:-.*)?", out.stdout.strip())
    return match.group(1) if out.returncode == 0 and match else None


def build_go_program(source: str, name: str) -> Path:
    """Build one Go main package against Debian's x/crypto, offline, and return the binary.

    GOPATH mode (GO111MODULE=off) with GOPATH=/usr/share/gocode finds golang.org/x/crypto
    where the Debian package put it, so no module proxy is asked; CGO is off so no C
    compiler is needed.
    """
    go = which_or_skip("go")
    if not X_CRYPTO_SSH.is_dir():
        skip_or_fail(
            "golang.org/x/crypto/ssh not installed (apt package golang-golang-x-crypto-dev)"
        )
    folder = _build_root() / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.go").write_text(source)
    binary = folder / name
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": str(DEBIAN_GOPATH),
        "GOCACHE": str(_build_root() / "gocache"),
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
    }
    result = run_command(
        [go, "build", "-o", str(binary), "main.go"], timeout=BUILD_TIMEOUT, env=env, cwd=folder
    )
    _checked(result, f"the Go program {name}")
    return binary


def build_java_class(source: str, class_name: str) -> Path:
    """Compile one Java class against libjsch-java's jar and return its class directory."""
    javac = which_or_skip("javac")
    if not JSCH_JAR.is_file():
        skip_or_fail(f"{JSCH_JAR} not installed (apt package libjsch-java)")
    folder = _build_root() / class_name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{class_name}.java").write_text(source)
    result = run_command(
        [javac, "-cp", str(JSCH_JAR), "-d", str(folder), str(folder / f"{class_name}.java")],
        timeout=BUILD_TIMEOUT,
    )
    _checked(result, f"the Java class {class_name}")
    return folder


def java_command(classes: Path, class_name: str) -> list[str]:
    """The argv that runs `class_name` from `classes` with JSch (and jzlib, if installed)."""
    java = which_or_skip("java")
    path = [str(classes), str(JSCH_JAR), *([str(JZLIB_JAR)] if JZLIB_JAR.is_file() else [])]
    return [java, "-cp", os.pathsep.join(path), class_name]


@functools.cache
def go_client() -> Path:
    """tests/peers/go_client built once per process."""
    return build_go_program(GO_CLIENT_SOURCE.read_text(), "go_client")


@functools.cache
def jsch_client() -> Path:
    """tests/peers/JschClient.java compiled once per process; returns its class directory."""
    return build_java_class(JSCH_CLIENT_SOURCE.read_text(), "JschClient")


def _joined(names: Sequence[str] | None) -> str | None:
    return None if names is None else ",".join(names)


def run_go_client(
    port: int,
    *,
    kex: Sequence[str] | None = None,
    ciphers: Sequence[str] | None = None,
    macs: Sequence[str] | None = None,
    host_key_algorithms: Sequence[str] | None = None,
    timeout: float = 20.0,
) -> PeerResult:
    """Run the Go client against 127.0.0.1:`port`; a list given replaces that ssh.Config field's default.

    Exit 0 and "kex complete; host key TYPE" on stderr once the key exchange is done; exit
    1 with x/crypto/ssh's own error ("ssh: handshake failed: ssh: no common algorithm for
    ...") otherwise.
    """
    argv = [str(go_client())]
    for flag, names in (
        ("-kex", kex),
        ("-ciphers", ciphers),
        ("-macs", macs),
        ("-hostkeys", host_key_algorithms),
    ):
        value = _joined(names)
        if value is not None:
            argv += [flag, value]
    argv += [f"-timeout={max(1, int(timeout))}s", LOOPBACK, str(port)]
    return run_command(argv, timeout=timeout + 5)


def run_jsch_client(
    port: int, settings: Mapping[str, str] | None = None, *, timeout: float = 20.0
) -> PeerResult:
    """Run the JSch client against 127.0.0.1:`port` with Session.setConfig(key, value) for each setting.

    E.g. ``{"kex": "diffie-hellman-group1-sha1", "cipher.c2s": "aes128-cbc"}``. Exit 0 and
    "kex complete; host key TYPE" on stderr once the key exchange is done; exit 1 with
    JSch's own message ("Algorithm negotiation fail") otherwise.
    """
    argv = java_command(jsch_client(), "JschClient")
    argv += [LOOPBACK, str(port), *(f"{k}={v}" for k, v in (settings or {}).items())]
    return run_command(argv, timeout=timeout + 10)


#: A Go client whose ssh.ClientConfig settings stand where SETTINGS is (a tab indents them):
#: it exits 0 once the key exchange completes (the host key was seen), else 1 with the error.
GO_PROGRAM = """package main

import (
\t"fmt"
\t"net"
\t"os"
\t"time"

\t"golang.org/x/crypto/ssh"
)

func main() {
\thostKeyType := ""
\tconfig := &ssh.ClientConfig{
\t\tUser: "kexproxy-test",
\t\tHostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
\t\t\thostKeyType = key.Type()
\t\t\treturn nil
\t\t},
\t\tTimeout: 15 * time.Second,
\t}
SETTINGS
\t_, err := ssh.Dial("tcp", net.JoinHostPort(os.Args[1], os.Args[2]), config)
\tif hostKeyType == "" {
\t\tfmt.Fprintln(os.Stderr, err)
\t\tos.Exit(1)
\t}
\tfmt.Fprintln(os.Stderr, "kex complete; host key", hostKeyType)
}
"""

#: A JSch client, class CLASS, whose Session.setConfig calls stand where SETTINGS is (four
#: spaces indent them): exit 0 once the key exchange completes, else 1 with JSch's message.
JAVA_PROGRAM = """import com.jcraft.jsch.JSch;
import com.jcraft.jsch.JSchException;
import com.jcraft.jsch.Session;

public final class CLASS {
  public static void main(String[] args) throws Exception {
    Session session = new JSch().getSession("kexproxy-test", args[0], Integer.parseInt(args[1]));
    session.setConfig("StrictHostKeyChecking", "no");
    session.setConfig("PreferredAuthentications", "none");
SETTINGS
    try {
      session.connect(15000);
    } catch (JSchException e) {
      if (session.getHostKey() == null) {
        System.err.println(e.getMessage());
        System.exit(1);
      }
    } finally {
      session.disconnect();
    }
    System.err.println("kex complete; host key " + session.getHostKey().getType());
  }
}
"""
