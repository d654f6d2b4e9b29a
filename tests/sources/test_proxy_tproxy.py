"""TPROXY mode's sockets on loopback (the whole path, with real TPROXY rules in network
namespaces, is tests/integration/test_tproxy_netns.py): the transparent option and what
its refusal says, the upstream leg from the client's own port or, where that is taken,
another, and a connection addressed to the proxy itself refused instead of looped."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kexproxy.core.observer import Endpoint
from kexproxy.sources.proxy import ProxyConfig
from kexproxy.sources.proxy_tproxy import (
    IP_TRANSPARENT,
    MISSING_PRIVILEGE,
    dial_as_client,
    is_own_address,
    make_transparent,
)
from tests.peers.base import free_port
from tests.sources.proxy_harness import LOOPBACK, RunningProxy

ROOT = Path(__file__).resolve().parents[2]

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="IP_TRANSPARENT needs root or CAP_NET_ADMIN"
)


def _server() -> socket.socket:
    server = socket.socket()
    server.bind((LOOPBACK, 0))
    server.listen()
    server.settimeout(5)
    return server


def _connected(sock: socket.socket, server: socket.socket) -> tuple[str, int]:
    """Waits for the non-blocking connect; returns the address the server saw."""
    sock.setblocking(True)
    sock.settimeout(5)
    peer_seen = server.accept()
    peer_seen[0].close()
    return peer_seen[1]  # type: ignore[no-any-return]


@needs_root
def test_make_transparent_sets_the_option() -> None:
    with socket.socket() as sock:
        make_transparent(sock)
        assert sock.getsockopt(socket.IPPROTO_IP, IP_TRANSPARENT) == 1


@needs_root
def test_a_refused_option_says_what_the_proxy_needs() -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to drop the capability")
    code = (
        "import socket\n"
        "from kexproxy.sources.proxy_tproxy import make_transparent\n"
        "try:\n"
        "    make_transparent(socket.socket())\n"
        "except PermissionError as exc:\n"
        "    print(exc.strerror)\n"
    )
    result = subprocess.run(
        [setpriv, "--bounding-set=-net_admin,-net_raw", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.stdout.strip() == MISSING_PRIVILEGE, result.stderr


@needs_root
def test_the_upstream_leg_leaves_from_the_clients_own_port() -> None:
    port = free_port()
    with _server() as server:
        host, server_port = server.getsockname()
        sock, err = dial_as_client(
            Endpoint(ip=host, port=server_port), Endpoint(ip=LOOPBACK, port=port)
        )
        assert sock is not None, os.strerror(err)
        with sock:
            assert sock.getsockname() == (LOOPBACK, port)
            assert _connected(sock, server) == (LOOPBACK, port)


@needs_root
def test_a_taken_client_port_falls_back_to_another() -> None:
    with _server() as server, _server() as holder:
        taken = holder.getsockname()[1]
        host, server_port = server.getsockname()
        sock, err = dial_as_client(
            Endpoint(ip=host, port=server_port), Endpoint(ip=LOOPBACK, port=taken)
        )
        assert sock is not None, os.strerror(err)
        with sock:
            ip, port = sock.getsockname()
            assert ip == LOOPBACK and port not in (taken, 0)
            assert _connected(sock, server) == (LOOPBACK, port)


def test_own_addresses_are_told_from_others() -> None:
    assert is_own_address(LOOPBACK)
    assert not is_own_address("192.0.2.1")  # TEST-NET-1, never a host's own


@needs_root
def test_a_connection_to_the_proxy_itself_is_refused_not_looped() -> None:
    with RunningProxy(ProxyConfig(listen=(LOOPBACK, 0), upstream=None, tproxy=True)) as proxy:
        with socket.socket() as client:
            client.settimeout(5)
            # The reset can come before connect() returns: either way nothing is relayed.
            try:
                client.connect((LOOPBACK, proxy.port))
                got = client.recv(100)
            except ConnectionResetError:
                got = b""
        assert got == b""
        (record,) = proxy.wait_finals(1)
    assert record.outcome == "aborted"
    assert record.server == {"ip": LOOPBACK, "port": proxy.port}
    assert any("TPROXY mode" in note and "loop" in note for note in record.notes), record.notes
