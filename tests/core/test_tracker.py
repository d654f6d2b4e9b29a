"""The session tracker, told as transcripts: "the server says X, then the client says Y".

What the tracker itself decides: whether the stream is SSH, the SSH roles, what it keeps
(bounded), how it answers the observer interface, and its frozen `facts`. The properties
feed the same two streams in any segmentation and interleaving. Every record is checked
against the JSON Schema (`Transcript.record`/`finish` do it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kexproxy.core import limits
from kexproxy.core.diagnosis import diagnose, diagnosed
from kexproxy.core.observer import Endpoint, Leg
from kexproxy.core.record import rfc3339
from kexproxy.core.tracker import SessionTracker
from tests.builders import (
    CLIENT,
    GROUP14_P,
    SERVER,
    T0,
    Transcript,
    assert_valid_record,
    client_offer,
    debug,
    disconnect,
    ecdh_init,
    ecdh_reply,
    gex_group,
    gex_init,
    gex_reply,
    gex_request,
    host_key,
    ignore,
    kexinit,
    newkeys,
    offer,
    server_offer,
)
from tests.core.handshakes import (
    CLIENT_BANNER,
    ENCRYPTED,
    SERVER_BANNER,
    decided,
    negotiated_ecdh,
)


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


def test_binary_met_by_silence_stops_inspection_after_64_kib() -> None:
    """An HTTP download whose request went by, or any one-way stream: one leg's binary bytes
    and no identification from the other would otherwise be reassembled to their end."""
    t = Transcript()
    chunk = b"\0" * 4096
    for _ in range(16):
        t.client(chunk)
    assert t.tracker.inspecting  # 64 KiB: an SSH server would have spoken by now, but wait
    t.client(b"\0")
    assert not t.tracker.inspecting
    r = t.finish()
    assert r["outcome"] == "not_ssh"
    assert r["bytes"]["c2s"] == 16 * 4096 + 1


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
    # Leg a uses port 22 but sends the client markers.
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
    assert len(t.tracker.timeline) <= limits.MAX_TIMELINE
    assert len(t.tracker.notes) <= limits.MAX_NOTES


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
    kept = t.tracker.facts().leg(t.server_leg).plaintext
    assert len(kept) == limits.MAX_PLAINTEXT_LINES


def test_a_huge_disconnect_description_is_cut() -> None:
    t = Transcript()
    t.server(SERVER_BANNER + disconnect(2, "y" * 100_000))
    r = t.finish()
    assert len(r["evidence"]["disconnects"][0]["description"]) == limits.MAX_TEXT


def test_count_adds_bytes_without_parsing() -> None:
    t = negotiated_ecdh(Transcript())
    before = t.record()["bytes"]
    t.tracker.count(t.client_leg, 1000, t.now + 1)
    t.tracker.count(t.server_leg, 5, t.now + 2)
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
    steps: list[tuple[Leg, bytes | None]], *, initiator: Any = "syn", reverse: bool = False
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
    queues: dict[Leg, list[bytes | None]] = {
        "a": list(data.draw(chunks(client_bytes))),
        "b": list(data.draw(chunks(server_bytes))),
    }
    steps: list[tuple[Leg, bytes | None]] = []
    while queues["a"] or queues["b"]:
        open_sides = [side for side in ("a", "b") if queues[side]]
        side: Leg = data.draw(st.sampled_from(open_sides))
        steps.append((side, queues[side].pop(0)))
    # The FINs keep their order: which came first is evidence, not an accident of chunking.
    steps += [("a", None), ("b", None)]
    assert _replay(steps, initiator=initiator) == _whole(name, initiator=initiator)


@PROPERTY
@given(st.data(), st.sampled_from(sorted(SCENARIOS)))
def test_reverse_ssh_gives_the_same_verdict_as_forward(data: st.DataObject, name: str) -> None:
    client_bytes, server_bytes = SCENARIOS[name]
    steps: list[tuple[Leg, bytes | None]] = []
    sides: tuple[tuple[Leg, bytes], ...] = (("b", client_bytes), ("a", server_bytes))
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


def test_kex_messages_kept_are_bounded() -> None:
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(server_offer())).client(
        CLIENT_BANNER + kexinit(client_offer())
    )
    t.client(ecdh_init() * 1000)
    assert len(t.tracker.facts().leg(t.client_leg).kex_messages) == 8
    t.finish()


def test_outcome_known_needs_both_kexinits() -> None:
    t = Transcript().server(SERVER_BANNER + kexinit(server_offer()))
    assert not t.tracker.outcome_known
    assert not decided(t)


def test_receive_after_not_ssh_only_counts() -> None:
    t = Transcript().client(b"\x00\x01").server(b"\x02\x03")
    t.server(SERVER_BANNER)
    r = t.finish()
    assert r["outcome"] == "not_ssh" and r["bytes"] == {"c2s": 2, "s2c": 2 + len(SERVER_BANNER)}
    t.tracker.receive_gap(t.client_leg, 10, T0 + 1)
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
    queues: dict[Leg, list[bytes]] = {
        "a": list(data.draw(chunks(client_bytes))),
        "b": list(data.draw(chunks(server_bytes))),
    }
    steps: list[tuple[Leg, bytes | None]] = []
    while queues["a"] or queues["b"]:
        side: Leg = data.draw(st.sampled_from([s for s in ("a", "b") if queues[s]]))
        steps.append((side, queues[side].pop(0)))
    steps += [("a", None), ("b", None)]
    whole: list[tuple[Leg, bytes | None]] = [
        ("a", client_bytes),
        ("b", server_bytes),
        ("a", None),
        ("b", None),
    ]
    assert _replay(steps) == _replay(whole)


# -- the tracker's facts -------------------------------------------------------------------


def test_facts_are_a_frozen_snapshot() -> None:
    t = Transcript()
    t.server(SERVER_BANNER).client(CLIENT_BANNER)
    before = t.tracker.facts()
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.client = "b"  # type: ignore[misc]
    t.client(kexinit(client_offer())).server(kexinit(server_offer()))
    after = t.tracker.facts()
    assert before.negotiation is None and before.leg("a").kexinit is None
    assert len(before.timeline) == 2 and len(after.timeline) == 4
    assert after.negotiation is not None and after.negotiation.ok
    assert after.leg(t.client_leg).kexinit is not None
    assert after.leg(t.client_leg).ident is not None
    assert after.leg(t.client_leg).ident == before.leg(t.client_leg).ident


def test_facts_name_the_client_leg_and_how_it_was_found() -> None:
    t = negotiated_ecdh(Transcript(reverse=True))
    facts = t.tracker.facts()
    assert (facts.client, facts.roles_by) == ("b", "markers")
    assert facts.endpoint("b") == CLIENT and facts.endpoint("a") == SERVER
    assert facts.leg("b").newkeys is not None and facts.leg("a").newkeys is not None


def test_the_tracker_leaves_the_diagnosis_to_a_later_stage() -> None:
    t = negotiated_ecdh(Transcript())
    assert t.tracker.record().diagnosis is None
    finished = t.tracker.finish()
    assert finished.diagnosis is None
    assert diagnosed(finished).diagnosis == diagnose(finished)
