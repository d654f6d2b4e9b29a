"""Smoke tests for tests/peers.py and the committed captures in captures/.

They prove the real-peer fixtures work here (sshd starts, clients log in, a kex failure is
reported by both ends, tcpdump captures what tshark decodes), so that a failing pcap or
proxy test later points at kexproxy and not at the harness; and that every committed
capture is a valid pcap whose metadata agrees with what tshark sees in it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import peers

pytestmark = pytest.mark.peers

REPO = Path(__file__).resolve().parents[2]
CAPTURES = REPO / "captures"
CAPTURE_NAMES = sorted(
    path.stem for path in CAPTURES.glob("*.json") if not path.name.startswith("tls-")
)  # SSH; TLS: test_tls_captures


@pytest.fixture(scope="module")
def sshd() -> Iterator[peers.Sshd]:
    """One default sshd for the login tests of this module, since starting one per test adds up."""
    with peers.Sshd() as server:
        yield server


# ---------------------------------------------------------------------------------------
# Fixtures against live peers


def test_openssh_client_logs_in(sshd: peers.Sshd) -> None:
    result = peers.run_ssh(sshd.port, command="echo kexproxy-ok")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "kexproxy-ok"
    sshd.wait_log(r"Accepted publickey for root from 127\.0\.0\.1 port \d+ ssh2")


@pytest.mark.parametrize("client", ["dbclient", "plink", "paramiko", "asyncssh"])
def test_other_clients_log_in(sshd: peers.Sshd, client: str) -> None:
    if client == "dbclient":
        result = peers.run_dbclient(sshd.port)
    elif client == "plink":
        result = peers.run_plink(sshd.port, hostkey=sshd.host_key_fingerprint("ed25519"))
    elif client == "paramiko":
        result = peers.run_paramiko(sshd.port)
    else:
        result = peers.run_asyncssh(sshd.port)
    assert result.returncode == 0, result.stderr
    assert not result.timed_out


def test_plink_without_hostkey_stops_after_kex(sshd: peers.Sshd) -> None:
    result = peers.run_plink(sshd.port)
    assert result.returncode != 0
    assert "Cannot confirm a host key in batch mode" in result.stderr


def test_kex_failure_is_reported_by_both_ends() -> None:
    with peers.Sshd(["KexAlgorithms curve25519-sha256"]) as sshd:
        result = peers.run_ssh(sshd.port, "-oKexAlgorithms=diffie-hellman-group14-sha1")
        match = sshd.wait_log(
            r"Unable to negotiate with 127\.0\.0\.1 port (\d+): no matching key exchange method found\. "
            r"Their offer: diffie-hellman-group14-sha1,\S* \[preauth\]$"
        )
    assert result.returncode == 255
    message = result.negotiation_message
    assert message is not None, result.stderr
    prefix = f"Unable to negotiate with 127.0.0.1 port {sshd.port}: no matching key exchange method found. "
    assert message.startswith(prefix + "Their offer: curve25519-sha256")
    assert int(match.group(1)) != sshd.port
    assert sshd.negotiation_failures() == [match.group(0)]


def test_dropbear_serves_a_login() -> None:
    with peers.Dropbear() as dropbear:
        result = peers.run_ssh(dropbear.port)
        if dropbear.login_supported:
            assert result.returncode == 0, result.stderr
            dropbear.wait_log(r"Pubkey auth succeeded for 'root'")
        else:
            assert "Permission denied" in result.stderr


def test_tcpdump_capture_is_read_by_tshark(tmp_path: Path) -> None:
    pcap = tmp_path / "login.pcap"
    with peers.Sshd() as sshd:
        with peers.Tcpdump(pcap, sshd.port) as capture:
            result = peers.run_ssh(sshd.port)
        log = sshd.log_text()
    assert result.returncode == 0, result.stderr
    assert capture.packets_captured and capture.packets_captured > 10
    assert capture.packets_dropped == 0
    # Both sides send their banner at once: either may be first on the wire.
    banners = sorted(peers.tshark_banner_rows(pcap, sshd.port), key=lambda r: r["ssh.direction"])
    assert [row["ssh.direction"] for row in banners] == ["0", "1"]
    assert all(row["ssh.protocol"].startswith("SSH-2.0-OpenSSH_") for row in banners)
    client_port = int(banners[0]["tcp.srcport"])
    assert f"Connection from 127.0.0.1 port {client_port} on 127.0.0.1 port {sshd.port}" in log
    kexinits = sorted(peers.tshark_kexinit_rows(pcap, sshd.port), key=lambda r: r["ssh.direction"])
    assert len(kexinits) == 2
    assert {row["tcp.dstport"] for row in kexinits} == {str(sshd.port), str(client_port)}
    assert "ext-info-c" in kexinits[0]["ssh.kex_algorithms"]
    assert re.fullmatch(r"[0-9a-f]{32}", kexinits[0]["ssh.kex.hassh"])
    assert re.fullmatch(r"[0-9a-f]{32}", kexinits[1]["ssh.kex.hasshserver"])


def test_which_or_skip_skips_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = "kexproxy-no-such-binary"
    monkeypatch.delenv(peers.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception):
        peers.which_or_skip(missing)
    monkeypatch.setenv(peers.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception):
        peers.which_or_skip(missing)


def test_free_port_is_bindable() -> None:
    port = peers.free_port()
    assert 1024 <= port <= 65535
    assert not peers.is_listening(port)


# ---------------------------------------------------------------------------------------
# Committed captures


def _meta(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CAPTURES / f"{name}.json").read_text())
    return data


def test_captures_exist() -> None:
    assert len(CAPTURE_NAMES) >= 12
    readme = (CAPTURES / "README.md").read_text()
    for name in CAPTURE_NAMES:
        assert (CAPTURES / f"{name}.pcap").is_file()
        assert f"`{name}`" in readme


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_capture_matches_its_metadata(name: str) -> None:
    meta = _meta(name)
    pcap = CAPTURES / meta["pcap"]
    data = pcap.read_bytes()
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4"), "not a classic pcap"
    assert len(data) < 20_000, "captures must stay small"
    assert hashlib.sha256(data).hexdigest() == meta["pcap_sha256"]
    server_port, client_port = meta["server"]["port"], meta["client"]["port"]
    wire = meta["wire"]
    # One tshark pass per capture (the record script used the one-query-per-question helpers).
    summary = peers.tshark_summary(pcap, server_port)
    assert summary["packets"] == meta["packets"]
    assert summary["syns"] == [(str(client_port), str(server_port))]
    assert [row["ssh.protocol"] for row in summary["banners"]] == [
        b["banner"] for b in wire["banners"]
    ]
    assert [int(row["tcp.srcport"]) for row in summary["banners"]] == [
        b["port"] for b in wire["banners"]
    ]
    assert len(summary["kexinits"]) == len(wire["kexinits"])
    for row, saved in zip(summary["kexinits"], wire["kexinits"], strict=True):
        assert {key: saved[key] for key in peers.KEXINIT_FIELDS} == row
    codes = [int(row["ssh.message_code"]) for row in summary["message_codes"]]
    assert codes == [c["code"] for c in wire["message_codes"]]
    disconnects = [(row["reason"], row["description"]) for row in summary["disconnects"]]
    assert disconnects == [(str(d["reason"]), d["description"]) for d in wire["disconnects"]]
    if meta["outcome"] == "negotiation-failed" and wire["kexinits"]:
        assert len({row["ssh.direction"] for row in summary["kexinits"]}) == len(wire["kexinits"])


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_capture_messages_quote_the_captured_ports(name: str) -> None:
    meta = _meta(name)
    server, client = meta["server"], meta["client"]
    if meta["outcome"] == "success":
        assert client["returncode"] == 0
        return
    if meta["outcome"] == "negotiation-failed":
        assert client["returncode"] != 0
    assert client["message"], "the client's rejection message was recorded"
    assert client["message"] in (client["stdout"] + client["stderr"])
    assert any(server["message"] in line for line in server["log"])
    if client["message"].startswith("Unable to negotiate"):
        # OpenSSH client: quotes the server's port.
        assert f"127.0.0.1 port {server['port']}: " in client["message"]
    if client["software"] == "dbclient":
        assert f"root@127.0.0.1:{server['port']} exited" in client["message"]
    if server["software"] == "sshd":
        assert (
            f"Connection from 127.0.0.1 port {client['port']} on 127.0.0.1 port {server['port']}"
            in server["log"][1]
        )
        if server["message"].startswith("Unable to negotiate"):
            assert f"127.0.0.1 port {client['port']}: " in server["message"]
            assert server["message"].endswith(" [preauth]")
    else:
        assert f"<127.0.0.1:{client['port']}>" in server["message"]
