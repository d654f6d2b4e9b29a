"""Per-list fixes: only names the other side offers and this side can offer, ranked."""

from __future__ import annotations

from dataclasses import replace

from kexproxy.core.catalogue import GRADE_ORDER
from kexproxy.core.diagnosis import diagnose
from kexproxy.core.lists import RFC_NAMES
from tests.core.diagnosis.records import CLIENT, SERVER, diag, fixes_for, kexinit, make_record


def test_kex_failure_fixes_name_both_sides_ranked_by_grade() -> None:
    record = make_record(server={"kex": "diffie-hellman-group1-sha1,diffie-hellman-group14-sha1"})
    assert record.outcome == "failed"
    fixes = diag(record)["fixes"]
    assert [f["rank"] for f in fixes] == list(range(1, len(fixes) + 1))
    order = [GRADE_ORDER[f["grade"]] for f in fixes]
    assert order == sorted(order)
    top = fixes[0]
    # The server can add the client's post-quantum method: the strongest fix there is.
    assert (top["side"], top["add"], top["post_quantum"]) == (
        "server",
        "sntrup761x25519-sha512@openssh.com",
        True,
    )
    assert (top["cost"], top["verified"], top["grade"]) == (0, True, "strong")
    client = fixes_for(record, "client")
    assert [f["add"] for f in client] == [
        "diffie-hellman-group14-sha1",
        "diffie-hellman-group1-sha1",
    ]
    assert client[1]["grade"] == "broken"
    assert diag(record)["grade"] is None


def test_fixes_only_use_names_the_other_side_offers() -> None:
    record = make_record(
        server={"cipher": "aes128-cbc,3des-cbc,unknown-cipher@example.com"},
    )
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
    # OpenSSH 9.2 cannot offer a name it does not implement: the unknown one is no fix.
    client = fixes_for(record, "client")
    assert [f["add"] for f in client] == ["aes128-cbc", "3des-cbc"]
    assert [f["grade"] for f in client] == ["weak", "broken"]
    assert fixes_for(record, "server")[0]["add"] == "chacha20-poly1305@openssh.com"
    assert set(SERVER["cipher"].split(",")) != {"aes128-cbc"}


def test_certificate_host_keys_rank_last_on_the_server() -> None:
    record = make_record(
        client={"host_key": "ssh-ed25519-cert-v01@openssh.com,ssh-ed25519"},
        server={"host_key": "rsa-sha2-256"},
    )
    server = fixes_for(record, "server")
    assert [f["add"] for f in server] == ["ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com"]
    assert [f["cost"] for f in server] == [1, 2]  # a new key, then a certificate


def test_a_side_that_cannot_implement_the_name_gets_no_fix() -> None:
    """OpenSSH 10.0 removed DSA: a DSA-only server must be upgraded, not accommodated."""
    record = make_record(server={"host_key": "ssh-dss"}, client_banner="SSH-2.0-OpenSSH_10.0")
    assert fixes_for(record, "client") == []
    assert any(
        "client (OpenSSH 10.0) can add none of the server's host key" in text
        for text in diag(record)["real_fix"]
    )
    # A client whose banner says nothing known is given the benefit of the doubt, marked so.
    lenient = make_record(server={"host_key": "ssh-dss"}, client_banner="SSH-2.0-Foo_1.0")
    [fix] = fixes_for(lenient, "client")
    assert (fix["add"], fix["verified"]) == ("ssh-dss", False)


def test_directions_that_differ_are_fixed_one_by_one() -> None:
    record = make_record(client={"cipher": "aes128-cbc"}, server={"cipher": "aes256-ctr"})
    assert [sorted(f["lists"]) for f in fixes_for(record, "client")] == [
        ["encryption_algorithms_client_to_server", "encryption_algorithms_server_to_client"]
    ]
    ci = kexinit({**CLIENT, "cipher": "aes128-cbc"})
    raw = dict(zip(RFC_NAMES, ci.raw_lists, strict=True))
    raw["encryption_algorithms_server_to_client"] = "aes256-ctr"
    split = replace(ci, raw_lists=tuple(raw[n] for n in RFC_NAMES))
    record = replace(record, client_kexinit=split.to_dict())
    record = replace(record, diagnosis=diagnose(record))
    # c2s: the client offers aes128-cbc, s2c: aes256-ctr, which the server has: fixed one by one.
    server = fixes_for(record, "server")
    assert server and all(len(f["lists"]) == 1 for f in server)


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
