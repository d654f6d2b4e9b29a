"""The session tracker, told as transcripts: "the server says X, then the client says Y".

Every record is checked against the JSON Schema (`Transcript.record`/`finish` do it), and
the properties at the end feed the same two streams in any segmentation and interleaving.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kexproxy.core import limits
from kexproxy.core.observer import Endpoint, Side
from kexproxy.core.record import rfc3339
from kexproxy.core.session import SessionTracker
from tests.builders import (
    CLIENT,
    GROUP14_P,
    SERVER,
    T0,
    Offer,
    Transcript,
    assert_valid_record,
    client_offer,
    debug,
    dh_init,
    dh_reply,
    disconnect,
    ecdh_init,
    ecdh_reply,
    gex_group,
    gex_init,
    gex_reply,
    gex_request,
    gex_request_old,
    host_key,
    ident,
    ignore,
    kexinit,
    kexrsa_done,
    kexrsa_pubkey,
    kexrsa_secret,
    newkeys,
    offer,
    offer_dict,
    packet,
    server_offer,
    signature,
)

CLIENT_BANNER = ident("OpenSSH_9.6")
SERVER_BANNER = ident("OpenSSH_9.2p1", comments="Debian-2+deb12u3")
ENCRYPTED = b"\x8f\x02\x11\xee" * 20


def negotiated_ecdh(
    t: Transcript, *, client: Offer | None = None, server: Offer | None = None
) -> Transcript:
    """A whole OpenSSH-like handshake with an Ed25519 host key, up to encrypted data."""
    key = host_key("ed25519")
    t.server(SERVER_BANNER).client(CLIENT_BANNER)
    t.client(kexinit(client or client_offer())).server(kexinit(server or server_offer()))
    t.client(ecdh_init()).server(ecdh_reply(key.blob) + newkeys())
    t.client(newkeys() + ENCRYPTED).server(ENCRYPTED)
    return t


# -- success ---------------------------------------------------------------------------------


def test_a_successful_ecdh_handshake() -> None:
    t = negotiated_ecdh(Transcript())
    assert t.tracker.decided and not t.tracker.inspecting and t.tracker.outcome_known
    r = t.close("client").close("server").finish()
    assert r["outcome"] == "negotiated"
    assert r["client"] == {"ip": CLIENT.ip, "port": CLIENT.port}
    assert r["server"] == {"ip": SERVER.ip, "port": SERVER.port}
    assert r["client_banner"] == "SSH-2.0-OpenSSH_9.6"
    assert r["server_banner"] == "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"
    assert r["client_kexinit"] == offer_dict(client_offer())
    assert r["server_kexinit"] == offer_dict(server_offer())
    assert r["negotiated"] == {
        "kex": "curve25519-sha256",
        "host_key": "ssh-ed25519",
        "cipher_c2s": "aes128-ctr",
        "cipher_s2c": "aes128-ctr",
        "mac_c2s": "hmac-sha2-256",
        "mac_s2c": "hmac-sha2-256",
        "compression_c2s": "none",
        "compression_s2c": "none",
    }
    assert r["failures"] == []
    assert r["rejections"] == {"client": None, "server": None}
    assert r["kex_family"] == "ecdh"
    key = host_key("ed25519")
    assert r["host_key"] == {
        "algorithm": "ssh-ed25519",
        "key_type": "ed25519",
        "bits": 256,
        "sha256": _fp(key.blob),
        "certificate": False,
        "signature": "ssh-ed25519",
    }
    assert r["strict_kex"] == {"client": True, "server": True}
    assert r["roles"] == {"determined_by": "markers", "tcp_initiator": "client"}
    assert r["evidence"]["first_close"] == "client"
    assert r["evidence"]["how"] == "fin"
    assert r["notes"] == []
    client_bytes = len(
        CLIENT_BANNER + kexinit(client_offer()) + ecdh_init() + newkeys() + ENCRYPTED
    )
    assert r["bytes"] == {"c2s": client_bytes, "s2c": r["bytes"]["s2c"]}
    assert r["started"] == "2023-11-14T22:13:20.001000Z"
    assert [(e["from"], e["event"]) for e in r["timeline"]] == [
        ("server", "banner"),
        ("client", "banner"),
        ("client", "SSH_MSG_KEXINIT"),
        ("server", "SSH_MSG_KEXINIT"),
        ("client", "SSH_MSG_KEX_ECDH_INIT"),
        ("server", "SSH_MSG_KEX_ECDH_REPLY"),
        ("server", "SSH_MSG_NEWKEYS"),
        ("client", "SSH_MSG_NEWKEYS"),
        ("client", "FIN"),
        ("server", "FIN"),
    ]


def decided(t: Transcript) -> bool:
    """`tracker.decided`, read through a call so that mypy keeps no earlier narrowing."""
    return t.tracker.decided


def _fp(blob: bytes) -> str:
    from kexproxy.core.hostkey import fingerprint

    return fingerprint(blob)


def test_hassh_is_computed_over_the_lists_as_sent() -> None:
    r = negotiated_ecdh(Transcript()).finish()
    assert r["hassh_algorithms"] == (
        "curve25519-sha256,ecdh-sha2-nistp256,ext-info-c,kex-strict-c-v00@openssh.com;"
        "aes128-ctr,aes256-ctr;hmac-sha2-256,hmac-sha1;none"
    )
    import hashlib

    assert r["hassh"] == hashlib.md5(r["hassh_algorithms"].encode()).hexdigest()
    assert r["hassh_server_algorithms"].startswith(
        "curve25519-sha256,ecdh-sha2-nistp256,ext-info-s,"
    )
    assert r["hassh_server"] == hashlib.md5(r["hassh_server_algorithms"].encode()).hexdigest()


@pytest.mark.parametrize(("kind", "bits"), [("rsa", 3072), ("ecdsa", 384), ("ed25519", 256)])
def test_the_host_key_comes_from_the_ecdh_reply(kind: Any, bits: int) -> None:
    key = host_key(kind, bits)
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(server_offer(host_key=[key.algorithm])))
    t.client(CLIENT_BANNER + kexinit(client_offer(host_key=[key.algorithm])) + ecdh_init())
    t.server(ecdh_reply(key.blob, sig=signature(key.algorithm, b"sig")) + newkeys())
    t.client(newkeys())
    r = t.finish()
    assert r["outcome"] == "negotiated"
    assert r["host_key"]["key_type"] == kind
    assert r["host_key"]["bits"] == bits
    assert r["host_key"]["sha256"] == _fp(key.blob)
    assert r["host_key"]["signature"] == key.algorithm


def test_a_classic_dh_handshake() -> None:
    key = host_key("rsa", 2048)
    lists = {"kex": ["diffie-hellman-group14-sha256"], "host_key": ["rsa-sha2-256"]}
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(offer(**lists))).client(
        CLIENT_BANNER + kexinit(offer(**lists))
    )
    t.client(dh_init()).server(dh_reply(key.blob, sig=signature("rsa-sha2-256", b"s")) + newkeys())
    t.client(newkeys())
    r = t.finish()
    assert r["kex_family"] == "dh"
    assert r["host_key"]["key_type"] == "rsa" and r["host_key"]["signature"] == "rsa-sha2-256"
    assert [e["event"] for e in r["timeline"]][4:6] == ["SSH_MSG_KEXDH_INIT", "SSH_MSG_KEXDH_REPLY"]


def test_group_exchange_sizes_and_host_key() -> None:
    key = host_key("ecdsa", 256)
    lists = {"kex": ["diffie-hellman-group-exchange-sha256"], "host_key": [key.algorithm]}
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(offer(**lists))).client(
        CLIENT_BANNER + kexinit(offer(**lists))
    )
    t.client(gex_request(2048, 7680, 8192)).server(gex_group(GROUP14_P, 2))
    t.client(gex_init()).server(gex_reply(key.blob, sig=signature(key.algorithm, b"s")) + newkeys())
    t.client(newkeys())
    r = t.finish()
    assert r["outcome"] == "negotiated"
    assert r["kex_family"] == "gex"
    assert r["dh_gex"] == {"request": {"min": 2048, "n": 7680, "max": 8192}, "p_bits": 2048, "g": 2}
    assert r["host_key"]["sha256"] == _fp(key.blob)
    assert [e["event"] for e in r["timeline"] if e["event"].startswith("SSH_MSG_KEX_")] == [
        "SSH_MSG_KEX_DH_GEX_REQUEST",
        "SSH_MSG_KEX_DH_GEX_GROUP",
        "SSH_MSG_KEX_DH_GEX_INIT",
        "SSH_MSG_KEX_DH_GEX_REPLY",
    ]


def test_group_exchange_old_request_and_a_huge_generator() -> None:
    lists = {"kex": ["diffie-hellman-group-exchange-sha1"]}
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(offer(**lists))).client(
        CLIENT_BANNER + kexinit(offer(**lists))
    )
    t.client(gex_request_old(1024)).server(gex_group(GROUP14_P, 1 << 100))
    r = t.finish()
    assert r["dh_gex"] == {
        "request": {"min": None, "n": 1024, "max": None},
        "p_bits": 2048,
        "g": None,
    }
    assert r["outcome"] == "aborted"


def test_malformed_gex_messages_are_notes() -> None:
    lists = {"kex": ["diffie-hellman-group-exchange-sha256"]}
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(offer(**lists))).client(
        CLIENT_BANNER + kexinit(offer(**lists))
    )
    t.client(packet(bytes([34]) + b"\x00\x00")).server(packet(bytes([31]) + b"\x00"))
    t.server(packet(bytes([33]) + b"\x00\x00\x00\x09abc"))
    r = t.finish()
    assert r["dh_gex"] == {"request": None, "p_bits": None, "g": None}
    assert "malformed SSH_MSG_KEX_DH_GEX_REQUEST: min: needs 4 bytes, 2 left" in r["notes"]
    assert "malformed SSH_MSG_KEX_DH_GEX_GROUP: p length: needs 4 bytes, 1 left" in r["notes"]
    assert (
        "malformed SSH_MSG_KEX_DH_GEX_REPLY: host key: length 9 exceeds the 3 bytes left; "
        "host key not decoded" in r["notes"]
    )
    assert r["host_key"] is None


def test_rsa_key_exchange() -> None:
    key = host_key("rsa", 2048)
    transient = host_key("rsa", 1024)
    lists = {"kex": ["rsa2048-sha256"], "host_key": ["ssh-rsa"]}
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(offer(**lists))).client(
        CLIENT_BANNER + kexinit(offer(**lists))
    )
    t.server(kexrsa_pubkey(key.blob, transient.blob)).client(kexrsa_secret())
    t.server(kexrsa_done(signature("ssh-rsa", bytes(256))) + newkeys()).client(newkeys())
    r = t.finish()
    assert r["outcome"] == "negotiated"
    assert r["kex_family"] == "rsa"
    assert r["host_key"]["bits"] == 2048 and r["host_key"]["sha256"] == _fp(key.blob)
    assert r["host_key"]["signature"] == "ssh-rsa"
    assert r["dh_gex"] == {"transient_rsa_bits": 1024}
    # The server speaks first in RSA kex; roles still come from who connected.
    assert r["roles"]["determined_by"] == "tcp"
    assert [e["event"] for e in r["timeline"]][4:7] == [
        "SSH_MSG_KEXRSA_PUBKEY",
        "SSH_MSG_KEXRSA_SECRET",
        "SSH_MSG_KEXRSA_DONE",
    ]


def test_malformed_rsa_kex_messages_are_notes() -> None:
    lists = {"kex": ["rsa1024-sha1"], "host_key": ["ssh-rsa"]}
    key = host_key("rsa", 1024)
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(offer(**lists))).client(
        CLIENT_BANNER + kexinit(offer(**lists))
    )
    t.server(packet(bytes([30]) + _string(key.blob) + b"\x00\x00\x01"))
    t.server(packet(bytes([32]) + b"\x00"))
    r = t.finish()
    assert r["host_key"]["sha256"] == _fp(key.blob)
    assert "signature" not in r["host_key"]
    assert r["dh_gex"] is None
    assert any(
        n.startswith("malformed SSH_MSG_KEXRSA_PUBKEY: transient RSA key") for n in r["notes"]
    )
    assert any(n.startswith("malformed SSH_MSG_KEXRSA_DONE: signature") for n in r["notes"])


def _string(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


def test_a_corrupt_reply_after_the_host_key_keeps_the_key() -> None:
    key = host_key("ed25519")
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(server_offer())).client(
        CLIENT_BANNER + kexinit(client_offer())
    )
    t.client(ecdh_init()).server(packet(bytes([31]) + _string(key.blob) + b"\x00\x00\x00\x20"))
    r = t.finish()
    assert r["host_key"]["sha256"] == _fp(key.blob)
    assert "signature" not in r["host_key"]
    assert any(
        n.startswith("malformed SSH_MSG_KEX_ECDH_REPLY after the host key:") for n in r["notes"]
    )


def test_a_bad_host_key_is_a_note() -> None:
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(server_offer())).client(
        CLIENT_BANNER + kexinit(client_offer())
    )
    t.client(ecdh_init()).server(ecdh_reply(_string(b"ssh-ed25519") + _string(bytes(31))))
    r = t.finish()
    assert r["host_key"]["key_type"] == "ed25519"
    assert r["host_key"]["error"].startswith("host key does not load")
    assert r["host_key"]["error"] in r["notes"]


def test_only_one_newkeys_is_negotiated_with_a_note() -> None:
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(server_offer())).client(
        CLIENT_BANNER + kexinit(client_offer())
    )
    t.client(ecdh_init()).server(ecdh_reply(host_key("ed25519").blob) + newkeys())
    r = t.close("server").finish()
    assert r["outcome"] == "negotiated"
    assert "only the server's SSH_MSG_NEWKEYS was seen" in r["notes"]


# -- failures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "server", "lists", "by_client", "by_server"),
    [
        (
            client_offer(kex=["diffie-hellman-group14-sha1"]),
            server_offer(kex=["curve25519-sha256"]),
            ["kex_algorithms"],
            "kex_algorithms",
            "kex_algorithms",
        ),
        (
            client_offer(host_key=["ssh-rsa"]),
            server_offer(host_key=["ssh-ed25519"]),
            ["server_host_key_algorithms"],
            "server_host_key_algorithms",
            "server_host_key_algorithms",
        ),
        (
            client_offer(ciphers=["aes128-cbc"]),
            server_offer(),
            ["encryption_algorithms_server_to_client", "encryption_algorithms_client_to_server"],
            "encryption_algorithms_server_to_client",
            "encryption_algorithms_client_to_server",
        ),
        (
            client_offer(macs=["hmac-md5"]),
            server_offer(),
            ["mac_algorithms_server_to_client", "mac_algorithms_client_to_server"],
            "mac_algorithms_server_to_client",
            "mac_algorithms_client_to_server",
        ),
        (
            client_offer(compression=["zlib"]),
            server_offer(),
            ["compression_algorithms_server_to_client", "compression_algorithms_client_to_server"],
            "compression_algorithms_server_to_client",
            "compression_algorithms_client_to_server",
        ),
    ],
)
def test_each_failure_kind(
    client: Offer, server: Offer, lists: list[str], by_client: str, by_server: str
) -> None:
    t = Transcript()
    t.server(SERVER_BANNER).client(CLIENT_BANNER + kexinit(client)).server(kexinit(server))
    assert t.tracker.outcome_known
    assert not decided(t)  # nobody has closed yet
    t.close("client")
    assert decided(t)
    r = t.close("server").finish()
    assert r["outcome"] == "failed"
    assert [f["list"] for f in r["failures"]] == lists
    assert r["rejections"]["client"]["list"] == by_client
    assert r["rejections"]["server"]["list"] == by_server
    assert r["rejections"]["client"]["message"].startswith(
        f"Unable to negotiate with {SERVER.ip} port {SERVER.port}: "
    )
    assert r["rejections"]["server"]["message"].startswith(
        f"Unable to negotiate with {CLIENT.ip} port {CLIENT.port}: "
    )
    assert r["evidence"]["how"] == "fin" and r["evidence"]["first_close"] == "client"
    assert r["evidence"]["disconnects"] == []
    assert r["host_key"] is None


def test_a_disconnect_before_the_fin_is_the_evidence() -> None:
    t = Transcript()
    t.server(SERVER_BANNER).client(CLIENT_BANNER + kexinit(client_offer()))
    t.server(kexinit(server_offer()) + disconnect(2, "multiple KEXINIT received from peer"))
    t.close("server").close("client")
    r = t.finish()
    assert r["outcome"] == "aborted"
    assert r["evidence"]["first_close"] == "server"
    assert r["evidence"]["how"] == "disconnect"
    assert r["evidence"]["disconnects"] == [
        {
            "sender": "server",
            "reason_code": 2,
            "reason": "SSH_DISCONNECT_PROTOCOL_ERROR",
            "description": "multiple KEXINIT received from peer",
        }
    ]
    assert r["timeline"][-3]["detail"] == (
        "SSH_DISCONNECT_PROTOCOL_ERROR: multiple KEXINIT received from peer"
    )


def test_a_disconnect_after_the_peers_fin_does_not_make_it_first() -> None:
    t = Transcript()
    t.server(SERVER_BANNER).client(CLIENT_BANNER + kexinit(client_offer(ciphers=["3des-cbc"])))
    t.server(kexinit(server_offer())).close("server")
    t.client(disconnect(11, "disconnected by user")).close("client")
    evidence = t.finish()["evidence"]
    assert evidence["first_close"] == "server"
    assert evidence["how"] == "fin"
    assert [d["sender"] for d in evidence["disconnects"]] == ["client"]


def test_an_rst_is_evidence_and_ends_both_directions() -> None:
    t = Transcript()
    t.server(SERVER_BANNER).client(CLIENT_BANNER + kexinit(client_offer())[:20])
    t.close("server", "rst")
    assert not t.tracker.inspecting
    r = t.record()
    assert r["evidence"]["first_close"] == "server" and r["evidence"]["how"] == "rst"
    assert "client: stream ended inside a packet (20 bytes of it seen)" in r["notes"]
    assert r["outcome"] == "incomplete"


def test_closes_are_listed_in_order() -> None:
    t = Transcript()
    t.server(SERVER_BANNER).close("client").close("server", "rst").close("client", "rst")
    closes = t.finish()["evidence"]["closes"]
    assert [(c["side"], c["how"]) for c in closes] == [("client", "fin"), ("server", "rst")]


def test_a_timeout_is_evidence() -> None:
    t = Transcript(source="proxy")
    t.server(SERVER_BANNER).client(CLIENT_BANNER)
    t.tracker.receive_timeout(T0 + 30, "no KEXINIT within 30 s")
    t.tracker.receive_timeout(T0 + 60, "again")
    assert t.tracker.decided
    r = t.record()
    assert r["evidence"]["how"] == "timeout" and r["evidence"]["first_close"] is None
    assert r["evidence"]["timeout"] == "no KEXINIT within 30 s"
    assert r["ended"] == "2023-11-14T22:13:50.000000Z"
    assert r["timeline"][-1]["event"] == "timeout"


def test_abort_by_the_source() -> None:
    t = Transcript(source="proxy")
    t.client(CLIENT_BANNER)
    t.tracker.abort("upstream refused the connection", T0 + 1)
    t.tracker.abort("a second reason is not kept", T0 + 2)
    r = t.record()
    assert r["outcome"] == "aborted"
    assert r["notes"].count("upstream refused the connection") == 1
    assert "a second reason is not kept" not in r["notes"]


def test_matched_lists_without_newkeys_are_aborted() -> None:
    t = Transcript()
    t.server(SERVER_BANNER).client(CLIENT_BANNER + kexinit(client_offer())).server(
        kexinit(server_offer())
    )
    assert not t.tracker.outcome_known
    r = t.close("client").close("server").finish()
    assert r["outcome"] == "aborted"
    assert r["negotiated"]["kex"] == "curve25519-sha256"


# -- banners ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "refusal",
    [
        b"Invalid SSH identification string.\r\n",
        b"Protocol major versions differ.\r\n",
    ],
)
def test_a_refused_banner_is_aborted_with_the_servers_words(refusal: bytes) -> None:
    t = Transcript()
    t.server(SERVER_BANNER).client(b"SSH-1.5-OldClient\r\n").server(refusal).close("server")
    r = t.finish()
    assert r["outcome"] == "aborted"
    assert r["evidence"]["banner_error"] == refusal.rstrip(b"\r\n").decode()
    assert "the client speaks SSH protocol 1.5; kexproxy parses protocol 2 only" in r["notes"]
    assert r["client_kexinit"] is None and r["negotiated"] is None


def test_different_major_versions_without_a_refusal_are_aborted() -> None:
    t = Transcript()
    t.server(ident(proto="3.0")).client(CLIENT_BANNER).close("client")
    assert t.finish()["outcome"] == "aborted"


def test_a_client_that_sends_a_non_ssh_line_is_refused() -> None:
    t = Transcript()
    t.server(SERVER_BANNER).client(b"GET / HTTP/1.1\r\n\r\n")
    t.server(b"Invalid SSH identification string.\r\n").close("server")
    r = t.finish()
    assert r["outcome"] == "aborted"
    assert r["pre_banner_lines"]["client"] == ["GET / HTTP/1.1", ""]
    assert "the client sent 2 line(s) before any identification" in r["notes"]


def test_pre_banner_lines_from_the_server() -> None:
    t = Transcript()
    t.server(b"Welcome to the box\r\n", b"Authorised use only\r\n", SERVER_BANNER)
    r = t.finish()
    assert r["pre_banner_lines"]["server"] == ["Welcome to the box", "Authorised use only"]
    assert "the server sent 2 line(s) before its identification" in r["notes"]


# -- not SSH ------------------------------------------------------------------------------


def test_binary_both_ways_is_not_ssh() -> None:
    t = Transcript()
    t.client(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    t.server(b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76")
    assert not t.tracker.inspecting
    assert t.tracker.decided and t.tracker.outcome_known
    t.client(b"more bytes are only counted")
    r = t.finish()
    assert r["outcome"] == "not_ssh"
    assert r["client_banner"] is None and r["server_banner"] is None
    assert r["bytes"]["c2s"] == 11 + len(b"more bytes are only counted")
    assert r["negotiated"] is None and r["hassh"] is None


def test_binary_from_one_side_does_not_hide_the_others_banner() -> None:
    # A TLS client hitting an SSH server: whichever side's bytes arrive first, the server
    # sent an SSH identification, so the record is not "not_ssh".
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
    first = Transcript().client(hello).server(SERVER_BANNER).finish()
    second = Transcript().server(SERVER_BANNER).client(hello).finish()
    assert (
        first["server_banner"]
        == second["server_banner"]
        == "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"
    )
    assert first["outcome"] == second["outcome"] == "incomplete"


def test_a_lot_of_text_and_no_identification_is_not_ssh() -> None:
    t = Transcript()
    line = b"x" * 1000 + b"\r\n"
    for _ in range(70):
        t.client(line)
    assert not t.tracker.inspecting
    r = t.finish()
    assert r["outcome"] == "not_ssh"


def test_nothing_at_all() -> None:
    t = Transcript()
    r = t.finish()
    assert r["outcome"] == "not_ssh"
    assert r["started"] is None and r["ended"] is None
    assert r["bytes"] == {"c2s": 0, "s2c": 0}


# -- roles ---------------------------------------------------------------------------------


def test_reverse_ssh_shown_by_markers() -> None:
    t = negotiated_ecdh(Transcript(reverse=True))
    r = t.finish()
    assert r["client"] == {"ip": CLIENT.ip, "port": CLIENT.port}
    assert r["roles"] == {"determined_by": "markers", "tcp_initiator": "server"}
    assert "reverse SSH: the TCP initiator is the SSH server (shown by markers)" in r["notes"]
    assert r["outcome"] == "negotiated"


def test_reverse_ssh_shown_by_kex_messages() -> None:
    # No markers: the TCP initiator sends the ECDH reply, so it is the SSH server.
    t = negotiated_ecdh(Transcript(reverse=True), client=offer(), server=offer())
    r = t.finish()
    assert r["roles"] == {"determined_by": "kex messages", "tcp_initiator": "server"}
    assert r["client"]["ip"] == CLIENT.ip
    assert r["host_key"]["key_type"] == "ed25519"
    assert "reverse SSH: the TCP initiator is the SSH server (shown by kex messages)" in r["notes"]


def test_without_markers_or_kex_messages_the_initiator_is_the_client() -> None:
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(offer())).client(CLIENT_BANNER + kexinit(offer()))
    r = t.finish()
    assert r["roles"] == {"determined_by": "tcp", "tcp_initiator": "client"}


@pytest.mark.parametrize(
    ("a", "b", "client_is_a"),
    [
        (Endpoint("10.0.0.1", 22), Endpoint("10.0.0.2", 51000), False),
        (Endpoint("10.0.0.1", 51000), Endpoint("10.0.0.2", 2222), True),
        (Endpoint("10.0.0.1", 40000), Endpoint("10.0.0.2", 9000), True),  # ephemeral vs not
        (Endpoint("10.0.0.1", 9000), Endpoint("10.0.0.2", 40000), False),
        (Endpoint("10.0.0.1", 9000), Endpoint("10.0.0.2", 9001), False),  # higher port
        (Endpoint("10.0.0.1", 22), Endpoint("10.0.0.2", 2222), False),  # both known: higher port
    ],
)
def test_roles_guessed_from_ports(a: Endpoint, b: Endpoint, client_is_a: bool) -> None:
    tracker = SessionTracker(a=a, b=b, initiator="first-packet", session_id="p")
    tracker.receive("a", SERVER_BANNER if not client_is_a else CLIENT_BANNER, T0)
    r = assert_valid_record(tracker.record())
    assert r["client"]["port"] == (a if client_is_a else b).port
    assert r["roles"] == {"determined_by": "port", "tcp_initiator": None}
    assert (
        "the capture does not show who opened the connection; SSH roles guessed from the port "
        "numbers" in r["notes"]
    )


def test_markers_beat_port_guesses() -> None:
    tracker = SessionTracker(
        a=Endpoint("10.0.0.1", 22),
        b=Endpoint("10.0.0.2", 51000),
        initiator="first-packet",
        session_id="m",
    )
    # Side a uses port 22 but sends the client markers.
    tracker.receive("a", CLIENT_BANNER + kexinit(client_offer()), T0)
    tracker.receive("b", SERVER_BANNER + kexinit(server_offer()), T0)
    r = assert_valid_record(tracker.record())
    assert r["client"]["port"] == 22
    assert r["roles"]["determined_by"] == "markers"
    assert not any("reverse SSH" in n for n in r["notes"])


def test_contradicting_markers_fall_back_to_the_tcp_initiator() -> None:
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(client_offer())).client(
        CLIENT_BANNER + kexinit(client_offer())
    )
    assert t.finish()["roles"]["determined_by"] == "tcp"


# -- half duplex, gaps, guesses ------------------------------------------------------------


def test_half_duplex_is_incomplete_with_a_note() -> None:
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(server_offer()))
    r = t.finish()
    assert r["outcome"] == "incomplete"
    assert "only the server's side of the connection is in the data (half duplex)" in r["notes"]
    assert r["server_kexinit"] is not None and r["client_kexinit"] is None
    t = Transcript().client(CLIENT_BANNER)
    assert (
        "only the client's side of the connection is in the data (half duplex)"
        in t.finish()["notes"]
    )


def test_a_gap_stops_inspection_of_that_side_with_a_note() -> None:
    t = Transcript()
    t.server(SERVER_BANNER).client(CLIENT_BANNER).gap("client", 1460)
    t.client(kexinit(client_offer()))  # after the gap: not parsed
    t.gap("client", 100)  # a second gap adds nothing
    t.server(kexinit(server_offer()))
    r = t.finish()
    assert r["client_kexinit"] is None and r["server_kexinit"] is not None
    assert (
        r["notes"].count(
            f"the capture is missing 1460 bytes sent by the client at stream offset {len(CLIENT_BANNER)}; "
            "inspection of that direction stopped"
        )
        == 1
    )
    assert r["outcome"] == "incomplete"


def test_a_gap_after_newkeys_is_not_a_note() -> None:
    t = negotiated_ecdh(Transcript()).gap("client")
    assert not any("missing" in n for n in t.finish()["notes"])


def test_a_wrong_guess_is_ignored_with_a_note() -> None:
    # The client guesses ecdh-sha2-nistp256 and sends its KEXDH_INIT-shaped guess; the
    # negotiated method is curve25519, so the guess is skipped and the real init follows.
    key = host_key("ed25519")
    client = offer(kex=["ecdh-sha2-nistp256", "curve25519-sha256"])
    server = offer(kex=["curve25519-sha256", "ecdh-sha2-nistp256"])
    t = Transcript()
    t.client(CLIENT_BANNER + kexinit(client, follows=True) + ecdh_init(b"\x04" + bytes(64)))
    t.server(SERVER_BANNER + kexinit(server)).client(ecdh_init())
    t.server(ecdh_reply(key.blob) + newkeys()).client(newkeys())
    r = t.finish()
    assert r["client_kexinit"]["first_kex_packet_follows"] is True
    assert r["negotiated"]["kex"] == "ecdh-sha2-nistp256"  # the client's first choice
    assert (
        "the client's guessed first KEX packet (SSH_MSG_KEX_ECDH_INIT) was ignored: its guess of "
        "the kex or host key algorithm was wrong" in r["notes"]
    )
    assert r["outcome"] == "negotiated"


def test_a_right_guess_is_used() -> None:
    t = Transcript()
    t.client(CLIENT_BANNER + kexinit(offer(), follows=True) + ecdh_init())
    t.server(SERVER_BANNER + kexinit(offer()) + ecdh_reply(host_key("ed25519").blob))
    r = t.finish()
    assert "the client's guessed first KEX packet was right and was used" in r["notes"]
    assert r["host_key"]["key_type"] == "ed25519"


def test_a_second_kexinit_keeps_the_first() -> None:
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(server_offer()))
    t.client(CLIENT_BANNER + kexinit(client_offer()) + kexinit(offer(kex=["x"])))
    r = t.finish()
    assert r["client_kexinit"]["kex_algorithms"][0] == "curve25519-sha256"
    assert "client: a second SSH_MSG_KEXINIT before NEWKEYS" in r["notes"]


def test_a_malformed_packet_stops_inspection_with_a_note() -> None:
    t = Transcript()
    t.server(SERVER_BANNER + b"\x00\x10\x00\x00....")
    r = t.finish()
    assert (
        "inspection of the server's bytes stopped: bad packet length 1048576 (OpenSSH accepts 5 "
        "to 262144)" in r["notes"]
    )


def test_debug_and_ignore_go_to_the_timeline() -> None:
    t = Transcript()
    t.server(SERVER_BANNER + ignore(b"pad") + debug("hello"))
    events = [(e["event"], e["detail"]) for e in t.record()["timeline"]]
    assert ("SSH_MSG_IGNORE", "SSH_MSG_IGNORE") in events
    assert ("SSH_MSG_DEBUG", "SSH_MSG_DEBUG: hello") in events


# -- bounded memory ------------------------------------------------------------------------


def test_ten_thousand_ignores_do_not_grow_the_record() -> None:
    t = Transcript()
    t.server(SERVER_BANNER).client(CLIENT_BANNER)
    t.server(ignore(b"x") * 10_000)
    t.client(disconnect(2, "x") * 100)
    t.client(kexinit() * 200)  # a second KEXINIT 199 times: one note each
    r = t.finish()
    assert len(r["timeline"]) <= limits.MAX_TIMELINE
    assert len(r["notes"]) <= limits.MAX_NOTES
    assert len(r["evidence"]["disconnects"]) <= limits.MAX_DISCONNECTS
    assert len(t.tracker._timeline) <= limits.MAX_TIMELINE
    assert len(t.tracker._notes) <= limits.MAX_NOTES


def test_thousands_of_pre_banner_lines_are_counted_not_kept() -> None:
    t = Transcript()
    t.server(b"spam\r\n" * 5000)
    r = t.finish()
    assert len(r["pre_banner_lines"]["server"]) == limits.KEPT_PRE_BANNER_LINES
    assert (
        f"the server sent {limits.MAX_PRE_BANNER_LINES} line(s) before its identification"
        in r["notes"]
    )


def test_thousands_of_plaintext_lines_are_not_all_kept() -> None:
    t = Transcript()
    t.server(SERVER_BANNER).client(CLIENT_BANNER)
    t.server(b"Protocol mismatch.\r\n" * 10_000)
    r = t.finish()
    assert r["evidence"]["banner_error"] == "Protocol mismatch."
    assert len(r["timeline"]) <= limits.MAX_TIMELINE
    kept = t.tracker._dirs[t.server_side].plaintext
    assert len(kept) == limits.MAX_PLAINTEXT_LINES


def test_a_huge_disconnect_description_is_cut() -> None:
    t = Transcript()
    t.server(SERVER_BANNER + disconnect(2, "y" * 100_000))
    r = t.finish()
    assert len(r["evidence"]["disconnects"][0]["description"]) == limits.MAX_TEXT


# -- the observer interface ---------------------------------------------------------------


def test_count_adds_bytes_without_parsing() -> None:
    t = negotiated_ecdh(Transcript())
    before = t.record()["bytes"]
    t.tracker.count(t.client_side, 1000, t.now + 1)
    t.tracker.count(t.server_side, 5, t.now + 2)
    after = t.record()
    assert after["bytes"] == {"c2s": before["c2s"] + 1000, "s2c": before["s2c"] + 5}
    assert after["ended"] == rfc3339(t.now + 2)


def test_record_can_be_asked_repeatedly() -> None:
    t = Transcript()
    t.server(SERVER_BANNER)
    assert t.record()["outcome"] == "incomplete"
    t.client(CLIENT_BANNER + kexinit(client_offer())).server(kexinit(server_offer()))
    assert t.record()["outcome"] == "aborted"
    t.client(ecdh_init()).server(ecdh_reply(host_key("ed25519").blob) + newkeys()).client(newkeys())
    assert t.record() == t.record()
    assert t.record()["outcome"] == "negotiated"


def test_an_out_of_order_timestamp_does_not_move_the_end_back() -> None:
    tracker = SessionTracker(a=CLIENT, b=SERVER, initiator="syn", session_id="ts")
    tracker.receive("b", SERVER_BANNER, T0 + 5)
    tracker.receive("a", CLIENT_BANNER, T0 + 1)
    r = assert_valid_record(tracker.record())
    assert r["started"] == "2023-11-14T22:13:25.000000Z"
    assert r["ended"] == "2023-11-14T22:13:25.000000Z"


def test_session_fields_pass_through() -> None:
    tracker = SessionTracker(
        a=Endpoint("2001:db8::1", 50000),
        b=Endpoint("2001:db8::2", 22),
        initiator="accept",
        session_id="abc",
        source="proxy",
        capture=None,
    )
    tracker.receive("a", CLIENT_BANNER + kexinit(client_offer(kex=["x"])), T0)
    tracker.receive("b", SERVER_BANNER + kexinit(server_offer()), T0)
    r = assert_valid_record(tracker.record())
    assert r["id"] == "abc" and r["source"] == "proxy" and r["capture"] is None
    assert r["rejections"]["client"]["message"].startswith(
        "Unable to negotiate with 2001:db8::2 port 22:"
    )
    assert r["rejections"]["server"]["message"].startswith(
        "Unable to negotiate with 2001:db8::1 port 50000:"
    )


# -- properties: segmentation and interleaving ---------------------------------------------


def _scenarios() -> dict[str, tuple[bytes, bytes]]:
    key = host_key("ed25519")
    c_start = CLIENT_BANNER + kexinit(client_offer())
    s_start = b"Hello\r\n" + SERVER_BANNER + kexinit(server_offer())
    gex = {"kex": ["diffie-hellman-group-exchange-sha256"]}
    return {
        "negotiated": (
            c_start + ecdh_init() + newkeys() + ENCRYPTED,
            s_start + ignore(b"x" * 40) + ecdh_reply(key.blob) + newkeys() + ENCRYPTED,
        ),
        "failed": (CLIENT_BANNER + kexinit(client_offer(ciphers=["3des-cbc"])), s_start),
        "refused": (b"SSH-1.5-x\r\n", SERVER_BANNER + b"Protocol major versions differ.\r\n"),
        "tls-client": (b"\x16\x03\x01\x00\x20" + bytes(30), SERVER_BANNER),
        "gex": (
            CLIENT_BANNER + kexinit(offer(**gex)) + gex_request() + gex_init() + newkeys(),
            SERVER_BANNER
            + kexinit(offer(**gex))
            + gex_group(GROUP14_P)
            + debug("hi")
            + gex_reply(key.blob)
            + newkeys(),
        ),
        "disconnect": (c_start, s_start + disconnect(2, "strict KEX violation")),
        "truncated": (c_start + ecdh_init()[:7], s_start[:-3]),
        "guess": (
            CLIENT_BANNER
            + kexinit(offer(kex=["ecdh-sha2-nistp256", "curve25519-sha256"]), follows=True)
            + ecdh_init()
            + ecdh_init(),
            SERVER_BANNER + kexinit(offer(kex=["curve25519-sha256"])) + ecdh_reply(key.blob),
        ),
    }


SCENARIOS = _scenarios()


@st.composite
def chunks(draw: st.DrawFn, data: bytes) -> list[bytes]:
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        size = draw(st.integers(1, 48))
        out.append(data[pos : pos + size])
        pos += size
    return out


def _replay(
    steps: list[tuple[Side, bytes | None]], *, initiator: Any = "syn", reverse: bool = False
) -> dict[str, Any]:
    """Feeds steps at one timestamp (so only the order can differ); None is that side's FIN."""
    a, b = (SERVER, CLIENT) if reverse else (CLIENT, SERVER)
    tracker = SessionTracker(a=a, b=b, initiator=initiator, session_id="prop")
    for side, data in steps:
        if data is None:
            tracker.receive_close(side, "fin", T0)
        else:
            tracker.receive(side, data, T0)
    return _normalised(assert_valid_record(tracker.finish()))


def _normalised(record: dict[str, Any]) -> dict[str, Any]:
    """Only what may depend on which side's bytes arrived first: the cross-side order of the
    timeline and of the notes. Each side's own order is kept."""
    out = dict(record)
    timeline = record["timeline"]
    out["timeline"] = {
        who: [e for e in timeline if e["from"] == who] for who in ("client", "server", None)
    }
    out["notes"] = sorted(record["notes"])
    return out


def _whole(name: str, **kwargs: Any) -> dict[str, Any]:
    c, s = SCENARIOS[name]
    return _replay([("a", c), ("b", s), ("a", None), ("b", None)], **kwargs)


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.data(), st.sampled_from(sorted(SCENARIOS)), st.sampled_from(["syn", "first-packet"]))
def test_any_segmentation_and_interleaving_gives_the_same_record(
    data: st.DataObject, name: str, initiator: str
) -> None:
    client_bytes, server_bytes = SCENARIOS[name]
    queues: dict[Side, list[bytes | None]] = {
        "a": list(data.draw(chunks(client_bytes))),
        "b": list(data.draw(chunks(server_bytes))),
    }
    steps: list[tuple[Side, bytes | None]] = []
    while queues["a"] or queues["b"]:
        open_sides = [side for side in ("a", "b") if queues[side]]
        side: Side = data.draw(st.sampled_from(open_sides))
        steps.append((side, queues[side].pop(0)))
    # The FINs keep their order: which came first is evidence, not an accident of chunking.
    steps += [("a", None), ("b", None)]
    assert _replay(steps, initiator=initiator) == _whole(name, initiator=initiator)


@PROPERTY
@given(st.data(), st.sampled_from(sorted(SCENARIOS)))
def test_reverse_ssh_gives_the_same_verdict_as_forward(data: st.DataObject, name: str) -> None:
    client_bytes, server_bytes = SCENARIOS[name]
    steps: list[tuple[Side, bytes | None]] = []
    sides: tuple[tuple[Side, bytes], ...] = (("b", client_bytes), ("a", server_bytes))
    for side, stream in sides:
        steps += [(side, chunk) for chunk in data.draw(chunks(stream))]
    steps += [("b", None), ("a", None)]
    reverse = _replay(steps, reverse=True)
    if reverse["roles"]["determined_by"] == "tcp":
        # Nothing on the wire shows the roles: the TCP initiator is taken for the client.
        assert reverse["client"] == {"ip": SERVER.ip, "port": SERVER.port}
        return
    forward = _whole(name)
    assert reverse["roles"]["tcp_initiator"] == "server"
    for key in (
        "client",
        "server",
        "client_banner",
        "server_banner",
        "outcome",
        "negotiated",
        "failures",
        "rejections",
        "host_key",
        "evidence",
        "bytes",
    ):
        assert reverse[key] == forward[key], key


def test_a_wrong_guess_by_the_server_is_ignored() -> None:
    # RFC 4432: the server speaks first, so it may guess too. It guessed ssh-rsa as the host
    # key algorithm; the client prefers ssh-ed25519, so the guessed KEXRSA_PUBKEY (carrying
    # the RSA key) is skipped and the host key is the one in the second, real message.
    rsa_key, ed_key = host_key("rsa", 2048), host_key("ed25519")
    transient = host_key("rsa", 1024)
    t = Transcript()
    t.server(
        SERVER_BANNER
        + kexinit(offer(kex=["rsa2048-sha256"], host_key=["ssh-rsa", "ssh-ed25519"]), follows=True)
        + kexrsa_pubkey(rsa_key.blob, transient.blob)
    )
    t.client(
        CLIENT_BANNER + kexinit(offer(kex=["rsa2048-sha256"], host_key=["ssh-ed25519", "ssh-rsa"]))
    )
    t.server(kexrsa_pubkey(ed_key.blob, transient.blob)).client(kexrsa_secret())
    t.server(kexrsa_done(signature("ssh-ed25519", bytes(64))) + newkeys()).client(newkeys())
    r = t.finish()
    assert r["negotiated"]["host_key"] == "ssh-ed25519"
    assert r["host_key"]["key_type"] == "ed25519"
    assert r["host_key"]["sha256"] == _fp(ed_key.blob)
    assert (
        "the server's guessed first KEX packet (SSH_MSG_KEXRSA_PUBKEY) was ignored: its guess "
        "of the kex or host key algorithm was wrong" in r["notes"]
    )


# -- decoding without a negotiation, and odd KEX traffic -----------------------------------


def _gex_group_and_reply(blob: bytes) -> bytes:
    return gex_group(GROUP14_P) + gex_reply(blob)


@pytest.mark.parametrize("reply", [ecdh_reply, _gex_group_and_reply], ids=["ecdh", "gex"])
def test_the_host_key_is_read_from_a_server_only_capture(reply: Any) -> None:
    # Only the server's side is in the data: no negotiation, but the reply's layout (31 or
    # 33) still shows where the host key is.
    key = host_key("ecdsa", 521)
    t = Transcript().server(SERVER_BANNER + kexinit(server_offer()) + reply(key.blob))
    r = t.finish()
    assert r["negotiated"] is None and r["outcome"] == "incomplete"
    assert r["host_key"]["sha256"] == _fp(key.blob)
    assert r["kex_family"] is None


def test_a_guessed_layout_that_does_not_fit_says_nothing() -> None:
    t = Transcript().server(SERVER_BANNER + packet(bytes([31]) + _string(b"not a key blob")))
    t.server(packet(bytes([31]) + b"\x00\x00"))
    r = t.finish()
    assert r["host_key"] is None
    assert not any("malformed" in n for n in r["notes"])
    t = Transcript().server(SERVER_BANNER + packet(bytes([31]) + b"\x00\x00"))
    assert not any("malformed" in n for n in t.finish()["notes"])


def test_an_unknown_kex_family_decodes_nothing() -> None:
    lists = {"kex": ["x-new-kex@example.com"]}
    tracker = SessionTracker(
        a=Endpoint("10.0.0.1", 50000),
        b=Endpoint("10.0.0.2", 22),
        initiator="first-packet",
        session_id="u",
    )
    tracker.receive("b", SERVER_BANNER + kexinit(offer(**lists)), T0)
    tracker.receive("a", CLIENT_BANNER + kexinit(offer(**lists)) + ecdh_init(), T0)
    tracker.receive("b", ecdh_reply(host_key("ed25519").blob), T0)
    r = assert_valid_record(tracker.record())
    assert r["negotiated"]["kex"] == "x-new-kex@example.com"
    assert r["kex_family"] == "unknown"
    assert r["host_key"] is None
    assert r["roles"]["determined_by"] == "port"
    assert r["timeline"][-1]["event"] == "SSH_MSG_31"


def test_kex_messages_kept_are_bounded() -> None:
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(server_offer())).client(
        CLIENT_BANNER + kexinit(client_offer())
    )
    t.client(ecdh_init() * 1000)
    assert len(t.tracker._dirs[t.client_side].kex_messages) == 8
    t.finish()


def test_gex_without_a_group_message() -> None:
    lists = {"kex": ["diffie-hellman-group-exchange-sha256"]}
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(offer(**lists))).client(
        CLIENT_BANNER + kexinit(offer(**lists))
    )
    t.client(gex_request()).server(gex_reply(host_key("ed25519").blob))
    r = t.finish()
    assert r["dh_gex"] == {
        "request": {"min": 2048, "n": 3072, "max": 8192},
        "p_bits": None,
        "g": None,
    }
    assert r["host_key"]["key_type"] == "ed25519"


def test_rsa_done_without_a_pubkey() -> None:
    lists = {"kex": ["rsa2048-sha256"], "host_key": ["ssh-rsa"]}
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(offer(**lists))).client(
        CLIENT_BANNER + kexinit(offer(**lists))
    )
    t.server(kexrsa_done())
    r = t.finish()
    assert r["host_key"] is None and r["dh_gex"] is None


def test_outcome_known_needs_both_kexinits() -> None:
    t = Transcript().server(SERVER_BANNER + kexinit(server_offer()))
    assert not t.tracker.outcome_known
    assert not decided(t)


def test_receive_after_not_ssh_only_counts() -> None:
    t = Transcript().client(b"\x00\x01").server(b"\x02\x03")
    t.server(SERVER_BANNER)
    r = t.finish()
    assert r["outcome"] == "not_ssh" and r["bytes"] == {"c2s": 2, "s2c": 2 + len(SERVER_BANNER)}
    t.tracker.receive_gap(t.client_side, 10, T0 + 1)
    assert not any("missing" in n for n in t.record()["notes"])


@st.composite
def hostile_stream(draw: st.DrawFn, base: bytes) -> bytes:
    """`base` with a few bytes flipped, inserted, deleted or cut."""
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=12))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 12))]
        else:
            del data[pos:]
    return bytes(data)


@PROPERTY
@given(st.data(), st.sampled_from(sorted(SCENARIOS)))
def test_hostile_streams_give_valid_records_whatever_the_interleaving(
    data: st.DataObject, name: str
) -> None:
    # Mutated handshakes on both sides: never an exception, always a record the schema
    # accepts, and the same record for any segmentation and interleaving.
    client_bytes = data.draw(hostile_stream(SCENARIOS[name][0]))
    server_bytes = data.draw(hostile_stream(SCENARIOS[name][1]))
    queues: dict[Side, list[bytes]] = {
        "a": list(data.draw(chunks(client_bytes))),
        "b": list(data.draw(chunks(server_bytes))),
    }
    steps: list[tuple[Side, bytes | None]] = []
    while queues["a"] or queues["b"]:
        side: Side = data.draw(st.sampled_from([s for s in ("a", "b") if queues[s]]))
        steps.append((side, queues[side].pop(0)))
    steps += [("a", None), ("b", None)]
    whole: list[tuple[Side, bytes | None]] = [
        ("a", client_bytes),
        ("b", server_bytes),
        ("a", None),
        ("b", None),
    ]
    assert _replay(steps) == _replay(whole)


def test_a_huge_name_list_is_negotiated_whole_and_kept_in_part() -> None:
    """40,000 names fit a 256 KiB KEXINIT; all take part in negotiation (the match is the
    last), the record keeps the first 1,024 of each list and says so."""
    from kexproxy.core import limits

    names = [f"{i:x}" for i in range(40_000)] + ["curve25519-sha256"]
    t = Transcript(session_id="big")
    t.client(ident("OpenSSH_9.6") + kexinit(client_offer(kex=names)))
    t.server(ident("OpenSSH_9.2p1") + kexinit(server_offer(kex=["curve25519-sha256"])))
    t.client(newkeys()).server(newkeys()).close("client")
    record = t.tracker.finish()
    data = assert_valid_record(record)
    assert record.outcome == "negotiated"
    assert (record.negotiated or {})["kex"] == "curve25519-sha256"
    assert len(data["client_kexinit"]["kex_algorithms"]) == limits.KEPT_NAMES
    assert any(
        f"client's kex_algorithms holds {len(names) + 2} names; the record keeps the first "
        f"{limits.KEPT_NAMES}" in note
        for note in record.notes
    ), record.notes
    assert len(record.hassh_algorithms or "") > 190_000  # HASSH hashes the whole list


def test_a_banner_cut_off_mid_line_is_incomplete_not_non_ssh() -> None:
    """A client that dripped "SSH-2.0-OpenSSH_" before the timeout spoke SSH, unfinished."""
    t = Transcript(session_id="drip", source="proxy")
    t.client(b"SSH-2.0-OpenSSH_")
    t.tracker.receive_timeout(t.now + 30, "the handshake did not finish within 30 s")
    record = t.tracker.record()
    assert record.outcome == "incomplete"
    assert record.evidence["how"] == "timeout"
    other = Transcript(session_id="text", source="proxy")
    other.client(b"GET / HTTP/1.1")
    other.tracker.receive_timeout(other.now + 30, "the handshake did not finish within 30 s")
    assert other.tracker.record().outcome == "not_ssh"
