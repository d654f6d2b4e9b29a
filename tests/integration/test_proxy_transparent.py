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
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers import client_key, openssh_key, run_command, skip_or_fail, which_or_skip

pytestmark = pytest.mark.peers

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
#: In no namespace's routing table: the router can reach nothing there.
UNROUTED_V4 = "198.18.9.9"
PROXY_PORT = 2222
ROOT = Path(__file__).resolve().parents[2]


class Namespaces:
    """Three namespaces joined by two veth pairs, removed (with everything in them) at the end."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.client, self.router, self.server = f"kxc{tag}", f"kxr{tag}", f"kxs{tag}"
        # veth names: the client's end, the router's two ends, the server's end (<= 15 chars).
        self.c_if, self.rc_if, self.rs_if, self.s_if = (
            f"kxc{tag}a",
            f"kxr{tag}c",
            f"kxr{tag}s",
            f"kxs{tag}a",
        )
        self.procs: list[subprocess.Popen[bytes]] = []

    def sh(self, ns: str, *argv: str) -> None:
        result = subprocess.run(
            ["ip", "netns", "exec", ns, *argv], capture_output=True, timeout=20, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{ns}: {' '.join(argv)}: {result.stderr.decode(errors='replace')}")

    def __enter__(self) -> Namespaces:
        for ns in (self.client, self.router, self.server):
            subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=20)
        try:
            self._wire()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wire(self) -> None:
        # Each veth pair is created inside a namespace and its peer moved straight into the
        # router's: no interface ever appears in the host's namespace.
        self.sh(
            self.client,
            "ip",
            "link",
            "add",
            self.c_if,
            "type",
            "veth",
            "peer",
            "name",
            self.rc_if,
            "netns",
            self.router,
        )
        self.sh(
            self.server,
            "ip",
            "link",
            "add",
            self.s_if,
            "type",
            "veth",
            "peer",
            "name",
            self.rs_if,
            "netns",
            self.router,
        )
        for ns, dev, v4, v6 in (
            (self.client, self.c_if, CLIENT_V4, CLIENT_V6),
            (self.router, self.rc_if, ROUTER_C_V4, ROUTER_C_V6),
            (self.router, self.rs_if, ROUTER_S_V4, ROUTER_S_V6),
            (self.server, self.s_if, SERVER_V4, SERVER_V6),
        ):
            self.sh(ns, "ip", "link", "set", "lo", "up")
            self.sh(ns, "ip", "addr", "add", f"{v4}/24", "dev", dev)
            self.sh(ns, "ip", "-6", "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            self.sh(ns, "ip", "link", "set", dev, "up")
        self.sh(self.client, "ip", "route", "add", "default", "via", ROUTER_C_V4)
        self.sh(self.client, "ip", "-6", "route", "add", "default", "via", ROUTER_C_V6)
        self.sh(self.server, "ip", "route", "add", "default", "via", ROUTER_S_V4)
        self.sh(self.server, "ip", "-6", "route", "add", "default", "via", ROUTER_S_V6)
        self.sh(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.sh(self.router, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        for tool in ("iptables", "ip6tables"):
            self.sh(
                self.router, tool, "-t", "nat", "-A", "PREROUTING", "-i", self.rc_if,
                "-p", "tcp", "--dport", "22", "-j", "REDIRECT", "--to-ports", str(PROXY_PORT),
            )  # fmt: skip

    def popen(self, ns: str, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv], start_new_session=True, **kwargs
        )  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc  # type: ignore[no-any-return]

    def listening(self, ns: str, port: int) -> bool:
        out = subprocess.run(
            ["ip", "netns", "exec", ns, "cat", "/proc/net/tcp", "/proc/net/tcp6"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout  # fmt: skip
        return any(
            line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A"
            for line in out.splitlines()
            if len(line.split()) > 3 and ":" in line.split()[1]
        )

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for ns in (self.client, self.router, self.server):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20, check=False)


@pytest.fixture
def topology() -> Iterator[Namespaces]:
    if os.geteuid() != 0:
        skip_or_fail("network namespaces and iptables need root")
    for tool in ("ip", "iptables", "ip6tables", "sshd"):
        which_or_skip(tool)  # a skip, or a failure where KEXPROXY_REQUIRE_PEERS=1 (CI)
    which_or_skip("ssh")
    try:
        with Namespaces() as topo:
            yield topo
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        skip_or_fail(f"cannot build the namespaces here: {exc}")


def wait_until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def start_sshd(topo: Namespaces, tmp: Path) -> Path:
    key = tmp / "host_ed25519"
    shutil.copyfile(openssh_key("ed25519"), key)
    key.chmod(0o600)
    authorized = tmp / "authorized_keys"
    authorized.write_text(client_key().with_suffix(".pub").read_text())
    authorized.chmod(0o600)
    config = tmp / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "Port 22",
                "ListenAddress 0.0.0.0",
                "ListenAddress ::",
                f"HostKey {key}",
                f"PidFile {tmp / 'sshd.pid'}",
                "UsePAM no",
                "StrictModes no",
                "LogLevel VERBOSE",
                "PermitRootLogin yes",
                f"AuthorizedKeysFile {authorized}",
                "KexAlgorithms curve25519-sha256,sntrup761x25519-sha512@openssh.com",
                "",
            ]
        )
    )
    log = tmp / "sshd.log"
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    sshd = os.path.abspath(which_or_skip("sshd"))
    topo.popen(topo.server, [sshd, "-D", "-e", "-f", str(config)], stderr=log.open("wb"))
    wait_until(lambda: topo.listening(topo.server, 22))
    return log


def ssh_from_client(
    topo: Namespaces, host: str, *opts: str, command: str = "true"
) -> tuple[int, str, str]:
    with tempfile.TemporaryDirectory(prefix="kexproxy-ssh-") as home:
        argv = [
            "ip", "netns", "exec", topo.client, which_or_skip("ssh"), *opts,
            "-F", "/dev/null", "-oBatchMode=yes", "-oStrictHostKeyChecking=no",
            "-oUserKnownHostsFile=/dev/null", "-oIdentitiesOnly=yes", "-oConnectTimeout=10",
            "-i", str(client_key()), f"root@{host}", command,
        ]  # fmt: skip
        result = run_command(argv, timeout=30, env={**os.environ, "HOME": home})
    return result.returncode, result.stdout, result.stderr


def test_transparent_mode_relays_to_each_original_destination(
    topology: Namespaces, tmp_path: Path
) -> None:
    topo = topology
    sshd_log = start_sshd(topo, tmp_path)
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
