"""kexproxy's security verdicts checked against real OpenSSH, paramiko and tcpdump on loopback.

Each test records a real handshake with tcpdump and reads it with the same code as
``kexproxy read``; the recipes for failures are proven in test_recipes_openssh.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kexproxy.core.record import SessionRecord
from kexproxy.pipeline import capture_records
from tests.peers import (
    Sshd,
    Tcpdump,
    free_port,
    kill_tree,
    openssh_key,
    python_module_or_skip,
    run_ssh,
)

pytestmark = pytest.mark.peers

MODULI_1024 = Path(__file__).parents[1] / "data" / "moduli-oakley-group2"

#: Where ssh -v names each negotiated algorithm (OpenSSH kex.c, kex_choose_conf).
KEX_LINE = re.compile(r"debug1: kex: algorithm: (\S+)")
HOSTKEY_LINE = re.compile(r"debug1: kex: host key algorithm: (\S+)")
CIPHER_LINE = re.compile(r"debug1: kex: (?:client->server|server->client) cipher: (\S+) MAC: (\S+)")


def only_record(path: Path) -> SessionRecord:
    records = capture_records(str(path))
    assert len(records) == 1, [r.outcome for r in records]
    return records[0]


# -- security verdicts on real handshakes -----------------------------------------------------


def record_success(
    tmp_path: Path,
    sshd_config: Sequence[str],
    *client_opts: str,
    host_keys: Sequence[str] = ("ed25519", "rsa", "ecdsa"),
) -> SessionRecord:
    path = tmp_path / "ok.pcap"
    with Sshd(sshd_config, host_keys=host_keys) as sshd:
        with Tcpdump(path, sshd.port):
            result = run_ssh(sshd.port, *client_opts)
        assert result.returncode == 0, result.stderr
    record = only_record(path)
    assert record.outcome == "negotiated"
    return record


def test_post_quantum_verdict(tmp_path: Path) -> None:
    record = record_success(tmp_path, [])
    pq = (record.diagnosis or {})["post_quantum"]
    assert pq["post_quantum"] is True and "sntrup761x25519" in pq["kex"]
    assert (pq["openssh_warning"], (record.diagnosis or {})["grade"]) == (False, "strong")
    classical = record_success(tmp_path, [], "-oKexAlgorithms=curve25519-sha256")
    pq = (classical.diagnosis or {})["post_quantum"]
    assert pq["post_quantum"] is False
    assert pq["server_offers"] and not pq["client_offers"]
    assert "client offers no post-quantum" in pq["reason"]
    # Modern and classical: good. An OpenSSH 10.1+ client would warn, unless, as here, it
    # set KexAlgorithms itself: the wire does not show that, so the reason names it.
    assert (classical.diagnosis or {})["grade"] == "good"
    assert pq["openssh_warning"] is True and "KexAlgorithms" in pq["openssh_warning_reason"]


def test_small_rsa_host_key_and_strict_kex_against_cbc_etm(tmp_path: Path) -> None:
    record = record_success(
        tmp_path,
        ["HostKeyAlgorithms rsa-sha2-256", "Ciphers aes128-cbc"],
        "-oCiphers=aes128-cbc",
        "-oMACs=hmac-sha2-256-etm@openssh.com",
        host_keys=("rsa1024",),
    )
    diagnosis = record.diagnosis or {}
    size = diagnosis["host_key_size"]
    assert (size["bits"], size["grade"]) == (1024, "weak")
    terrapin = diagnosis["terrapin"]
    assert terrapin["affected_modes"] == ["aes128-cbc with hmac-sha2-256-etm@openssh.com"]
    assert terrapin["strict_kex"] is True and terrapin["exposed"] is False
    assert diagnosis["grade"] == "weak"
    assert any("1024-bit RSA" in reason for reason in diagnosis["reasons"])


_PARAMIKO_SERVER = r"""
import socket, sys, time
import paramiko
port, keyfile, strict, moduli = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", sys.argv[4]
if moduli:
    paramiko.Transport.load_server_moduli(moduli)
key = paramiko.Ed25519Key.from_private_key_file(keyfile)
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(1)
print("ready", flush=True)
conn, _ = listener.accept()
transport = paramiko.Transport(conn, strict_kex=strict)
transport.add_server_key(key)
try:
    transport.start_server(server=paramiko.ServerInterface())
except Exception:
    pass
deadline = time.monotonic() + 15
while transport.is_active() and time.monotonic() < deadline:
    time.sleep(0.05)
transport.close()
"""


@contextmanager
def paramiko_server(*, strict_kex: bool = True, moduli: Path | None = None) -> Iterator[int]:
    """A paramiko SSH server for one connection: without strict KEX like pre-2023 peers, or
    with its own moduli file (paramiko sends its closest group even below the client's
    minimum, which OpenSSH's sshd, clamped to 2048 bits since 7.2, never does)."""
    python_module_or_skip("paramiko")
    port = free_port()
    argv = [
        sys.executable,
        "-c",
        _PARAMIKO_SERVER,
        str(port),
        str(openssh_key("ed25519")),
        "1" if strict_kex else "0",
        str(moduli or ""),
    ]
    proc: subprocess.Popen[Any] = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        yield port
    finally:
        kill_tree(proc)


def test_terrapin_exposure_without_strict_kex(tmp_path: Path) -> None:
    path = tmp_path / "terrapin.pcap"
    with paramiko_server(strict_kex=False) as port, Tcpdump(path, port):
        run_ssh(
            port,
            "-oCiphers=aes128-cbc",
            "-oMACs=hmac-sha2-256-etm@openssh.com",
            "-oHostKeyAlgorithms=ssh-ed25519",
        )
    record = only_record(path)
    assert record.outcome == "negotiated"
    assert record.strict_kex == {"client": True, "server": False}
    terrapin = (record.diagnosis or {})["terrapin"]
    assert terrapin["exposed"] is True
    assert "only the client offers strict KEX" in terrapin["reason"]
    assert any(r.startswith("Terrapin") for r in (record.diagnosis or {})["reasons"])


_PARAMIKO_GEX_CLIENT = r"""
import socket, sys
import paramiko
from paramiko.kex_gex import KexGexSHA256
KexGexSHA256.min_bits = 1024  # paramiko asked for 1024 bits at least until 2.x
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
transport = paramiko.Transport(sock)
transport.get_security_options().kex = ("diffie-hellman-group-exchange-sha256",)
transport.start_client(timeout=10)
transport.close()
"""


def test_group_exchange_sizes(tmp_path: Path) -> None:
    """The client's request and the server's modulus, from real peers and a 1024-bit moduli file."""
    refused = tmp_path / "refused.pcap"
    with paramiko_server(moduli=MODULI_1024) as port, Tcpdump(refused, port):
        result = run_ssh(port, "-oKexAlgorithms=diffie-hellman-group-exchange-sha256")
    assert "out of range" in result.stderr  # ssh asks for 2048 bits at least and says no
    verdict = (only_record(refused).diagnosis or {})["dh_gex"]
    assert verdict["request"]["min"] == 2048
    assert (verdict["p_bits"], verdict["grade"]) == (1024, "weak")
    assert "outside the range" in " ".join(verdict["notes"])

    accepted = tmp_path / "accepted.pcap"
    with paramiko_server(moduli=MODULI_1024) as port, Tcpdump(accepted, port):
        client = subprocess.run(
            [sys.executable, "-c", _PARAMIKO_GEX_CLIENT, str(port)],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert client.returncode == 0, client.stderr
    record = only_record(accepted)
    assert record.outcome == "negotiated"
    diagnosis = record.diagnosis or {}
    verdict = diagnosis["dh_gex"]
    assert verdict["request"]["min"] == 1024 and verdict["p_bits"] == 1024
    assert "accepts groups from 1024 bits" in " ".join(verdict["notes"])
    assert diagnosis["grade"] == "weak"
    assert any(r.startswith("DH group size") for r in diagnosis["reasons"])
