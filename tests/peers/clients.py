"""SSH clients run once against a port: OpenSSH ssh, dbclient, PuTTY plink, paramiko, asyncssh, and raw bytes."""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.peers.base import LOOPBACK, PeerResult, client_argv0, python_module_or_skip, run_command
from tests.peers.keys import client_key, client_key_dropbear, client_key_ppk

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
    binary: Path | None = None,
    timeout: float = 20.0,
) -> PeerResult:
    """Run Dropbear's client against 127.0.0.1:``port`` with ``opts`` (e.g. ``"-c", "aes256-ctr"``).

    ``-y -y`` skips host key checking (nothing to prompt) and ``-i`` uses
    client_key_dropbear(), client_key() in dropbear's own format. dbclient can restrict only ciphers
    (``-c``) and MACs (``-m``); its kex list is fixed. ``binary`` runs another build of it.
    """
    dbclient = str(binary) if binary is not None else client_argv0("dbclient")
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


def run_plink_session(
    port: int, fingerprint: str, session: str | None, *, timeout: float = 30.0
) -> PeerResult:
    """plink -batch logging in to Sshd; with `session`, the text of a saved session
    (``Key=value`` lines in ~/.putty/sessions/<name>) that plink loads with ``-load``."""
    with tempfile.TemporaryDirectory(prefix="kexproxy-putty-") as home:
        argv = [client_argv0("plink"), "-batch", "-ssh", "-noagent"]
        if session is not None:
            sessions = Path(home) / ".putty" / "sessions"
            sessions.mkdir(parents=True)
            (sessions / "kexproxy").write_text(session)
            argv += ["-load", "kexproxy"]
        argv += ["-P", str(port), "-l", "root", "-i", str(client_key_ppk())]
        argv += ["-hostkey", fingerprint, LOOPBACK, "true"]
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
