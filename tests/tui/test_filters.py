"""The filter language: parsing, every key, negation, alternatives, quoting, errors."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from kexproxy.core.record import SessionRecord
from kexproxy.filtering import (
    FILTER_HELP,
    KEYS,
    MATCH_ALL,
    FilterError,
    Subject,
    parse_filter,
    parse_ip,
)


@pytest.fixture(scope="module")
def ok(dashboard_records: list[SessionRecord]) -> Subject:
    return Subject.of(dashboard_records[0])


@pytest.fixture(scope="module")
def kex_fail(dashboard_records: list[SessionRecord]) -> Subject:
    return Subject.of(dashboard_records[1])


@pytest.fixture(scope="module")
def cipher_fail(dashboard_records: list[SessionRecord]) -> Subject:
    return Subject.of(dashboard_records[2])


def matches(text: str, subject: Subject) -> bool:
    return parse_filter(text).matches(subject)


def test_empty_filter_matches_everything(ok: Subject) -> None:
    for text in ("", "   ", "!"):
        f = parse_filter(text)
        assert not f
        assert f.matches(ok)
    assert MATCH_ALL.matches(ok)


def test_outcome_exact_prefix_and_alternatives(ok: Subject, kex_fail: Subject) -> None:
    assert matches("outcome:failed", kex_fail)
    assert not matches("outcome:failed", ok)
    assert matches("outcome:fail", kex_fail)
    assert matches("outcome:neg", ok)
    assert matches("outcome:failed,negotiated", ok)
    assert matches("OUTCOME:FAILED", kex_fail)


def test_negation(ok: Subject, kex_fail: Subject) -> None:
    assert matches("!outcome:failed", ok)
    assert not matches("!outcome:failed", kex_fail)
    assert matches("!putty", ok)
    assert not matches("!openssh", ok)


def test_list_short_names_directions_and_rfc_names(
    ok: Subject, kex_fail: Subject, cipher_fail: Subject
) -> None:
    assert matches("list:kex", kex_fail)
    assert not matches("list:kex", cipher_fail)
    assert not matches("list:kex", ok)
    assert matches("list:cipher", cipher_fail)
    assert matches("list:cipher_s2c", cipher_fail)
    assert matches("list:cipher-c2s", cipher_fail)
    assert matches("list:encryption_algorithms_server_to_client", cipher_fail)
    assert matches("list:mac,kex", kex_fail)
    assert not matches("list:hostkey", kex_fail)
    assert not matches("list:compression", cipher_fail)


def test_client_and_server_address_forms(kex_fail: Subject) -> None:
    # The capture is on loopback: 127.0.0.1 both ways, the server on sshd's port.
    port = kex_fail.server.port
    assert matches("client:127.0.0.0/8", kex_fail)
    assert not matches("client:10.0.0.0/8", kex_fail)
    assert matches("client:127.0.0.1", kex_fail)
    assert matches(f"server:127.0.0.1:{port}", kex_fail)
    assert matches(f"server::{port}", kex_fail)
    assert not matches(f"server::{port + 1}", kex_fail)
    assert not matches(f"client::{port}", kex_fail)
    assert matches("server:10.0.0.0/8,127.0.0.0/8", kex_fail)
    assert matches("server:127.0", kex_fail)  # text
    assert not matches("server:db1", kex_fail)
    assert matches("client:::/0", kex_fail) is False  # an IPv6 network never holds IPv4


def test_ipv6_and_hostname_endpoints(
    kex_fail: Subject, dashboard_records: list[SessionRecord]
) -> None:
    record = replace(
        dashboard_records[1],
        client={"ip": "2001:db8::5", "port": 50000},
        server={"ip": "db1.example", "port": 22},
    )
    s = Subject.of(record)
    assert matches("client:2001:db8::/32", s)
    assert matches("client:[2001:db8::5]:50000", s)
    assert matches("client:2001:db8::5", s)
    assert not matches("client:[2001:db8::5]:50001", s)
    assert matches("server:db1", s)
    assert matches("server:db1.example:22", s)


def test_software_hassh_capture_id(
    kex_fail: Subject, dashboard_records: list[SessionRecord]
) -> None:
    record = dashboard_records[1]
    assert matches("software:openssh_9.2", kex_fail)
    assert matches("sw:Debian", kex_fail)
    assert not matches("software:PuTTY", kex_fail)
    assert record.hassh and record.hassh_server
    assert matches(f"hassh:{record.hassh[:8]}", kex_fail)
    assert matches(f"hassh:{record.hassh_server[:8].upper()}", kex_fail)
    assert not matches("hassh:zzzz", kex_fail)
    assert matches("capture:dashboard", kex_fail)
    assert matches(f"id:{record.id[:6]}", kex_fail)
    assert not matches(f"id:{record.id[1:7]}", kex_fail)


def test_free_text_looks_everywhere(kex_fail: Subject, ok: Subject, cipher_fail: Subject) -> None:
    assert matches("curve25519", ok)  # the chosen kex
    assert matches("chacha20-poly1305@openssh.com", ok)  # a negotiated cipher
    with pytest.raises(FilterError):
        parse_filter("no match: kex")  # "match:" reads as a key: quote text with colons
    assert matches('"no match: kex"', kex_fail)
    assert matches("kex_algorithms", kex_fail)  # failing list, RFC name
    assert matches('"cipher s2c"', cipher_fail)  # failing list, short name
    assert matches("127.0.0.1:", kex_fail)  # a colon after a non-key is text


def test_terms_are_anded(kex_fail: Subject) -> None:
    assert matches("outcome:failed list:kex software:openssh", kex_fail)
    assert not matches("outcome:failed list:cipher", kex_fail)


def test_quotes(kex_fail: Subject) -> None:
    f = parse_filter('software:"OpenSSH_9.2p1 Debian" !"no match: cipher"')
    assert [t.key for t in f.terms] == ["software", "text"]
    assert f.terms[1].negate
    assert f.matches(kex_fail)
    with pytest.raises(FilterError, match="quote"):
        parse_filter('software:"open')


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("outcom:failed", "unknown key 'outcom'"),
        ("outcome:won", "outcome:won: use one of negotiated"),
        ("list:foo", "list:foo: use kex"),
        ("client:10.0.0.0/33", "not a network"),
        ("outcome:", "outcome: needs a value"),
        ("hassh:,", "needs a value"),
        ("grade:meh", "grade:meh: use one of strong, good, weak, broken"),
        ("policy:maybe", "policy:maybe: use one of violated, ok"),
    ],
)
def test_errors_say_what_to_type(text: str, hint: str) -> None:
    with pytest.raises(FilterError) as info:
        parse_filter(text)
    assert hint in str(info.value)


def test_help_documents_every_key() -> None:
    for key in KEYS:
        assert f"{key}:" in FILTER_HELP
    assert "!" in FILTER_HELP


def test_filter_keeps_its_text() -> None:
    assert parse_filter("  outcome:failed  ").text == "outcome:failed"


def test_grade_and_policy(dashboard_records: list[SessionRecord]) -> None:
    from pathlib import Path

    from kexproxy.pipeline import policy_stage

    judge = policy_stage(str(Path(__file__).resolve().parents[2] / "policies" / "modern.toml"))
    negotiated = [r for r in dashboard_records if r.outcome == "negotiated"]
    failed = [r for r in dashboard_records if r.outcome == "failed"]
    assert negotiated and failed
    # The real success is modern and classical (curve25519): good, which strong is not.
    assert [(r.diagnosis or {}).get("grade") for r in negotiated] == ["good"]
    assert not matches("grade:strong", Subject.of(negotiated[0]))
    for record in negotiated:
        grade = str((record.diagnosis or {})["grade"])
        subject = Subject.of(record)
        assert matches(f"grade:{grade}", subject)
        assert matches(f"grade:{grade[:2]}", subject)  # a prefix will do
        assert not matches(f"!grade:{grade}", subject)
        others = [g for g in ("strong", "good", "weak", "broken") if g != grade]
        assert not matches(f"grade:{','.join(others)}", subject)
        judged = Subject.of(judge(record))
        state = "ok" if judge(record).policy["compliant"] else "violated"  # type: ignore[index]
        assert matches(f"policy:{state}", judged)
        assert not matches(f"policy:{state}", subject)  # not judged: neither
    for record in failed:
        assert not matches("grade:strong,good,weak,broken", Subject.of(record))
        assert not matches("policy:ok,violated", Subject.of(judge(record)))  # not evaluated


def test_in_progress_is_an_outcome_to_filter_and_colour(
    ok: Subject, dashboard_records: list[SessionRecord]
) -> None:
    from kexproxy.core.record import OUTCOMES
    from kexproxy_tui.palette import OUTCOME_ROLE

    assert set(OUTCOME_ROLE) == set(OUTCOMES)
    started = Subject.of(replace(dashboard_records[0], outcome="in_progress", ended=None))
    assert matches("outcome:in_progress", started) and matches("outcome:in_p", started)
    assert not matches("outcome:in_progress", ok)
    assert "in_progress" in FILTER_HELP


def test_free_text_and_offers_find_what_either_side_offered(
    ok: Subject, kex_fail: Subject, cipher_fail: Subject
) -> None:
    # The kex failure's client offered only diffie-hellman-group14-sha1: nothing chose it.
    assert matches("diffie-hellman-group14-sha1", kex_fail)
    assert not matches("diffie-hellman-group14-sha1", ok)
    assert matches("offers:diffie-hellman-group14-sha1", kex_fail)
    assert not matches("offers:diffie-hellman-group14-sha1", cipher_fail)
    # Only the server offered hmac-sha1-etm and nobody chose it in the failures.
    assert matches("offers:hmac-sha1-etm@openssh.com", kex_fail)
    assert matches("offer:sntrup761,group14-sha1", ok)  # alternatives, an alias
    assert not matches("offers:sntrup761", kex_fail)
    assert not matches("!offers:group14-sha1", kex_fail)
    # A summary record carries no offers: the key then finds nothing rather than failing.
    assert not matches("offers:sntrup761", replace(ok, offers=""))


def test_csw_and_ssw_look_at_one_side(dashboard_records: list[SessionRecord]) -> None:
    record = replace(
        dashboard_records[1],
        client_banner="SSH-2.0-PuTTY_Release_0.83",
        server_banner="SSH-2.0-dropbear_2022.83",
    )
    s = Subject.of(record)
    assert matches("csw:putty", s) and matches("ssw:Dropbear", s)
    assert not matches("csw:dropbear", s)
    assert not matches("ssw:putty", s)
    assert matches("software:putty", s) and matches("software:dropbear", s)
    assert matches("csw=PuTTY_Release", s)


def test_equals_works_as_colon(kex_fail: Subject, ok: Subject) -> None:
    assert parse_filter("outcome=failed").terms == parse_filter("outcome:failed").terms
    assert matches("outcome=failed", kex_fail)
    assert not matches("outcome=failed", ok)
    assert matches("!outcome=negotiated list=kex", kex_fail)
    port = kex_fail.server.port
    assert matches(f"server=127.0.0.1:{port}", kex_fail)  # the first separator splits
    with pytest.raises(FilterError, match="unknown key 'outcom'"):
        parse_filter("outcom=failed")


def test_tls_keys_match_tls_records() -> None:
    """protocol:, ja3:, ja4:, the TLS list names and SNI as the server's software."""
    from pathlib import Path

    from kexproxy.filtering import Subject, parse_filter
    from kexproxy.pipeline import capture_records

    root = Path(__file__).resolve().parents[2] / "captures"
    sni, tls13 = (
        capture_records(str(root / f"tls-{name}.pcap"))[0]
        for name in ("sni-unrecognized-name", "openssl-tls13-success")
    )
    ssh = capture_records(str(root / "openssh-kex-fail.pcap"))[0]
    subjects = {"sni": Subject.of(sni), "tls13": Subject.of(tls13), "ssh": Subject.of(ssh)}

    def matching(text: str) -> set[str]:
        query = parse_filter(text)
        return {name for name, subject in subjects.items() if query.matches(subject)}

    assert matching("protocol:tls") == {"sni", "tls13"}
    assert matching("protocol:ssh") == {"ssh"}
    assert matching("list:sni") == {"sni"} == matching("list:server_name")
    assert matching("ssw:bad.example") == {"sni"}
    assert tls13.ja3 and tls13.ja4
    assert matching(f"ja3:{tls13.ja3[:8]}") >= {"tls13"}
    assert matching(f"ja4:{tls13.ja4[:10]}") >= {"tls13"}
    assert "ssh" not in matching(f"ja4:{tls13.ja4[:4]}")
    assert matching("offers:tls_aes_128_gcm_sha256") >= {"tls13"}
    assert "ssh" not in matching("offers:tls_aes_128_gcm_sha256")
    with pytest.raises(FilterError, match="use one of ssh, tls"):
        parse_filter("protocol:quic")


@pytest.mark.parametrize(
    "text",
    [
        "10.1.2.3",
        "0.0.0.0",
        "255.255.255.255",
        "010.1.2.3",
        "1.2.3.04",
        "1.2.3",
        "127.1",
        "256.1.1.1",
        "0x1.2.3.4",
        " 1.2.3.4",
        "1.2.3.4 ",
        "1.2.3.4\x00",
        "1.2.3.4/8",
        "\u0663.1.1.1",
        "::1",
        "::ffff:1.2.3.4",
        "fe80::1%eth0",
        "",
        "host.example",
    ],
)
def test_parse_ip_agrees_with_ipaddress(text: str) -> None:
    try:
        expected: object = ipaddress.ip_address(text)
    except ValueError:
        expected = None
    assert parse_ip(text) == expected
