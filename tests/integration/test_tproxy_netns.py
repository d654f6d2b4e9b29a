"""TPROXY mode in network namespaces this test makes: client -> router (proxy) -> server.

The router steers TCP port 22 arriving from the client's side to ``kexproxy proxy --tproxy``
with the README's recipe (the mangle-table TPROXY and socket-mark rules, the fwmark routing
rule and the local route of table 100, for both families). The client connects to the
server's own address, and the real sshd must see the client's own address: in its
"Connection from" and "Unable to negotiate with" lines, and in its replies, which reach the
proxy only through the socket-mark rule. Addresses are private (10.200.0.0/16,
fd00:200::/48) and exist only inside the namespaces; the host's iptables and routes are
never touched. Skipped where not root or where ip/iptables/ip6tables/sshd/ssh or the TPROXY
target are missing (a failure under KEXPROXY_REQUIRE_PEERS=1).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.peers import run_command, skip_or_fail, which_or_skip
from tests.peers.netns import Addresses, Namespaces, ssh_from_client, start_sshd, wait_until

pytestmark = [pytest.mark.peers, pytest.mark.slow]

ADDRESSES = Addresses(
    client_v4="10.200.1.2",
    router_c_v4="10.200.1.1",
    router_s_v4="10.200.2.1",
    server_v4="10.200.2.2",
    client_v6="fd00:200:1::2",
    router_c_v6="fd00:200:1::1",
    router_s_v6="fd00:200:2::1",
    server_v6="fd00:200:2::2",
)
PROXY_PORT = 2222
#: The client port the router holds for itself, so the proxy cannot bind the client's own.
TAKEN_PORT = 40022
UPLOAD_BYTES = 10 * 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


def tproxy_rules(client_if: str) -> Sequence[Sequence[str]]:
    """The README's router recipe, both families."""
    rules: list[list[str]] = []
    for tool, ip, everything in (("iptables", "ip", "0.0.0.0/0"), ("ip6tables", "ip -6", "::/0")):
        rules += [
            [tool, "-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "-m", "socket",
             "--transparent", "-j", "MARK", "--set-mark", "1"],
            [tool, "-t", "mangle", "-A", "PREROUTING", "-i", client_if, "-p", "tcp",
             "--dport", "22", "-j", "TPROXY", "--on-port", str(PROXY_PORT), "--tproxy-mark", "1"],
            [*ip.split(), "rule", "add", "fwmark", "1", "lookup", "100"],
            [*ip.split(), "route", "add", "local", everything, "dev", "lo", "table", "100"],
        ]  # fmt: skip
    return rules


@pytest.fixture
def topology() -> Iterator[Namespaces]:
    if os.geteuid() != 0:
        skip_or_fail("network namespaces and iptables need root")
    for tool in ("ip", "iptables", "ip6tables", "sshd", "ssh"):
        which_or_skip(tool)  # a skip, or a failure where KEXPROXY_REQUIRE_PEERS=1 (CI)
    try:
        with Namespaces(ADDRESSES, tproxy_rules, prefix="kt") as topo:
            yield topo
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        skip_or_fail(f"cannot build the namespaces and TPROXY rules here: {exc}")


def start_proxy(
    topo: Namespaces, tmp: Path, listen: str = f"[::]:{PROXY_PORT}"
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    out, err = tmp / "proxy.out", tmp / "proxy.err"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tui'}"}
    proxy = topo.popen(
        topo.router,
        [sys.executable, "-m", "kexproxy", "proxy", "--tproxy",
         "--listen", listen, "--json", "--no-store"],
        stdout=out.open("wb"), stderr=err.open("wb"), cwd=ROOT, env=env,
    )  # fmt: skip
    wait_until(lambda: "listening on" in err.read_text() or proxy.poll() is not None)
    assert proxy.poll() is None, err.read_text()
    return proxy, out, err


def stop_proxy(proxy: subprocess.Popen[bytes], out: Path, err: Path) -> list[dict[str, Any]]:
    proxy.send_signal(signal.SIGTERM)
    assert proxy.wait(30) == 0, err.read_text()
    return [json.loads(line) for line in out.read_text().splitlines()]


def log_line(log: Path, start: str) -> str:
    return next(line for line in log.read_text().splitlines() if line.startswith(start))


def test_tproxy_keeps_the_clients_address_for_the_server(
    topology: Namespaces, tmp_path: Path
) -> None:
    topo, a = topology, ADDRESSES
    sshd_log = start_sshd(topo, tmp_path)
    proxy, out, err = start_proxy(topo, tmp_path)
    upload = os.urandom(UPLOAD_BYTES)
    digest = hashlib.sha256(upload).hexdigest()
    results = {}
    for family, server in (("v4", a.server_v4), ("v6", a.server_v6)):
        results[family, "ok"] = ssh_from_client(topo, server, command="echo over-" + family)
        results[family, "bad"] = ssh_from_client(
            topo, server, "-oKexAlgorithms=diffie-hellman-group14-sha256"
        )
        results[family, "upload"] = ssh_from_client(
            topo, server, command="sha256sum", stdin=upload, timeout=120
        )
    records = stop_proxy(proxy, out, err)

    assert len(records) == 6, records
    log = sshd_log.read_text()
    for family, client, server in (
        ("v4", a.client_v4, a.server_v4),
        ("v6", a.client_v6, a.server_v6),
    ):
        ok, bad, up = (results[family, kind] for kind in ("ok", "bad", "upload"))
        assert ok[:2] == (0, f"over-{family}\n"), ok[2]
        assert up[0] == 0, up[2]
        assert up[1].split()[0] == digest  # sha256 of what sshd's side received
        assert bad[0] == 255
        mine = [r for r in records if r["server"] == {"ip": server, "port": 22}]
        assert sorted(r["outcome"] for r in mine) == ["failed", "negotiated", "negotiated"]
        for record in mine:
            assert record["client"]["ip"] == client
            # sshd saw this very client: its address and its own source port.
            port = record["client"]["port"]
            assert f"Connection from {client} port {port} on {server} port 22" in log, log
            # Both sides saw each other, so the relay adds no note about what each saw.
            assert not any("saw its peer" in note for note in record["notes"]), record["notes"]
        assert max(r["bytes"]["c2s"] for r in mine) > UPLOAD_BYTES
        failed = next(r for r in mine if r["outcome"] == "failed")
        client_line = next(line for line in bad[2].splitlines() if "Unable to negotiate" in line)
        assert client_line.startswith(f"Unable to negotiate with {server} port 22:")
        assert failed["rejections"]["client"]["message"] == client_line.rstrip("\r")
        server_line = log_line(
            sshd_log, f"Unable to negotiate with {client} port {failed['client']['port']}:"
        )
        assert failed["rejections"]["server"]["message"] == server_line.removesuffix(" [preauth]")


def test_tproxy_takes_another_port_when_the_clients_is_taken(
    topology: Namespaces, tmp_path: Path
) -> None:
    topo, a = topology, ADDRESSES
    sshd_log = start_sshd(topo, tmp_path)
    # The router holds the client's address and port itself (a transparent listener), so
    # the proxy's upstream socket cannot bind them and must take another port.
    holder = topo.popen(
        topo.router,
        [sys.executable, "-c",
         "import socket, time; s = socket.socket(); s.setsockopt(socket.IPPROTO_IP, 19, 1); "
         f"s.bind(('{a.client_v4}', {TAKEN_PORT})); s.listen(); print('held', flush=True); "
         "time.sleep(120)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    # A bare port: with --tproxy the host defaults to the wildcard "::" (both families).
    proxy, out, err = start_proxy(topo, tmp_path, listen=str(PROXY_PORT))
    hello = run_command(
        ["ip", "netns", "exec", topo.client, sys.executable, "-c",
         "import socket; s = socket.socket(); "
         f"s.bind(('{a.client_v4}', {TAKEN_PORT})); s.connect(('{a.server_v4}', 22)); "
         "print(s.recv(200).decode().strip()); s.sendall(b'SSH-2.0-portcheck\\r\\n'); "
         "s.settimeout(5); s.recv(65536)"],
        timeout=30,
    )  # fmt: skip
    records = stop_proxy(proxy, out, err)

    assert hello.returncode == 0, hello.stderr
    assert hello.stdout.startswith("SSH-2.0-OpenSSH"), hello.stdout
    (record,) = records
    assert record["client"] == {"ip": a.client_v4, "port": TAKEN_PORT}
    assert record["server"] == {"ip": a.server_v4, "port": 22}
    seen = log_line(sshd_log, f"Connection from {a.client_v4} port ")
    seen_port = int(seen.split(" port ")[1].split()[0])
    assert seen_port != TAKEN_PORT
    assert any(
        f"the server saw its peer as {a.client_v4} port {seen_port}" in note
        for note in record["notes"]
    ), record["notes"]
