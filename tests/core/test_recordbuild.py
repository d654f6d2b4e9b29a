"""The record builder: outcomes, evidence, notes and fields, told as transcripts.

Also the builder called directly on hand-made `SessionFacts`, to show that a frozen
snapshot is all it reads.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from kexproxy.core import limits
from kexproxy.core.facts import LegFacts, SessionFacts
from kexproxy.core.hassh import hassh, hassh_algorithms
from kexproxy.core.observer import Endpoint
from kexproxy.core.record import rfc3339
from kexproxy.core.recordbuild import build_record
from kexproxy.core.tracker import SessionTracker
from tests.builders import (
    CLIENT,
    SERVER,
    T0,
    Offer,
    Transcript,
    assert_valid_record,
    client_offer,
    disconnect,
    ecdh_init,
    ecdh_reply,
    host_key,
    ident,
    kexinit,
    newkeys,
    offer_dict,
    server_offer,
)
from tests.core.handshakes import (
    CLIENT_BANNER,
    ENCRYPTED,
    SERVER_BANNER,
    decided,
    fp,
    negotiated_ecdh,
)


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
        "sha256": fp(key.blob),
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


def test_only_one_newkeys_is_negotiated_with_a_note() -> None:
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(server_offer())).client(
        CLIENT_BANNER + kexinit(client_offer())
    )
    t.client(ecdh_init()).server(ecdh_reply(host_key("ed25519").blob) + newkeys())
    r = t.close("server").finish()
    assert r["outcome"] == "negotiated"
    assert "only the server's SSH_MSG_NEWKEYS was seen" in r["notes"]


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


def test_a_huge_name_list_is_negotiated_whole_and_kept_in_part() -> None:
    """40,000 names fit a 256 KiB KEXINIT; all take part in negotiation (the match is the
    last), the record keeps the first 1,024 of each list and says so."""

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
    # HASSH hashes the whole list; the record keeps the start of its input, and says so.
    assert len(record.hassh_algorithms or "") == limits.KEPT_HASSH_CHARS
    whole = hassh_algorithms(t.tracker.facts().leg("a").kexinit, "c2s")
    assert whole is not None and len(whole) > 190_000
    assert whole.startswith(record.hassh_algorithms or "x") and record.hassh == hassh(whole)
    assert any(
        note.startswith(f"the client's HASSH input is {len(whole):,} characters")
        for note in record.notes
    )


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


# -- the builder alone: a frozen snapshot in, a record out ---------------------------------


def test_the_builder_reads_only_the_facts() -> None:
    t = negotiated_ecdh(Transcript())
    facts = t.tracker.facts()
    assert build_record(facts) == t.tracker.record()
    # Edited facts: the builder follows them, not the tracker they came from.
    edited = replace(facts, client="b", roles_by="hand", notes=("{a} waved",))
    r = build_record(edited)
    assert r.client == {"ip": SERVER.ip, "port": SERVER.port}
    assert r.roles == {"determined_by": "hand", "tcp_initiator": "server"}
    assert "server waved" in r.notes
    assert "reverse SSH: the TCP initiator is the SSH server (shown by hand)" in r.notes
    assert t.tracker.record().client == {"ip": CLIENT.ip, "port": CLIENT.port}


def test_a_record_from_facts_made_by_hand() -> None:
    silent = LegFacts(
        ident=None,
        pre_banner=(),
        pre_banner_count=0,
        protocol1=None,
        kexinit=None,
        kex_messages=(),
        newkeys=None,
        plaintext=(),
        disconnects=(),
        failed=None,
        gap=False,
        close=None,
        bytes=0,
        banner_started=False,
    )
    facts = SessionFacts(
        session_id="by-hand",
        source="pcap",
        capture="hand.pcap",
        a=CLIENT,
        b=SERVER,
        initiator="syn",
        legs=(silent, replace(silent, close=("rst", T0 + 1))),
        first_ts=T0,
        last_ts=T0 + 1,
        notes=(),
        timeline=((T0 + 1, "b", "RST", None),),
        close_order=("b",),
        timeout=None,
        abort_reason=None,
        client="a",
        roles_by="tcp",
        negotiation=None,
    )
    r = build_record(facts)
    assert r.diagnosis is None
    assert r.outcome == "not_ssh"
    assert (r.id, r.capture) == ("by-hand", "hand.pcap")
    assert r.evidence["first_close"] == "server" and r.evidence["how"] == "rst"
    assert r.timeline == [{"at": rfc3339(T0 + 1), "from": "server", "event": "RST", "detail": None}]
    assert_valid_record(r)
