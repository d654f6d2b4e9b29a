"""The live relay between real SSH implementations on loopback: records match what they said.

Each test puts the proxy between a real client (OpenSSH ssh, dbclient, plink, asyncssh)
and a real server (sshd, dropbear) and compares the record with what the client printed
and what the server logged. Through a relay neither peer sees the other's address: the
client's messages name the proxy's listen address and sshd's name the proxy's
upstream-side address, and so must the record's rejection messages.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from kexproxy.core.record import SessionRecord
from kexproxy.pipeline import capture_records
from tests.builders import assert_valid_record, client_offer, ident, kexinit, server_offer
from tests.peers import (
    Dropbear,
    Sshd,
    Tcpdump,
    client_key,
    python_module_or_skip,
    run_asyncssh,
    run_command,
    run_dbclient,
    run_plink,
    run_ssh,
    which_or_skip,
)
from tests.sources.proxy_harness import (
    LOOPBACK,
    RunningProxy,
    Upstream,
    config,
    recv_until_eof,
    refused_port,
    reset,
)

pytestmark = pytest.mark.peers

PREAUTH = " [preauth]"


class BusySshd(Sshd):
    """Sshd taking 1000 unauthenticated connections at once.

    sshd keeps the last MaxStartups line it reads (unlike most keywords), so the fixture's
    own "MaxStartups 100:30:200" cannot be overridden through extra_config.
    """

    def _prepare(self) -> None:
        super()._prepare()
        self.config_text = re.sub(r"(?m)^MaxStartups .*$", "MaxStartups 1000", self.config_text)
        self.config_path.write_text(self.config_text)


def relay_note_ports(record: SessionRecord) -> tuple[int, int]:
    """The ports the client and the server saw as their peer, from the relay's note."""
    note = next(n for n in record.notes if n.startswith("relayed by kexproxy"))
    found = re.findall(r"saw its peer as \S+ port (\d+)", note)
    return int(found[0]), int(found[1])


def sshd_says(sshd: Sshd, record: SessionRecord) -> str:
    """sshd's last word on this session: its line naming the port it saw the proxy on."""
    _client_view, server_view = relay_note_ports(record)
    pattern = (
        rf"^(Unable to negotiate with|Connection closed by) 127\.0\.0\.1 port {server_view}\b.*$"
    )
    return sshd.wait_log(pattern).group(0)


def only_final(proxy: RunningProxy) -> SessionRecord:
    [record] = proxy.wait_finals(1)
    assert_valid_record(record)
    return record


def debug_value(stderr: str, pattern: str) -> str:
    match = re.search(pattern, stderr, re.MULTILINE)
    assert match, f"{pattern!r} not in ssh -v output"
    return match.group(1).rstrip("\r")


def test_openssh_success_is_recorded_as_the_client_negotiated_it() -> None:
    with Sshd() as sshd, RunningProxy(config(sshd.port)) as proxy:
        result = run_ssh(proxy.port, "-v", command="echo hello")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "hello\n"
        record = only_final(proxy)
        fingerprint = sshd.host_key_fingerprint("ed25519")
    err = result.stderr
    assert record.outcome == "negotiated"
    assert record.client_banner == debug_value(err, r"Local version string (\S+.*)$")
    assert record.server_banner == "SSH-2.0-" + debug_value(
        err, r"remote software version (\S+.*)$"
    )
    negotiated = record.negotiated or {}
    assert negotiated["kex"] == debug_value(err, r"kex: algorithm: (\S+)")
    assert negotiated["host_key"] == debug_value(err, r"kex: host key algorithm: (\S+)")
    assert negotiated["cipher_s2c"] == debug_value(err, r"kex: server->client cipher: (\S+)")
    assert negotiated["mac_s2c"] == debug_value(err, r"kex: server->client cipher: \S+ MAC: (\S+)")
    assert record.host_key is not None
    assert record.host_key["sha256"] == debug_value(err, r"Server host key: \S+ (SHA256:\S+)")
    assert record.host_key["sha256"] == fingerprint
    assert record.evidence["how"] == "fin"
    assert record.bytes["c2s"] > 1000 and record.bytes["s2c"] > 1000


FAILURES = {
    "kex": (
        ["KexAlgorithms curve25519-sha256"],
        ("ed25519",),
        ["-oKexAlgorithms=diffie-hellman-group14-sha256"],
        "kex_algorithms",
    ),
    "host key": (
        [],
        ("ed25519",),
        ["-oHostKeyAlgorithms=rsa-sha2-512"],
        "server_host_key_algorithms",
    ),
    "cipher": (
        ["Ciphers aes128-ctr"],
        ("ed25519",),
        ["-oCiphers=aes256-gcm@openssh.com"],
        "encryption_algorithms_server_to_client",
    ),
    "mac": (
        ["Ciphers aes128-ctr", "MACs hmac-sha2-256"],
        ("ed25519",),
        ["-oCiphers=aes128-ctr", "-oMACs=hmac-sha1"],
        "mac_algorithms_server_to_client",
    ),
}


@pytest.mark.parametrize("kind", list(FAILURES))
def test_openssh_failures_carry_the_messages_client_and_sshd_printed(kind: str) -> None:
    server_config, host_keys, client_opts, client_list = FAILURES[kind]
    with Sshd(server_config, host_keys=host_keys) as sshd, RunningProxy(config(sshd.port)) as proxy:
        result = run_ssh(proxy.port, *client_opts)
        record = only_final(proxy)
        logged = sshd_says(sshd, record)
    assert result.returncode == 255
    assert record.outcome == "failed"
    client_rejection = record.rejections["client"]
    server_rejection = record.rejections["server"]
    assert client_rejection["list"] == client_list
    # Word for word what the real client printed, naming the proxy's listen address ...
    assert client_rejection["message"] == result.negotiation_message
    assert f"with 127.0.0.1 port {proxy.port}:" in client_rejection["message"]
    # ... and what sshd logged, naming the proxy's upstream-side address.
    assert logged.endswith(PREAUTH)
    assert server_rejection["message"] == logged.removesuffix(PREAUTH)
    client_view, _server_view = relay_note_ports(record)
    assert client_view == proxy.port
    assert record.evidence["disconnects"] == []  # OpenSSH closes with a plain FIN


def test_dbclient_through_the_proxy() -> None:
    with (
        Sshd(["Ciphers aes128-ctr"], host_keys=("ed25519",)) as sshd,
        RunningProxy(config(sshd.port)) as proxy,
    ):
        good = run_dbclient(proxy.port, "-c", "aes128-ctr", command="echo db")
        negotiated = only_final(proxy)
        bad = run_dbclient(proxy.port, "-c", "aes256-ctr")
        failed = proxy.wait_finals(2)[1]
        logged = sshd_says(sshd, failed)
    assert good.returncode == 0, good.stderr
    assert good.stdout == "db\n"
    assert negotiated.outcome == "negotiated"
    assert (negotiated.client_banner or "").startswith("SSH-2.0-dropbear")
    assert "No matching algo enc c->s" in bad.stderr
    assert "encryption_algorithms_client_to_server" in failed.failing_lists
    assert failed.rejections["server"]["message"] == logged.removesuffix(PREAUTH)


def test_plink_through_the_proxy() -> None:
    with (
        Sshd(
            ["Ciphers aes128-ctr", "MACs umac-128-etm@openssh.com"], host_keys=("ed25519",)
        ) as bad_sshd,
        RunningProxy(config(bad_sshd.port)) as proxy,
    ):
        bad = run_plink(proxy.port)
        failed = only_final(proxy)
        logged = sshd_says(bad_sshd, failed)
    with Sshd(host_keys=("ed25519",)) as sshd, RunningProxy(config(sshd.port)) as proxy:
        good = run_plink(proxy.port, hostkey=sshd.host_key_fingerprint("ed25519"), command="echo p")
        negotiated = only_final(proxy)
    assert good.returncode == 0, good.stderr
    assert good.stdout == "p\n"
    assert negotiated.outcome == "negotiated"
    assert (negotiated.client_banner or "").startswith("SSH-2.0-PuTTY_")
    assert bad.returncode != 0
    assert "umac-128-etm@openssh.com" in bad.stderr
    assert failed.server_kexinit is not None
    if failed.client_kexinit is None:
        # plink sometimes gives up on the server's KEXINIT before sending its own: then
        # neither sshd nor the record can name a failure, and both say so.
        assert failed.outcome == "incomplete"
        assert logged.startswith("Connection closed by")
    else:
        assert failed.outcome == "failed"
        assert failed.rejections["client"]["their_offer"] == ["umac-128-etm@openssh.com"]
        assert failed.rejections["server"]["message"] == logged.removesuffix(PREAUTH)


def test_dropbear_server_through_the_proxy() -> None:
    with Dropbear() as dropbear, RunningProxy(config(dropbear.port)) as proxy:
        bad = run_ssh(proxy.port, "-oCiphers=aes128-gcm@openssh.com")
        failed = only_final(proxy)
        if dropbear.login_supported:
            good = run_ssh(proxy.port, command="echo dropbear")
            assert good.returncode == 0, good.stderr
            assert good.stdout == "dropbear\n"
        else:
            good = run_ssh(proxy.port, command=None, timeout=10)
        records = proxy.wait_finals(2)
    assert failed.outcome == "failed"
    assert failed.rejections["client"]["message"] == bad.negotiation_message
    assert (failed.server_banner or "").startswith("SSH-2.0-dropbear_")
    assert records[1].outcome == "negotiated"


def test_a_50_mb_transfer_arrives_byte_identical() -> None:
    payload = os.urandom(50 * 1024 * 1024)
    with (
        tempfile.TemporaryDirectory(prefix="kexproxy-xfer-") as tmp,
        Sshd(host_keys=("ed25519",)) as sshd,
        RunningProxy(config(sshd.port)) as proxy,
    ):
        target = Path(tmp) / "received"
        ssh = which_or_skip("ssh")
        argv = [
            ssh,
            "-F",
            "/dev/null",
            "-oBatchMode=yes",
            "-oStrictHostKeyChecking=no",
            "-oUserKnownHostsFile=/dev/null",
            "-oIdentitiesOnly=yes",
            "-i",
            str(client_key()),
            "-p",
            str(proxy.port),
            f"root@{LOOPBACK}",
            f"cat > {target}",
        ]
        result = run_command(argv, stdin=payload, timeout=60)
        assert result.returncode == 0, result.stderr
        record = only_final(proxy)
        received = target.read_bytes()
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(payload).hexdigest()
    assert record.outcome == "negotiated"
    assert record.bytes["c2s"] > len(payload)


_MANY_CLIENTS = r"""
import asyncio, collections, json, sys
import asyncssh
port, count = int(sys.argv[1]), int(sys.argv[2])

async def one():
    try:
        async with asyncssh.connect("127.0.0.1", port, known_hosts=None, username="root",
                                    agent_path=None, config=None, client_keys=None,
                                    kex_algs=["diffie-hellman-group1-sha1"],
                                    login_timeout=30, connect_timeout=30):
            return "connected"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"

async def main():
    results = await asyncio.gather(*(one() for _ in range(count)))
    print(json.dumps(collections.Counter(results)))

asyncio.run(main())
"""


def test_stress_200_concurrent_handshakes_with_misbehaving_neighbours() -> None:
    """200 real handshakes at once, next to garbage, a slowloris, a vanishing peer and a
    refused upstream: every session recorded, none of the 200 disturbed."""
    python_module_or_skip("asyncssh")
    count = 200
    with (
        BusySshd(host_keys=("ed25519",)) as sshd,
        RunningProxy(
            config(sshd.port, handshake_timeout=2.0),
            config(nobody := refused_port()),
        ) as proxy,
    ):
        stop = threading.Event()
        odd: dict[str, int] = {}

        def garbage() -> None:
            with proxy.connect() as sock:
                odd["garbage"] = sock.getsockname()[1]
                sock.sendall(os.urandom(4096))
                # sshd answers "Invalid SSH identification string." and closes; the
                # unread garbage may turn that close into an RST.
                with contextlib.suppress(ConnectionResetError):
                    recv_until_eof(sock)

        def slowloris() -> None:
            with proxy.connect() as sock:
                odd["slowloris"] = sock.getsockname()[1]
                for byte in b"SSH-2.0-slowly-very-slowly":
                    if stop.wait(0.2):
                        break
                    sock.send(bytes([byte]))

        def vanish() -> None:
            sock = proxy.connect()
            odd["vanish"] = sock.getsockname()[1]
            flight = ident("vanisher") + kexinit(client_offer())
            sock.sendall(flight[: len(flight) - 40])
            time.sleep(0.5)
            reset(sock)

        def refused() -> None:
            with socket.socket() as sock:
                sock.bind((LOOPBACK, 0))  # the port is known even if connect() is reset
                odd["refused"] = sock.getsockname()[1]
                with contextlib.suppress(ConnectionResetError):
                    sock.connect((LOOPBACK, proxy.addresses[1].port))
                    sock.sendall(ident("refused"))
                    recv_until_eof(sock)

        threads = [threading.Thread(target=f) for f in (garbage, slowloris, vanish, refused)]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        result = run_command(
            [sys.executable, "-c", _MANY_CLIENTS, str(proxy.port), str(count)], timeout=60
        )
        elapsed = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        outcomes = json.loads(result.stdout)
        time.sleep(max(0.0, 2.5 - elapsed))  # past the slowloris's handshake timeout
        stop.set()
        for thread in threads:
            thread.join(10)
        records = proxy.wait_finals(count + 4, timeout=30)
    # Every one of the 200 got the failure its offer deserves, none was lost or reset. Both
    # peers compute the failure; when sshd's FIN arrives before asyncssh has read sshd's
    # KEXINIT, asyncssh reports the lost connection instead: the race exists without a relay.
    failed = [m for m in outcomes if m.startswith("KeyExchangeFailed: No matching key exchange")]
    assert set(outcomes) <= {*failed, "ConnectionLost: Connection lost"}, outcomes
    assert sum(outcomes.values()) == count
    assert len(records) == count + 4
    assert len({r.id for r in records}) == len(records)
    many = [r for r in records if (r.client_banner or "").startswith("SSH-2.0-AsyncSSH")]
    assert len(many) == count
    assert all(r.outcome == "failed" and r.failing_lists == ["kex_algorithms"] for r in many)
    # asyncssh says why it gives up (a DISCONNECT) whenever it got to decide.
    disconnected = [r for r in many if r.evidence["disconnects"]]
    assert len(disconnected) == sum(outcomes[m] for m in failed)
    assert all(r.evidence["first_close"] == "server" for r in many if r not in disconnected)
    # Keyed by both ports: Linux may give two connections to different ports one source port.
    by_port = {(r.client["port"], r.server["port"]): r for r in records}
    # sshd refuses the garbage with a line of text and closes; when its close is an RST (the
    # garbage left unread), the RST can discard that line before the relay reads it, and the
    # record is then "incomplete" (sshd's banner seen, no KEXINITs), as the contract says.
    garbage = by_port[odd["garbage"], sshd.port]
    assert garbage.outcome in ("not_ssh", "aborted", "incomplete")
    assert garbage.client_banner is None and garbage.negotiated is None
    slow = by_port[odd["slowloris"], sshd.port]
    assert "did not finish within 2 s" in (slow.evidence["timeout"] or "") or (
        "sent nothing" in (slow.evidence["timeout"] or "")
    )
    vanished = by_port[odd["vanish"], sshd.port]
    assert vanished.evidence["first_close"] == "client"
    assert vanished.evidence["how"] == "rst"
    turned_away = by_port[odd["refused"], nobody]
    assert turned_away.outcome == "aborted"
    assert any("refused the connection" in n for n in turned_away.notes)


def test_asyncssh_disconnect_is_evidence() -> None:
    """asyncssh, unlike OpenSSH, says why it gives up: the DISCONNECT is the evidence.

    The server is scripted and never closes, so asyncssh always rejects first (against
    sshd the two race, and a FIN from sshd may come before asyncssh's DISCONNECT).
    """
    server_flight = ident("OpenSSH_9.2p1") + kexinit(server_offer(kex=["curve25519-sha256"]))

    def handler(conn: socket.socket) -> None:
        conn.sendall(server_flight)
        recv_until_eof(conn)

    with Upstream(handler) as up, RunningProxy(config(up.port)) as proxy:
        result = run_asyncssh(proxy.port, kex_algs=["diffie-hellman-group14-sha256"])
        record = only_final(proxy)
    assert result.returncode == 1
    assert "KeyExchangeFailed" in result.stderr
    assert record.outcome == "failed"
    assert record.evidence["first_close"] == "client"
    assert record.evidence["how"] == "disconnect"
    [disconnect] = record.evidence["disconnects"]
    assert disconnect["sender"] == "client"
    assert disconnect["reason"] == "SSH_DISCONNECT_KEY_EXCHANGE_FAILED"
    assert disconnect["description"] in result.stderr


#: Fields that differ between the proxy's record and a capture's by nature: who made the
#: record, when, how many bytes, and the endpoints (each leg of a relay has its own).
SOURCE_FIELDS = {"id", "source", "capture", "started", "ended", "bytes", "client", "server"}


def comparable(record: SessionRecord) -> dict[str, object]:
    """The record without what depends on the source, times taken out of nested lists."""
    data = {k: v for k, v in assert_valid_record(record).items() if k not in SOURCE_FIELDS}
    data.pop("notes")  # the proxy notes the relay; a capture notes nothing of it
    data["rejections"] = {
        # Both name the peer as that side saw it (an OpenSSH side's native words are its
        # message): compared per leg below.
        side: {k: v for k, v in (rejection or {}).items() if k not in ("message", "native")}
        for side, rejection in data["rejections"].items()
    }
    evidence = dict(data["evidence"])
    # Who closed first is a matter of vantage point when both closes cross in flight: it is
    # checked apart from the rest (see the test).
    evidence.pop("first_close")
    evidence["closes"] = sorted(
        json.dumps({k: v for k, v in c.items() if k != "at"}, sort_keys=True)
        for c in evidence["closes"]
    )
    data["evidence"] = evidence
    data["timeline"] = sorted(
        json.dumps({k: v for k, v in e.items() if k != "at"}, sort_keys=True)
        for e in data["timeline"]
    )
    # A recipe's command and Host block name the server as the record does: the proxy's
    # record the real server, a capture of the client's leg the proxy. Checked in the test.
    diagnosis = dict(data["diagnosis"])
    diagnosis["recipes"] = [
        {k: v for k, v in r.items() if k not in ("command", "persist", "scope")}
        for r in diagnosis["recipes"]
    ]
    data["diagnosis"] = diagnosis
    return data


def commands(record: SessionRecord) -> list[str]:
    return [r["command"] for r in (record.diagnosis or {})["recipes"] if r["command"]]


def test_the_proxy_and_read_on_a_capture_of_both_legs_give_the_same_records(
    tmp_path: Path,
) -> None:
    """Real ssh through the proxy to sshd, captured with tcpdump on both legs of the relay.

    Each leg's capture, read by `kexproxy read`, gives the proxy's record but for source,
    id, times, byte counts and endpoints; the client's message is the one from the client's
    leg (it names the proxy's listen port) and sshd's the one from the server's leg.
    """
    cases = {
        "negotiated": [],
        "kex": ["-oKexAlgorithms=diffie-hellman-group14-sha256"],
        "cipher": ["-oCiphers=aes256-gcm@openssh.com"],
        "mac": ["-oCiphers=aes128-ctr", "-oMACs=hmac-sha1"],
    }
    sshd_config = ["KexAlgorithms curve25519-sha256", "Ciphers aes128-ctr", "MACs hmac-sha2-256"]
    with Sshd(sshd_config) as sshd, RunningProxy(config(sshd.port)) as proxy:
        client_leg, server_leg = tmp_path / "client-leg.pcap", tmp_path / "server-leg.pcap"
        with Tcpdump(client_leg, proxy.port), Tcpdump(server_leg, sshd.port):
            results = {}
            for name, opts in cases.items():
                results[name] = run_ssh(proxy.port, *opts)
            finals = proxy.wait_finals(len(cases))
    assert results["negotiated"].returncode == 0, results["negotiated"].stderr
    by_client_port = {r.client["port"]: r for r in capture_records(str(client_leg))}
    by_sshd_view = {r.client["port"]: r for r in capture_records(str(server_leg))}
    assert len(by_client_port) == len(by_sshd_view) == len(cases)
    outcomes = []
    for record in finals:
        assert record.source == "proxy"
        _client_view, server_view = relay_note_ports(record)
        on_client_leg = by_client_port[record.client["port"]]
        on_server_leg = by_sshd_view[server_view]
        assert on_client_leg.server["port"] == proxy.port
        assert on_server_leg.server["port"] == sshd.port
        expected = comparable(record)
        assert comparable(on_client_leg) == expected
        assert comparable(on_server_leg) == expected
        assert all(c.endswith(f" -p {sshd.port} 127.0.0.1") for c in commands(record))
        assert all(c.endswith(f" -p {proxy.port} 127.0.0.1") for c in commands(on_client_leg))
        assert len(commands(record)) == len(commands(on_client_leg))
        # The relay sees each FIN when it reaches it, so its order agrees with at least the
        # leg of the side that closed first; when both legs agree, it agrees with them.
        legs = {on_client_leg.evidence["first_close"], on_server_leg.evidence["first_close"]}
        assert record.evidence["first_close"] in legs
        for side, leg in (("client", on_client_leg), ("server", on_server_leg)):
            mine = record.rejections.get(side)
            theirs = leg.rejections.get(side)
            assert (mine or {}).get("message") == (theirs or {}).get("message"), side
            assert (mine or {}).get("native") == (theirs or {}).get("native"), side
        outcomes.append(record.outcome)
    assert sorted(outcomes) == ["failed", "failed", "failed", "negotiated"]
    for name in ("kex", "cipher", "mac"):
        message = results[name].negotiation_message
        assert message is not None
        assert any(r.rejections["client"]["message"] == message for r in finals if r.failures)


def test_a_client_that_refuses_the_host_key_aborted_after_the_key_exchange() -> None:
    """ssh that does not know the host key gives up between the server's NEWKEYS and its own:
    both sides agreed on every list, but the client did not go on."""
    with Sshd() as sshd, RunningProxy(config(sshd.port)) as proxy:
        result = run_ssh(proxy.port, "-oStrictHostKeyChecking=yes")
        record = only_final(proxy)
    assert result.returncode == 255
    assert "Host key verification failed." in result.stderr
    assert record.outcome == "aborted"
    assert record.failures == [] and record.negotiated is not None
    assert record.host_key is not None  # the key it refused is in the record
    assert any("the client closed without sending SSH_MSG_NEWKEYS" in n for n in record.notes)
    events = [(e["from"], e["event"]) for e in record.timeline]
    assert ("server", "SSH_MSG_NEWKEYS") in events
    assert ("client", "SSH_MSG_NEWKEYS") not in events


def test_sshd_past_max_startups_refuses_before_its_banner() -> None:
    """sshd over MaxStartups answers "Exceeded MaxStartups" instead of its banner, then closes:
    the client's connection was refused, which is evidence, not an incomplete capture."""
    with Sshd(["MaxStartups 1"]) as sshd, RunningProxy(config(sshd.port)) as proxy:
        holder = socket.create_connection(("127.0.0.1", sshd.port), timeout=10)
        try:
            holder.recv(100)  # sshd's banner: the first connection holds the only slot
            result = run_ssh(proxy.port)
            [record] = proxy.wait_finals(1)
        finally:
            holder.close()
    assert result.returncode == 255
    # sshd closes with the client's banner unread: a reset, which may reach ssh before the
    # line does (ssh then says "reset by peer"); the proxy reads the line first.
    assert re.search(r"Connection (closed by remote host|reset by)", result.stderr)
    assert record.outcome == "aborted"
    assert record.evidence["banner_error"] == "Exceeded MaxStartups"
    assert record.server_banner is None
