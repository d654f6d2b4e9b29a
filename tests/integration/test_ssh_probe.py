"""`kexproxy probe` (SSH) against real servers on 127.0.0.1, and `probe --listen` against real clients.

The oracles are the peers themselves: the server KEXINIT tshark reads from a capture of an
ordinary ``ssh`` connection to the same server, sshd's configured lists, and
``ssh-keyscan -t TYPE`` piped to ``ssh-keygen -l`` for every key type the server has; the
server's log shows a DISCONNECT by application per connection and no authentication. For
``--listen``, OpenSSH's own ``ssh -G`` lists, Dropbear's documented defaults, and each
client's version string.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kexproxy.cli import main
from kexproxy.core.catalogue import catalogue
from kexproxy.sinks.store import SessionStore
from kexproxy.sources.ssh_probe import ProbeLimits, probe_ssh
from tests.peers.base import LOOPBACK, free_port, run_command, which_or_skip
from tests.peers.capture import capturing, tshark_banner_rows, tshark_kexinit_rows
from tests.peers.clients import run_dbclient, run_paramiko, run_plink, run_ssh
from tests.peers.servers import Dropbear, Sshd

pytestmark = pytest.mark.peers

FAST = ProbeLimits(rate=20, timeout=5)
#: tshark's field -> the RFC list name the report keys its lists by.
TSHARK_LISTS = {
    "ssh.kex_algorithms": "kex_algorithms",
    "ssh.server_host_key_algorithms": "server_host_key_algorithms",
    "ssh.encryption_algorithms_client_to_server": "encryption_algorithms_client_to_server",
    "ssh.encryption_algorithms_server_to_client": "encryption_algorithms_server_to_client",
    "ssh.mac_algorithms_client_to_server": "mac_algorithms_client_to_server",
    "ssh.mac_algorithms_server_to_client": "mac_algorithms_server_to_client",
    "ssh.compression_algorithms_client_to_server": "compression_algorithms_client_to_server",
    "ssh.compression_algorithms_server_to_client": "compression_algorithms_server_to_client",
}
KEYSCAN_TYPES = {"ed25519": "ed25519", "rsa": "rsa", "ecdsa": "ecdsa"}


#: Captures of plain ``ssh`` tried until tshark reads the server's KEXINIT (see below).
ORDINARY_TRIES = 3


def _ordinary_connection(tmp_path: Path, port: int) -> tuple[str, dict[str, list[str]]]:
    """The server's banner and KEXINIT as tshark reads them from a capture of plain ``ssh``.

    tshark 4.0 labels a server's KEXINIT "Encrypted Packet" when it shares one segment with
    the server's banner and both come before the client's banner (dropbear does that now and
    then: a 562-byte segment, banner then KEXINIT), so a capture where it did is taken again.
    """
    for attempt in range(ORDINARY_TRIES):
        pcap = tmp_path / f"ordinary-{attempt}.pcap"
        with capturing(pcap, port):
            run_ssh(port, command="true")
        banners = [r for r in tshark_banner_rows(pcap, port) if r["tcp.srcport"] == str(port)]
        rows = [r for r in tshark_kexinit_rows(pcap, port) if r["tcp.srcport"] == str(port)]
        if banners and rows:
            break
    assert banners and rows, "tshark found no server banner or KEXINIT"
    lists = {rfc: rows[0][field].split(",") for field, rfc in TSHARK_LISTS.items()}
    return banners[0]["ssh.protocol"], lists


def _keyscan(port: int, kind: str) -> tuple[int, str, str]:
    """(bits, SHA256 fingerprint, type) of the server's `kind` key, as ssh-keyscan and ssh-keygen say."""
    keyscan = which_or_skip("ssh-keyscan")
    keygen = which_or_skip("ssh-keygen")
    scanned = run_command([keyscan, "-t", kind, "-p", str(port), LOOPBACK], timeout=20)
    lines = [line for line in scanned.stdout.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1, scanned.stdout + scanned.stderr
    printed = subprocess.run(
        [keygen, "-l", "-E", "sha256", "-f", "-"],
        input=lines[0] + "\n",
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout.split()
    return int(printed[0]), printed[1], printed[-1].strip("()").lower()


def _assert_same_as_the_peers(
    report: dict[str, Any], server: Sshd | Dropbear, tmp_path: Path
) -> None:
    banner, lists = _ordinary_connection(tmp_path, server.port)
    assert report["banner"] == banner
    for rfc, names in lists.items():
        assert report["kexinit"][rfc] == names, rfc
    learnt = {(k["key_type"], k["bits"], k["sha256"]) for k in report["host_keys"]}
    scanned = set()
    for kind in server.host_keys:
        bits, sha, _type = _keyscan(server.port, KEYSCAN_TYPES[kind])
        scanned.add((kind, bits, sha))
    assert learnt == scanned
    # One key per host key algorithm the server offers, each of its own type.
    offered = report["kexinit"]["server_host_key_algorithms"]
    assert [k["algorithm"] for k in report["host_keys"]] == offered
    assert report["handshakes"] == 1 + len(offered) and report["notes"] == []


def test_openssh_is_reported_as_it_shows_itself_and_is_never_authenticated_to(
    tmp_path: Path,
) -> None:
    with Sshd() as sshd:
        report = probe_ssh(LOOPBACK, sshd.port, limits=FAST)
        sshd.wait_log(f"(?s)(kexproxy probe done.*){{{report['handshakes']}}}")
        goodbyes = sshd.log_lines(r":11: kexproxy probe done")
        log = sshd.log_text()  # before the oracles below connect (and log in)
        _assert_same_as_the_peers(report, sshd, tmp_path)
    assert report["markers"]["strict_kex"] is True
    assert report["terrapin"]["exposed"] is False
    assert len(goodbyes) == report["handshakes"], log
    assert not re.search(r"Accepted|Failed|Postponed|userauth|authentication", log), log


@pytest.mark.parametrize(
    ("config", "kex"),
    [
        (["KexAlgorithms diffie-hellman-group14-sha256", "Ciphers aes256-ctr"], "dh"),
        (["KexAlgorithms ecdh-sha2-nistp384,diffie-hellman-group-exchange-sha256"], "ecdh"),
        (["KexAlgorithms diffie-hellman-group14-sha1", "MACs hmac-sha2-512"], "dh-sha1"),
    ],
)
def test_each_kex_the_probe_can_start_gets_the_host_keys(config: list[str], kex: str) -> None:
    with Sshd(config, host_keys=("ecdsa", "rsa")) as sshd:
        report = probe_ssh(LOOPBACK, sshd.port, limits=FAST)
        # ssh-keyscan cannot do group14-sha1 (its client leaves SHA-1 kex out): the key
        # files' own fingerprints (ssh-keygen -l) are the oracle here.
        files = {sshd.host_key_fingerprint(k) for k in ("ecdsa", "rsa")}
    configured = {line.split()[0]: line.split()[1].split(",") for line in config}
    offered = [n for n in report["kexinit"]["kex_algorithms"] if "@openssh.com" not in n]
    assert offered == configured["KexAlgorithms"], kex
    if "Ciphers" in configured:
        assert report["kexinit"]["encryption_algorithms_client_to_server"] == configured["Ciphers"]
    if "MACs" in configured:
        assert report["kexinit"]["mac_algorithms_server_to_client"] == configured["MACs"]
    assert {k["sha256"] for k in report["host_keys"]} == files
    assert {(k["key_type"], k["bits"]) for k in report["host_keys"]} == {
        ("ecdsa", 256),
        ("rsa", 3072),
    }
    assert report["notes"] == []


def test_dropbear_is_reported_as_it_shows_itself(tmp_path: Path) -> None:
    with Dropbear() as dropbear:
        report = probe_ssh(LOOPBACK, dropbear.port, limits=FAST)
        time.sleep(0.5)
        log = dropbear.log_text()  # before the oracles below connect
        _assert_same_as_the_peers(report, dropbear, tmp_path)
    assert report["version_hint"]["dropbear"] is True
    # Every host key conversation ends with our DISCONNECT, and nobody logs in.
    assert len(re.findall(r"Disconnect received", log)) >= len(report["host_keys"]), log
    assert not re.search(r"auth succeeded|Exit \(root\)|password", log, re.I), log


def test_the_command_prints_json_and_a_graded_summary(capsys: pytest.CaptureFixture[str]) -> None:
    with Sshd(host_keys=("ed25519",)) as sshd:
        assert main(["probe", f"{LOOPBACK}:{sshd.port}", "--json", "--rate", "20"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert main(["probe", f"{LOOPBACK}:{sshd.port}", "--rate", "20"]) == 0
        text = capsys.readouterr().out
    assert report["protocol"] == "ssh" and report["target"] == f"{LOOPBACK}:{sshd.port}"
    for key in ("banner", "kexinit", "host_keys", "markers", "terrapin", "version_hint"):
        assert report[key], key
    assert set(report["grades"]["lists"]) == set(TSHARK_LISTS.values())
    assert report["grades"]["best_client"]["grade"] in ("strong", "good")
    assert report["banner"] in text and report["host_keys"][0]["sha256"] in text
    assert "curve25519-sha256" in text and "Terrapin" in text


# -- probe --listen against real clients ---------------------------------------------------


def _listen(store: Path, count: int) -> tuple[int, threading.Thread, list[int]]:
    port = free_port()
    status: list[int] = []
    argv = ["probe", "--listen", f"{LOOPBACK}:{port}", "--store", str(store)]
    argv += ["--count", str(count), "--client-timeout", "10"]
    thread = threading.Thread(target=lambda: status.append(main(argv)), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    return port, thread, status


def _version(argv: list[str]) -> str:
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=20)
    return done.stdout + done.stderr


def test_listen_records_real_clients_with_their_real_offers(tmp_path: Path) -> None:
    store = tmp_path / "clients.db"
    # The port probe in _listen counts as the first connection.
    port, thread, status = _listen(store, 5)
    run_ssh(port, command="true", timeout=15)
    run_dbclient(port, command="true", timeout=15)
    run_plink(port, command="true", timeout=15)
    run_paramiko(port, command=None, timeout=15)
    thread.join(60)
    assert status == [0]
    db = SessionStore.open(store, readonly=True)
    try:
        records = [s.record for s in db.sessions()]
    finally:
        db.close()
    by_software = {
        (r.client_banner or "").split("-", 2)[-1].split("_")[0]: r
        for r in records
        if r.client_banner
    }
    assert set(by_software) >= {"OpenSSH", "dropbear", "PuTTY", "paramiko"}, list(by_software)
    for record in records:
        assert record.source == "probe"
        assert record.server_banner == "SSH-2.0-kexproxy_probe"
    # OpenSSH: the banner ssh -V names, and the lists ssh -G says it sends.
    openssh = by_software["OpenSSH"]
    version = _version([which_or_skip("ssh"), "-V"]).split(",")[0].strip()
    assert openssh.client_banner == f"SSH-2.0-{version}"
    settings = dict(
        line.split(" ", 1)
        for line in _version([which_or_skip("ssh"), "-F", "/dev/null", "-G", LOOPBACK]).splitlines()
        if " " in line
    )
    kexinit = openssh.client_kexinit
    assert kexinit is not None
    assert kexinit["encryption_algorithms_client_to_server"] == settings["ciphers"].split(",")
    assert kexinit["mac_algorithms_client_to_server"] == settings["macs"].split(",")
    kex = [
        n
        for n in kexinit["kex_algorithms"]
        if n not in ("ext-info-c", "kex-strict-c-v00@openssh.com")
    ]
    assert kex == settings["kexalgorithms"].split(",")
    # Dropbear: the lists the catalogue records for its client, and its version.
    dropbear = by_software["dropbear"]
    dropbear_history = catalogue().history.dropbear
    assert dropbear.client_banner == f"SSH-2.0-dropbear_{catalogue().history.dropbear_version}"
    assert dropbear.client_kexinit is not None
    assert set(dropbear.client_kexinit["encryption_algorithms_client_to_server"]) == set(
        dropbear_history["client_cipher"]
    )
    # PuTTY and paramiko: their version strings.
    plink_version = re.search(r"Release ([0-9.]+)", _version([which_or_skip("plink"), "-V"]))
    assert plink_version is not None
    assert by_software["PuTTY"].client_banner == f"SSH-2.0-PuTTY_Release_{plink_version.group(1)}"
    import paramiko

    assert by_software["paramiko"].client_banner == f"SSH-2.0-paramiko_{paramiko.__version__}"
    ciphers = by_software["paramiko"].client_kexinit["encryption_algorithms_client_to_server"]  # type: ignore[index]
    assert ciphers == list(paramiko.Transport._preferred_ciphers)
    # Every recorded client has its whole KEXINIT, and negotiation against the audit's offer.
    for record in by_software.values():
        assert record.client_kexinit is not None and record.server_kexinit is not None
        assert record.negotiated is not None
