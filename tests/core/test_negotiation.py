"""Negotiation as OpenSSH computes it on each side, and the words each side would log."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexproxy.core import limits
from kexproxy.core.lists import FIELD_BY_RFC, MARKERS
from kexproxy.core.negotiation import (
    IMPLICIT_MAC,
    Negotiation,
    guess_is_wrong,
    kex_family,
    match_list,
    negotiate,
    strict_kex,
)
from tests.builders import (
    CLIENT_MARKERS,
    SERVER_MARKERS,
    Offer,
    client_offer,
    kexinit_event,
    offer,
    server_offer,
)

CLIENT_ADDR = ("127.0.0.1", 51726)
SERVER_ADDR = ("127.0.0.1", 2222)


def run(client: Offer, server: Offer) -> Negotiation:
    return negotiate(
        kexinit_event(client),
        kexinit_event(server),
        client_addr=CLIENT_ADDR,
        server_addr=SERVER_ADDR,
    )


# -- match_list -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "server", "chosen"),
    [
        ("a,b,c", "c,b", "b"),  # the client's order wins, not the server's
        ("a,b,c", "c", "c"),
        ("a", "b", None),
        ("", "a", None),
        ("a", "", None),
        ("a,,b", "b", None),  # the client's list ends at the empty element
        ("b", "a,,b", None),  # so does the server's
        (",a", "a", None),
        ("a,", "a", "a"),
        ("AES128-CTR", "aes128-ctr", None),  # names compare exactly
        ("aes128-ctr ", "aes128-ctr", None),
    ],
)
def test_match_list(client: str, server: str, chosen: str | None) -> None:
    assert match_list(client, server) == chosen


def test_only_forty_server_entries_are_read() -> None:
    filler = [f"x{i}" for i in range(limits.OPENSSH_MAX_PROPOSAL_ENTRIES - 1)]
    assert match_list("wanted", ",".join([*filler, "wanted"])) == "wanted"  # the 40th
    assert match_list("wanted", ",".join([*filler, "y", "wanted"])) is None  # the 41st
    # The client's list has no such cap.
    client = ",".join([f"c{i}" for i in range(200)] + ["wanted"])
    assert match_list(client, "wanted") == "wanted"


def test_markers_are_never_chosen() -> None:
    for marker in MARKERS:
        assert match_list(f"{marker},aes128-ctr", f"{marker},aes128-ctr") == "aes128-ctr"
        assert match_list(marker, marker) is None


# -- whole negotiations -----------------------------------------------------------------


def test_a_typical_openssh_negotiation() -> None:
    result = run(client_offer(), server_offer())
    assert result.ok
    assert result.failures == ()
    assert result.rejections == {"client": None, "server": None}
    assert result.to_dict() == {
        "kex": "curve25519-sha256",
        "host_key": "ssh-ed25519",
        "cipher_c2s": "aes128-ctr",
        "cipher_s2c": "aes128-ctr",
        "mac_c2s": "hmac-sha2-256",
        "mac_s2c": "hmac-sha2-256",
        "compression_c2s": "none",
        "compression_s2c": "none",
    }
    assert list(result.to_dict()) == list(result.chosen)


def test_each_direction_is_negotiated_on_its_own() -> None:
    client = Offer(cipher_c2s="aes256-ctr,aes128-ctr", cipher_s2c="aes128-ctr,aes256-ctr")
    server = Offer(cipher_c2s="aes128-ctr,aes256-ctr", cipher_s2c="aes128-ctr,aes256-ctr")
    chosen = run(client, server).chosen
    assert chosen["cipher_c2s"] == "aes256-ctr"
    assert chosen["cipher_s2c"] == "aes128-ctr"


def test_markers_alone_do_not_make_a_common_kex() -> None:
    client = client_offer(kex=["diffie-hellman-group14-sha1"])
    server = server_offer(kex=["curve25519-sha256"])
    # Even if both sides sent the same marker, it is not a key exchange method.
    result = run(
        Offer(kex="ext-info-c,kex-strict-c-v00@openssh.com"),
        Offer(kex="ext-info-c,kex-strict-c-v00@openssh.com"),
    )
    assert result.chosen["kex"] is None
    failed = run(client, server)
    rejection = failed.rejections["client"]
    assert rejection is not None
    assert rejection.their_offer == ("curve25519-sha256", *SERVER_MARKERS)
    assert rejection.message.endswith(
        "Their offer: curve25519-sha256,ext-info-s,kex-strict-s-v00@openssh.com"
    )
    server_side = failed.rejections["server"]
    assert server_side is not None
    assert server_side.their_offer == ("diffie-hellman-group14-sha1", *CLIENT_MARKERS)


@pytest.mark.parametrize(
    "aead",
    sorted(["chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]),
)
def test_an_aead_cipher_makes_the_mac_implicit(aead: str) -> None:
    client = offer(ciphers=[aead, "aes128-ctr"], macs=["hmac-sha2-256"])
    server = offer(ciphers=[aead], macs=["umac-64@openssh.com"])  # no MAC in common
    result = run(client, server)
    assert result.ok
    assert result.chosen["mac_c2s"] == IMPLICIT_MAC
    assert result.chosen["mac_s2c"] == IMPLICIT_MAC


def test_the_mac_is_negotiated_in_the_direction_without_aead() -> None:
    client = Offer(
        cipher_c2s="chacha20-poly1305@openssh.com",
        cipher_s2c="aes128-ctr",
        mac_c2s="hmac-sha1",
        mac_s2c="hmac-sha1",
    )
    server = Offer(
        cipher_c2s="chacha20-poly1305@openssh.com",
        cipher_s2c="aes128-ctr",
        mac_c2s="hmac-md5",
        mac_s2c="hmac-md5",
    )
    result = run(client, server)
    assert result.chosen["mac_c2s"] == IMPLICIT_MAC
    assert result.chosen["mac_s2c"] is None
    assert [f.list for f in result.failures] == ["mac_algorithms_server_to_client"]


def test_languages_never_fail() -> None:
    result = run(offer(languages=["en-US"]), offer(languages=["fr-CA", "de"]))
    assert result.ok
    assert "languages_client_to_server" not in {f.list for f in result.failures}
    assert set(result.chosen) == {
        "kex",
        "host_key",
        "cipher_c2s",
        "cipher_s2c",
        "mac_c2s",
        "mac_s2c",
        "compression_c2s",
        "compression_s2c",
    }


# -- rejections: who fails first, and in what words -----------------------------------


def test_a_symmetric_cipher_mismatch_names_each_sides_incoming_list() -> None:
    client = client_offer(ciphers=["aes128-cbc", "3des-cbc"])
    server = server_offer(ciphers=["aes128-ctr", "aes256-ctr"])
    result = run(client, server)
    assert not result.ok
    assert [f.list for f in result.failures] == [
        "encryption_algorithms_server_to_client",
        "encryption_algorithms_client_to_server",
    ]
    assert result.failures[0].client_offer == ("aes128-cbc", "3des-cbc")
    assert result.failures[0].server_offer == ("aes128-ctr", "aes256-ctr")
    by_client, by_server = result.rejections["client"], result.rejections["server"]
    assert by_client is not None and by_server is not None
    assert by_client.list == "encryption_algorithms_server_to_client"
    assert by_client.message == (
        "Unable to negotiate with 127.0.0.1 port 2222: no matching cipher found. "
        "Their offer: aes128-ctr,aes256-ctr"
    )
    assert by_server.list == "encryption_algorithms_client_to_server"
    assert by_server.message == (
        "Unable to negotiate with 127.0.0.1 port 51726: no matching cipher found. "
        "Their offer: aes128-cbc,3des-cbc"
    )
    assert by_server.to_dict() == {
        "list": "encryption_algorithms_client_to_server",
        "reason": "no matching cipher found",
        "their_offer": ["aes128-cbc", "3des-cbc"],
        "message": by_server.message,
    }


def test_a_one_way_mismatch_is_named_by_both_sides() -> None:
    client = Offer(cipher_c2s="aes128-cbc", cipher_s2c="aes128-ctr")
    server = Offer(cipher_c2s="aes128-ctr", cipher_s2c="aes128-ctr")
    result = run(client, server)
    assert [f.list for f in result.failures] == ["encryption_algorithms_client_to_server"]
    for side in ("client", "server"):
        rejection = result.rejections[side]
        assert rejection is not None
        assert rejection.list == "encryption_algorithms_client_to_server"


def test_the_incoming_mac_comes_before_the_outgoing_cipher() -> None:
    # Client: IN (s2c) cipher ok, s2c MAC fails -> MAC. Server: IN (c2s) cipher fails.
    client = Offer(cipher_c2s="aes128-cbc", mac_s2c="hmac-md5")
    server = Offer()
    result = run(client, server)
    by_client, by_server = result.rejections["client"], result.rejections["server"]
    assert by_client is not None and by_server is not None
    assert by_client.list == "mac_algorithms_server_to_client"
    assert by_client.reason == "no matching MAC found"
    assert by_server.list == "encryption_algorithms_client_to_server"


def test_kex_comes_before_everything() -> None:
    client = client_offer(
        kex=["diffie-hellman-group1-sha1"], host_key=["ssh-dss"], ciphers=["3des-cbc"]
    )
    result = run(client, server_offer())
    assert [f.list for f in result.failures] == [
        "kex_algorithms",
        "server_host_key_algorithms",
        "encryption_algorithms_server_to_client",
        "encryption_algorithms_client_to_server",
    ]
    for side in ("client", "server"):
        rejection = result.rejections[side]
        assert rejection is not None and rejection.list == "kex_algorithms"


@pytest.mark.parametrize(
    ("client", "server", "list_name", "reason", "their"),
    [
        (
            offer(kex=["diffie-hellman-group14-sha1"]),
            offer(kex=["curve25519-sha256", "kex-strict-s-v00@openssh.com"]),
            "kex_algorithms",
            "no matching key exchange method found",
            "curve25519-sha256,kex-strict-s-v00@openssh.com",
        ),
        (
            offer(host_key=["ssh-rsa"]),
            offer(host_key=["ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"]),
            "server_host_key_algorithms",
            "no matching host key type found",
            "ssh-ed25519,rsa-sha2-512,rsa-sha2-256",
        ),
        (
            offer(ciphers=["aes128-cbc"]),
            offer(ciphers=["aes128-ctr", "aes256-ctr"]),
            "encryption_algorithms_server_to_client",
            "no matching cipher found",
            "aes128-ctr,aes256-ctr",
        ),
        (
            offer(macs=["hmac-md5"]),
            offer(macs=["hmac-sha1"]),
            "mac_algorithms_server_to_client",
            "no matching MAC found",
            "hmac-sha1",
        ),
        (
            offer(compression=["zlib"]),
            offer(compression=["none", "zlib@openssh.com"]),
            "compression_algorithms_server_to_client",
            "no matching compression method found",
            "none,zlib@openssh.com",
        ),
    ],
)
def test_the_clients_message_for_each_reason(
    client: Offer, server: Offer, list_name: str, reason: str, their: str
) -> None:
    rejection = run(client, server).rejections["client"]
    assert rejection is not None
    assert rejection.list == list_name
    assert rejection.reason == reason
    assert rejection.message == (
        f"Unable to negotiate with 127.0.0.1 port 2222: {reason}. Their offer: {their}"
    )


def test_the_servers_message_names_the_client_address() -> None:
    result = run(offer(macs=["hmac-sha1"]), offer(macs=["hmac-sha2-256"]))
    rejection = result.rejections["server"]
    assert rejection is not None
    assert rejection.message == (
        "Unable to negotiate with 127.0.0.1 port 51726: no matching MAC found. "
        "Their offer: hmac-sha1"
    )


def test_an_ipv6_peer_is_printed_without_brackets() -> None:
    result = negotiate(
        kexinit_event(offer(kex=["a"])),
        kexinit_event(offer(kex=["b"])),
        client_addr=("2001:db8::10", 40000),
        server_addr=("fe80::1", 22),
    )
    by_client, by_server = result.rejections["client"], result.rejections["server"]
    assert by_client is not None and by_server is not None
    assert by_client.message.startswith("Unable to negotiate with fe80::1 port 22: ")
    assert by_server.message.startswith("Unable to negotiate with 2001:db8::10 port 40000: ")


def test_their_offer_is_the_whole_list_as_sent() -> None:
    # OpenSSH prints the peer's proposal string: empty elements and entries past 40 included.
    server_kex = ",".join(["x"] * 45 + ["", "tail"])
    rejection = run(offer(kex=["y"]), Offer(kex=server_kex)).rejections["client"]
    assert rejection is not None
    assert rejection.message.endswith(f"Their offer: {server_kex}")
    assert len(rejection.their_offer) == 47


def test_failure_to_dict() -> None:
    failure = run(offer(compression=["zlib"]), offer()).failures[0]
    assert failure.to_dict() == {
        "list": "compression_algorithms_server_to_client",
        "client_offer": ["zlib"],
        "server_offer": ["none"],
    }


# -- RFC 4432: an RSA key exchange needs an RSA host key in common -------------------


def test_rsa_kex_is_skipped_without_a_common_ssh_rsa_host_key() -> None:
    kex = ["rsa2048-sha256", "rsa1024-sha1", "ecdh-sha2-nistp256"]
    without = run(offer(kex=kex, host_key=["ssh-ed25519", "ssh-rsa"]), offer(kex=kex))
    assert without.chosen["kex"] == "ecdh-sha2-nistp256"
    with_rsa = run(
        offer(kex=kex, host_key=["ssh-ed25519", "ssh-rsa"]),
        offer(kex=kex, host_key=["ssh-rsa"]),
    )
    assert with_rsa.chosen["kex"] == "rsa2048-sha256"
    # rsa-sha2-* are signature algorithms of the same key, but RFC 4432 names ssh-rsa.
    sha2 = run(offer(kex=kex, host_key=["rsa-sha2-256"]), offer(kex=kex, host_key=["rsa-sha2-256"]))
    assert sha2.chosen["kex"] == "ecdh-sha2-nistp256"
    only_rsa = run(offer(kex=["rsa1024-sha1"]), offer(kex=["rsa1024-sha1"]))
    assert only_rsa.chosen["kex"] is None
    assert only_rsa.failures[0].list == "kex_algorithms"


# -- guesses, markers, families --------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "server", "wrong"),
    [
        (offer(), offer(), False),
        (offer(kex=["a", "b"], host_key=["k"]), offer(kex=["a"], host_key=["k", "j"]), False),
        (offer(kex=["a", "b"]), offer(kex=["b", "a"]), True),
        (offer(host_key=["k", "j"]), offer(host_key=["j", "k"]), True),
        # The negotiated kex is "a" in both orders, but OpenSSH compares first names only.
        (offer(kex=["a", "b"]), offer(kex=["c", "a"]), True),
    ],
)
def test_guess_is_wrong(client: Offer, server: Offer, wrong: bool) -> None:
    assert guess_is_wrong(kexinit_event(client), kexinit_event(server)) is wrong


def test_strict_kex_markers() -> None:
    assert strict_kex(kexinit_event(client_offer()), "client") is True
    assert strict_kex(kexinit_event(server_offer()), "server") is True
    assert strict_kex(kexinit_event(client_offer()), "server") is False
    assert strict_kex(kexinit_event(offer()), "client") is False
    assert strict_kex(None, "server") is False


@pytest.mark.parametrize(
    ("kex", "family"),
    [
        (None, "unknown"),
        ("diffie-hellman-group-exchange-sha256", "gex"),
        ("diffie-hellman-group-exchange-sha1", "gex"),
        ("diffie-hellman-group14-sha256", "dh"),
        ("diffie-hellman-group1-sha1", "dh"),
        ("rsa2048-sha256", "rsa"),
        ("rsa1024-sha1", "rsa"),
        ("gss-gex-sha1-toWM5Slw5Ew8Mqkay+al2g==", "gss"),
        ("ecdh-sha2-nistp521", "ecdh"),
        ("curve25519-sha256@libssh.org", "ecdh"),
        ("curve448-sha512", "ecdh"),
        ("sntrup761x25519-sha512@openssh.com", "ecdh"),
        ("mlkem768x25519-sha256", "ecdh"),
        ("mlkem768nistp256-sha256", "ecdh"),
        ("ext-info-c", "unknown"),
    ],
)
def test_kex_family(kex: str | None, family: str) -> None:
    assert kex_family(kex) == family


# -- a property: agrees with a direct reading of OpenSSH's rules -----------------------

NAMES = st.sampled_from(["a", "b", "c", "d", "ext-info-c", "aes128-gcm@openssh.com", ""])


def _reference(client: str, server: str) -> str | None:
    def entries(raw: str, cap: int | None) -> list[str]:
        out: list[str] = []
        for name in raw.split(","):
            if name == "" or (cap is not None and len(out) == cap):
                break
            out.append(name)
        return out

    server_names = entries(server, limits.OPENSSH_MAX_PROPOSAL_ENTRIES)
    for name in entries(client, None):
        if name in server_names and name not in MARKERS:
            return name
    return None


@settings(max_examples=300, deadline=None)
@given(st.lists(NAMES, max_size=6), st.lists(NAMES, max_size=45))
def test_match_list_agrees_with_a_reference(client: list[str], server: list[str]) -> None:
    c, s = ",".join(client), ",".join(server)
    chosen = match_list(c, s)
    assert chosen == _reference(c, s)
    if chosen is not None:
        assert chosen in client and chosen in server and chosen not in MARKERS


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(NAMES, max_size=4), min_size=10, max_size=10),
    st.lists(st.lists(NAMES, max_size=4), min_size=10, max_size=10),
)
def test_rejections_are_each_sides_first_failure(
    client_lists: list[list[str]], server_lists: list[list[str]]
) -> None:
    client = Offer(**_as_offer(client_lists))
    server = Offer(**_as_offer(server_lists))
    result = run(client, server)
    failed = {f.list for f in result.failures}
    assert result.ok == (not failed)
    assert (result.rejections["client"] is None) == (not failed)
    assert (result.rejections["server"] is None) == (not failed)
    for f in result.failures:
        assert result.chosen[_field(f.list)] is None
    for role in ("client", "server"):
        rejection = result.rejections[role]
        if rejection is not None:
            assert rejection.list in failed


def _as_offer(lists: list[list[str]]) -> dict[str, str]:
    keys = (
        "kex",
        "host_key",
        "cipher_c2s",
        "cipher_s2c",
        "mac_c2s",
        "mac_s2c",
        "compression_c2s",
        "compression_s2c",
        "languages_c2s",
        "languages_s2c",
    )
    return {k: ",".join(v) for k, v in zip(keys, lists, strict=True)}


def _field(rfc: str) -> str:
    return FIELD_BY_RFC[rfc]
