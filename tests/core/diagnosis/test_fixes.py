"""Fixes for failed negotiations: only names the other side offers, ranked, with upgrade advice."""

from __future__ import annotations

from dataclasses import replace

from kexproxy.core.diagnosis import diagnose
from kexproxy.core.lists import RFC_NAMES
from tests.core.diagnosis.records import CLIENT, SERVER, diag, fixes_for, kexinit, make_record


def test_kex_failure_fixes_name_both_sides_ranked_by_grade() -> None:
    record = make_record(server={"kex": "diffie-hellman-group1-sha1,diffie-hellman-group14-sha1"})
    assert record.outcome == "failed"
    fixes = diag(record)["fixes"]
    assert [f["rank"] for f in fixes] == list(range(1, len(fixes) + 1))
    grades = [f["grade"] for f in fixes]
    order = {"strong": 0, "good": 1, "weak": 2, "broken": 3}
    assert [order[g] for g in grades] == sorted(order[g] for g in grades)
    top = fixes[0]
    # The server can add the client's post-quantum method: the strongest fix there is.
    assert (top["side"], top["add"], top["grade"], top["post_quantum"]) == (
        "server",
        "sntrup761x25519-sha512@openssh.com",
        "strong",
        True,
    )
    assert top["sshd_config"] == "KexAlgorithms +sntrup761x25519-sha512@openssh.com"
    assert top["ssh_option"] is None and top["ssh_config"] is None and top["warning"] is None
    client = fixes_for(record, "client")
    assert [f["add"] for f in client] == [
        "diffie-hellman-group14-sha1",
        "diffie-hellman-group1-sha1",
    ]
    assert client[0]["ssh_option"] == "-oKexAlgorithms=+diffie-hellman-group14-sha1"
    assert (
        client[0]["ssh_config"] == "Host 10.0.0.2\n    KexAlgorithms +diffie-hellman-group14-sha1"
    )
    assert client[0]["sshd_config"] is None
    assert "weak" in client[0]["warning"] and "SHA-1" in client[0]["warning"]
    assert "broken" in client[1]["warning"]
    assert diag(record)["grade"] is None
    assert diag(record)["apply_note"]


def test_fixes_only_use_names_the_other_side_offers() -> None:
    record = make_record(
        server={"cipher": "aes128-cbc,3des-cbc,unknown-cipher@example.com"},
    )
    server_offer = set(SERVER["cipher"].split(","))
    client_offer = set(CLIENT["cipher"].split(","))
    for fix in diag(record)["fixes"]:
        other = (
            {"aes128-cbc", "3des-cbc", "unknown-cipher@example.com"}
            if fix["side"] == "client"
            else client_offer
        )
        assert fix["add"] in other
        assert sorted(fix["lists"]) == [
            "encryption_algorithms_client_to_server",
            "encryption_algorithms_server_to_client",
        ]
    client = fixes_for(record, "client")
    assert [f["add"] for f in client] == ["aes128-cbc", "3des-cbc", "unknown-cipher@example.com"]
    assert [f["grade"] for f in client] == ["weak", "broken", "unknown"]
    assert "not in kexproxy's catalogue" in client[2]["warning"]
    assert client[0]["ssh_option"] == "-oCiphers=+aes128-cbc"
    assert fixes_for(record, "server")[0]["sshd_config"] == "Ciphers +chacha20-poly1305@openssh.com"
    assert server_offer  # the fixture really differs from the server's list


def test_certificate_host_keys_rank_last_on_the_server() -> None:
    record = make_record(
        client={"host_key": "ssh-ed25519-cert-v01@openssh.com,ssh-ed25519"},
        server={"host_key": "rsa-sha2-256"},
    )
    server = fixes_for(record, "server")
    assert [f["add"] for f in server] == ["ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com"]
    assert "HostCertificate" in server[1]["warning"]


def test_a_side_that_cannot_implement_the_name_gets_no_fix() -> None:
    """OpenSSH 10.0 removed DSA: a DSA-only server must be upgraded, not accommodated."""
    record = make_record(server={"host_key": "ssh-dss"}, client_banner="SSH-2.0-OpenSSH_10.0")
    assert fixes_for(record, "client") == []
    assert any(
        "can add none of the server's host key" in text and "upgrading the server" in text
        for text in diag(record)["real_fix"]
    )
    # A client whose banner says nothing known is given the benefit of the doubt.
    lenient = make_record(server={"host_key": "ssh-dss"}, client_banner="SSH-2.0-Foo_1.0")
    assert fixes_for(lenient, "client")[0]["add"] == "ssh-dss"
    assert "Foo_1.0" in fixes_for(lenient, "client")[0]["warning"]


def test_only_broken_common_names_say_upgrade() -> None:
    record = make_record(server={"kex": "diffie-hellman-group1-sha1"})
    assert any(
        "only key exchange algorithms the server offers" in text
        and "upgrading the server is the real fix" in text
        for text in diag(record)["real_fix"]
    )


def test_directions_that_differ_are_fixed_one_by_one() -> None:
    record = make_record(
        client={"cipher": "aes128-cbc"},
        server={"cipher": "aes256-ctr"},
    )
    assert [sorted(f["lists"]) for f in fixes_for(record, "client")] == [
        ["encryption_algorithms_client_to_server", "encryption_algorithms_server_to_client"]
    ]
    ci = kexinit({**CLIENT, "cipher": "aes128-cbc"})
    raw = dict(zip(RFC_NAMES, ci.raw_lists, strict=True))
    raw["encryption_algorithms_server_to_client"] = "aes256-ctr"
    split = replace(ci, raw_lists=tuple(raw[n] for n in RFC_NAMES))
    record = make_record(client={"cipher": "aes128-cbc"}, server={"cipher": "aes256-ctr"})
    record = replace(record, client_kexinit=split.to_dict())
    record = replace(record, diagnosis=diagnose(record))
    # c2s: the client offers aes128-cbc, s2c: aes256-ctr, which the server has: fixed one by one.
    assert sorted(len(f["lists"]) for f in fixes_for(record, "server")) == [1] * len(
        fixes_for(record, "server")
    )


def test_a_third_party_side_may_lack_what_it_did_not_offer() -> None:
    """PuTTY (or paramiko, or a vendor's stack) offers what it implements: a fix that has
    it add a name it left out says so, ranks after the other side's fix of the same grade
    (never above a better grade), and the verdict line names the algorithm instead of an
    OpenSSH option PuTTY cannot take."""
    record = make_record(
        client={"cipher": "aes128-ctr", "mac": "hmac-sha2-256"},
        server={
            "cipher": "aes128-ctr",
            "mac": "umac-128@openssh.com,hmac-sha2-256-etm@openssh.com",
        },
        client_banner="SSH-2.0-PuTTY_Release_0.78",
    )
    fixes = (record.diagnosis or {})["fixes"]
    ranked = [(f["side"], f["add"], f["grade"]) for f in fixes]
    assert ranked == [
        ("client", "hmac-sha2-256-etm@openssh.com", "good"),
        ("server", "hmac-sha2-256", "weak"),
        ("client", "umac-128@openssh.com", "weak"),
    ]
    assert all(
        "may not implement it" in (f["warning"] or "") for f in fixes if f["side"] == "client"
    )
    # The same pair with an OpenSSH client: the weak fixes tie, and the client's comes first.
    openssh = make_record(
        client={"cipher": "aes128-ctr", "mac": "hmac-sha2-256"},
        server={
            "cipher": "aes128-ctr",
            "mac": "umac-128@openssh.com,hmac-sha2-256-etm@openssh.com",
        },
    )
    weak = [f["side"] for f in (openssh.diagnosis or {})["fixes"] if f["grade"] == "weak"]
    assert weak == ["client", "server"]


def test_hostile_offers_cost_little_and_never_raise() -> None:
    """50,000 names in a list, and banners whose versions are not numbers Python can read."""
    from kexproxy.core.catalogue import version_key

    names = ",".join(f"{i:x}" for i in range(50_000))
    record = make_record(client={"kex": names}, server={"kex": "curve25519-sha256"})
    diagnosis = record.diagnosis or {}
    assert record.outcome == "failed"
    assert len(diagnosis["unknown"]["client"]) <= 20
    assert diagnosis["version_hint"]["client"]["text"] == (
        "client lists are longer than any OpenSSH default set"
    )
    server_fixes = [f for f in diagnosis["fixes"] if f["side"] == "server"]
    assert len(server_fixes) <= 4  # from the first names only, never all 50,000
    for banner in (
        "SSH-2.0-OpenSSH_\u00b2",
        "SSH-2.0-OpenSSH_9.\u2463",
        "SSH-2.0-OpenSSH_9." + "9" * 5000,
    ):
        odd = make_record(
            server={"kex": "curve25519-sha256"}, client={"kex": "x"}, client_banner=banner
        )
        assert odd.diagnosis is not None
    assert version_key("9.\u2463") == (9, 0)
    assert version_key("9." + "9" * 5000) == (9, 999_999_999)
    assert version_key.cache_info().maxsize == 1024
