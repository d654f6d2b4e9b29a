"""``kexproxy logs`` on the real logs of a real sshd (``-e``, LogLevel VERBOSE) and dropbear (``-E``).

Real OpenSSH clients fail on each list against them, and a raw socket sends a bad banner;
tcpdump captures the same connections, and `kexproxy read` of that capture gives each
connection's real client port and failing lists, for the log's records to agree with. The
journal samples (``-o json`` and ``-o short-iso``) are built from the same real lines, as
journald would store them: journald does not run in this container.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from kexproxy.core.lists import kind_of
from kexproxy.schema import session_record_schema
from kexproxy.sinks.store import SessionStore
from tests.peers.capture import Tcpdump
from tests.peers.clients import run_ssh
from tests.peers.servers import Dropbear, Sshd

#: The sshd's lists: each client below leaves one of them without a match.
SSHD_CONFIG = [
    "KexAlgorithms curve25519-sha256",
    "HostKeyAlgorithms ssh-ed25519",
    "Ciphers aes128-ctr",
    "MACs hmac-sha2-512",
]
SSHD_CLIENTS: dict[str, tuple[str, ...]] = {
    "kex_algorithms": ("-oKexAlgorithms=diffie-hellman-group14-sha1",),
    "server_host_key_algorithms": ("-oHostKeyAlgorithms=rsa-sha2-256",),
    "encryption_algorithms_client_to_server": ("-oCiphers=aes256-ctr",),
    "mac_algorithms_client_to_server": ("-oMACs=hmac-sha1",),
}
#: Debian's dropbear 2022.83: no group1 kex, no nistp521 key, no CBC, no SHA-512 MAC.
DROPBEAR_CLIENTS: dict[str, tuple[str, ...]] = {
    "kex_algorithms": ("-oKexAlgorithms=diffie-hellman-group1-sha1",),
    "server_host_key_algorithms": ("-oHostKeyAlgorithms=ecdsa-sha2-nistp521",),
    "encryption_algorithms_client_to_server": ("-oCiphers=aes128-cbc",),
    "mac_algorithms_client_to_server": ("-oCiphers=aes128-ctr", "-oMACs=hmac-sha2-512"),
}
BAD_BANNER = {"openssh": b"GET / HTTP/1.0\r\n\r\n", "dropbear": b"SSH-1.5-ancient\r\n"}


def kexproxy(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "kexproxy", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )


@dataclass
class Run:
    """One server's log after the failing clients, and what the capture says of them."""

    log: bytes
    #: Client port -> the lists the capture shows failing for that connection.
    captured: dict[int, list[str]]
    #: Client port -> the list each client was made to fail on ("banner" for the raw one).
    expected: dict[int, str]


def _bad_banner(port: int, data: bytes) -> int:
    """Sends `data` instead of an identification line; returns the client's port."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        own = sock.getsockname()[1]
        sock.sendall(data)
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass
    return int(own)


def _wait(server: Sshd | Dropbear, pattern: str, count: int) -> None:
    deadline = time.monotonic() + 15
    while len(server.log_lines(pattern)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(server.log_lines(pattern)) >= count, server.log_text()


def _run(server: Sshd | Dropbear, clients: dict[str, tuple[str, ...]], tmp: Path, kind: str) -> Run:
    pcap = tmp / f"{kind}.pcap"
    with Tcpdump(pcap, server.port):
        for opts in clients.values():
            result = run_ssh(server.port, *opts)
            assert result.returncode != 0, result
        banner_port = _bad_banner(server.port, BAD_BANNER[kind])
        if kind == "openssh":
            _wait(server, "Unable to negotiate|banner exchange", len(clients) + 1)
        else:
            _wait(server, "Exit before auth|Early exit", len(clients) + 1)
    read = kexproxy("read", "--json", str(pcap))
    assert read.returncode == 0, read.stderr
    captured: dict[int, list[str]] = {}
    for line in read.stdout.decode().splitlines():
        record = json.loads(line)
        captured[record["client"]["port"]] = [f["list"] for f in record["failures"]]
    # Each client's connection is the one whose capture fails on the list it was made to.
    expected = {banner_port: "banner"}
    for listname in clients:
        kind = kind_of(listname).kind
        ports = [
            p
            for p, lists in captured.items()
            if listname in lists and {kind_of(n).kind for n in lists} == {kind}
        ]
        assert len(ports) == 1, (listname, captured)
        expected[ports[0]] = listname
    return Run(server.log_path.read_bytes(), captured, expected)


@pytest.fixture(scope="module")
def sshd_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    with Sshd(SSHD_CONFIG, log_level="VERBOSE") as sshd:
        yield _run(sshd, SSHD_CLIENTS, tmp_path_factory.mktemp("sshd"), "openssh")


@pytest.fixture(scope="module")
def dropbear_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    with Dropbear(login=False) as dropbear:
        yield _run(dropbear, DROPBEAR_CLIENTS, tmp_path_factory.mktemp("dropbear"), "dropbear")


def records_of(result: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    schema = session_record_schema()
    out = []
    for line in result.stdout.decode().splitlines():
        record = json.loads(line)
        jsonschema.validate(record, schema)
        out.append(record)
    return out


def _check(records: list[dict[str, Any]], run: Run, server: str) -> None:
    by_port = {r["client"]["port"]: r for r in records}
    assert set(by_port) == set(run.expected)  # one record per failing connection, no other
    for port, listname in run.expected.items():
        record = by_port[port]
        assert record["source"] == "log"
        assert record["client"] == {"ip": "127.0.0.1", "port": port}
        if listname == "banner":
            assert record["outcome"] == "not_ssh"
            assert record["failures"] == []
            continue
        assert record["outcome"] == "failed"
        (failure,) = record["failures"]
        assert failure["list"] == listname
        assert failure["list"] in run.captured[port]
        rejection = record["rejections"]["server"]
        assert rejection["list"] == listname
        if server == "openssh":
            assert rejection["their_offer"] == failure["client_offer"]
            assert rejection["their_offer"], record
            assert rejection["message"].startswith(
                f"Unable to negotiate with 127.0.0.1 port {port}"
            )
            assert not rejection["message"].endswith("[preauth]")
        else:
            assert rejection["native"].endswith("No matching algo " + _dropbear_word(listname))


def _dropbear_word(listname: str) -> str:
    from kexproxy.core.sshdlog import DROPBEAR_LISTS

    return next(word for word, rfc in DROPBEAR_LISTS.items() if rfc == listname)


def test_sshd_stderr_gives_a_record_per_failure_with_the_real_client_port(sshd_run: Run) -> None:
    records = records_of(kexproxy("logs", "--json", "-", stdin=sshd_run.log))
    _check(records, sshd_run, "openssh")
    for record in records:
        # LogLevel VERBOSE: "Connection from A port P on B port Q" names the server.
        assert record["server"]["ip"] == "127.0.0.1" and record["server"]["port"] > 0
    kex = next(r for r in records if r["failures"] and r["failures"][0]["list"] == "kex_algorithms")
    assert kex["rejections"]["server"]["their_offer"][0] == "diffie-hellman-group14-sha1"
    assert [f["side"] for f in kex["diagnosis"]["fixes"]] == ["server"]


def test_dropbear_stderr_gives_a_record_per_failure(dropbear_run: Run) -> None:
    records = records_of(kexproxy("logs", "--json", "-", stdin=dropbear_run.log))
    _check(records, dropbear_run, "dropbear")
    assert all(r["started"] is not None for r in records)  # "[pid] Dec 07 18:07:00"


def _journal(log: bytes) -> list[dict[str, str]]:
    """sshd -e's real lines as journald would keep them: a pid per connection, a time each."""
    entries = []
    pid = 1000
    when = 1_796_666_509_000_000
    for raw in log.decode().splitlines():
        line = raw.rstrip("\r")
        if line.startswith("Connection from "):
            pid += 1
        when += 250_000
        entries.append(
            {
                "__REALTIME_TIMESTAMP": str(when),
                "_HOSTNAME": "bastion",
                "_PID": str(pid),
                "SYSLOG_IDENTIFIER": "sshd",
                "MESSAGE": line,
            }
        )
    return entries


def test_journal_json_and_short_iso_give_the_same_records(sshd_run: Run, tmp_path: Path) -> None:
    entries = _journal(sshd_run.log)
    as_json = "".join(json.dumps(e) + "\n" for e in entries).encode()
    from_json = records_of(kexproxy("logs", "--json", "-", stdin=as_json))
    iso = tmp_path / "journal.txt"
    iso.write_text(
        "".join(
            time.strftime(
                "%Y-%m-%dT%H:%M:%S+0000", time.gmtime(int(e["__REALTIME_TIMESTAMP"]) // 10**6)
            )
            + f" {e['_HOSTNAME']} sshd[{e['_PID']}]: {e['MESSAGE']}\n"
            for e in entries
        )
    )
    from_iso = records_of(kexproxy("logs", "--json", str(iso)))
    _check(from_json, sshd_run, "openssh")
    _check(from_iso, sshd_run, "openssh")
    for one, other in zip(from_json, from_iso, strict=True):
        assert one["server_host"] == other["server_host"] == "bastion"
        assert one["started"][:19] == other["started"][:19]
        assert one["rejections"] == other["rejections"]
        assert one["notes"] == other["notes"]
        assert other["capture"] == str(iso)


def test_table_and_store(sshd_run: Run, tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(sshd_run.log)
    db = tmp_path / "fleet.db"
    table = kexproxy("logs", "--store", str(db), str(log))
    assert table.returncode == 0, table.stderr
    text = table.stdout.decode()
    assert "auth.log" in text and "no match: kex" in text
    assert "Unable to negotiate with 127.0.0.1 port" in text
    store = SessionStore.open(db, readonly=True)
    try:
        stored = store.sessions()
    finally:
        store.close()
    assert {s.record.client["port"] for s in stored} == set(sshd_run.expected)
    assert {s.record.source for s in stored} == {"log"}


def test_bad_inputs_say_so_and_the_rest_is_read(sshd_run: Run, tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(sshd_run.log)
    result = kexproxy("logs", "--json", str(tmp_path / "missing.log"), str(log))
    assert result.returncode == 2
    assert b"missing.log" in result.stderr
    assert len(result.stdout.decode().splitlines()) == len(sshd_run.expected)
    twice = kexproxy("logs", "-", "-")
    assert twice.returncode == 2 and b"only once" in twice.stderr
    other = tmp_path / "syslog"
    other.write_text("Dec  7 18:01:49 h CRON[1]: session opened\n")
    quiet = kexproxy("logs", str(other))
    assert quiet.returncode == 0
    assert b"none of its 1 lines is sshd's or dropbear's" in quiet.stderr


def test_help_teaches() -> None:
    result = kexproxy("logs", "--help")
    assert result.returncode == 0
    assert b"journalctl -u ssh -o json" in result.stdout
    assert b"--year" in result.stdout


def test_records_come_out_while_the_log_is_still_being_written() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kexproxy", "logs", "--json", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=dict(os.environ),
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(
            b"Unable to negotiate with 10.0.0.5 port 7: no matching MAC found. "
            b"Their offer: hmac-sha1 [preauth]\r\n"
        )
        proc.stdin.flush()
        ready, _w, _x = select.select([proc.stdout], [], [], 30)
        assert ready, "no record before the end of the input"
        record = json.loads(proc.stdout.readline())
        assert record["client"] == {"ip": "10.0.0.5", "port": 7}
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == 0
