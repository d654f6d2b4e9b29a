"""Text for people: addresses, software, labels from the registry, summaries, verdict lines."""

from __future__ import annotations

import ast
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from kexproxy.core.lists import NEGOTIATED
from kexproxy.present import (
    KIND_LABEL,
    LIST_LABEL,
    address,
    endpoint,
    kind_label,
    list_label,
    software,
    software_name,
    summary,
    verdict_line,
)
from tests.core.diagnosis.records import make_record

#: The labels the tables have always shown; the registry must keep giving them.
SHOWN_LABELS = {
    "kex_algorithms": "kex",
    "server_host_key_algorithms": "host key",
    "encryption_algorithms_client_to_server": "cipher c2s",
    "encryption_algorithms_server_to_client": "cipher s2c",
    "mac_algorithms_client_to_server": "MAC c2s",
    "mac_algorithms_server_to_client": "MAC s2c",
    "compression_algorithms_client_to_server": "compression c2s",
    "compression_algorithms_server_to_client": "compression s2c",
}


def test_present_imports_only_the_standard_library_and_the_core() -> None:
    """Every outer layer (sources, sinks, commands, the TUI) may then use it without a cycle."""
    import kexproxy.present

    tree = ast.parse(Path(kexproxy.present.__file__).read_text())
    modules = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    ours = {m for m in modules if m.split(".")[0] == "kexproxy"}
    assert ours and all(m.startswith("kexproxy.core.") for m in ours), ours
    assert {m.split(".")[0] for m in modules - ours} <= sys.stdlib_module_names


@pytest.mark.parametrize(
    ("host", "port", "text"),
    [
        ("10.0.0.1", 22, "10.0.0.1:22"),
        ("::1", 2222, "[::1]:2222"),
        ("fe80::1%eth0", 22, "[fe80::1%eth0]:22"),
        ("server.example", 22, "server.example:22"),
    ],
)
def test_an_address_brackets_only_ipv6(host: str, port: int, text: str) -> None:
    assert address(host, port) == text


def test_an_endpoint_is_its_record_objects_address() -> None:
    assert endpoint({"ip": "192.0.2.7", "port": 50000}) == "192.0.2.7:50000"
    assert endpoint({"ip": "2001:db8::7", "port": 22}) == "[2001:db8::7]:22"
    assert endpoint({"port": 22}) == "?:22"


@pytest.mark.parametrize(
    ("banner", "full", "name"),
    [
        (
            "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3",
            "OpenSSH_9.2p1 Debian-2+deb12u3",
            "OpenSSH_9.2p1",
        ),
        ("SSH-2.0-PuTTY_Release_0.78", "PuTTY_Release_0.78", "PuTTY_Release_0.78"),
        ("not a banner", "not a banner", "not"),
        (None, "-", "-"),
        ("", "-", "-"),
    ],
)
def test_software_is_the_banners_third_part(banner: str | None, full: str, name: str) -> None:
    assert software(banner) == full
    assert software_name(banner) == name


def test_list_labels_come_from_the_registry_and_stay_as_shown() -> None:
    assert LIST_LABEL == SHOWN_LABELS
    assert {n.rfc: n.label for n in NEGOTIATED} == LIST_LABEL
    assert list_label("encryption_algorithms_server_to_client") == "cipher s2c"
    assert list_label("no_such_list") == "no_such_list"


def test_kind_labels_count_both_directions_once() -> None:
    assert KIND_LABEL == {
        "kex": "kex",
        "host_key": "host key",
        "cipher": "cipher",
        "mac": "MAC",
        "compression": "compression",
    }
    assert kind_label("mac_algorithms_client_to_server") == "MAC"
    assert kind_label("mac_algorithms_server_to_client") == "MAC"
    assert kind_label("compression_algorithms_server_to_client") == "compression"
    assert kind_label("languages_client_to_server") == "languages_client_to_server"


def test_a_summary_names_the_failing_lists_or_the_chosen_pair() -> None:
    failed = make_record(client={"cipher": "aes128-cbc", "mac": "hmac-md5"})
    assert failed.outcome == "failed"
    # In the order OpenSSH checks them (kex.c): the client reads server-to-client first.
    assert summary(failed) == "no match: cipher s2c, MAC s2c, cipher c2s, MAC c2s"
    good = make_record()
    assert summary(good) == "sntrup761x25519-sha512@openssh.com / chacha20-poly1305@openssh.com"
    refused = replace(
        good,
        outcome="not_ssh",
        negotiated=None,
        evidence={**good.evidence, "banner_error": "not an SSH banner"},
    )
    assert summary(refused) == "refused: not an SSH banner"
    aborted = replace(good, outcome="aborted", negotiated=None, evidence={"aborted": "reset"})
    assert summary(aborted) == "reset"
    assert summary(replace(good, outcome="incomplete", negotiated=None, evidence={})) == ""


def test_the_verdict_line_of_a_strong_and_a_good_handshake() -> None:
    assert verdict_line(make_record()) == "strong"
    classical = make_record(client={"kex": "curve25519-sha256,kex-strict-c-v00@openssh.com"})
    assert verdict_line(classical) == "good"


def test_the_verdict_line_names_the_weakest_part() -> None:
    record = make_record(
        client={"kex": "curve25519-sha256", "cipher": "aes128-cbc", "mac": "hmac-sha1"},
        server={"cipher": "aes128-cbc,3des-cbc", "mac": "hmac-sha1"},
    )
    # The classical key exchange is not among them: post-quantum is its own verdict.
    assert verdict_line(record) == "weak: aes128-cbc (+1 more)"


def test_verdict_line_for_a_failure_shows_the_strongest_fix() -> None:
    """The same fix `explain` ranks first: here the server can add a post-quantum kex the
    client offers, which beats the client adding the server's SHA-1 group."""
    record = make_record(server={"kex": "diffie-hellman-group14-sha1"})
    assert verdict_line(record) == ("fix server: add sntrup761x25519-sha512@openssh.com (strong)")
    recipes = (record.diagnosis or {})["recipes"]
    assert recipes[0]["adds"][0]["name"] == "sntrup761x25519-sha512@openssh.com"
    client = next(r for r in recipes if r["side"] == "client")
    assert client["command"] == "ssh -oKexAlgorithms=+diffie-hellman-group14-sha1 10.0.0.2"
    with_policy = replace(record, policy={"evaluated": True, "violations": [{}, {}]})
    assert verdict_line(with_policy).endswith("; policy: 2 violations")
    assert verdict_line(replace(record, policy={"evaluated": True, "violations": []})).endswith(
        "; policy ok"
    )


def test_the_verdict_line_names_the_algorithm_for_a_third_party_side() -> None:
    """The table cell names who changes and what it adds, whatever the software: the
    syntax is in explain, the dashboard and --json."""
    lists = {
        "client": {"cipher": "aes128-ctr", "mac": "hmac-sha2-256"},
        "server": {
            "cipher": "aes128-ctr",
            "mac": "umac-128@openssh.com,hmac-sha2-256-etm@openssh.com",
        },
    }
    other = make_record(**lists, client_banner="SSH-2.0-Foo_1.0")
    assert verdict_line(other) == "fix client: add hmac-sha2-256-etm@openssh.com (good)"
    openssh = make_record(**lists)
    assert verdict_line(openssh) == "fix client: add hmac-sha2-256-etm@openssh.com (good)"


def test_a_failure_without_a_fix_says_to_upgrade() -> None:
    record = make_record(client={"kex": "curve25519-sha256"}, server={"kex": "x-unknown@example"})
    assert record.outcome == "failed"
    fixless = replace(record, diagnosis={**(record.diagnosis or {}), "recipes": []})
    assert verdict_line(fixless) == "no fix: upgrade a side"


def test_damaged_recipes_from_a_store_never_break_the_verdict_line() -> None:
    record = make_record(server={"kex": "diffie-hellman-group14-sha1"})
    damaged = {**(record.diagnosis or {}), "recipes": ["x", {"steps": "y", "adds": [3]}]}
    assert verdict_line(replace(record, diagnosis=damaged)).startswith("fix ")
    upgrade = {
        "side": "client",
        "grade": "strong",
        "adds": [],
        "steps": [{"kind": "upgrade", "text": "Upgrade PuTTY on the client to 0.82 or later: ..."}],
    }
    assert verdict_line(replace(record, diagnosis={"recipes": [upgrade]})) == (
        "fix client: upgrade PuTTY on the client to 0.82 or later (strong)"
    )


@pytest.mark.parametrize(
    ("banner", "short"),
    [
        ("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10", "OpenSSH 9.2"),
        ("SSH-2.0-PuTTY_Release_0.78", "PuTTY 0.78"),
        ("SSH-2.0-dropbear_2022.83", "Dropbear 2022.83"),
        ("SSH-2.0-paramiko_5.1.0", "paramiko 5.1.0"),
        ("SSH-2.0-Acme_7 beta", "Acme_7 beta"),  # unknown: the software part as it is
        (None, "-"),
        ("", "-"),
    ],
)
def test_software_short_names_the_implementation_and_release(
    banner: str | None, short: str
) -> None:
    from kexproxy.present import software_short

    assert software_short(banner) == short


def test_failing_kinds_say_a_two_directional_failure_once() -> None:
    from kexproxy.present import failing_kinds

    mac = make_record(client={"mac": "hmac-md5", "cipher": "aes128-ctr"})  # not AEAD
    assert set(mac.failing_lists) == {
        "mac_algorithms_client_to_server",
        "mac_algorithms_server_to_client",
    }
    assert failing_kinds(mac) == "MAC"
    both = make_record(client={"kex": "diffie-hellman-group1-sha1", "cipher": "3des-cbc"})
    assert failing_kinds(both) == "kex, cipher"
    assert failing_kinds(make_record()) == ""
