"""Older sshd's verdict lines: each wording OpenSSH has used, from its own format strings
(openssh-portable, tags V_5_3_P1 to V_7_2_P1), since no such sshd runs here:

- up to 6.7, kex.c:choose_enc/choose_mac/choose_comp: ``fatal("no matching cipher found:
  client %s server %s", ...)``, ``choose_kex``: "Unable to negotiate a key exchange method",
  ``choose_hostkeyalg``: "no hostkey alg": no peer named, both lists for a cipher, MAC or
  compression;
- 6.8 and 6.9, packet.c:sshpkt_fatal: ``fatal("%s%sConnection to %.200s: %s", tag, ...)``
  with ``tag`` ssh_dispatch_run_fatal's own name and ssherr.c's words, no lists;
- 7.0 and 7.1: ``fatal("Unable to negotiate with %.200s: %s. Their offer: %s", ...)``;
- 7.2: the same with " port %d", still through fatal() ("fatal: " first); 7.3 on, logdie().
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC
from pathlib import Path

from kexproxy.core.sshdlog import LogFinding, SshdLogReader
from kexproxy.core.sshdlog_record import finding_record
from tests.builders import assert_valid_record

OLD = """\
Mar  3 10:00:00 h sshd[1]: fatal: Unable to negotiate with 10.0.0.1 port 5555: no matching key exchange method found. Their offer: diffie-hellman-group1-sha1 [preauth]
Mar  3 10:00:01 h sshd[2]: Connection from 10.0.0.2 port 5556 on 10.0.0.9 port 22
Mar  3 10:00:01 h sshd[2]: fatal: Unable to negotiate with 10.0.0.2: no matching cipher found. Their offer: aes128-cbc,3des-cbc [preauth]
Mar  3 10:00:02 h sshd[3]: fatal: Unable to negotiate with 10.0.0.3: no matching MAC found. Their offer: hmac-md5 [preauth]
Mar  3 10:00:03 h sshd[4]: fatal: ssh_dispatch_run_fatal: Connection to 10.0.0.4: no matching host key type found [preauth]
Mar  3 10:00:04 h sshd[5]: Connection from 10.0.0.5 port 5557 on 10.0.0.9 port 22
Mar  3 10:00:04 h sshd[5]: fatal: no matching cipher found: client aes128-cbc,3des-cbc server aes256-ctr,aes128-ctr [preauth]
Mar  3 10:00:05 h sshd[6]: fatal: Unable to negotiate a key exchange method [preauth]
Mar  3 10:00:06 h sshd[7]: Connection from 10.0.0.6 port 5558 on 10.0.0.9 port 22
Mar  3 10:00:06 h sshd[7]: fatal: no hostkey alg [preauth]
Mar  3 10:00:07 h sshd[8]: Connection from 10.0.0.7 port 5559 on 10.0.0.9 port 22
Mar  3 10:00:07 h sshd[8]: fatal: no matching comp found: client zlib server none [preauth]
"""


def read(text: str) -> tuple[list[LogFinding], SshdLogReader]:
    reader = SshdLogReader(year=2026, zone=UTC)
    return [f for line in text.splitlines() for f in reader.receive_line(line)], reader


def test_every_older_wording_gives_its_list_and_what_it_names() -> None:
    found, reader = read(OLD)
    got = [
        (f.peer_ip, f.peer_port, f.local_port, f.list, f.their_offer, f.server_offer) for f in found
    ]
    assert got == [
        ("10.0.0.1", 5555, None, "kex_algorithms", ("diffie-hellman-group1-sha1",), ()),
        ("10.0.0.2", 5556, 22, "encryption_algorithms_client_to_server", ("aes128-cbc", "3des-cbc"), ()),
        ("10.0.0.3", 0, None, "mac_algorithms_client_to_server", ("hmac-md5",), ()),
        ("10.0.0.4", 0, None, "server_host_key_algorithms", (), ()),
        (
            "10.0.0.5", 5557, 22, "encryption_algorithms_client_to_server",
            ("aes128-cbc", "3des-cbc"), ("aes256-ctr", "aes128-ctr"),
        ),
        ("10.0.0.6", 5558, 22, "server_host_key_algorithms", (), ()),
        ("10.0.0.7", 5559, 22, "compression_algorithms_client_to_server", ("zlib",), ("none",)),
    ]  # fmt: skip
    # sshd[6]'s line names no peer and no "Connection from" line of sshd[6] came before.
    assert reader.unaddressed == 1
    assert [f.reason for f in found][4:] == [
        "no matching cipher found",
        "no matching host key type found",
        "no matching compression method found",
    ]
    # The line as sshd wrote it, "fatal: " and all, but for " [preauth]".
    assert found[4].message == (
        "fatal: no matching cipher found: client aes128-cbc,3des-cbc server aes256-ctr,aes128-ctr"
    )
    port_notes = [f for f in found if any("does not log the peer's port" in n for n in f.notes)]
    assert [f.peer_ip for f in port_notes] == ["10.0.0.3", "10.0.0.4"]


def test_an_old_verdict_with_both_lists_becomes_a_record_with_the_servers_list() -> None:
    found, _reader = read(OLD)
    record = finding_record(found[4], capture="auth.log")
    assert_valid_record(record)
    assert record.failures == [
        {
            "list": "encryption_algorithms_client_to_server",
            "client_offer": ["aes128-cbc", "3des-cbc"],
            "server_offer": ["aes256-ctr", "aes128-ctr"],
        }
    ]
    assert record.rejections["server"]["their_offer"] == ["aes128-cbc", "3des-cbc"]  # type: ignore[index]
    assert record.server == {"ip": "10.0.0.9", "port": 22}


def test_an_old_verdict_naming_another_address_than_its_connection_is_not_joined() -> None:
    text = """\
Mar  3 10:00:01 h sshd[2]: Connection from 10.0.0.2 port 5556 on 10.0.0.9 port 22
Mar  3 10:00:01 h sshd[2]: fatal: Unable to negotiate with 10.0.0.8: no matching cipher found. Their offer: a [preauth]
"""
    (only,), _reader = read(text)
    assert (only.peer_ip, only.peer_port, only.local_ip) == ("10.0.0.8", 0, None)


def test_lookalike_old_lines_give_nothing() -> None:
    text = """\
Mar  3 10:00:01 h sshd[2]: fatal: no matching cipher found: client a b server c
Mar  3 10:00:01 h sshd[2]: fatal: X: Connection to not an address: no matching cipher found
Mar  3 10:00:01 h sshd[2]: fatal: Unable to negotiate with 10.0.0.1 port 99999: no matching cipher found. Their offer: a
Mar  3 10:00:01 h sshd[2]: fatal: no matching frobs found: client a server b
"""
    found, reader = read(text)
    assert found == [] and reader.unaddressed == 0


def test_an_old_line_is_native_and_message_is_todays_wording() -> None:
    found, _reader = read(OLD)
    kex = finding_record(found[0], capture=None).rejections["server"]
    assert kex == {
        "list": "kex_algorithms",
        "reason": "no matching key exchange method found",
        "their_offer": ["diffie-hellman-group1-sha1"],
        "message": "Unable to negotiate with 10.0.0.1 port 5555: no matching key exchange "
        "method found. Their offer: diffie-hellman-group1-sha1",
        "native": "fatal: Unable to negotiate with 10.0.0.1 port 5555: no matching key "
        "exchange method found. Their offer: diffie-hellman-group1-sha1",
    }
    for finding in found:
        assert_valid_record(finding_record(finding, capture=None))


def test_logs_says_how_many_old_verdicts_named_no_peer(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(OLD)
    done = subprocess.run(
        [sys.executable, "-m", "kexproxy", "logs", "--json", str(log)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 7
    assert (
        b'1 verdict of sshd before 6.8 not recorded: such a line names no peer, and no "Connection '
        b'from" line of the same sshd process came before it' in done.stderr
    )
