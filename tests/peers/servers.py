"""SSH servers on 127.0.0.1: OpenSSH sshd and dropbear, each with its log, in a temporary directory."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.peers.base import (
    LOOPBACK,
    PeerError,
    _skip_or_fail,
    _tail,
    _wait_listening,
    find_binary,
    free_port,
    kill_tree,
    run_command,
    which_or_skip,
)
from tests.peers.keys import (
    _copy_private,
    client_key,
    dropbear_key,
    openssh_fingerprint,
    openssh_key,
)

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
    ``login_supported`` is False and logins fail after a successful handshake. ``binary`` runs
    another dropbear build (one made with a localoptions.h) instead of the installed one.
    """

    name = "dropbear"

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        *,
        host_keys: Sequence[str] = ("ed25519", "rsa", "ecdsa"),
        login: bool = True,
        binary: str | Path | None = None,
        start_timeout: float = 10.0,
        keep_dir: bool = False,
    ) -> None:
        super().__init__(start_timeout=start_timeout, keep_dir=keep_dir)
        self.extra_args = list(extra_args)
        self.host_keys = list(host_keys)
        self.login = login
        self.binary = binary
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
        dropbear = str(self.binary) if self.binary is not None else which_or_skip("dropbear")
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
