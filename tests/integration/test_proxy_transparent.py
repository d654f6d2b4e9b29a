"""Transparent mode in network namespaces this test makes: client -> router (proxy) -> server.

The router namespace redirects TCP port 22 arriving from the client's side to the proxy
with iptables/ip6tables ``REDIRECT``; the proxy finds each connection's original
destination (SO_ORIGINAL_DST, IP6T_SO_ORIGINAL_DST) and relays to it. Every address lives
inside the three namespaces (198.18.0.0/15 and 2001:db8::/32, reserved for tests and
documentation); nothing reaches the host's network. Skipped where not root or where
ip/iptables/ip6tables/sshd/ssh are missing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers import run_command, skip_or_fail, which_or_skip
from tests.peers.netns import (
    Addresses,
    Namespaces,
    ssh_from_client,
    start_sshd,
    wait_until,
)

pytestmark = pytest.mark.peers

KEX = "curve25519-sha256,sntrup761x25519-sha512@openssh.com"
CLIENT_V4, ROUTER_C_V4, ROUTER_S_V4, SERVER_V4 = (
    "198.18.1.2",
    "198.18.1.1",
    "198.18.2.1",
    "198.18.2.2",
)
CLIENT_V6, ROUTER_C_V6, ROUTER_S_V6, SERVER_V6 = (
    "2001:db8:1::2",
    "2001:db8:1::1",
    "2001:db8:2::1",
    "2001:db8:2::2",
)
ADDRESSES = Addresses(
    client_v4=CLIENT_V4,
    router_c_v4=ROUTER_C_V4,
    router_s_v4=ROUTER_S_V4,
    server_v4=SERVER_V4,
    client_v6=CLIENT_V6,
    router_c_v6=ROUTER_C_V6,
    router_s_v6=ROUTER_S_V6,
    server_v6=SERVER_V6,
)
#: In no namespace's routing table: the router can reach nothing there.
UNROUTED_V4 = "198.18.9.9"
PROXY_PORT = 2222
ROOT = Path(__file__).resolve().parents[2]


def redirect_rules(client_if: str) -> list[list[str]]:
    """Port 22 arriving from the client's side to the proxy, both families."""
    return [
        [tool, "-t", "nat", "-A", "PREROUTING", "-i", client_if, "-p", "tcp", "--dport", "22",
         "-j", "REDIRECT", "--to-ports", str(PROXY_PORT)]
        for tool in ("iptables", "ip6tables")
    ]  # fmt: skip


@pytest.fixture
def topology() -> Iterator[Namespaces]:
    if os.geteuid() != 0:
        skip_or_fail("network namespaces and iptables need root")
    for tool in ("ip", "iptables", "ip6tables", "sshd"):
        which_or_skip(tool)  # a skip, or a failure where KEXPROXY_REQUIRE_PEERS=1 (CI)
    which_or_skip("ssh")
    try:
        with Namespaces(ADDRESSES, redirect_rules) as topo:
            yield topo
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        skip_or_fail(f"cannot build the namespaces here: {exc}")


def test_transparent_mode_relays_to_each_original_destination(
    topology: Namespaces, tmp_path: Path
) -> None:
    topo = topology
    sshd_log = start_sshd(topo, tmp_path, kex=KEX)
    out, err = tmp_path / "proxy.out", tmp_path / "proxy.err"
    proxy = topo.popen(
        topo.router,
        [
            sys.executable, "-m", "kexproxy", "proxy", "--transparent",
            "--listen", f"[::]:{PROXY_PORT}", "--json", "--no-store",
        ],
        stdout=out.open("wb"), stderr=err.open("wb"), cwd=ROOT,
    )  # fmt: skip
    wait_until(lambda: "listening on" in err.read_text())

    v4 = ssh_from_client(topo, SERVER_V4, command="echo over-ipv4")
    v6 = ssh_from_client(topo, SERVER_V6, command="echo over-ipv6")
    bad = ssh_from_client(topo, SERVER_V4, "-oKexAlgorithms=diffie-hellman-group14-sha256")
    # Straight to the proxy's port, not redirected: relaying it would loop back to itself.
    direct = run_command(
        ["ip", "netns", "exec", topo.client, sys.executable, "-c",
         f"import socket; s = socket.create_connection(('{ROUTER_C_V4}', {PROXY_PORT}), 5); "
         "s.sendall(b'SSH-2.0-loop\\r\\n'); print(repr(s.recv(100)))"],
        timeout=20,
    )  # fmt: skip

    # Redirected, but to a network the router has no route to: the proxy cannot follow.
    nowhere = run_command(
        ["ip", "netns", "exec", topo.client, sys.executable, "-c",
         f"import socket; s = socket.create_connection(('{UNROUTED_V4}', 22), 5); "
         "print(repr(s.recv(100)))"],
        timeout=20,
    )  # fmt: skip

    proxy.send_signal(signal.SIGTERM)
    assert proxy.wait(15) == 0, err.read_text()
    records = [json.loads(line) for line in out.read_text().splitlines()]

    assert v4[:2] == (0, "over-ipv4\n"), v4[2]
    assert v6[:2] == (0, "over-ipv6\n"), v6[2]
    assert bad[0] == 255
    assert len(records) == 5, records
    by_server = {}
    for record in records:
        by_server.setdefault((record["server"]["ip"], record["outcome"]), record)
    ok4 = by_server[SERVER_V4, "negotiated"]
    ok6 = by_server[SERVER_V6, "negotiated"]
    assert ok4["client"]["ip"] == CLIENT_V4 and ok4["server"] == {"ip": SERVER_V4, "port": 22}
    assert ok6["client"]["ip"] == CLIENT_V6 and ok6["server"] == {"ip": SERVER_V6, "port": 22}
    failed = by_server[SERVER_V4, "failed"]
    client_line = next(line for line in bad[2].splitlines() if "Unable to negotiate" in line)
    # The client thinks it talks to the server itself, and the record agrees.
    assert failed["rejections"]["client"]["message"] == client_line.rstrip("\r")
    assert client_line.startswith(f"Unable to negotiate with {SERVER_V4} port 22:")
    # sshd saw the router's address, as the server's message says.
    server_line = next(
        line for line in sshd_log.read_text().splitlines() if line.startswith("Unable to negotiate")
    )
    assert server_line.startswith(f"Unable to negotiate with {ROUTER_S_V4} port ")
    assert failed["rejections"]["server"]["message"] == server_line.removesuffix(" [preauth]")
    unreachable = next(r for r in records if r["server"]["ip"] == UNROUTED_V4)
    assert unreachable["outcome"] == "aborted"
    assert any(f"upstream {UNROUTED_V4} port 22 is unreachable" in n for n in unreachable["notes"])
    assert "Connection reset" in nowhere.stderr or "b''" in nowhere.stdout
    loop = next(
        r for r in records if r["outcome"] == "aborted" and r["server"]["ip"] != UNROUTED_V4
    )
    assert loop["client"]["ip"] == CLIENT_V4
    assert any("transparent mode" in note for note in loop["notes"])
    assert "b''" in direct.stdout or "reset" in direct.stderr.lower()
