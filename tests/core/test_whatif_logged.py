"""Clients known only from sshd's log against a changed server: one list each, never more."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC

from kexproxy.core.record import SessionRecord
from kexproxy.core.sshdlog import SshdLogReader
from kexproxy.core.sshdlog_record import finding_record
from kexproxy.core.whatif import apply_changes, release_side, tally
from kexproxy.core.whatif_logged import (
    LOGGED_EFFECTS,
    LoggedGroup,
    group_logged,
    logged_offers,
    logged_words,
    predict_logged,
    predict_logged_groups,
)
from tests.builders import assert_valid_record

LINES = [
    "Unable to negotiate with 10.0.0.1 port 1: no matching key exchange method found. "
    "Their offer: diffie-hellman-group14-sha1,ext-info-c [preauth]",
    "Unable to negotiate with 10.0.0.2 port 2: no matching key exchange method found. "
    "Their offer: diffie-hellman-group14-sha1,ext-info-c [preauth]",
    "Unable to negotiate with 10.0.0.3 port 3: no matching MAC found. "
    "Their offer: hmac-sha2-256,hmac-sha1 [preauth]",
    "Unable to negotiate with 10.0.0.4 port 4: no matching cipher found. "
    "Their offer: aes128-cbc [preauth]",
    "[9] Dec 07 18:07:00 Exit before auth from <10.0.0.5:5>: No matching algo kex",
]


def _records() -> list[SessionRecord]:
    reader = SshdLogReader(year=2026, zone=UTC)
    return [
        finding_record(finding, capture=None)
        for line in LINES
        for finding in reader.receive_line(line)
    ]


def test_log_records_give_their_logged_list_and_dropbears_give_nothing() -> None:
    records = _records()
    offers = logged_offers(records)
    assert offers[0] == ("kex_algorithms", ("diffie-hellman-group14-sha1", "ext-info-c"))
    assert len(offers) == 4  # dropbear's line names the list, not the offer
    groups = group_logged(offers)
    assert [(g.list, g.count) for g in groups] == [
        ("kex_algorithms", 2),
        ("encryption_algorithms_client_to_server", 1),
        ("mac_algorithms_client_to_server", 1),
    ]


def test_wire_records_and_hostile_failures_are_not_logged_offers() -> None:
    (record, *_) = _records()
    assert_valid_record(record)
    wire = replace(record, source="pcap")
    with_kexinit = replace(record, client_kexinit={"kex_algorithms": ["x"]})
    bad_list = replace(record, failures=[{"list": "nope", "client_offer": ["a"]}])
    bad_offer = replace(record, failures=[{"list": "kex_algorithms", "client_offer": "a"}])
    junk = replace(
        record, failures=[{"list": "kex_algorithms", "client_offer": [1, "x" * 300, None]}]
    )
    not_a_dict = replace(record, failures=["kex"])  # type: ignore[list-item]
    assert logged_offers([wire, with_kexinit, bad_list, bad_offer, junk, not_a_dict]) == []


def test_effects_on_one_logged_list() -> None:
    server = release_side("OpenSSH_9.2", "server")
    kex = LoggedGroup(list="kex_algorithms", offer=("diffie-hellman-group14-sha1",), count=2)
    mac = LoggedGroup(
        list="mac_algorithms_client_to_server", offer=("hmac-sha2-256", "hmac-sha1"), count=1
    )
    added = apply_changes(server, ["KexAlgorithms +diffie-hellman-group14-sha1"], "server")
    fixed = predict_logged(kex, server.kexinit, added.kexinit)
    assert (fixed.effect, fixed.before, fixed.after) == (
        "passes_logged_list",
        None,
        "diffie-hellman-group14-sha1",
    )
    assert "other lists are unknown" in logged_words(fixed)
    assert "negotiat" not in logged_words(fixed)
    untouched = predict_logged(mac, server.kexinit, added.kexinit)
    assert untouched.effect == "still_passes_logged_list" and untouched.removed == ()
    removed = apply_changes(server, ["MACs -hmac-sha2-256*,hmac-sha1*"], "server")
    broken = predict_logged(mac, server.kexinit, removed.kexinit)
    assert broken.effect == "breaks_logged_list"
    assert broken.removed == ("hmac-sha2-256", "hmac-sha1")
    assert "hmac-sha2-256, hmac-sha1 removed" in logged_words(broken)
    still = predict_logged(kex, server.kexinit, removed.kexinit)
    assert still.effect == "still_fails_logged_list" and still.after is None
    assert logged_words(still) == "still no common name"
    rows = predict_logged_groups([kex, mac], server.kexinit, removed.kexinit)
    assert [p.effect for _, p in rows] == ["breaks_logged_list", "still_fails_logged_list"]
    records, groups = tally(rows, LOGGED_EFFECTS)
    assert records["still_fails_logged_list"] == 2 and groups["breaks_logged_list"] == 1
    assert sum(records.values()) == 3


def test_markers_are_not_a_shared_name() -> None:
    server = release_side("OpenSSH_9.2", "server")
    only_marker = LoggedGroup(list="kex_algorithms", offer=("ext-info-c",), count=1)
    marker_server = apply_changes(server, ["KexAlgorithms curve25519-sha256"], "server")
    p = predict_logged(only_marker, server.kexinit, marker_server.kexinit)
    assert p.effect == "still_fails_logged_list" and p.removed == ()
