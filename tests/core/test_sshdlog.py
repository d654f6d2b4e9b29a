"""sshd's and dropbear's lines joined per connection into findings, and those into records.

The `sshd -e` and `dropbear -E` lines here are copied from OpenSSH 9.2p1 and Dropbear 2022.83
run on loopback (tests/commands/test_logs.py runs them live).
"""

from __future__ import annotations

import json
from datetime import UTC

from hypothesis import given, settings
from hypothesis import strategies as st

from kexproxy.core import sshdlog
from kexproxy.core.diagnosis import diagnosed
from kexproxy.core.lists import KIND
from kexproxy.core.record import SessionRecord
from kexproxy.core.sshdlog import LogFinding, SshdLogReader, list_of_reason
from kexproxy.core.sshdlog_record import finding_record
from tests.builders import assert_valid_record

SSHD_E = """\
Server listening on 127.0.0.1 port 33551.
Connection from 127.0.0.1 port 43526 on 127.0.0.1 port 33551 rdomain ""
Unable to negotiate with 127.0.0.1 port 43526: no matching key exchange method found. Their offer: diffie-hellman-group14-sha1,ext-info-c,kex-strict-c-v00@openssh.com [preauth]
Connection from 127.0.0.1 port 43546 on 127.0.0.1 port 33551 rdomain ""
Accepted publickey for root from 127.0.0.1 port 43546 ssh2: ED25519 SHA256:5uhw
Received disconnect from 127.0.0.1 port 43546:11: disconnected by user
Disconnected from user root 127.0.0.1 port 43546
Connection from 127.0.0.1 port 43564 on 127.0.0.1 port 33551 rdomain ""
kex_exchange_identification: client sent invalid protocol identifier "GET / HTTP/1.0"
banner exchange: Connection from 127.0.0.1 port 43564: invalid format
"""
DROPBEAR_E = """\
[32627] Dec 07 18:07:00 Not backgrounding
[32631] Dec 07 18:07:00 Child connection from 127.0.0.1:42782
[32631] Dec 07 18:07:00 Exit before auth from <127.0.0.1:42782>: No matching algo kex
[32633] Dec 07 18:07:00 Child connection from 127.0.0.1:42786
[32633] Dec 07 18:07:00 Exit before auth from <127.0.0.1:42786>: (user 'root', 0 fails): Exited normally
"""


def read(text: str, reader: SshdLogReader | None = None) -> list[LogFinding]:
    reader = reader or SshdLogReader(year=2026, zone=UTC)
    return [f for line in text.splitlines() for f in reader.receive_line(line)]


def test_sshd_e_lines_give_one_finding_per_verdict_with_their_connection() -> None:
    kex, banner = read(SSHD_E)
    assert (kex.kind, kex.server, kex.peer_ip, kex.peer_port) == (
        "negotiation",
        "openssh",
        "127.0.0.1",
        43526,
    )
    assert (kex.local_ip, kex.local_port) == ("127.0.0.1", 33551)
    assert kex.list == "kex_algorithms"
    assert kex.reason == "no matching key exchange method found"
    assert kex.their_offer == (
        "diffie-hellman-group14-sha1",
        "ext-info-c",
        "kex-strict-c-v00@openssh.com",
    )
    assert kex.message.endswith("kex-strict-c-v00@openssh.com")  # without " [preauth]"
    assert kex.context == (
        'Connection from 127.0.0.1 port 43526 on 127.0.0.1 port 33551 rdomain ""',
    )
    assert (banner.kind, banner.peer_port, banner.list) == ("banner", 43564, None)
    assert banner.context == (
        'Connection from 127.0.0.1 port 43564 on 127.0.0.1 port 33551 rdomain ""',
        'kex_exchange_identification: client sent invalid protocol identifier "GET / HTTP/1.0"',
    )


def test_syslog_lines_are_joined_by_host_and_pid_even_interleaved() -> None:
    text = """\
Dec  7 18:01:49 web1 sshd[10]: Connection from 10.0.0.5 port 1000 on 10.0.0.1 port 22 rdomain ""
Dec  7 18:01:49 web2 sshd[10]: Connection from 10.0.0.6 port 2000 on 10.0.0.2 port 2222 rdomain ""
Dec  7 18:01:49 web1 sshd[11]: Connection from 10.0.0.7 port 3000 on 10.0.0.1 port 22 rdomain ""
Dec  7 18:01:49 web1 CRON[12]: Unable to negotiate with 1.1.1.1 port 1: no matching MAC found. Their offer: x
Dec  7 18:01:50 web2 sshd[10]: Unable to negotiate with 10.0.0.6 port 2000: no matching MAC found. Their offer: hmac-sha1 [preauth]
Dec  7 18:01:51 web1 sshd[10]: kex_exchange_identification: banner line contains invalid characters
Dec  7 18:01:51 web1 sshd[10]: banner exchange: Connection from 10.0.0.5 port 1000: invalid format
"""
    mac, banner = read(text)
    assert (mac.host, mac.peer_port, mac.local_ip, mac.local_port) == (
        "web2",
        2000,
        "10.0.0.2",
        2222,
    )
    assert mac.list == "mac_algorithms_client_to_server"
    assert mac.first_ts is not None and mac.ts == mac.first_ts + 1
    assert any("direction" in note for note in mac.notes)
    assert (banner.host, banner.peer_port, banner.local_port) == ("web1", 1000, 22)
    assert banner.context[-1].startswith("kex_exchange_identification: banner line")


def test_sshd_e_lines_without_an_address_join_the_next_connection_line_only() -> None:
    text = """\
Connection from 127.0.0.1 port 1 on 127.0.0.1 port 22 rdomain ""
kex_exchange_identification: read: Connection reset by peer
Connection from 127.0.0.1 port 2 on 127.0.0.1 port 22 rdomain ""
kex_exchange_identification: banner line contains invalid characters
banner exchange: Connection from 127.0.0.1 port 2: invalid format
"""
    (only,) = read(text)
    assert only.peer_port == 2
    assert only.context == (
        'Connection from 127.0.0.1 port 2 on 127.0.0.1 port 22 rdomain ""',
        "kex_exchange_identification: banner line contains invalid characters",
    )


def test_openssh_before_8_1_refused_identification_lines() -> None:
    text = """\
Dec  7 18:01:49 old sshd[5]: Connection from 10.0.0.5 port 1 on 10.0.0.1 port 22
Dec  7 18:01:49 old sshd[5]: Bad protocol version identification 'GET / from x port 9' from 10.0.0.5 port 1
Dec  7 18:01:49 old sshd[6]: Protocol major versions differ for 10.0.0.6 port 2: SSH-2.0-OpenSSH_7.4 vs. SSH-1.5-x
Dec  7 18:01:49 old sshd[7]: Connection from 10.0.0.7 port 3 on 10.0.0.1 port 22
Dec  7 18:01:49 old sshd[7]: Did not receive identification string from 10.0.0.7 port 3
"""
    bad, major = read(text)
    assert (bad.kind, bad.peer_ip, bad.peer_port, bad.local_port) == ("banner", "10.0.0.5", 1, 22)
    assert (major.kind, major.peer_ip, major.peer_port) == ("banner", "10.0.0.6", 2)


def test_a_verdict_without_its_connection_line_stands_alone() -> None:
    (only,) = read(
        "Dec  7 18:01:49 h sshd[5]: Unable to negotiate with 10.0.0.5 port 7: "
        "no matching host key type found. Their offer: ssh-rsa [preauth]"
    )
    assert (only.list, only.their_offer, only.local_ip, only.context) == (
        "server_host_key_algorithms",
        ("ssh-rsa",),
        None,
        (),
    )


def test_a_log_preamble_before_the_address_is_not_the_address() -> None:
    (only,) = read(
        "Unable to negotiate with authenticating user root 10.0.0.5 port 7: "
        "no matching cipher found. Their offer: aes128-cbc [postauth]"
    )
    assert (only.peer_ip, only.peer_port, only.list) == (
        "10.0.0.5",
        7,
        "encryption_algorithms_client_to_server",
    )


def test_a_reused_pid_is_not_the_same_connection() -> None:
    text = """\
Dec  7 18:01:49 h sshd[5]: Connection from 10.0.0.5 port 1 on 10.0.0.1 port 22 rdomain ""
Dec  7 18:01:50 h sshd[5]: Unable to negotiate with 10.0.0.9 port 9: no matching MAC found. Their offer: a
"""
    (only,) = read(text)
    assert (only.peer_ip, only.local_ip, only.context) == ("10.0.0.9", None, ())


def test_dropbear_lines() -> None:
    reader = SshdLogReader(year=2026, zone=UTC)
    (kex,) = read(DROPBEAR_E, reader)
    assert (kex.server, kex.kind, kex.pid, kex.peer_port, kex.list) == (
        "dropbear",
        "negotiation",
        32631,
        42782,
        "kex_algorithms",
    )
    assert kex.reason == "no matching key exchange method found"
    assert kex.their_offer == ()
    assert kex.context == ("Child connection from 127.0.0.1:42782",)
    assert reader.server_lines == 5


def test_every_dropbear_algo_word_and_ipv6() -> None:
    for word, listname in sshdlog.DROPBEAR_LISTS.items():
        (found,) = read(f"Exit before auth from <[::1]:5>: No matching algo {word}")
        assert (found.list, found.peer_ip, found.peer_port) == (listname, "::1", 5)
    (version,) = read("Early exit from <10.0.0.5:5>: Incompatible remote version 'SSH-1.5-x'")
    assert version.kind == "banner"


def test_list_of_reason_covers_every_openssh_reason() -> None:
    assert list_of_reason("no matching key exchange method found") == "kex_algorithms"
    assert list_of_reason("no matching compression method found") == (
        "compression_algorithms_client_to_server"
    )
    assert list_of_reason("no matching flux found") is None


def test_open_connections_are_bounded(monkeypatch: object) -> None:
    import pytest

    patch = pytest.MonkeyPatch()
    patch.setattr(sshdlog, "MAX_OPEN_CONNECTIONS", 3)
    try:
        reader = SshdLogReader(year=2026, zone=UTC)
        for pid in range(10):
            reader.receive_line(
                f"Dec  7 18:01:49 h sshd[{pid}]: Connection from 10.0.0.5 port {pid + 1} "
                'on 10.0.0.1 port 22 rdomain ""'
            )
        assert reader.forgotten == 7
        assert len(reader._open) == 3
    finally:
        patch.undo()


def test_context_lines_and_offers_are_bounded() -> None:
    reader = SshdLogReader(year=2026, zone=UTC)
    reader.receive_line(
        'Dec  7 18:01:49 h sshd[5]: Connection from 10.0.0.5 port 1 on 10.0.0.1 port 22 rdomain ""'
    )
    for i in range(100):
        reader.receive_line(f"Dec  7 18:01:49 h sshd[5]: noise {i}")
    offer = ",".join(f"n{i}" for i in range(sshdlog.MAX_OFFER_NAMES + 50))
    (found,) = reader.receive_line(
        "Dec  7 18:01:49 h sshd[5]: Unable to negotiate with 10.0.0.5 port 1: "
        f"no matching MAC found. Their offer: {offer}"
    )
    assert len(found.context) == sshdlog.MAX_CONTEXT_LINES
    assert len(found.their_offer) == sshdlog.MAX_OFFER_NAMES
    assert any("cut" in note for note in found.notes)


def test_hostile_lines_never_raise_and_give_nothing() -> None:
    hostile = [
        "",
        "\x00\x1b[2J",
        "Unable to negotiate with  port 99999999: no matching MAC found. Their offer: ",
        "Connection from x port 1 on",
        "[1] Dec 07 18:07:00 Exit before auth from <>: No matching algo kex",
        "Dec 99 99:99:99 h sshd[99999999999]: Unable to negotiate",
        '{"MESSAGE": "Unable to negotiate", "_PID": 5}',
        "banner exchange: Connection from " + "9" * 5000,
        "Unable to negotiate with 10.0.0.5 port 70000: no matching MAC found. Their offer: a",
        "Unable to negotiate with evil.example port 7: no matching MAC found. Their offer: a",
        "Exit before auth from <10.0.0.5:99999>: No matching algo kex",
        "banner exchange: Connection from 999.1.1.1 port 7: invalid format",
        "Unable to negotiate with 10.0.0.5 port 7: no matching flux found. Their offer: a",
    ]
    assert read("\n".join(hostile)) == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=8))
def test_any_lines_never_raise(lines: list[str]) -> None:
    reader = SshdLogReader(year=2026, zone=UTC)
    for line in lines:
        reader.receive_line("Unable to negotiate with " + line)
        reader.receive_line(line)


@settings(max_examples=200, deadline=None)
@given(
    ip=st.sampled_from(["10.0.0.5", "::1", "fe80::1%eth0"]),
    port=st.integers(0, 65535),
    reason=st.sampled_from([k.reason for k in KIND.values()]),
    offer=st.text(max_size=300),
    host=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1),
)
def test_any_verdict_line_makes_a_record_the_schema_accepts(
    ip: str, port: int, reason: str, offer: str, host: str
) -> None:
    line = f"Dec  7 18:01:49 {host} sshd[5]: Unable to negotiate with {ip} port {port}: {reason}. Their offer: {offer}"
    for finding in read(line):
        assert_valid_record(diagnosed(finding_record(finding, capture=None)))


# -- records ------------------------------------------------------------------------------------


def test_an_openssh_finding_as_a_record() -> None:
    kex, banner = read(SSHD_E)
    out = assert_valid_record(diagnosed(finding_record(kex, capture="auth.log")))
    assert (out["source"], out["outcome"], out["capture"]) == ("log", "failed", "auth.log")
    assert out["client"] == {"ip": "127.0.0.1", "port": 43526}
    assert out["server"] == {"ip": "127.0.0.1", "port": 33551}
    assert out["failures"] == [
        {"list": "kex_algorithms", "client_offer": list(kex.their_offer), "server_offer": []}
    ]
    rejection = out["rejections"]["server"]
    assert rejection["message"] == kex.message
    assert rejection["their_offer"] == list(kex.their_offer)
    assert out["rejections"]["client"] is None
    assert "server_host" not in out  # sshd -e names no host
    fixes = out["diagnosis"]["fixes"]
    assert [(f["side"], f["add"]) for f in fixes] == [("server", "diffie-hellman-group14-sha1")]
    assert any("not in this record" in text for text in out["diagnosis"]["real_fix"])
    # sshd wrote the line: the fix is an sshd_config line, as for a capture with a banner.
    assert out["server_software"] == "OpenSSH"
    (recipe,) = out["diagnosis"]["recipes"]
    assert recipe["software"] == {"server": "OpenSSH"}
    assert [(s["kind"], s["text"]) for s in recipe["steps"]] == [
        ("sshd_config", "KexAlgorithms +diffie-hellman-group14-sha1")
    ]
    banner_record = assert_valid_record(diagnosed(finding_record(banner, capture=None)))
    assert banner_record["outcome"] == "not_ssh"
    assert banner_record["evidence"]["banner_error"] == "Invalid SSH identification string."
    assert banner_record["failures"] == []


def test_a_dropbear_finding_as_a_record_keeps_its_own_words_as_native() -> None:
    (kex,) = read(DROPBEAR_E)
    record = diagnosed(finding_record(kex, capture=None))
    assert_valid_record(record)
    rejection = record.rejections["server"]
    assert rejection["native"] == "Exit before auth from <127.0.0.1:42782>: No matching algo kex"
    assert rejection["message"].startswith("Unable to negotiate with 127.0.0.1 port 42782: ")
    assert record.server == {"ip": None, "port": None}
    assert record.server_software == "Dropbear"
    assert record.diagnosis is not None
    assert "unknown software" not in json.dumps(record.diagnosis)


def test_server_software_is_only_on_log_records_and_survives_the_store_shape() -> None:
    (kex,) = read(DROPBEAR_E)
    data = finding_record(kex, capture=None).to_dict()
    assert data["server_software"] == "Dropbear"
    assert SessionRecord.from_dict(data).server_software == "Dropbear"
    data.pop("server_software")
    again = SessionRecord.from_dict(data)
    assert again.server_software is None and "server_software" not in again.to_dict()


def test_a_record_names_the_server_host_and_its_id_is_stable() -> None:
    line = (
        "Dec  7 18:01:50 web2 sshd[10]: Unable to negotiate with 10.0.0.6 port 2000: "
        "no matching MAC found. Their offer: hmac-sha1 [preauth]"
    )
    first = finding_record(read(line)[0], capture="a.log")
    again = finding_record(read(line)[0], capture="a.log")
    assert first.id == again.id and first.id.startswith("log-")
    assert first.server_host == "web2"
    assert first.to_dict()["server_host"] == "web2"
    assert json.loads(json.dumps(first.to_dict()))["started"] == "2026-12-07T18:01:50.000000Z"
    assert_valid_record(first)
