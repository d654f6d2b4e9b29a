"""Three network namespaces a test makes and always removes: client -> router -> server.

Why: the proxy's transparent modes (REDIRECT, TPROXY) act on forwarded traffic, which a
single loopback cannot show. Here the client and the server are joined only through the
router, whose rules the test chooses; every address lives inside the namespaces (private
or documentation ranges), and neither the host's interfaces, routes nor iptables are
touched. sshd runs straight under ``ip netns exec`` (the `Sshd` fixture picks a loopback
port in the host's namespace, which the server's namespace does not share).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.peers.base import run_command, which_or_skip
from tests.peers.keys import client_key, openssh_key

#: Seconds one `ip`/`iptables` call inside a namespace may take.
COMMAND_TIMEOUT = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Addresses:
    """The four interface addresses of the topology, per family (/24 and /64 subnets)."""

    client_v4: str
    router_c_v4: str
    router_s_v4: str
    server_v4: str
    client_v6: str
    router_c_v6: str
    router_s_v6: str
    server_v6: str


class Namespaces:
    """Three namespaces joined by two veth pairs, removed (with everything in them) at the end.

    `router_rules` runs in the router once the wiring is up: each item one command line,
    given the router's client-side interface name (the rules a test steers traffic with).
    """

    def __init__(
        self,
        addresses: Addresses,
        router_rules: Callable[[str], Sequence[Sequence[str]]],
        *,
        prefix: str = "kx",
    ) -> None:
        tag = f"{os.getpid() % 100000}"
        self.addresses = addresses
        self._router_rules = router_rules
        self.client, self.router, self.server = (
            f"{prefix}c{tag}",
            f"{prefix}r{tag}",
            f"{prefix}s{tag}",
        )
        # veth names: the client's end, the router's two ends, the server's end (<= 15 chars).
        self.c_if, self.rc_if, self.rs_if, self.s_if = (
            f"{prefix}c{tag}a",
            f"{prefix}r{tag}c",
            f"{prefix}r{tag}s",
            f"{prefix}s{tag}a",
        )
        self.procs: list[subprocess.Popen[bytes]] = []

    def sh(self, ns: str, *argv: str) -> None:
        result = subprocess.run(
            ["ip", "netns", "exec", ns, *argv],
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{ns}: {' '.join(argv)}: {result.stderr.decode(errors='replace')}")

    def __enter__(self) -> Namespaces:
        try:
            for ns in (self.client, self.router, self.server):
                subprocess.run(
                    ["ip", "netns", "add", ns], check=True, capture_output=True, timeout=20
                )
            self._wire()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wire(self) -> None:
        a = self.addresses
        # Each veth pair is made inside a namespace with its peer moved straight into the
        # router's: no interface ever appears in the host's namespace.
        for ns, end, router_end in (
            (self.client, self.c_if, self.rc_if),
            (self.server, self.s_if, self.rs_if),
        ):
            self.sh(
                ns,
                "ip",
                "link",
                "add",
                end,
                "type",
                "veth",
                "peer",
                "name",
                router_end,
                "netns",
                self.router,
            )
        for ns, dev, v4, v6 in (
            (self.client, self.c_if, a.client_v4, a.client_v6),
            (self.router, self.rc_if, a.router_c_v4, a.router_c_v6),
            (self.router, self.rs_if, a.router_s_v4, a.router_s_v6),
            (self.server, self.s_if, a.server_v4, a.server_v6),
        ):
            self.sh(ns, "ip", "link", "set", "lo", "up")
            self.sh(ns, "ip", "addr", "add", f"{v4}/24", "dev", dev)
            self.sh(ns, "ip", "-6", "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            self.sh(ns, "ip", "link", "set", dev, "up")
        for ns, via4, via6 in (
            (self.client, a.router_c_v4, a.router_c_v6),
            (self.server, a.router_s_v4, a.router_s_v6),
        ):
            self.sh(ns, "ip", "route", "add", "default", "via", via4)
            self.sh(ns, "ip", "-6", "route", "add", "default", "via", via6)
        self.sh(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.sh(self.router, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        for rule in self._router_rules(self.rc_if):
            self.sh(self.router, *rule)

    def popen(self, ns: str, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """`argv` in `ns`, in a session of its own: killed with its children at the end."""
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
            fields[1].endswith(f":{port:04X}") and fields[3] == "0A"
            for fields in (line.split() for line in out.splitlines())
            if len(fields) > 3 and ":" in fields[1]
        )

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for ns in (self.client, self.router, self.server):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20, check=False)


def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def start_sshd(topo: Namespaces, tmp: Path, *, kex: str = "curve25519-sha256") -> Path:
    """A real sshd on port 22 (both families) in the server's namespace, logging VERBOSE to
    the file returned (stderr, ``-e``): "Connection from ..." and "Unable to negotiate ..."."""
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
                f"KexAlgorithms {kex}",
                "",
            ]
        )
    )
    log = tmp / "sshd.log"
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    sshd = os.path.abspath(which_or_skip("sshd"))
    topo.popen(
        topo.server,
        [sshd, "-D", "-e", "-o", "LogLevel=VERBOSE", "-f", str(config)],
        stderr=log.open("wb"),
    )
    wait_until(lambda: topo.listening(topo.server, 22))
    return log


def ssh_from_client(
    topo: Namespaces,
    host: str,
    *opts: str,
    command: str = "true",
    stdin: bytes | None = None,
    timeout: float = 30,
) -> tuple[int, str, str]:
    """OpenSSH's client in the client's namespace: (exit status, stdout, stderr)."""
    with tempfile.TemporaryDirectory(prefix="kexproxy-ssh-") as home:
        argv = [
            "ip", "netns", "exec", topo.client, which_or_skip("ssh"), *opts,
            "-F", "/dev/null", "-oBatchMode=yes", "-oStrictHostKeyChecking=no",
            "-oUserKnownHostsFile=/dev/null", "-oIdentitiesOnly=yes", "-oConnectTimeout=10",
            "-i", str(client_key()), f"root@{host}", command,
        ]  # fmt: skip
        result = run_command(argv, timeout=timeout, env={**os.environ, "HOME": home}, stdin=stdin)
    return result.returncode, result.stdout, result.stderr
