"""The diagnosis: fixes for failures, verdicts for every handshake, hints kept apart from banners."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kexproxy.core.catalogue import catalogue
from kexproxy.core.diagnosis import diagnose, verdict_line
from kexproxy.core.events import KexInit
from kexproxy.core.lists import RFC_NAMES
from kexproxy.core.negotiation import negotiate, strict_kex
from kexproxy.core.record import JSONDict, SessionRecord

#: OpenSSH 9.2's client defaults (markers included), a well-behaved starting point.
CLIENT = {
    "kex": "sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,"
    "ecdh-sha2-nistp256,diffie-hellman-group-exchange-sha256,diffie-hellman-group14-sha256,"
    "ext-info-c,kex-strict-c-v00@openssh.com",
    "host_key": "ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256",
    "cipher": "chacha20-poly1305@openssh.com,aes128-ctr,aes256-gcm@openssh.com",
    "mac": "umac-64-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-256,hmac-sha1",
    "compression": "none,zlib@openssh.com,zlib",
}
SERVER = {
    **CLIENT,
    "kex": CLIENT["kex"].replace("ext-info-c,kex-strict-c", "ext-info-s,kex-strict-s"),
    "compression": "none,zlib@openssh.com",
}
_KIND_LISTS = {
    "kex": ("kex_algorithms",),
    "host_key": ("server_host_key_algorithms",),
    "cipher": ("encryption_algorithms_client_to_server", "encryption_algorithms_server_to_client"),
    "mac": ("mac_algorithms_client_to_server", "mac_algorithms_server_to_client"),
    "compression": (
        "compression_algorithms_client_to_server",
        "compression_algorithms_server_to_client",
    ),
}


def kexinit(lists: dict[str, str]) -> KexInit:
    raw = dict.fromkeys(RFC_NAMES, "")
    for kind, names in lists.items():
        for rfc in _KIND_LISTS.get(kind, (kind,)):
            raw[rfc] = names
    return KexInit(
        cookie=bytes(16),
        raw_lists=tuple(raw[name] for name in RFC_NAMES),
        first_kex_packet_follows=False,
        reserved=0,
    )


def make_record(
    client: dict[str, str] | None = None,
    server: dict[str, str] | None = None,
    *,
    client_banner: str = "SSH-2.0-OpenSSH_9.2p1",
    server_banner: str = "SSH-2.0-OpenSSH_9.2p1",
    host_key: JSONDict | None = None,
    dh_gex: JSONDict | None = None,
) -> SessionRecord:
    """A record as the session tracker would build it from two KEXINITs, then diagnosed."""
    ci = kexinit({**CLIENT, **(client or {})})
    si = kexinit({**SERVER, **(server or {})})
    neg = negotiate(ci, si, client_addr=("10.0.0.1", 50000), server_addr=("10.0.0.2", 22))
    record = SessionRecord(
        id="t",
        source="pcap",
        capture=None,
        started=None,
        ended=None,
        client={"ip": "10.0.0.1", "port": 50000},
        server={"ip": "10.0.0.2", "port": 22},
        client_banner=client_banner,
        server_banner=server_banner,
        client_kexinit=ci.to_dict(),
        server_kexinit=si.to_dict(),
        outcome="negotiated" if neg.ok else "failed",
        negotiated=neg.to_dict(),
        failures=[f.to_dict() for f in neg.failures],
        rejections={r: (v.to_dict() if v else None) for r, v in neg.rejections.items()},
        evidence={"first_close": None, "how": None, "disconnects": [], "banner_error": None},
        host_key=host_key
        if host_key is not None
        else {"algorithm": "ssh-ed25519", "key_type": "ed25519", "bits": 256},
        hassh=None,
        hassh_server=None,
        hassh_algorithms=None,
        hassh_server_algorithms=None,
        strict_kex={"client": strict_kex(ci, "client"), "server": strict_kex(si, "server")},
        bytes={"c2s": 0, "s2c": 0},
        notes=[],
        dh_gex=dh_gex,
    )
    return replace(record, diagnosis=diagnose(record))


def diag(record: SessionRecord) -> dict[str, Any]:
    assert record.diagnosis is not None
    return record.diagnosis


def fixes_for(record: SessionRecord, side: str) -> list[JSONDict]:
    return [f for f in diag(record)["fixes"] if f["side"] == side]


# -- fixes ---------------------------------------------------------------------------------


def test_kex_failure_fixes_name_both_sides_ranked_by_grade() -> None:
    record = make_record(server={"kex": "diffie-hellman-group1-sha1,diffie-hellman-group14-sha1"})
    assert record.outcome == "failed"
    fixes = diag(record)["fixes"]
    assert [f["rank"] for f in fixes] == list(range(1, len(fixes) + 1))
    grades = [f["grade"] for f in fixes]
    order = {"good": 0, "weak": 1, "broken": 2}
    assert [order[g] for g in grades] == sorted(order[g] for g in grades)
    top = fixes[0]
    # The server can add the client's post-quantum method: the strongest fix there is.
    assert (top["side"], top["add"], top["grade"], top["post_quantum"]) == (
        "server",
        "sntrup761x25519-sha512@openssh.com",
        "good",
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


def test_mac_and_host_key_forms() -> None:
    record = make_record(
        client={"cipher": "aes128-ctr", "mac": "hmac-sha2-512"},
        server={"cipher": "aes128-ctr", "mac": "hmac-md5"},
    )
    client = fixes_for(record, "client")[0]
    assert client["ssh_option"] == "-oMACs=+hmac-md5" and "MD5" in client["warning"]
    assert fixes_for(record, "server")[0]["sshd_config"] == "MACs +hmac-sha2-512"

    record = make_record(server={"host_key": "ssh-rsa"})
    client = fixes_for(record, "client")[0]
    assert client["ssh_option"] == "-oHostKeyAlgorithms=+ssh-rsa"
    server = fixes_for(record, "server")
    # sshd has an RSA key (it offers ssh-rsa): rsa-sha2-512 needs no new key, so it comes first.
    assert server[0]["add"] == "rsa-sha2-512"
    assert "already has" in server[0]["warning"]
    ed25519 = next(f for f in server if f["add"] == "ssh-ed25519")
    assert "HostKey" in ed25519["warning"] and "ssh-keygen -t ed25519" in ed25519["warning"]


def test_certificate_host_keys_rank_last_on_the_server() -> None:
    record = make_record(
        client={"host_key": "ssh-ed25519-cert-v01@openssh.com,ssh-ed25519"},
        server={"host_key": "rsa-sha2-256"},
    )
    server = fixes_for(record, "server")
    assert [f["add"] for f in server] == ["ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com"]
    assert "HostCertificate" in server[1]["warning"]


def test_compression_is_yes_or_no_in_openssh() -> None:
    record = make_record(
        client={"compression": "none"}, server={"compression": "zlib,zlib@openssh.com"}
    )
    client = fixes_for(record, "client")
    assert {f["ssh_option"] for f in client} == {"-oCompression=yes"}
    assert client[0]["ssh_config"] == "Host 10.0.0.2\n    Compression yes"
    server = fixes_for(record, "server")
    assert [f["sshd_config"] for f in server] == ["Compression no"]
    # sshd has had no pre-authentication zlib since 7.4: it is not offered as a server fix.
    record = make_record(client={"compression": "zlib"}, server={"compression": "none"})
    assert fixes_for(record, "server") == []
    assert any("upgrading the client" in text for text in diag(record)["real_fix"])
    old = make_record(
        client={"compression": "zlib"},
        server={"compression": "none"},
        server_banner="SSH-2.0-OpenSSH_6.6",
    )
    assert fixes_for(old, "server")[0]["sshd_config"] == "Compression yes"
    odd = make_record(client={"compression": "none"}, server={"compression": "lz4@example.com"})
    fix = fixes_for(odd, "client")[0]
    assert fix["ssh_option"] is None and "no option" in fix["warning"]


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


def test_old_openssh_gets_the_full_list_instead_of_plus() -> None:
    record = make_record(
        client={"kex": "diffie-hellman-group1-sha1,diffie-hellman-group-exchange-sha1"},
        client_banner="SSH-2.0-OpenSSH_6.6.1p1",
        server={"kex": "curve25519-sha256,curve25519-sha256@libssh.org"},
    )
    # OpenSSH 6.6 knows only the libssh.org name of X25519 and has no "+name" syntax.
    [fix] = fixes_for(record, "client")
    assert fix["ssh_option"] == (
        "-oKexAlgorithms=diffie-hellman-group1-sha1,diffie-hellman-group-exchange-sha1,"
        "curve25519-sha256@libssh.org"
    )


def test_several_failing_lists_get_combined_forms() -> None:
    record = make_record(
        client={"kex": "diffie-hellman-group1-sha1", "cipher": "3des-cbc", "mac": "hmac-md5"},
    )
    lists = record.failing_lists
    assert "kex_algorithms" in lists and "encryption_algorithms_client_to_server" in lists
    combined = diag(record)["combined"]
    assert combined["server"]["sshd_config"].splitlines() == [
        "KexAlgorithms +diffie-hellman-group1-sha1",
        "Ciphers +3des-cbc",
        "MACs +hmac-md5",
    ]
    assert combined["client"]["ssh_option"].startswith("-oKexAlgorithms=+sntrup761")
    assert combined["client"]["ssh_config"].startswith("Host 10.0.0.2\n    KexAlgorithms +")


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


# -- verdicts --------------------------------------------------------------------------------


def test_a_good_handshake() -> None:
    record = make_record()
    d = diag(record)
    assert record.negotiated and record.negotiated["kex"] == "sntrup761x25519-sha512@openssh.com"
    assert (d["grade"], d["reasons"], d["fixes"]) == ("good", [], [])
    assert d["post_quantum"]["post_quantum"] is True
    assert d["terrapin"] == {
        "cve": "CVE-2023-48795",
        "exposed": False,
        "strict_kex": True,
        "affected_modes": ["chacha20-poly1305@openssh.com"],
        "reason": "chacha20-poly1305@openssh.com is affected, but strict KEX is in effect on both sides",
    }
    assert d["host_key_size"]["grade"] == "good" and d["dh_gex"] is None
    assert verdict_line(record) == "good"


def test_grade_names_the_weakest_parts() -> None:
    record = make_record(
        client={"kex": "curve25519-sha256", "cipher": "aes128-cbc", "mac": "hmac-sha1"},
        server={"cipher": "aes128-cbc,3des-cbc", "mac": "hmac-sha1"},
    )
    d = diag(record)
    assert d["grade"] == "weak"
    assert d["reasons"][0].startswith("key exchange curve25519-sha256 is weak: no post-quantum")
    assert any(r.startswith("cipher aes128-cbc is weak: CBC mode") for r in d["reasons"])
    assert sum("aes128-cbc" in r for r in d["reasons"]) == 1  # both directions said once
    assert verdict_line(record) == "weak: curve25519-sha256 (+2 more)"
    broken = make_record(client={"cipher": "3des-cbc"}, server={"cipher": "3des-cbc"})
    assert diag(broken)["grade"] == "broken"
    assert diag(broken)["reasons"][0].startswith("cipher 3des-cbc is broken")


def test_terrapin_needs_both_markers() -> None:
    no_strict = {"kex": CLIENT["kex"].replace(",kex-strict-c-v00@openssh.com", "")}
    record = make_record(client=no_strict)
    terrapin = diag(record)["terrapin"]
    assert terrapin["exposed"] is True and terrapin["strict_kex"] is False
    assert "only the server offers strict KEX" in terrapin["reason"]
    assert any(r.startswith("Terrapin:") for r in diag(record)["reasons"])
    neither = make_record(
        client=no_strict, server={"kex": SERVER["kex"].replace(",kex-strict-s-v00@openssh.com", "")}
    )
    assert "only" not in diag(neither)["terrapin"]["reason"]


def test_terrapin_modes() -> None:
    no_strict = {"kex": "curve25519-sha256"}
    cbc_etm = make_record(
        client={**no_strict, "cipher": "aes128-cbc", "mac": "hmac-sha2-256-etm@openssh.com"},
        server={"cipher": "aes128-cbc"},
    )
    assert diag(cbc_etm)["terrapin"]["exposed"] is True
    assert diag(cbc_etm)["terrapin"]["affected_modes"] == [
        "aes128-cbc with hmac-sha2-256-etm@openssh.com"
    ]
    cbc_em = make_record(
        client={**no_strict, "cipher": "aes128-cbc", "mac": "hmac-sha2-256"},
        server={"cipher": "aes128-cbc"},
    )
    assert diag(cbc_em)["terrapin"]["exposed"] is False
    ctr_etm = make_record(
        client={**no_strict, "cipher": "aes128-ctr", "mac": "hmac-sha2-256-etm@openssh.com"}
    )
    assert diag(ctr_etm)["terrapin"]["exposed"] is False
    gcm = make_record(client={**no_strict, "cipher": "aes256-gcm@openssh.com"})
    assert diag(gcm)["terrapin"]["exposed"] is False
    failed = make_record(client={"cipher": "aes128-cbc"})
    assert diag(failed)["terrapin"]["exposed"] is None


def test_post_quantum_reasons() -> None:
    preferred_classical = make_record(
        client={"kex": "curve25519-sha256,sntrup761x25519-sha512@openssh.com"}
    )
    pq = diag(preferred_classical)["post_quantum"]
    assert pq["post_quantum"] is False
    assert "both sides offer sntrup761x25519-sha512@openssh.com" in pq["reason"]
    server_lacks = make_record(server={"kex": "curve25519-sha256"})
    assert (
        "the server offers no post-quantum method" in diag(server_lacks)["post_quantum"]["reason"]
    )
    mlkem = make_record(
        client={"kex": "mlkem768x25519-sha256"}, server={"kex": "mlkem768x25519-sha256"}
    )
    assert diag(mlkem)["post_quantum"]["post_quantum"] is True


def test_host_key_sizes() -> None:
    def size(key_type: str, bits: int | None) -> Any:
        record = make_record(host_key={"algorithm": "x", "key_type": key_type, "bits": bits})
        return diag(record)["host_key_size"]["grade"]

    assert size("rsa", 768) == "broken"
    assert size("rsa", 1024) == "weak"
    assert size("rsa", 2047) == "weak"
    assert size("rsa", 2048) == "good"
    assert size("rsa-cert", 1024) == "weak"
    assert size("rsa", None) is None
    assert size("dsa", 1024) == "broken"
    assert size("ed25519", 256) == "good"
    record = make_record(host_key={"algorithm": "ssh-rsa", "key_type": "rsa", "bits": 1024})
    assert any("1024-bit RSA" in r for r in diag(record)["reasons"])
    nothing = make_record(host_key={})
    assert diag(nothing)["host_key_size"] is None


def test_group_exchange_sizes() -> None:
    gex = {"kex": "diffie-hellman-group-exchange-sha256"}

    def verdict(p_bits: int | None, request: JSONDict | None = None) -> Any:
        record = make_record(
            client=gex, server=gex, dh_gex={"request": request, "p_bits": p_bits, "g": 2}
        )
        return diag(record)["dh_gex"]

    assert verdict(768)["grade"] == "broken"
    assert verdict(1024)["grade"] == "weak"
    assert verdict(2048)["grade"] == "good"
    assert verdict(None)["grade"] is None
    small = verdict(1024, {"min": 1024, "n": 2048, "max": 8192})
    assert "accepts groups from 1024 bits" in small["notes"][0]
    outside = verdict(1024, {"min": 2048, "n": 3072, "max": 8192})
    assert "outside the range" in outside["notes"][0]
    rsa = make_record(
        client={"kex": "rsa2048-sha256"},
        server={"kex": "rsa2048-sha256", "host_key": "ssh-rsa"},
        dh_gex={"transient_rsa_bits": 1024},
    )
    assert diag(rsa)["dh_gex"]["kind"] == "rsa" and diag(rsa)["dh_gex"]["grade"] == "weak"


def test_version_hint_never_reads_the_banner() -> None:
    truthful = make_record()
    lying = make_record(client_banner="SSH-2.0-OpenSSH_10.5", server_banner="SSH-2.0-Cisco-1.25")
    assert diag(truthful)["version_hint"] == diag(lying)["version_hint"]
    assert "never the banner" in diag(lying)["version_hint"]["caveat"]
    assert "CVE" not in str(diag(lying)["version_hint"])


def test_unknown_names_are_listed_never_raised() -> None:
    record = make_record(
        client={"kex": "x-weird@example.com,curve25519-sha256", "mac": "\x1b[31mred"}
    )
    assert diag(record)["unknown"]["client"] == ["x-weird@example.com", "\x1b[31mred"]


def test_verdict_line_for_a_failure_shows_the_strongest_fix() -> None:
    """The same fix `explain` ranks first: here the server can add a post-quantum kex the
    client offers, which beats the client adding the server's SHA-1 group."""
    record = make_record(server={"kex": "diffie-hellman-group14-sha1"})
    assert verdict_line(record) == (
        "fix server: KexAlgorithms +sntrup761x25519-sha512@openssh.com (good)"
    )
    assert (record.diagnosis or {})["fixes"][0]["add"] == "sntrup761x25519-sha512@openssh.com"
    client_fix = next(f for f in (record.diagnosis or {})["fixes"] if f["side"] == "client")
    assert client_fix["ssh_option"] == "-oKexAlgorithms=+diffie-hellman-group14-sha1"
    with_policy = replace(record, policy={"evaluated": True, "violations": [{}, {}]})
    assert verdict_line(with_policy).endswith("; policy: 2 violations")


NAMES = st.sampled_from(
    [*sorted({a.name for a in catalogue() if not a.prefix}), "", "zzz", "gss-group14-sha256-abc"]
)
NAME_LIST = st.lists(NAMES | st.text(min_size=1, max_size=12), max_size=6).map(",".join)


@settings(max_examples=100, deadline=None)
@given(
    client=st.fixed_dictionaries(
        dict.fromkeys(("kex", "host_key", "cipher", "mac", "compression"), NAME_LIST)
    ),
    server=st.fixed_dictionaries(
        dict.fromkeys(("kex", "host_key", "cipher", "mac", "compression"), NAME_LIST)
    ),
    banner=st.sampled_from(
        [
            "SSH-2.0-OpenSSH_9.2p1",
            "SSH-2.0-OpenSSH_5.3",
            "SSH-2.0-dropbear",
            "",
            "SSH-2.0-OpenSSH_x.y",
        ]
    ),
)
def test_any_offers_give_a_diagnosis(
    client: dict[str, str], server: dict[str, str], banner: str
) -> None:
    """Whatever the peers send, the diagnosis is built; every fix adds a name the other side offers."""
    record = make_record(client, server, client_banner=banner, server_banner=banner)
    d = diag(record)
    offers = {"client": record.server_kexinit or {}, "server": record.client_kexinit or {}}
    for fix in d["fixes"]:
        for rfc in fix["lists"]:
            assert fix["add"] in offers[fix["side"]][rfc]
    if record.failures:
        assert d["grade"] is None
    else:
        assert d["grade"] in ("good", "weak", "broken", None)  # None: nothing in it is known


def test_dropbear_sides_get_dropbear_advice() -> None:
    """Dropbear fixes its algorithms at build time: names outside its build rank last."""
    record = make_record(
        client={
            "kex": "curve25519-sha256,kexguess2@matt.ucc.asn.au",
            "cipher": "chacha20-poly1305@openssh.com",
        },
        server={"kex": "diffie-hellman-group-exchange-sha256", "cipher": "aes128-ctr,aes256-cbc"},
        client_banner="SSH-2.0-dropbear_2022.83",
    )
    kex = [f for f in diag(record)["fixes"] if f["list"] == "kex_algorithms"]
    assert kex[0]["side"] == "server" and kex[-1]["side"] == "client"
    assert "rebuild or upgrade it" in kex[-1]["warning"]
    cipher = fixes_for(record, "client")
    cipher = [f for f in cipher if "encryption_algorithms_client_to_server" in f["lists"]]
    assert cipher[0]["add"] == "aes128-ctr"
    assert "dbclient -c aes128-ctr" in cipher[0]["warning"]


def test_every_record_of_every_capture_carries_a_valid_diagnosis() -> None:
    """The record builder diagnoses every connection, whatever its outcome, within the schema."""
    import json
    from pathlib import Path

    import jsonschema

    from kexproxy.analyse import records_of
    from kexproxy.schema import session_record_schema

    root = Path(__file__).resolve().parents[2]
    validator = jsonschema.Draft202012Validator(session_record_schema())
    captures = sorted((root / "tests" / "data" / "public").glob("*.pcap*"))
    captures += sorted((root / "captures").glob("*.pcap*"))
    outcomes = set()
    for path in captures:
        for record in records_of(str(path), include_non_ssh=True):
            assert record.diagnosis is not None
            outcomes.add(record.outcome)
            validator.validate(json.loads(json.dumps(record.to_dict())))
    assert {"negotiated", "failed", "incomplete"} <= outcomes


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
    assert verdict_line(record) == "fix add hmac-sha2-256-etm@openssh.com on the client (good)"
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
    assert verdict_line(openssh) == "fix -oMACs=+hmac-sha2-256-etm@openssh.com (good)"


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
