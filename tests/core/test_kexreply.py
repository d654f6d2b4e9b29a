"""Decoding of the KEX messages: host keys, group-exchange sizes, guesses, and malformed input.

Told as transcripts through the tracker (the decoder's one caller), plus the decoder called
directly with messages, to show it needs nothing but them.
"""

from __future__ import annotations

from typing import Any

import pytest

from kexproxy.core.kexreply import KexReply, decode_kex
from kexproxy.core.observer import Endpoint
from kexproxy.core.tracker import SessionTracker
from tests.builders import (
    GROUP14_P,
    T0,
    Transcript,
    assert_valid_record,
    client_offer,
    dh_init,
    dh_reply,
    ecdh_init,
    ecdh_reply,
    gex_group,
    gex_init,
    gex_reply,
    gex_request,
    gex_request_old,
    host_key,
    kexinit,
    kexinit_event,
    kexrsa_done,
    kexrsa_pubkey,
    kexrsa_secret,
    mpint,
    newkeys,
    offer,
    packet,
    server_offer,
    signature,
    string,
)
from tests.core.handshakes import (
    CLIENT_BANNER,
    SERVER_BANNER,
    fp,
)


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
    assert r["host_key"]["sha256"] == fp(key.blob)
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
    assert r["host_key"]["sha256"] == fp(key.blob)
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
    assert r["host_key"]["bits"] == 2048 and r["host_key"]["sha256"] == fp(key.blob)
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
    assert r["host_key"]["sha256"] == fp(key.blob)
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
    assert r["host_key"]["sha256"] == fp(key.blob)
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
    assert r["host_key"]["sha256"] == fp(ed_key.blob)
    assert (
        "the server's guessed first KEX packet (SSH_MSG_KEXRSA_PUBKEY) was ignored: its guess "
        "of the kex or host key algorithm was wrong" in r["notes"]
    )


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
    assert r["host_key"]["sha256"] == fp(key.blob)
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


# -- the decoder alone: messages in, a KexReply out ------------------------------------------


def test_the_decoder_needs_nothing_but_the_messages() -> None:
    key = host_key("ed25519")
    reply = string(key.blob) + string(bytes(32)) + string(signature())
    decoded = decode_kex(
        family="ecdh",
        client_kexinit=kexinit_event(client_offer()),
        server_kexinit=kexinit_event(server_offer()),
        client_messages=[(30, string(bytes(32)))],
        server_messages=[(31, reply)],
    )
    assert decoded.host_key is not None
    assert decoded.host_key["sha256"] == fp(key.blob)
    assert decoded.host_key["signature"] == "ssh-ed25519"
    assert decoded.dh_gex is None
    assert decoded.notes == ()


def test_the_decoder_drops_a_wrong_guess_and_says_so() -> None:
    client = client_offer(kex=["ecdh-sha2-nistp256", "curve25519-sha256"])
    key = host_key("ed25519")
    decoded = decode_kex(
        family="ecdh",
        client_kexinit=kexinit_event(client, follows=True),
        server_kexinit=kexinit_event(server_offer()),
        client_messages=[(30, string(bytes(65))), (30, string(bytes(32)))],
        server_messages=[(31, string(key.blob) + string(bytes(32)) + string(signature()))],
    )
    assert decoded.notes == (
        "the client's guessed first KEX packet (SSH_MSG_KEX_ECDH_INIT) was ignored: its guess "
        "of the kex or host key algorithm was wrong",
    )
    assert decoded.host_key is not None and decoded.host_key["key_type"] == "ed25519"


def test_without_kexinits_the_decoder_guesses_the_layout_from_the_reply() -> None:
    key = host_key("ecdsa", 256)
    gex_reply_payload = string(key.blob) + mpint(7) + string(signature(key.algorithm))
    decoded = decode_kex(
        family="unknown",
        client_kexinit=None,
        server_kexinit=None,
        client_messages=[],
        server_messages=[(33, gex_reply_payload)],
    )
    assert decoded.host_key is not None and decoded.host_key["sha256"] == fp(key.blob)
    assert decoded.dh_gex == {"request": None, "p_bits": None, "g": None}
    assert isinstance(decoded, KexReply) and decoded.notes == ()
