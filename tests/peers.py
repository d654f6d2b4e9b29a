"""Real SSH peers on 127.0.0.1 for tests and for scripts/record_captures.py.

Servers (OpenSSH ``sshd``, ``dropbear``), clients (OpenSSH ``ssh``, ``dbclient``, PuTTY
``plink``, paramiko, asyncssh), a loopback ``tcpdump`` and ``tshark`` field extraction,
so tests check kexproxy against what real implementations put on the wire and log rather
than against our own idea of it.

Everything listens and connects on 127.0.0.1 only, on ephemeral ports. Every helper has a
timeout, kills the processes it started (with their children) when it is done, and removes
its temporary files. A missing binary skips the test (``pytest.skip``), or fails it when the
environment variable ``KEXPROXY_REQUIRE_PEERS=1`` is set, as CI does.

Typical use::

    with Sshd(["KexAlgorithms curve25519-sha256"]) as sshd, Tcpdump(path, sshd.port):
        result = run_ssh(sshd.port, "-oKexAlgorithms=diffie-hellman-group14-sha1")
    assert "no matching key exchange method found" in result.stderr
    sshd.wait_log(r"Unable to negotiate with 127\\.0\\.0\\.1 port \\d+: .* \\[preauth\\]")
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Self

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
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The kernel picks it (bind to port 0), which avoids collisions between parallel test
    workers far better than a fixed or random port; servers still retry on EADDRINUSE
    because another process may take it before the server binds.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


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


# ---------------------------------------------------------------------------------------
# Keys


#: ssh-keygen arguments per host/client key kind.
SSH_KEYGEN_KINDS: dict[str, tuple[str, ...]] = {
    "ed25519": ("-t", "ed25519"),
    "rsa": ("-t", "rsa", "-b", "3072"),
    "rsa1024": ("-t", "rsa", "-b", "1024"),
    "ecdsa": ("-t", "ecdsa", "-b", "256"),
    "ecdsa384": ("-t", "ecdsa", "-b", "384"),
    "ecdsa521": ("-t", "ecdsa", "-b", "521"),
    "dsa": ("-t", "dsa"),
}

#: dropbearkey arguments per host key kind.
DROPBEAR_KINDS: dict[str, tuple[str, ...]] = {
    "ed25519": ("-t", "ed25519"),
    "rsa": ("-t", "rsa", "-s", "3072"),
    "rsa1024": ("-t", "rsa", "-s", "1024"),
    "ecdsa": ("-t", "ecdsa", "-s", "256"),
    "ecdsa384": ("-t", "ecdsa", "-s", "384"),
    "ecdsa521": ("-t", "ecdsa", "-s", "521"),
}

_key_cache: dict[tuple[str, str], Path] = {}


@cache
def _cache_dir() -> Path:
    """Return this process's key cache directory, removed at exit, since RSA key generation is slow."""
    path = Path(tempfile.mkdtemp(prefix="kexproxy-keys-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def openssh_key(kind: str) -> Path:
    """Return the path of a passphrase-less OpenSSH private key of ``kind`` (``.pub`` beside it).

    Generated once per process and reused, because a 3072-bit RSA key takes a noticeable
    fraction of a second and tests start many servers.
    """
    if kind not in SSH_KEYGEN_KINDS:
        raise ValueError(f"unknown key kind {kind!r}; known: {sorted(SSH_KEYGEN_KINDS)}")
    cached = _key_cache.get(("openssh", kind))
    if cached is not None and cached.exists():
        return cached
    keygen = which_or_skip("ssh-keygen")
    path = _cache_dir() / f"openssh_{kind}"
    path.unlink(missing_ok=True)
    result = run_command(
        [
            keygen,
            "-q",
            *SSH_KEYGEN_KINDS[kind],
            "-N",
            "",
            "-C",
            f"kexproxy-test-{kind}",
            "-f",
            str(path),
        ],
        timeout=60,
    )
    if result.returncode != 0:
        raise PeerError(f"ssh-keygen {kind} failed: {result.stderr}")
    _key_cache[("openssh", kind)] = path
    return path


def dropbear_key(kind: str) -> Path:
    """Return the path of a dropbear-format host key of ``kind``, cached per process like openssh_key."""
    if kind not in DROPBEAR_KINDS:
        raise ValueError(f"unknown dropbear key kind {kind!r}; known: {sorted(DROPBEAR_KINDS)}")
    cached = _key_cache.get(("dropbear", kind))
    if cached is not None and cached.exists():
        return cached
    keygen = which_or_skip("dropbearkey")
    path = _cache_dir() / f"dropbear_{kind}"
    path.unlink(missing_ok=True)
    result = run_command([keygen, *DROPBEAR_KINDS[kind], "-f", str(path)], timeout=60)
    if result.returncode != 0:
        raise PeerError(f"dropbearkey {kind} failed: {result.stderr}")
    _key_cache[("dropbear", kind)] = path
    return path


def client_key() -> Path:
    """Return the ed25519 client key every server fixture authorises for root, so clients log in without passwords."""
    return openssh_key("ed25519")


def client_key_ppk() -> Path:
    """Return client_key() converted to PuTTY's .ppk format (via puttygen), since plink reads no OpenSSH keys."""
    cached = _key_cache.get(("ppk", "ed25519"))
    if cached is not None and cached.exists():
        return cached
    puttygen = which_or_skip("puttygen")
    path = _cache_dir() / "client_ed25519.ppk"
    result = run_command(
        [puttygen, str(client_key()), "-O", "private", "-o", str(path)], timeout=30
    )
    if result.returncode != 0:
        raise PeerError(f"puttygen failed: {result.stderr}")
    _key_cache[("ppk", "ed25519")] = path
    return path


def client_key_dropbear() -> Path:
    """Return client_key() converted to dropbear's format (via dropbearconvert), since dbclient 2022.83 cannot read OpenSSH's new key format ("String too long")."""
    cached = _key_cache.get(("dropbear-client", "ed25519"))
    if cached is not None and cached.exists():
        return cached
    convert = which_or_skip("dropbearconvert")
    path = _cache_dir() / "client_ed25519.dropbear"
    path.unlink(missing_ok=True)
    result = run_command([convert, "openssh", "dropbear", str(client_key()), str(path)], timeout=30)
    if result.returncode != 0:
        raise PeerError(f"dropbearconvert failed: {result.stdout}{result.stderr}")
    _key_cache[("dropbear-client", "ed25519")] = path
    return path


def openssh_fingerprint(public_key: Path) -> str:
    """Return the ``SHA256:...`` fingerprint of a public key file, which plink's -hostkey accepts."""
    keygen = which_or_skip("ssh-keygen")
    result = run_command([keygen, "-l", "-E", "sha256", "-f", str(public_key)], timeout=10)
    if result.returncode != 0:
        raise PeerError(f"ssh-keygen -l failed: {result.stderr}")
    return result.stdout.split()[1]


def _copy_private(src: Path, dst: Path) -> None:
    """Copy a private key with mode 0600, because sshd refuses group- or world-readable host keys."""
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o600)


# ---------------------------------------------------------------------------------------
# Servers


class _Server:
    """Shared lifecycle of a server fixture: temp dir, log file, start with port retries, kill tree, cleanup."""

    name = "server"

    def __init__(self, *, start_timeout: float, keep_dir: bool) -> None:
        self.start_timeout = start_timeout
        self.keep_dir = keep_dir
        self.port = 0
        self.dir = Path()
        self.log_path = Path()
        self.argv: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._final_log: str | None = None

    # subclasses fill these in
    def _prepare(self) -> None:
        """Write config and keys into self.dir for self.port."""
        raise NotImplementedError

    def _command(self) -> list[str]:
        """Return the argv that runs the server in the foreground, logging to stderr."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._final_log = None
        self.dir = Path(tempfile.mkdtemp(prefix=f"kexproxy-{self.name}-"))
        try:
            self._start()
        except BaseException:
            self._cleanup()
            raise
        return self

    def _start(self) -> None:
        """Start the server on a fresh port, retrying when another process grabbed it first."""
        last_error: PeerError | None = None
        for _attempt in range(5):
            self.port = free_port()
            self.log_path = self.dir / f"{self.name}.log"
            self._prepare()
            self.argv = self._command()
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in _stop
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=self._log_file,
                cwd=self.dir,
                start_new_session=True,
            )
            try:
                _wait_listening(self.port, self._proc, self.start_timeout, self.name, self.log_path)
                return
            except PeerError as exc:
                last_error = exc
                self._stop()
                if "in use" not in self.log_text() and "Address already" not in self.log_text():
                    raise
                self.log_path.rename(self.dir / f"{self.name}.{self.port}.failed.log")
        assert last_error is not None
        raise last_error

    def _stop(self) -> None:
        """Kill the server and its per-connection children, and close the log."""
        if self._proc is not None:
            kill_tree(self._proc)
            self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _cleanup(self) -> None:
        """Stop everything, keep the log text in memory, and remove the temp dir unless asked to keep it."""
        self._stop()
        self._final_log = self.log_text()
        if not self.keep_dir and self.dir != Path():
            shutil.rmtree(self.dir, ignore_errors=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cleanup()

    @property
    def pid(self) -> int | None:
        """The server's main process id, or None when stopped."""
        return self._proc.pid if self._proc is not None else None

    def log_text(self) -> str:
        """Return everything the server logged so far (its stderr), for tests to quote its messages.

        Still works after the with-block, when the temp dir is gone: the text is kept then.
        """
        if self._final_log is not None:
            return self._final_log
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_lines(self, pattern: str = "") -> list[str]:
        """Return the logged lines matching regex ``pattern`` (all lines when empty), CR stripped."""
        regex = re.compile(pattern)
        return [line.rstrip("\r") for line in self.log_text().splitlines() if regex.search(line)]

    def wait_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until the log matches regex ``pattern`` (searched with re.MULTILINE) and return the match.

        Servers log a failure a little after the client has already exited, so asserting
        on the log right away would be racy.
        """
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log_text())
            if match:
                return match
            if time.monotonic() >= deadline:
                raise PeerError(
                    f"{self.name} did not log {pattern!r} within {timeout}s; log:\n{_tail(self.log_path)}"
                )
            time.sleep(0.02)


class Sshd(_Server):
    """OpenSSH sshd in the foreground on 127.0.0.1, with its own host keys, config and log file.

    ``extra_config`` lines (e.g. ``"KexAlgorithms curve25519-sha256"``, ``"Compression no"``)
    come first in sshd_config, and a default written here (LogLevel, LoginGraceTime,
    MaxStartups, HostKey, ...) is left out when they set the same keyword: most keywords
    keep the first value sshd reads, but some (MaxStartups) keep the last, and HostKey adds
    up. ListenAddress, Port and PidFile are always the fixture's. Choose the host keys with
    ``host_keys`` (kinds of SSH_KEYGEN_KINDS, e.g. ``("ed25519",)``). Root may log in with client_key(); the log is sshd's stderr
    (``-e``), where negotiation failures appear as "Unable to negotiate with 127.0.0.1 port
    N: ... [preauth]".
    """

    name = "sshd"

    def __init__(
        self,
        extra_config: Sequence[str] = (),
        *,
        host_keys: Sequence[str] = ("ed25519", "rsa", "ecdsa"),
        log_level: str = "VERBOSE",
        start_timeout: float = 10.0,
        keep_dir: bool = False,
    ) -> None:
        super().__init__(start_timeout=start_timeout, keep_dir=keep_dir)
        self.extra_config = list(extra_config)
        self.host_keys = list(host_keys)
        self.log_level = log_level
        self.config_path = Path()
        self.config_text = ""
        self.host_key_paths: dict[str, Path] = {}

    def _prepare(self) -> None:
        """Create /run/sshd, copy host keys, authorise client_key() and write sshd_config."""
        # Privilege separation directory: sshd refuses to start without it (root-owned, not writable by others).
        if not os.path.isdir("/run/sshd"):
            if os.geteuid() != 0:
                _skip_or_fail("sshd needs /run/sshd (privilege separation); run as root")
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        for kind in self.host_keys:
            src = openssh_key(kind)
            dst = self.dir / f"ssh_host_{kind}_key"
            _copy_private(src, dst)
            shutil.copyfile(src.with_suffix(".pub"), dst.with_suffix(".pub"))
            self.host_key_paths[kind] = dst
        authorized = self.dir / "authorized_keys"
        authorized.write_text(client_key().with_suffix(".pub").read_text())
        os.chmod(authorized, 0o600)
        defaults = [
            *(f"HostKey {path}" for path in self.host_key_paths.values()),
            "UsePAM no",
            "StrictModes no",
            f"LogLevel {self.log_level}",
            "PermitRootLogin yes",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            f"AuthorizedKeysFile {authorized}",
            "LoginGraceTime 30",
            "MaxStartups 100:30:200",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
        ]
        overridden = _config_keywords(self.extra_config)
        if "hostkey" in overridden:
            self.host_key_paths = {}  # the caller's HostKey lines replace the generated keys
        lines = [
            "# Written by tests/peers.py: caller lines first, then defaults for keywords they do not set.",
            *self.extra_config,
            f"ListenAddress {LOOPBACK}",
            f"Port {self.port}",
            f"PidFile {self.dir / 'sshd.pid'}",
            *(line for line in defaults if line.split()[0].lower() not in overridden),
            "",
        ]
        self.config_text = "\n".join(lines)
        self.config_path = self.dir / "sshd_config"
        self.config_path.write_text(self.config_text)

    def _command(self) -> list[str]:
        """Return ``sshd -D -e -f CONFIG``; sshd must be run by absolute path because it re-executes itself."""
        sshd = which_or_skip("sshd")
        return [os.path.abspath(sshd), "-D", "-e", "-f", str(self.config_path)]

    def host_key_fingerprint(self, kind: str) -> str:
        """Return the SHA256 fingerprint of host key ``kind``, for plink -hostkey and for tests."""
        return openssh_fingerprint(self.host_key_paths[kind].with_suffix(".pub"))

    def negotiation_failures(self) -> list[str]:
        """Return sshd's "Unable to negotiate ..." lines, the server side of every rejection."""
        return self.log_lines(r"Unable to negotiate with ")


def _config_keywords(lines: Sequence[str]) -> set[str]:
    """Return the lowercased keywords set by config ``lines`` before any Match block, to leave out clashing defaults."""
    keywords = set()
    for line in lines:
        words = line.replace("=", " ").split()
        if not words or words[0].startswith("#"):
            continue
        if words[0].lower() == "match":
            break
        keywords.add(words[0].lower())
    return keywords


class Dropbear(_Server):
    """Dropbear in the foreground on 127.0.0.1, logging to stderr (``-F -E``) into a log file.

    Dropbear's algorithms are fixed at compile time; Debian's 2022.83 offers kex
    curve25519-sha256, curve25519-sha256@libssh.org, ecdh-sha2-nistp521/384/256,
    diffie-hellman-group14-sha256, diffie-hellman-group14-sha1 (plus the markers
    kexguess2@matt.ucc.asn.au and kex-strict-s-v00@openssh.com), host keys ssh-ed25519,
    ecdsa-sha2-nistp256, rsa-sha2-256, ssh-rsa (for the default keys), ciphers
    chacha20-poly1305@openssh.com, aes128-ctr, aes256-ctr, MACs hmac-sha1, hmac-sha2-256,
    compression zlib@openssh.com, none. No group exchange. So only ``host_keys`` and
    ``extra_args`` shape what it offers. Dropbear reads authorized keys only from the user's home, so with
    ``login=True`` it runs in a private mount namespace (``unshare -m``) where a temp dir
    holding client_key() is bind-mounted over root's home; if that is impossible,
    ``login_supported`` is False and logins fail after a successful handshake.
    """

    name = "dropbear"

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        *,
        host_keys: Sequence[str] = ("ed25519", "rsa", "ecdsa"),
        login: bool = True,
        start_timeout: float = 10.0,
        keep_dir: bool = False,
    ) -> None:
        super().__init__(start_timeout=start_timeout, keep_dir=keep_dir)
        self.extra_args = list(extra_args)
        self.host_keys = list(host_keys)
        self.login = login
        self.login_supported = False
        self.host_key_paths: dict[str, Path] = {}

    def _prepare(self) -> None:
        """Copy host keys and build the fake home with .ssh/authorized_keys."""
        for kind in self.host_keys:
            dst = self.dir / f"dropbear_{kind}_host_key"
            _copy_private(dropbear_key(kind), dst)
            self.host_key_paths[kind] = dst
        home = self.dir / "home"
        (home / ".ssh").mkdir(parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        os.chmod(home / ".ssh", 0o700)
        authorized = home / ".ssh" / "authorized_keys"
        authorized.write_text(client_key().with_suffix(".pub").read_text())
        os.chmod(authorized, 0o600)
        self.login_supported = self.login and _can_bind_mount_root()

    def _command(self) -> list[str]:
        """Return the dropbear argv, wrapped in unshare + bind mount when logins are wanted."""
        dropbear = which_or_skip("dropbear")
        argv = [
            dropbear,
            "-F",
            "-E",
            "-s",
            "-p",
            f"{LOOPBACK}:{self.port}",
            *(arg for path in self.host_key_paths.values() for arg in ("-r", str(path))),
            "-P",
            str(self.dir / "dropbear.pid"),
            *self.extra_args,
        ]
        if not self.login_supported:
            return argv
        unshare = which_or_skip("unshare")
        home = self.dir / "home"
        script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
        mount = [unshare, "-m", "--propagation", "private", "sh", "-c", script, "sh"]
        return [*mount, str(home), root_home(), *argv]

    def host_key_fingerprint(self, kind: str) -> str:
        """Return the SHA256 fingerprint of host key ``kind`` (via dropbearkey -y and ssh-keygen)."""
        dropbearkey = which_or_skip("dropbearkey")
        result = run_command([dropbearkey, "-y", "-f", str(self.host_key_paths[kind])], timeout=10)
        pub = next(
            (line for line in result.stdout.splitlines() if line.startswith(("ssh-", "ecdsa-"))),
            None,
        )
        if pub is None:
            raise PeerError(f"dropbearkey -y printed no public key: {result.stdout}{result.stderr}")
        pub_path = self.dir / f"dropbear_{kind}_host_key.pub"
        pub_path.write_text(pub + "\n")
        return openssh_fingerprint(pub_path)


def root_home() -> str:
    """Return root's home directory from the password database, which is where dropbear looks for authorized_keys."""
    return pwd.getpwuid(0).pw_dir


@cache
def _can_bind_mount_root() -> bool:
    """Tell (once per process) whether ``unshare -m`` with a bind mount over root's home works here.

    Containers without CAP_SYS_ADMIN refuse it; then dropbear runs without the fake home.
    """
    unshare = find_binary("unshare")
    if unshare is None or os.geteuid() != 0 or not os.path.isdir(root_home()):
        return False
    probe = tempfile.mkdtemp(prefix="kexproxy-mnt-")
    try:
        (Path(probe) / "marker").write_text("x")
        script = 'mount --bind "$1" "$2" && test -f "$2/marker"'
        result = run_command(
            [
                unshare,
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
                probe,
                root_home(),
            ],
            timeout=10,
        )
        return result.returncode == 0
    finally:
        shutil.rmtree(probe, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Clients


def _client_env(home: Path) -> dict[str, str]:
    """Return an environment with HOME pointing at a temp dir, so clients never read or write the user's ~/.ssh or ~/.putty."""
    env = dict(os.environ)
    env["HOME"] = str(home)
    env.pop("SSH_AUTH_SOCK", None)
    env.pop("SSH_AGENT_PID", None)
    return env


def run_ssh(
    port: int,
    *opts: str,
    command: str | None = "true",
    user: str = "root",
    identity: Path | None = None,
    timeout: float = 20.0,
) -> PeerResult:
    """Run the OpenSSH client against 127.0.0.1:``port`` with ``opts`` (e.g. ``"-oCiphers=aes128-cbc"``).

    BatchMode, no host key checking and an empty known-hosts file keep it from ever
    prompting; IdentitiesOnly with client_key() (or ``identity``) logs in to Sshd. ``opts``
    come before the defaults, and ssh keeps the first value it gets for an option, so they
    win. ``command=None`` runs none (``-N`` is not added: pass it in ``opts``).
    """
    ssh = client_argv0("ssh")
    key = identity if identity is not None else client_key()
    with tempfile.TemporaryDirectory(prefix="kexproxy-ssh-") as home:
        argv = [
            ssh,
            *opts,
            "-F",
            "/dev/null",
            "-oBatchMode=yes",
            "-oStrictHostKeyChecking=no",
            "-oUserKnownHostsFile=/dev/null",
            "-oGlobalKnownHostsFile=/dev/null",
            "-oIdentitiesOnly=yes",
            f"-oConnectTimeout={max(1, int(timeout))}",
            "-i",
            str(key),
            "-l",
            user,
            "-p",
            str(port),
            LOOPBACK,
        ]
        if command is not None:
            argv.append(command)
        return run_command(argv, timeout=timeout, env=_client_env(Path(home)))


def run_dbclient(
    port: int,
    *opts: str,
    command: str | None = "true",
    user: str = "root",
    identity: Path | None = None,
    timeout: float = 20.0,
) -> PeerResult:
    """Run Dropbear's client against 127.0.0.1:``port`` with ``opts`` (e.g. ``"-c", "aes256-ctr"``).

    ``-y -y`` skips host key checking (nothing to prompt) and ``-i`` uses
    client_key_dropbear(), client_key() in dropbear's own format. dbclient can restrict only ciphers
    (``-c``) and MACs (``-m``); its kex list is fixed.
    """
    dbclient = client_argv0("dbclient")
    key = identity if identity is not None else client_key_dropbear()
    with tempfile.TemporaryDirectory(prefix="kexproxy-dbclient-") as home:
        argv = [dbclient, *opts, "-y", "-y", "-i", str(key), "-l", user, "-p", str(port), LOOPBACK]
        if command is not None:
            argv.append(command)
        return run_command(argv, timeout=timeout, env=_client_env(Path(home)))


def run_plink(
    port: int,
    *opts: str,
    command: str | None = "true",
    user: str = "root",
    hostkey: str | None = None,
    identity: Path | None = None,
    timeout: float = 20.0,
) -> PeerResult:
    """Run PuTTY's plink in batch mode against 127.0.0.1:``port``.

    In batch mode plink refuses an unknown host key after the key exchange ("Cannot
    confirm a host key in batch mode"), so pass ``hostkey`` (a ``SHA256:`` fingerprint, see
    Sshd.host_key_fingerprint) for a full login; a negotiation failure happens before
    that and needs none. plink reads only .ppk keys, so the identity defaults to
    client_key_ppk(). HOME is a temp dir, so no ~/.putty is written. plink cannot restrict
    algorithms on the command line (only in saved sessions): restrict the server instead.
    """
    plink = client_argv0("plink")
    key = identity if identity is not None else client_key_ppk()
    with tempfile.TemporaryDirectory(prefix="kexproxy-plink-") as home:
        argv = [
            plink,
            "-batch",
            "-ssh",
            "-noagent",
            *opts,
            "-P",
            str(port),
            "-l",
            user,
            "-i",
            str(key),
        ]
        if hostkey is not None:
            argv += ["-hostkey", hostkey]
        argv.append(LOOPBACK)
        if command is not None:
            argv.append(command)
        return run_command(argv, timeout=timeout, env=_client_env(Path(home)))


_PARAMIKO_CLIENT = r"""
import json, socket, sys
import paramiko
cfg = json.loads(sys.argv[1])
sock = socket.create_connection(("127.0.0.1", cfg["port"]), timeout=cfg["timeout"])
transport = paramiko.Transport(sock, disabled_algorithms=cfg["disabled_algorithms"] or None)
try:
    opts = transport.get_security_options()
    for name, attr in (("kex", "kex"), ("ciphers", "ciphers"), ("macs", "digests"),
                       ("host_key_algs", "key_types"), ("compression", "compression")):
        if cfg[name] is not None:
            setattr(opts, attr, tuple(cfg[name]))  # paramiko: ValueError for names it lacks
    transport.start_client(timeout=cfg["timeout"])
    print("negotiated:", json.dumps({
        "host_key": transport.host_key_type,
        "cipher_c2s": transport.local_cipher, "cipher_s2c": transport.remote_cipher,
        "mac_c2s": transport.local_mac, "mac_s2c": transport.remote_mac,
        "compression_c2s": transport.local_compression, "compression_s2c": transport.remote_compression,
    }), file=sys.stderr)
    if cfg["command"] is None:
        sys.exit(0)
    key = paramiko.PKey.from_path(cfg["key"])
    transport.auth_publickey(cfg["user"], key)
    chan = transport.open_session(timeout=cfg["timeout"])
    chan.exec_command(cfg["command"])
    status = chan.recv_exit_status()
    sys.stdout.write(chan.makefile("r").read().decode("utf-8", "replace"))
    sys.exit(status)
except Exception as exc:
    print(f"{type(exc).__module__}.{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1)
finally:
    transport.close()
"""


def run_paramiko(
    port: int,
    *,
    kex: Sequence[str] | None = None,
    ciphers: Sequence[str] | None = None,
    macs: Sequence[str] | None = None,
    host_key_algs: Sequence[str] | None = None,
    compression: Sequence[str] | None = None,
    disabled_algorithms: Mapping[str, Sequence[str]] | None = None,
    command: str | None = "true",
    user: str = "root",
    identity: Path | None = None,
    timeout: float = 20.0,
) -> PeerResult:
    """Run a paramiko client in a subprocess against 127.0.0.1:``port``, with optional algorithm lists.

    A subprocess isolates paramiko's threads and lets the timeout kill it; the lists set
    the Transport's SecurityOptions (kex, ciphers, digests, key_types, compression).
    stderr gets "negotiated: {...}" on success or "module.Exception: message" on failure;
    the exit code is the command's, or 1 on an exception. ``command=None`` stops after the
    key exchange.
    """
    python_module_or_skip("paramiko")
    cfg = {
        "port": port,
        "kex": list(kex) if kex is not None else None,
        "ciphers": list(ciphers) if ciphers is not None else None,
        "macs": list(macs) if macs is not None else None,
        "host_key_algs": list(host_key_algs) if host_key_algs is not None else None,
        "compression": list(compression) if compression is not None else None,
        "disabled_algorithms": {k: list(v) for k, v in (disabled_algorithms or {}).items()},
        "command": command,
        "user": user,
        "key": str(identity if identity is not None else client_key()),
        "timeout": timeout,
    }
    return run_command(
        [sys.executable, "-c", _PARAMIKO_CLIENT, json.dumps(cfg)], timeout=timeout + 5
    )


_ASYNCSSH_CLIENT = r"""
import asyncio, json, sys
import asyncssh
cfg = json.loads(sys.argv[1])

async def main() -> int:
    async with asyncssh.connect(
        "127.0.0.1", cfg["port"], username=cfg["user"], known_hosts=None,
        client_keys=[cfg["key"]], agent_path=None, config=None,
        login_timeout=cfg["timeout"], connect_timeout=cfg["timeout"], **cfg["options"],
    ) as conn:
        if cfg["command"] is None:
            return 0
        result = await conn.run(cfg["command"], check=False)
        sys.stdout.write(str(result.stdout or ""))
        sys.stderr.write(str(result.stderr or ""))
        return int(result.exit_status or 0)

try:
    sys.exit(asyncio.run(main()))
except (OSError, asyncssh.Error) as exc:
    print(f"{type(exc).__module__}.{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1)
"""


def run_asyncssh(
    port: int,
    *,
    command: str | None = "true",
    user: str = "root",
    identity: Path | None = None,
    timeout: float = 20.0,
    **options: Any,
) -> PeerResult:
    """Run an asyncssh client in a subprocess against 127.0.0.1:``port``.

    ``options`` go to ``asyncssh.connect`` and must be JSON-serialisable, e.g.
    ``kex_algs=["diffie-hellman-group1-sha1"]``, ``encryption_algs``, ``mac_algs``,
    ``compression_algs=["zlib@openssh.com"]``, ``server_host_key_algs``. On failure stderr
    gets "module.Exception: message" and the exit code is 1. asyncssh sends
    SSH_MSG_DISCONNECT when it rejects a negotiation, unlike OpenSSH.
    """
    python_module_or_skip("asyncssh")
    cfg = {
        "port": port,
        "command": command,
        "user": user,
        "key": str(identity if identity is not None else client_key()),
        "timeout": timeout,
        "options": options,
    }
    return run_command(
        [sys.executable, "-c", _ASYNCSSH_CLIENT, json.dumps(cfg)], timeout=timeout + 5
    )


def send_raw(
    port: int, data: bytes, *, timeout: float = 5.0, read_until_close: bool = True
) -> bytes:
    """Connect to 127.0.0.1:``port``, send ``data`` and return what the server answers until it closes.

    For banner-phase tests (HTTP or garbage instead of an SSH identification string),
    where no SSH client will send what we need.
    """
    received = bytearray()
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
            if not read_until_close:
                break
    return bytes(received)


# ---------------------------------------------------------------------------------------
# Capturing


class Tcpdump:
    """Capture TCP port ``port`` on loopback into ``path`` (pcap) with tcpdump, for the duration of a with-block.

    Yields only once tcpdump says "listening on", so no early packet is missed; on exit
    waits until the file stops growing (the last FIN/ACKs), stops tcpdump with SIGINT so it
    flushes, and raises PeerError if it could not capture. ``--immediate-mode`` matters:
    without it libpcap's TPACKET_V3 ring hands packets over only when a block fills or a
    one-second timeout expires, so a short capture stopped early holds nothing ("4 packets
    received by filter, 0 packets captured"). Snaplen 0 keeps whole packets
    (loopback's MTU is 65536); ``-Z root`` keeps tcpdump from dropping to the tcpdump user,
    who could not write into a private temp dir.
    """

    def __init__(
        self,
        path: str | Path,
        port: int,
        *,
        interface: str = "lo",
        start_timeout: float = 10.0,
        settle: float = 0.3,
        max_settle: float = 3.0,
    ) -> None:
        self.path = Path(path)
        self.port = port
        self.interface = interface
        self.start_timeout = start_timeout
        self.settle = settle
        self.max_settle = max_settle
        self.argv: list[str] = []
        self.stderr_text = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._err_dir: str | None = None

    def __enter__(self) -> Self:
        tcpdump = which_or_skip("tcpdump")
        if os.geteuid() != 0:
            _skip_or_fail("tcpdump on lo needs root")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        self._err_dir = tempfile.mkdtemp(prefix="kexproxy-tcpdump-")
        err_path = Path(self._err_dir) / "stderr"
        self.argv = [
            tcpdump,
            "-i",
            self.interface,
            "-U",
            "--immediate-mode",
            "-n",
            "-s",
            "0",
            "-Z",
            "root",
            "-w",
            str(self.path),
            f"tcp port {self.port} and host {LOOPBACK}",
        ]
        with open(err_path, "wb") as err:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + self.start_timeout
            while "listening on" not in err_path.read_text(errors="replace"):
                if self._proc.poll() is not None:
                    raise PeerError(
                        f"tcpdump exited with {self._proc.returncode}: {err_path.read_text()}"
                    )
                if time.monotonic() > deadline:
                    raise PeerError(
                        f"tcpdump not capturing after {self.start_timeout}s: {err_path.read_text()}"
                    )
                time.sleep(0.02)
        except BaseException:
            self._finish()
            raise
        return self

    def _wait_quiet(self) -> None:
        """Wait until the capture file has not grown for ``settle`` seconds (at most ``max_settle``)."""
        deadline = time.monotonic() + self.max_settle
        last_size = -1
        last_change = time.monotonic()
        while time.monotonic() < deadline:
            size = self.path.stat().st_size if self.path.exists() else 0
            now = time.monotonic()
            if size != last_size:
                last_size, last_change = size, now
            elif now - last_change >= self.settle:
                return
            time.sleep(0.02)

    def _finish(self) -> None:
        """Stop tcpdump with SIGINT (it flushes and prints its counts), kill it if it hangs, remove temp files."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                kill_tree(proc, signal.SIGKILL)
        if self._err_dir is not None:
            with contextlib.suppress(OSError):
                self.stderr_text = (Path(self._err_dir) / "stderr").read_text(errors="replace")
            shutil.rmtree(self._err_dir, ignore_errors=True)
            self._err_dir = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self._wait_quiet()
        finally:
            self._finish()

    @property
    def packets_captured(self) -> int | None:
        """The "N packets captured" count tcpdump printed on exit, or None before exit."""
        match = re.search(r"(\d+) packets? captured", self.stderr_text)
        return int(match.group(1)) if match else None

    @property
    def packets_dropped(self) -> int | None:
        """The "N packets dropped by kernel" count tcpdump printed on exit, or None before exit."""
        match = re.search(r"(\d+) packets? dropped by kernel", self.stderr_text)
        return int(match.group(1)) if match else None


def tshark_fields(
    pcap: str | Path,
    port: int | None,
    display_filter: str,
    fields: Sequence[str],
    *,
    occurrence: str = "f",
    timeout: float = 60.0,
) -> list[dict[str, str]]:
    """Return one dict per packet matching ``display_filter``, keyed by ``fields`` ('' if absent).

    ``port`` is decoded as SSH (``-d tcp.port==N,ssh``) because tshark only knows ports 22
    and 29418; pass None for those. ``occurrence`` is tshark's ``-E occurrence=``: "f"
    (first, the default, as in docs/ssh-facts.md) or "a" (all, comma-separated), needed
    when one segment carries several SSH messages (dbclient sends banner, KEXINIT and a
    guessed key exchange packet together).
    """
    tshark = which_or_skip("tshark")
    argv = [tshark, "-n", "-r", str(pcap)]
    if port is not None and port not in (22, 29418):
        argv += ["-d", f"tcp.port=={port},ssh"]
    argv += [
        "-Y",
        display_filter,
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        f"occurrence={occurrence}",
    ]
    argv += ["-E", "aggregator=,"]
    for name in fields:
        argv += ["-e", name]
    result = run_command(argv, timeout=timeout)
    if result.returncode != 0:
        raise PeerError(f"tshark failed ({result.returncode}): {result.stderr}")
    rows = []
    for line in result.stdout.splitlines():
        if not line:
            continue
        values = line.split("|")
        if len(values) != len(fields):
            raise PeerError(
                f"tshark row has {len(values)} fields, expected {len(fields)}: {line!r}"
            )
        rows.append(dict(zip(fields, values, strict=True)))
    return rows


def tshark_kexinit_rows(pcap: str | Path, port: int | None) -> list[dict[str, str]]:
    """Return one dict per KEXINIT (message 20) with KEXINIT_FIELDS, the cross-check command of docs/ssh-facts.md."""
    return tshark_fields(pcap, port, "ssh.message_code == 20", KEXINIT_FIELDS)


def tshark_banner_rows(pcap: str | Path, port: int | None) -> list[dict[str, str]]:
    """Return one dict per SSH identification string tshark decodes, with BANNER_FIELDS."""
    return tshark_fields(pcap, port, "ssh.protocol", BANNER_FIELDS)


def tshark_message_codes(pcap: str | Path, port: int | None) -> list[dict[str, str]]:
    """Return one row per plaintext SSH message tshark decodes (frame.number, tcp.stream, tcp.srcport, ssh.direction, ssh.message_code).

    Several messages in one segment give several rows with the same frame number, so a
    guessed key exchange packet after a KEXINIT, or a DISCONNECT (1), is not missed.
    """
    fields = ("frame.number", "tcp.stream", "tcp.srcport", "ssh.direction", "ssh.message_code")
    rows = []
    for raw in tshark_fields(pcap, port, "ssh.message_code", fields, occurrence="a"):
        direction = raw["ssh.direction"].split(",")[0]
        for code in raw["ssh.message_code"].split(","):
            rows.append({**raw, "ssh.direction": direction, "ssh.message_code": code})
    return rows


def tshark_disconnect_rows(pcap: str | Path, port: int | None) -> list[dict[str, str]]:
    """Return each plaintext SSH_MSG_DISCONNECT with keys tcp.stream, tcp.srcport, ssh.direction, reason, description.

    tshark 4.0 leaves a DISCONNECT sent during key exchange undissected (it shows only
    ``ssh.payload``), so reason code and description are decoded here from the payload
    (uint32 reason, string description, string language) when tshark gives none.
    """
    fields = (
        "tcp.stream",
        "tcp.srcport",
        "ssh.direction",
        "ssh.disconnect_reason",
        "ssh.disconnect_description",
        "ssh.payload",
    )
    rows = []
    for raw in tshark_fields(pcap, port, "ssh.message_code == 1", fields):
        reason, description = raw["ssh.disconnect_reason"], raw["ssh.disconnect_description"]
        if not reason and raw["ssh.payload"]:
            reason, description = _decode_disconnect_payload(raw["ssh.payload"])
        rows.append(
            {
                "tcp.stream": raw["tcp.stream"],
                "tcp.srcport": raw["tcp.srcport"],
                "ssh.direction": raw["ssh.direction"],
                "reason": reason,
                "description": description,
            }
        )
    return rows


def _decode_disconnect_payload(payload_hex: str) -> tuple[str, str]:
    """Decode a DISCONNECT payload (hex, after the message code) into (reason code, description)."""
    data = bytes.fromhex(payload_hex.replace(":", ""))
    if len(data) < 8:
        return "", ""
    reason = int.from_bytes(data[0:4], "big")
    length = int.from_bytes(data[4:8], "big")
    return str(reason), data[8 : 8 + length].decode("utf-8", "replace")


#: Fields of tshark_summary's single pass, after the KEXINIT fields.
_SUMMARY_EXTRA = (
    "frame.number",
    "tcp.flags.syn",
    "tcp.flags.ack",
    "ssh.protocol",
    "ssh.message_code",
    "ssh.disconnect_reason",
    "ssh.disconnect_description",
    "ssh.payload",
)


def tshark_summary(pcap: str | Path, port: int | None, *, timeout: float = 60.0) -> dict[str, Any]:
    """Return everything the other tshark helpers give, from one tshark run over ``pcap``.

    Keys: "packets" (count), "syns" (client SYNs as (srcport, dstport) string pairs),
    "banners", "kexinits", "message_codes", "disconnects", with the same rows as
    tshark_banner_rows, tshark_kexinit_rows, tshark_message_codes and
    tshark_disconnect_rows. One process instead of six matters when many captures are
    checked on a loaded machine; it also cross-checks those helpers.
    """
    fields = (*KEXINIT_FIELDS, *_SUMMARY_EXTRA)
    tshark = which_or_skip("tshark")
    argv = [tshark, "-n", "-r", str(pcap)]
    if port is not None and port not in (22, 29418):
        argv += ["-d", f"tcp.port=={port},ssh"]
    argv += ["-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=;"]
    for name in fields:
        argv += ["-e", name]
    result = run_command(argv, timeout=timeout)
    if result.returncode != 0:
        raise PeerError(f"tshark failed ({result.returncode}): {result.stderr}")
    summary: dict[str, Any] = {
        "packets": 0,
        "syns": [],
        "banners": [],
        "kexinits": [],
        "message_codes": [],
        "disconnects": [],
    }
    for line in result.stdout.splitlines():
        if not line:
            continue
        values = line.split("|")
        if len(values) != len(fields):
            raise PeerError(
                f"tshark row has {len(values)} fields, expected {len(fields)}: {line!r}"
            )
        row = {name: value.split(";")[0] for name, value in zip(fields, values, strict=True)}
        codes = [c for c in values[fields.index("ssh.message_code")].split(";") if c]
        summary["packets"] += 1
        if row["tcp.flags.syn"] in ("1", "True") and row["tcp.flags.ack"] in ("0", "False"):
            summary["syns"].append((row["tcp.srcport"], row["tcp.dstport"]))
        if row["ssh.protocol"]:
            summary["banners"].append({name: row[name] for name in BANNER_FIELDS})
        if "20" in codes:
            summary["kexinits"].append({name: row[name] for name in KEXINIT_FIELDS})
        for code in codes:
            summary["message_codes"].append(
                {
                    "frame.number": row["frame.number"],
                    "tcp.stream": row["tcp.stream"],
                    "tcp.srcport": row["tcp.srcport"],
                    "ssh.direction": row["ssh.direction"],
                    "ssh.message_code": code,
                }
            )
        if "1" in codes:
            reason, description = row["ssh.disconnect_reason"], row["ssh.disconnect_description"]
            if not reason and row["ssh.payload"]:
                reason, description = _decode_disconnect_payload(row["ssh.payload"])
            summary["disconnects"].append(
                {
                    "tcp.stream": row["tcp.stream"],
                    "tcp.srcport": row["tcp.srcport"],
                    "ssh.direction": row["ssh.direction"],
                    "reason": reason,
                    "description": description,
                }
            )
    return summary


def tshark_count(pcap: str | Path, display_filter: str = "", *, timeout: float = 60.0) -> int:
    """Return the number of packets in ``pcap`` matching ``display_filter``; tshark failing to read raises, which doubles as a validity check."""
    tshark = which_or_skip("tshark")
    argv = [tshark, "-n", "-r", str(pcap), "-T", "fields", "-e", "frame.number"]
    if display_filter:
        argv[4:4] = ["-Y", display_filter]
    result = run_command(argv, timeout=timeout)
    if result.returncode != 0:
        raise PeerError(f"tshark cannot read {pcap}: {result.stderr}")
    return sum(1 for line in result.stdout.splitlines() if line.strip())


def tool_version(argv: Sequence[str]) -> str:
    """Return the first non-empty line a ``--version``-style command prints (stdout or stderr), for capture metadata."""
    result = run_command(argv, timeout=10)
    for line in (result.stdout + "\n" + result.stderr).splitlines():
        if line.strip() and "Running as user" not in line:
            return line.strip()
    return ""


@contextlib.contextmanager
def capturing(path: str | Path, port: int, **kwargs: Any) -> Iterator[Tcpdump]:
    """Shorthand for ``with Tcpdump(path, port) as capture``, for symmetry with the other context managers."""
    with Tcpdump(path, port, **kwargs) as capture:
        yield capture


__all__ = [
    "APT_PACKAGE",
    "BANNER_FIELDS",
    "KEXINIT_FIELDS",
    "LOOPBACK",
    "REQUIRE_ENV",
    "Dropbear",
    "PeerError",
    "PeerResult",
    "Sshd",
    "Tcpdump",
    "capturing",
    "client_argv0",
    "client_key",
    "client_key_dropbear",
    "client_key_ppk",
    "dropbear_key",
    "find_binary",
    "free_port",
    "is_listening",
    "kill_tree",
    "listening_inodes",
    "openssh_fingerprint",
    "openssh_key",
    "peers_required",
    "python_module_or_skip",
    "root_home",
    "run_asyncssh",
    "run_command",
    "run_dbclient",
    "run_paramiko",
    "run_plink",
    "run_ssh",
    "send_raw",
    "tool_version",
    "tshark_banner_rows",
    "tshark_count",
    "tshark_disconnect_rows",
    "tshark_fields",
    "tshark_kexinit_rows",
    "tshark_message_codes",
    "tshark_summary",
    "which_or_skip",
]


@contextlib.contextmanager
def one_shot_server(payload: bytes) -> Iterator[int]:
    """A TCP server on 127.0.0.1 for one connection: it sends `payload` (a hand-made, malformed
    or hostile peer's bytes), then reads until the other side closes. Yields the port."""
    listener = socket.create_server((LOOPBACK, 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        listener.settimeout(20)
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            conn.sendall(payload)
            try:
                while conn.recv(65536):
                    pass
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()
        thread.join(5)
