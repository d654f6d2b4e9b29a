"""dropbear.toml and putty.toml against the real dbclient, dropbear and plink installed here.

The default lists must be what the real peer sends, read with kexproxy's own parser from a
fake server on 127.0.0.1 (clients) or from a real dropbear (server), and a step written from
a file's template must work when applied as a user applies it: ``dbclient -c/-m`` on the
command line, a PuTTY saved session loaded with ``plink -load``. Each peer is identified
from its own banner, so a different installed release is compared with its own block.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kexproxy.core.catalogue import Category
from kexproxy.core.events import Identification, KexInit, KexInitReceived
from kexproxy.core.implementations import Peer, identify
from kexproxy.core.lists import MARKERS, NEGOTIATED
from kexproxy.core.negotiation import Role
from kexproxy.core.parser import DirectionParser
from tests.implementation_files import fill, markers_due, putty_setting, raw_file, raw_release
from tests.peers import (
    LOOPBACK,
    Dropbear,
    PeerResult,
    Sshd,
    client_argv0,
    run_command,
    run_dbclient,
    run_plink,
    run_plink_session,
)

pytestmark = pytest.mark.peers

#: What the fake server announces; any SSH-2.0 banner makes the clients send their KEXINIT.
FAKE_SERVER_BANNER = b"SSH-2.0-OpenSSH_9.2p1\r\n"
#: How long a fake server waits for the client, and a client for its end.
TIMEOUT = 20.0


@contextlib.contextmanager
def fake_server() -> Iterator[tuple[int, dict[str, Any]]]:
    """A one-connection server on 127.0.0.1 that keeps the client's banner and KEXINIT."""
    listener = socket.create_server((LOOPBACK, 0))
    seen: dict[str, Any] = {}

    def serve() -> None:
        listener.settimeout(TIMEOUT)
        with contextlib.suppress(OSError), listener.accept()[0] as conn:
            conn.settimeout(TIMEOUT)
            conn.sendall(FAKE_SERVER_BANNER)
            seen.update(read_hello(conn))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], seen
    finally:
        listener.close()
        thread.join(TIMEOUT)


def read_hello(conn: socket.socket) -> dict[str, Any]:
    """The peer's identification and first KEXINIT, through kexproxy's parser."""
    parser = DirectionParser()
    seen: dict[str, Any] = {}
    while "kexinit" not in seen:
        data = conn.recv(65536)
        if not data:
            break
        for event in parser.receive_data(data):
            if isinstance(event, Identification):
                seen["banner"] = event.line
            elif isinstance(event, KexInitReceived):
                seen["kexinit"] = event.kexinit
    return seen


def client_hello(run: Callable[[int], PeerResult]) -> tuple[Peer, KexInit]:
    with fake_server() as (port, seen):
        run(port)
    assert "kexinit" in seen, seen
    return identify(seen["banner"]), seen["kexinit"]


def server_hello(server: Dropbear) -> tuple[Peer, KexInit]:
    with socket.create_connection((LOOPBACK, server.port), timeout=TIMEOUT) as conn:
        conn.sendall(FAKE_SERVER_BANNER)
        seen = read_hello(conn)
    assert "kexinit" in seen, seen
    return identify(seen["banner"]), seen["kexinit"]


def check_against_file(peer: Peer, kexinit: KexInit, role: Role) -> None:
    """Every list equals the release's default (a server's host keys: in order, a subset)."""
    assert peer.implementation is not None and peer.version is not None, peer
    for listed in NEGOTIATED:
        assert listed.kind is not None
        sent = [n for n in kexinit.names(listed.rfc) if n not in MARKERS]
        expected = peer.defaults(role, listed.kind)
        assert expected is not None, (peer.label, listed.kind)
        if role == "server" and listed.kind == "host_key":
            assert [n for n in expected if n in sent] == sent, (listed.rfc, sent)
        else:
            assert tuple(sent) == expected, (peer.label, listed.rfc)
    markers = {n for n in kexinit.names("kex_algorithms") if n in MARKERS}
    known = set(raw_file(peer.implementation.key)["markers"][role])
    # Every marker the release sends, and nothing foreign (distributions backport strict KEX).
    assert markers_due(peer.implementation.key, role, peer.version) <= markers <= known


def test_dbclient_sends_its_release_defaults() -> None:
    peer, kexinit = client_hello(lambda port: run_dbclient(port, command=None, timeout=TIMEOUT))
    assert peer.key == "dropbear"
    check_against_file(peer, kexinit, "client")


def test_dropbear_server_sends_its_release_defaults() -> None:
    with Dropbear(login=False) as server:
        peer, kexinit = server_hello(server)
    assert peer.key == "dropbear"
    check_against_file(peer, kexinit, "server")


def test_plink_sends_its_release_defaults() -> None:
    peer, kexinit = client_hello(lambda port: run_plink(port, command=None, timeout=TIMEOUT))
    assert peer.key == "putty"
    check_against_file(peer, kexinit, "client")


@pytest.mark.parametrize(("flag", "category"), [("-c", "cipher"), ("-m", "mac")])
def test_dbclient_help_lists_exactly_its_build(flag: str, category: Category) -> None:
    """``dbclient -c help`` prints the build's list: the names -c and -m accept."""
    version = run_command([client_argv0("dbclient"), "-V"], timeout=TIMEOUT)
    found = re.search(r"v([0-9]+\.[0-9]+)", version.stderr + version.stdout)
    assert found, version
    peer = identify(f"SSH-2.0-dropbear_{found.group(1)}")
    result = run_command([client_argv0("dbclient"), flag, "help"], timeout=TIMEOUT)
    listed = re.search(r"Available \w+: (\S+)", result.stderr)
    assert listed, result.stderr
    assert tuple(listed.group(1).split(",")) == peer.defaults("client", category)


@pytest.mark.parametrize(
    ("category", "server_config", "offered", "add"),
    [
        ("cipher", ["Ciphers aes128-ctr"], ["aes256-ctr"], ["aes128-ctr"]),
        # A MAC is only negotiated with a non-AEAD cipher (chacha20-poly1305 carries its own).
        ("mac", ["Ciphers aes128-ctr", "MACs hmac-sha2-256"], ["hmac-sha1"], ["hmac-sha2-256"]),
    ],
)
def test_a_dbclient_step_applied_as_written_negotiates(
    category: str, server_config: list[str], offered: list[str], add: list[str]
) -> None:
    """A dbclient restricted by its user fails; the template's step (what it had plus the
    added name) makes the same login work."""
    template = raw_file("dropbear")["template"]["client"][category]
    with Sshd(server_config) as sshd:
        before = run_dbclient(sshd.port, *shlex.split(fill(template, names=offered, add=[])))
        step = fill(template, names=offered, add=add)
        after = run_dbclient(sshd.port, *shlex.split(step))
    assert before.returncode != 0 and "No matching algo" in before.stderr, before
    assert after.returncode == 0, (step, after.stderr)


def test_a_putty_step_moves_a_below_warn_kex_above_it_and_plink_connects() -> None:
    """Below WARN is offered but refused in batch mode; the template's KEX line fixes it."""
    putty = raw_file("putty")
    with Sshd(["KexAlgorithms diffie-hellman-group1-sha1"]) as sshd:
        fingerprint = sshd.host_key_fingerprint("ed25519")
        before = run_plink_session(sshd.port, fingerprint, None)
        banner = re.search(r"Release ([0-9.]+)", run_command([client_argv0("plink"), "-V"]).stdout)
        assert banner, "plink -V names no release"
        release = raw_release("putty", banner.group(1))
        assert "diffie-hellman-group1-sha1" in release["below_warn"]["kex"]
        value = putty_setting(
            release["setting"]["KEX"], putty["token"]["kex"], ["diffie-hellman-group1-sha1"]
        )
        line = fill(putty["template"]["client"]["kex"], names=[], add=[], tokens=value)
        after = run_plink_session(sshd.port, fingerprint, line + "\n")
    assert before.returncode != 0
    assert "below the configured warning threshold" in " ".join(before.stderr.split())
    assert after.returncode == 0, (line, after.stderr)


def test_putty_offers_single_des_only_with_its_setting() -> None:
    """SSH2DES=1, the `requires` entry, adds des-cbc where the Cipher setting puts "des"."""
    putty = raw_file("putty")
    with tempfile.TemporaryDirectory(prefix="kexproxy-putty-") as home:
        sessions = Path(home) / ".putty" / "sessions"
        sessions.mkdir(parents=True)
        (sessions / "kexproxy").write_text(putty["requires"]["cipher"]["des-cbc"] + "\n")

        def run(port: int) -> PeerResult:
            argv = [client_argv0("plink"), "-batch", "-ssh", "-load", "kexproxy"]
            argv += ["-P", str(port), LOOPBACK]
            return run_command(argv, timeout=TIMEOUT, env=dict(os.environ, HOME=home))

        peer, kexinit = client_hello(run)
    assert peer.version is not None
    default = peer.defaults("client", "cipher")
    assert default is not None and "des-cbc" not in default
    sent = kexinit.names("encryption_algorithms_client_to_server")
    assert "des-cbc" in sent and "des-cbc@ssh.com" in sent
    setting = raw_release("putty", peer.version)["setting"]["Cipher"].split(",")
    tokens = putty["token"]["cipher"]
    assert [setting.index(tokens[n]) for n in sent] == sorted(
        setting.index(tokens[n]) for n in sent
    )
