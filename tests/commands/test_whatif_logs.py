"""``kexproxy whatif`` over records from a real sshd's log, against that sshd probed now.

Real OpenSSH clients fail on each list against a real sshd (test_logs.py's run, with its
tcpdump capture of the same connections); its ``-e`` log goes into a store with ``logs
--store``; ``whatif --store DB --server 127.0.0.1:PORT`` then probes that sshd. A change
that adds the kex client's name reports that client passing its logged list (and a real
sshd with the changed line lets that very client through negotiation); a change that takes a
name out of a reconfigured sshd's list reports the logged list it shared broken. The log's
records and the capture's records of the same failures get the same sshd_config lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kexproxy import exitcodes
from kexproxy.sinks.store import SessionStore
from tests.commands.test_logs import SSHD_CLIENTS, SSHD_CONFIG, Run, _run, kexproxy, records_of
from tests.peers.clients import run_ssh
from tests.peers.servers import Sshd

KEX_ADDED = "KexAlgorithms +diffie-hellman-group14-sha1"
#: The same sshd after someone let the cipher and MAC clients in: each shares one name.
RECONFIGURED = [
    "KexAlgorithms curve25519-sha256",
    "HostKeyAlgorithms ssh-ed25519",
    "Ciphers aes128-ctr,aes256-ctr",
    "MACs hmac-sha2-512,hmac-sha1",
]


@dataclass
class Logged:
    """The sshd's run, the store its log went into, and its port (still listening)."""

    run: Run
    db: Path
    port: int
    pcap: Path


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    tmp = tmp_path_factory.mktemp("whatif-logs")
    with Sshd(SSHD_CONFIG, log_level="VERBOSE") as sshd:
        run = _run(sshd, SSHD_CLIENTS, tmp, "openssh")
        log = tmp / "auth.log"
        log.write_bytes(run.log)
        db = tmp / "fleet.db"
        stored = kexproxy("logs", "--store", str(db), str(log))
        assert stored.returncode == 0, stored.stderr
        store = SessionStore.open(db, readonly=True)
        try:
            assert {s.record.server_software for s in store.sessions()} == {"OpenSSH"}
        finally:
            store.close()
        yield Logged(run=run, db=db, port=sshd.port, pcap=tmp / "openssh.pcap")


def _lines(result: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def test_adding_the_kex_clients_name_passes_its_logged_list_only(logged: Logged) -> None:
    target = f"127.0.0.1:{logged.port}"
    result = kexproxy(
        "whatif", "--json", "--store", str(logged.db), "--server", target, "--server-change", KEX_ADDED
    )  # fmt: skip
    assert result.returncode == exitcodes.OK, result.stderr
    lines = _lines(result)
    assert {line["source"] for line in lines} == {"log"}
    by_list = {line["logged"]["list"]: line for line in lines}
    assert set(by_list) == set(SSHD_CLIENTS)  # one group per failing client, by its offer
    kex = by_list["kex_algorithms"]
    assert kex["effect"] == "passes_logged_list" and kex["count"] == 1
    assert kex["logged"]["shared_after"] == "diffie-hellman-group14-sha1"
    assert kex["logged"]["shared_before"] is None
    assert kex["outcome"] is None and kex["negotiated"] is None and kex["failures"] == []
    for name in set(SSHD_CLIENTS) - {"kex_algorithms"}:
        line = by_list[name]
        assert line["effect"] == "still_fails_logged_list", line
        assert line["failures"][0]["list"] == name
        assert line["failures"][0]["client_offer"] == line["logged"]["client_offer"]
    table = kexproxy(
        "whatif", "--store", str(logged.db), "--server", target, "--server-change", KEX_ADDED
    )  # fmt: skip
    text = table.stdout.decode()
    assert "clients known only from a server's log" in text
    assert "1 of 4 logged groups (1 of 4 log records) pass their logged list" in text
    assert "3 still fail on it, 0 newly broken" in text
    assert "its other lists are unknown" in text
    assert "negotiates" not in text
    # The prediction holds on a real sshd with the changed line: that client gets past
    # negotiation (it fails only at login), the others still fail on their lists.
    changed = [KEX_ADDED.replace("+", "curve25519-sha256,"), *SSHD_CONFIG[1:]]
    with Sshd(changed) as fixed:
        for opts in SSHD_CLIENTS.values():
            run_ssh(fixed.port, *opts)
        fixed.wait_log("(?s)(Unable to negotiate.*){3}")
        failed = fixed.log_lines("Unable to negotiate")
        assert len(failed) == 3 and not any("key exchange" in line for line in failed), failed


def test_removing_a_shared_name_reports_the_logged_list_broken(logged: Logged) -> None:
    with Sshd(RECONFIGURED) as sshd:
        result = kexproxy(
            "whatif", "--json", "--store", str(logged.db),
            "--server", f"127.0.0.1:{sshd.port}", "--server-change", "MACs -hmac-sha1",
        )  # fmt: skip
    assert result.returncode == exitcodes.CHANGE_BREAKS, result.stderr
    by_list = {line["logged"]["list"]: line for line in _lines(result)}
    mac = by_list["mac_algorithms_client_to_server"]
    assert mac["effect"] == "breaks_logged_list"
    assert mac["logged"]["shared_before"] == "hmac-sha1"
    assert mac["logged"]["removed"] == ["hmac-sha1"]
    assert mac["failures"][0]["server_offer"] == ["hmac-sha2-512"]
    cipher = by_list["encryption_algorithms_client_to_server"]
    assert cipher["effect"] == "still_passes_logged_list"
    assert cipher["logged"]["shared_after"] == "aes256-ctr"
    assert by_list["kex_algorithms"]["effect"] == "still_fails_logged_list"


def test_a_client_change_leaves_logged_records_out_and_says_so(logged: Logged) -> None:
    result = kexproxy(
        "whatif", "--store", str(logged.db), "--server", f"127.0.0.1:{logged.port}",
        "--client-change=-oCiphers=+aes128-ctr",
    )  # fmt: skip
    assert result.returncode == exitcodes.BAD_INPUT
    err = result.stderr.decode()
    assert "4 records from a server's log are left out" in err
    assert "no client offers" in err


def _sshd_config_lines(record: dict[str, Any]) -> list[str]:
    return [
        step["text"]
        for recipe in record["diagnosis"]["recipes"]
        if recipe["side"] == "server"
        for step in recipe["steps"]
        if step["kind"] == "sshd_config"
    ]


def test_a_log_records_fix_is_the_capture_records_sshd_config_line(logged: Logged) -> None:
    from_log = {
        r["client"]["port"]: r
        for r in records_of(kexproxy("logs", "--json", "-", stdin=logged.run.log))
    }
    from_wire = {
        r["client"]["port"]: r for r in records_of(kexproxy("read", "--json", str(logged.pcap)))
    }
    compared = 0
    for port, listname in logged.run.expected.items():
        if listname == "banner":
            continue
        log, wire = from_log[port], from_wire[port]
        assert log["server_software"] == "OpenSSH" and "server_software" not in wire
        assert "unknown software" not in json.dumps(log["diagnosis"]["recipes"])
        log_lines, wire_lines = _sshd_config_lines(log), _sshd_config_lines(wire)
        assert log_lines, (listname, log["diagnosis"])
        # e.g. ["KexAlgorithms +diffie-hellman-group14-sha1"] from both
        assert log_lines == wire_lines, (listname, log_lines, wire_lines)
        compared += 1
    assert compared == len(SSHD_CLIENTS)


def test_explain_names_the_logged_software_and_its_sshd_config_line(logged: Logged) -> None:
    store = SessionStore.open(logged.db, readonly=True)
    try:
        mac = next(
            s.record
            for s in store.sessions()
            if s.record.failing_lists == ["mac_algorithms_client_to_server"]
        )
    finally:
        store.close()
    result = kexproxy("explain", "--store", str(logged.db), mac.id)
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert "server banner: (none; its log shows OpenSSH)" in text
    assert "Server (OpenSSH)" in text and "MACs +hmac-sha1" in text
    assert "unknown software" not in text
