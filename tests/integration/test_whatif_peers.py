"""``kexproxy whatif`` predictions against what really happens (issue 13, "Done means").

Each client's offer and the server's offer are recorded once from a real sshd with its
stock lists; then, for each kind of change, a real sshd runs with that sshd_config line and
every client connects again. sshd's own log is the oracle: at LogLevel DEBUG it names the
key exchange and ciphers it chose ("debug1: kex: algorithm: ...") or says which list had no
match ("Unable to negotiate with ...: no matching cipher found. Their offer: ..."). The
prediction must equal it: negotiated with the same choices, or failed on the same list with
the same message.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kexproxy.core.whatif import Side, apply_changes, kexinit_from_record, predict
from kexproxy.pipeline import capture_records
from tests.peers import (
    PeerResult,
    Sshd,
    Tcpdump,
    run_asyncssh,
    run_dbclient,
    run_paramiko,
    run_plink,
    run_ssh,
)

pytestmark = pytest.mark.peers

#: The four kinds of change the issue names, as sshd_config lines.
CHANGES = {
    "post-quantum kex only": "KexAlgorithms sntrup761x25519-sha512@openssh.com",
    "a cipher removed": "Ciphers -chacha20-poly1305@openssh.com",
    "a legacy kex added back": "KexAlgorithms +diffie-hellman-group14-sha1",
    "AEAD ciphers only": "Ciphers aes256-gcm@openssh.com,chacha20-poly1305@openssh.com",
}
#: Clients as users run them; OpenSSH twice more with options that the changes break or fix.
CLIENTS: dict[str, Callable[[int], PeerResult]] = {
    "ssh": lambda port: run_ssh(port, timeout=10),
    "ssh -oKexAlgorithms=dh14-sha1": lambda port: run_ssh(
        port, "-oKexAlgorithms=diffie-hellman-group14-sha1", timeout=10
    ),
    "ssh -oCiphers=aes128-ctr": lambda port: run_ssh(port, "-oCiphers=aes128-ctr", timeout=10),
    "dbclient": lambda port: run_dbclient(port, timeout=10),
    "plink": lambda port: run_plink(port, timeout=10),
    "paramiko": lambda port: run_paramiko(port, command=None, timeout=10),
    "asyncssh": lambda port: run_asyncssh(port, command=None, timeout=10),
}
KEX = re.compile(r"debug1: kex: algorithm: (\S+)")
CIPHER = re.compile(r"debug1: kex: client->server cipher: (\S+) MAC: (\S+)")
UNABLE = re.compile(r"Unable to negotiate with \S+ port \d+: ([^.]+)\. Their offer: (\S+)")


def _wait_for(server: Sshd, start: int, pattern: re.Pattern[str], timeout: float = 5.0) -> str:
    """The log written since `start`, once it holds `pattern` or the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        text = server.log_text()[start:]
        if pattern.search(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Side, dict[str, Side]]:
    """The stock server's offer and each client's, from one capture per client."""
    folder = tmp_path_factory.mktemp("whatif")
    clients: dict[str, Side] = {}
    server: Side | None = None
    with Sshd() as sshd:
        for name, connect in CLIENTS.items():
            path = folder / f"{len(clients)}.pcap"
            with Tcpdump(path, sshd.port):
                connect(sshd.port)
            [record] = [r for r in capture_records(str(path)) if r.client_kexinit]
            client = kexinit_from_record(record.client_kexinit)
            offered = kexinit_from_record(record.server_kexinit)
            assert client is not None and offered is not None, name
            clients[name] = Side(banner=record.client_banner, kexinit=client)
            server = server or Side(banner=record.server_banner, kexinit=offered)
    assert server is not None
    return server, clients


@pytest.mark.parametrize("change", list(CHANGES))
def test_prediction_equals_what_sshd_did(
    change: str, recorded: tuple[Side, dict[str, Side]], tmp_path: Path
) -> None:
    server, clients = recorded
    line = CHANGES[change]
    changed = apply_changes(server, [line], "server")
    effects = set()
    with Sshd([line], log_level="DEBUG") as sshd:
        for name, connect in CLIENTS.items():
            client = clients[name]
            p = predict(client.kexinit, server.kexinit, client.kexinit, changed.kexinit)
            effects.add(p.effect)
            start = len(sshd.log_text())
            connect(sshd.port)
            said = _wait_for(sshd, start, re.compile(f"{CIPHER.pattern}|{UNABLE.pattern}"))
            unable = UNABLE.search(said)
            if p.after.ok:
                assert unable is None, (name, said)
                assert KEX.findall(said)[:1] == [p.after.chosen["kex"]], (name, said)
                found = CIPHER.search(said)
                assert found is not None, (name, said)
                assert found.group(1) == p.after.chosen["cipher_c2s"], (name, said)
            else:
                rejection = p.after.rejections["server"]
                assert unable is not None and rejection is not None, (name, said)
                assert unable.group(1) == rejection.reason, (name, unable.group(0))
                assert unable.group(2) == ",".join(rejection.their_offer), name
    # Every change moves somebody: the test would prove little if all stayed the same.
    assert effects - {"still_negotiates"}, (change, effects)
