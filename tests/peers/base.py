"""Shared by every peer helper: the loopback address, skipping or failing, processes and their ports, and one client run's result."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

#: The only address any helper listens on or connects to.
LOOPBACK = "127.0.0.1"

#: Set to "1" to turn a missing peer binary into a test failure instead of a skip (CI).
REQUIRE_ENV = "KEXPROXY_REQUIRE_PEERS"

#: Debian package providing each binary, for skip reasons and the record script's advice.
APT_PACKAGE = {
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "dropbear": "dropbear-bin",
    "dbclient": "dropbear-bin",
    "dropbearkey": "dropbear-bin",
    "dropbearconvert": "dropbear-bin",
    "plink": "putty-tools",
    "puttygen": "putty-tools",
    "tcpdump": "tcpdump",
    "tshark": "tshark",
    "unshare": "util-linux",
    "go": "golang-go",
    "javac": "default-jdk-headless",
    "java": "default-jre-headless",
    "gcc": "gcc",
}

#: Python packages the in-subprocess clients need, for skip reasons.
PIP_PACKAGE = {"paramiko": "paramiko", "asyncssh": "asyncssh"}

#: Fields of one KEXINIT row, in the order of the tshark command in docs/ssh-facts.md.
KEXINIT_FIELDS = (
    "tcp.stream",
    "ip.src",
    "tcp.srcport",
    "ip.dst",
    "tcp.dstport",
    "ssh.direction",
    "ssh.kex_algorithms",
    "ssh.server_host_key_algorithms",
    "ssh.encryption_algorithms_client_to_server",
    "ssh.encryption_algorithms_server_to_client",
    "ssh.mac_algorithms_client_to_server",
    "ssh.mac_algorithms_server_to_client",
    "ssh.compression_algorithms_client_to_server",
    "ssh.compression_algorithms_server_to_client",
    "ssh.first_kex_packet_follows",
    "ssh.kex.hassh",
    "ssh.kex.hasshserver",
)

#: Fields of one banner row (one per identification string tshark decodes).
BANNER_FIELDS = ("tcp.stream", "ip.src", "tcp.srcport", "ssh.direction", "ssh.protocol")


class PeerError(RuntimeError):
    """A peer did not start, did not log what was awaited, or a helper tool failed.

    Distinct from assertion errors so a test report says "the fixture broke", not "kexproxy
    is wrong".
    """


# ---------------------------------------------------------------------------------------
# Small utilities


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago, below the kernel's
    ephemeral range.

    A port the kernel picks (bind to port 0) comes from the same range every connect() takes
    its source port from: with another test worker opening thousands of connections, one of
    them took such a port before the server bound it (CI, once: EADDRINUSE for a paramiko
    server). Below the range only another explicit bind can take it; a port that cannot be
    bound now (in use, or in TIME_WAIT) is skipped.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(1024, low - 20_000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux's default 32768)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return max(2048, int(text.split()[0]))
    except (OSError, ValueError, IndexError):
        return 32768


def peers_required() -> bool:
    """Tell whether a missing peer must fail rather than skip, because CI must not go green by skipping everything."""
    return os.environ.get(REQUIRE_ENV, "") == "1"


def _skip_or_fail(reason: str) -> NoReturn:
    """Skip the current test, or fail it under KEXPROXY_REQUIRE_PEERS=1, so CI notices missing tools."""
    import pytest

    if peers_required():
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason)


def skip_or_fail(reason: str) -> NoReturn:
    """A test that cannot run here: skipped, or failed in CI (KEXPROXY_REQUIRE_PEERS=1)."""
    _skip_or_fail(reason)


def which_or_skip(name: str) -> str:
    """Return the path of binary ``name``, else skip (or fail under KEXPROXY_REQUIRE_PEERS=1).

    Looks in PATH and in /usr/sbin and /sbin, because sshd lives in /usr/sbin, which is not
    in an ordinary user's PATH.
    """
    path = find_binary(name)
    if path is None:
        package = APT_PACKAGE.get(name)
        hint = f" (apt package {package})" if package else ""
        _skip_or_fail(f"{name} not installed{hint}")
    return path


def client_argv0(name: str) -> str:
    """Return ``name`` itself when PATH finds it, else its full path (skipping when missing).

    Clients prefix their messages with argv[0] ("dbclient: Connection to ... exited"), so
    running them by bare name gives the messages a user would see.
    """
    path = which_or_skip(name)
    return name if shutil.which(name) == path else path


def find_binary(name: str) -> str | None:
    """Return the path of binary ``name`` or None, also searching sbin (sshd) and /usr/lib/dropbear (dropbearconvert)."""
    extra = os.pathsep.join(["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/lib/dropbear"])
    return shutil.which(name, path=os.environ.get("PATH", os.defpath) + os.pathsep + extra)


def python_module_or_skip(module: str) -> None:
    """Skip (or fail) unless ``module`` imports, because the Python clients run it in a subprocess."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        _skip_or_fail(f"Python package {PIP_PACKAGE.get(module, module)} not installed")


def _proc_children(pid: int) -> list[int]:
    """Return the direct children of ``pid`` from /proc, because sshd's children call setsid() and escape killpg."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces and parentheses.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            children.append(int(entry))
    return children


def _descendants(pid: int) -> list[int]:
    """Return all descendants of ``pid``, deepest last, so a tree can be killed completely."""
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in _proc_children(todo.pop()):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


def kill_tree(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, grace: float = 3.0) -> None:
    """Stop ``proc`` and every descendant, escalating to SIGKILL after ``grace`` seconds.

    Per-connection server children (sshd, dropbear) are separate sessions, so killing the
    process group alone would leave them behind holding ports and log files.
    """
    tree = _descendants(proc.pid)
    if proc.poll() is None:
        tree.insert(0, proc.pid)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    for pid in [proc.pid, *tree]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)


def listening_inodes(port: int) -> set[int]:
    """Return the socket inodes listening on 127.0.0.1:``port``, read from /proc/net/tcp, so no probe connection shows up in server logs or captures."""
    wanted = f"0100007F:{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return set()
    inodes = set()
    for line in lines:
        parts = line.split()
        if len(parts) > 9 and parts[1] == wanted and parts[3] == "0A":  # 0A = TCP_LISTEN
            inodes.add(int(parts[9]))
    return inodes


def is_listening(port: int) -> bool:
    """Tell whether anything listens on 127.0.0.1:``port`` (see listening_inodes)."""
    return bool(listening_inodes(port))


def _owns_socket(pid: int, inodes: set[int]) -> bool:
    """Tell whether process ``pid`` holds one of the socket ``inodes``, so a server is not fooled by another process that took its port."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                return True
    return False


def _wait_listening(
    port: int, proc: subprocess.Popen[Any], timeout: float, what: str, log: Path | None
) -> None:
    """Wait until ``proc`` itself listens on ``port``; raise PeerError if it exits or times out, with its log.

    Checking that the listening socket is the server's (not another process's that grabbed
    the port after free_port) avoids testing against a stranger.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PeerError(f"{what} exited with {proc.returncode} before listening:\n{_tail(log)}")
        inodes = listening_inodes(port)
        if inodes and any(_owns_socket(pid, inodes) for pid in [proc.pid, *_descendants(proc.pid)]):
            return
        time.sleep(0.02)
    raise PeerError(f"{what} not listening on {LOOPBACK}:{port} after {timeout}s:\n{_tail(log)}")


def _tail(path: Path | None, lines: int = 30) -> str:
    """Return the last lines of a log file for error messages, since a failing peer explains itself there."""
    if path is None:
        return ""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------
# Running clients


@dataclass(frozen=True)
class PeerResult:
    """What a client run produced: exit code, output, and whether it was killed for taking too long.

    Tests compare ``stderr`` with kexproxy's messages, so it is kept verbatim (decoded as
    UTF-8 with replacement).
    """

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False
    elapsed: float = 0.0

    def find(self, pattern: str) -> str | None:
        """Return the first stderr line matching regex ``pattern``, or None, to pick the rejection message out of chatter."""
        regex = re.compile(pattern)
        for line in self.stderr.splitlines():
            if regex.search(line):
                return line.rstrip("\r")
        return None

    @property
    def negotiation_message(self) -> str | None:
        """The client's "Unable to negotiate ..." line (OpenSSH), or None, because tests quote it most."""
        return self.find(r"Unable to negotiate")


def run_command(
    argv: Sequence[str],
    *,
    timeout: float = 20.0,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    cwd: str | Path | None = None,
) -> PeerResult:
    """Run ``argv`` to completion, killing its whole process tree on timeout.

    A client that hangs (a prompt in batch mode, a server that never answers) must not hang
    the test run, and a new session keeps it from reading the terminal.
    """
    start = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_tree(proc, signal.SIGKILL, grace=2.0)
        try:
            out, err = proc.communicate(timeout=5.0)
        except subprocess.TimeoutExpired:
            out, err = b"", b""
    finally:
        if proc.poll() is None:
            kill_tree(proc, signal.SIGKILL, grace=2.0)
    return PeerResult(
        argv=tuple(argv),
        returncode=proc.returncode if proc.returncode is not None else -9,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        timed_out=timed_out,
        elapsed=time.monotonic() - start,
    )
