"""The pcap source's flow table: connections, reassembly, what observers hear, hostile input.

A fake observer records every call, so these tests need no SSH parser; the public captures
are checked against their oracle (EXPECTED.json) for endpoints, who connected, byte counts,
banners and closes, and hand-built captures cover what the public ones do not.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from kexproxy.core.netframes import ACK, FIN, RST, SYN, Endpoint
from kexproxy.sources import flowtable, pcap
from kexproxy.sources.pcap import read_capture
from tests.core.frames import (
    ether,
)
from tests.sources.captures import (
    BY_FILE,
    C_BANNER,
    S_BANNER,
    Conversation,
    Frame,
    Recorder,
    pcap_bytes,
    public,
    run,
    ssh_conversation,
    text,
    write,
)

# -- the public captures -------------------------------------------------------------------

PUBLIC_FILES = sorted(BY_FILE)
INITIATOR = {"tcp SYN": "syn", "tcp SYN-ACK": "syn-ack"}


@pytest.mark.parametrize("name", PUBLIC_FILES)
def test_public_captures_connections_match_the_oracle(name: str) -> None:
    entry = BY_FILE[name]
    result = public(name)
    assert result.stats is not None
    assert result.stats.tcp_connections == entry["tcp_streams"]
    assert result.stats.frames == entry["packets"]
    assert result.stats.format.startswith(entry["file_type"].replace("nsecpcap", "pcap"))
    by_pair = {frozenset((text(r.a), text(r.b))): r for r in result.finished}
    for conn in entry["connections"]:
        rec = by_pair[frozenset((conn["client"], conn["server"]))]
        c, s = rec.side_of(conn["client"]), rec.side_of(conn["server"])
        assert rec.initiator == INITIATOR[conn["client_determined_by"]]
        assert c == "a"  # the TCP client is `a` whenever the capture shows who connected
        want = conn["bytes"]
        if name == "zeek-tcp-ssh-dups.pcap":
            # Every segment is in the capture four times; the oracle summed them all.
            want = {k: v // 4 for k, v in want.items()}
        assert (rec.total(c), rec.total(s)) == (want["client_to_server"], want["server_to_client"])
        for side, banner, pre in (
            (c, conn["client_banner"], conn["client_pre_banner_lines"]),
            (s, conn["server_banner"], conn["server_pre_banner_lines"]),
        ):
            if banner is not None and not pre:
                assert bytes(rec.data[side]).startswith(banner.encode())
            elif banner is not None:
                assert banner.encode() in bytes(rec.data[side])
        close = conn["tcp_close"]
        fins = {side for side, kind in rec.closes if kind == "fin"}
        rsts = {side for side, kind in rec.closes if kind == "rst"}
        assert fins == {c if who == "client" else s for who in close["fin_from"]}
        assert rsts == {c if who == "client" else s for who in close["rst_from"]}
        assert rec.gaps == []


def test_finished_in_order_and_only_once() -> None:
    result = public("zeek-ssh-ssh.pcap")
    assert len(result.finished) == len({id(r) for r in result.finished}) == 23
    assert sorted(r.flow_index for r in result.made) == list(range(23))
    assert {id(r) for r in result.made} == {id(r) for r in result.finished}


def test_duplicated_segments_are_delivered_once() -> None:
    (rec,) = public("zeek-tcp-ssh-dups.pcap").finished
    client = bytes(rec.data["a"])
    assert client.count(b"SSH-2.0-") == 1
    assert (
        len(client)
        == BY_FILE["zeek-tcp-ssh-dups.pcap"]["connections"][0]["bytes"]["client_to_server"] // 4
    )


@pytest.mark.parametrize("name", ["arkime-gre-sample.pcap", "arkime-tcpdump-geneve.pcap"])
def test_ssh_inside_tunnels_is_found(name: str) -> None:
    (rec,) = public(name).finished
    want = BY_FILE[name]["connections"][0]
    assert text(rec.a) == want["client"]
    assert text(rec.b) == want["server"]
    assert bytes(rec.data["a"]).startswith(want["client_banner"].encode())
    stats = public(name).stats
    assert stats is not None
    assert stats.non_tcp_frames > 0  # ICMP, DNS, NTP in the same tunnel


def test_ssh_over_udp_on_bsd_loopback_is_no_tcp_connection() -> None:
    result = public("zeek-ssh-ssh-over-udp.pcap")
    assert result.stats is not None
    assert result.finished == []
    assert result.stats.tcp_connections == 0
    assert result.stats.non_tcp_frames == 2
    assert result.stats.link_types == {0}


def test_half_duplex_captures() -> None:
    server_side = public("zeek-ssh-ssh.server-side-half-duplex.pcap")
    assert {r.initiator for r in server_side.finished} == {"syn-ack"}
    assert all(r.total("a") == 0 and r.total("b") > 0 for r in server_side.finished)
    client_side = public("zeek-ssh-ssh.client-side-half-duplex.pcap")
    assert {r.initiator for r in client_side.finished} == {"syn"}
    assert all(r.total("b") == 0 and r.total("a") > 0 for r in client_side.finished)


@pytest.mark.parametrize("limit", [0, 1, 100, 3000])
def test_counting_after_inspection_gives_the_same_totals(limit: int) -> None:
    whole = public("zeek-ssh-ssh.pcap")
    counted = public("zeek-ssh-ssh.pcap", limit)
    for a, b in zip(whole.finished, counted.finished, strict=True):
        assert (a.total("a"), a.total("b")) == (b.total("a"), b.total("b"))
        assert a.closes == b.closes
        # Once inspection is over, no payload is handed on.
        received = [i for i, call in enumerate(b.calls) if call[0] == "receive"]
        counts = [i for i, call in enumerate(b.calls) if call[0] == "count"]
        if received and counts:
            assert max(received) < min(counts)


# -- hand-made captures: connections -------------------------------------------------------


def test_frame_cut_by_the_capture_is_a_gap_in_its_direction(tmp_path: Path) -> None:
    conv = Conversation().handshake()
    conv.packet("s", S_BANNER).packet("c", C_BANNER + b"x" * 1000, keep=200)
    conv.packet("c", b"more client bytes").packet("s", b"server goes on").close()
    result = run(write(tmp_path, "cut.pcap", conv.pcap()))
    assert result.stats is not None
    assert result.stats.truncated_frames == 1
    (rec,) = result.finished
    assert bytes(rec.data["a"]) == b""  # the cut frame's bytes never pass for whole ones
    assert rec.gaps == [("a", len(C_BANNER) + 1000)]
    assert bytes(rec.data["b"]) == S_BANNER + b"server goes on"
    assert rec.total("a") == len(C_BANNER) + 1000 + len(b"more client bytes")


def test_initiator_evidence(tmp_path: Path) -> None:
    syn_ack = Conversation()
    syn_ack.packet("s", flags=SYN | ACK).packet("c").packet("s", S_BANNER)
    (rec,) = run(write(tmp_path, "sa.pcap", syn_ack.pcap())).finished
    assert rec.initiator == "syn-ack"
    assert rec.a == Endpoint("10.0.0.1", 40000)
    assert bytes(rec.data["b"]) == S_BANNER

    mid = Conversation()
    mid.packet("c")  # a bare ACK: tells nothing, starts nothing
    mid.packet("s", S_BANNER).packet("c", C_BANNER)
    result = run(write(tmp_path, "mid.pcap", mid.pcap()))
    (rec,) = result.finished
    assert rec.initiator == "first-packet"
    assert rec.a == Endpoint("10.0.0.2", 22)  # the first side seen sending data
    assert bytes(rec.data["a"]) == S_BANNER
    assert result.stats is not None
    assert result.stats.stray_segments == 1


def test_port_reuse_starts_a_new_connection(tmp_path: Path) -> None:
    first = ssh_conversation().close()
    second = ssh_conversation(isn=(90000, 70000), t0=1_700_000_100.0).close()
    result = run(write(tmp_path, "reuse.pcap", pcap_bytes(first.frames + second.frames)))
    assert [r.flow_index for r in result.finished] == [0, 1]
    assert all(bytes(r.data["a"]).startswith(C_BANNER) for r in result.finished)

    # Without the first connection's FINs, the new SYN still ends it.
    third = ssh_conversation()
    fourth = ssh_conversation(isn=(90000, 70000), t0=1_700_000_100.0).close()
    result = run(write(tmp_path, "reuse2.pcap", pcap_bytes(third.frames + fourth.frames)))
    assert [r.flow_index for r in result.finished] == [0, 1]
    assert result.finished[0].closes == []


def test_retransmitted_syn_is_not_a_new_connection(tmp_path: Path) -> None:
    conv = Conversation().packet("c", flags=SYN)
    conv.packet("c", flags=SYN, seq=1000)  # the same ISN again
    conv.packet("s", flags=SYN | ACK).packet("c").packet("c", C_BANNER)
    (rec,) = run(write(tmp_path, "rsyn.pcap", conv.pcap())).finished
    assert bytes(rec.data["a"]) == C_BANNER


def test_rst_closes_at_once_and_the_peer_in_flight_packets_still_count(tmp_path: Path) -> None:
    conv = ssh_conversation().packet("s", flags=RST | ACK)
    conv.packet("c", b"in flight")  # sent before the client saw the reset
    conv.packet("c", flags=FIN | ACK)  # its FIN ends the connection: both sides closed
    conv.packet("c", b"late")  # after the end: a stray segment, no new connection
    result = run(write(tmp_path, "rst.pcap", conv.pcap()))
    (rec,) = result.finished
    assert rec.closes == [("b", "rst"), ("a", "fin")]
    assert rec.total("a") == len(C_BANNER) + 16 + len(b"in flight")
    assert result.stats is not None
    assert result.stats.stray_segments == 1


def test_reset_connection_ends_after_its_linger_time(tmp_path: Path) -> None:
    first = ssh_conversation().packet("s", flags=RST | ACK)
    later = ssh_conversation(("10.0.0.3", 40001), t0=first.t + flowtable.RST_LINGER + 0.5)
    result = run(write(tmp_path, "linger.pcap", pcap_bytes(first.frames + later.frames)))
    assert [r.flow_index for r in result.finished] == [0, 1]
    assert result.finished[0].closes == [("b", "rst")]
    # The first ended when the second's SYN came, not at the end of the file.
    finished_at = next(c for c in result.finished[0].calls if c[0] == "rst")[2]
    assert finished_at < later.frames[0][0]
    assert result.finished[1].closes == []


def test_reset_while_reassembling_reports_the_hole_first(tmp_path: Path) -> None:
    conv = Conversation().handshake().packet("c", C_BANNER)
    conv.packet("c", b"missing")
    conv.frames.pop()
    conv.packet("c", b"buffered")
    conv.packet("c", flags=RST, advance=False)
    (rec,) = run(write(tmp_path, "rsthole.pcap", conv.pcap())).finished
    assert rec.gaps == [("a", len(b"missing"))]
    assert [c[0] for c in rec.calls][-3:] == ["gap", "count", "rst"]
    assert rec.total("a") == len(C_BANNER) + len(b"buffered")


def test_trailing_ack_after_both_fins_starts_nothing(tmp_path: Path) -> None:
    conv = ssh_conversation().close().packet("c").packet("s", flags=FIN | ACK, seq=5000)
    result = run(write(tmp_path, "tail.pcap", conv.pcap()))
    assert len(result.made) == 1
    assert result.stats is not None
    assert result.stats.stray_segments == 3  # the last ACK of close() and the two added


def test_open_connections_end_at_end_of_file_in_order_of_first_packet(tmp_path: Path) -> None:
    one = ssh_conversation(("10.0.0.1", 1111))
    two = ssh_conversation(("10.0.0.1", 2222), t0=1_700_000_000.0005)
    frames = sorted(one.frames + two.frames)
    result = run(write(tmp_path, "open.pcap", pcap_bytes(frames)))
    assert [r.a.port for r in result.finished] == [1111, 2222]
    assert all(r.closes == [] and r.gaps == [] for r in result.finished)


def test_reordered_and_duplicated_segments(tmp_path: Path) -> None:
    conv = Conversation().handshake()
    parts = [C_BANNER[:5], C_BANNER[5:12], C_BANNER[12:]]
    seqs = [1001, 1006, 1013]
    conv.packet("c", parts[2], seq=seqs[2])
    conv.packet("c", parts[0], seq=seqs[0])
    conv.packet("c", parts[0], seq=seqs[0])
    conv.packet("c", parts[1] + b"WRONG", seq=seqs[1])
    conv.packet("c", b"SSH-2.0-OpenSSH_9.6\r\nXY", seq=1001)  # overlaps all: first copy wins
    (rec,) = run(write(tmp_path, "ooo.pcap", conv.pcap())).finished
    assert bytes(rec.data["a"]) == C_BANNER + b"XY"[: len(b"SSH-2.0-OpenSSH_9.6\r\nXY") - 21]


def test_ack_past_a_hole_reports_the_gap_at_once(tmp_path: Path) -> None:
    conv = Conversation().handshake().packet("c", C_BANNER)
    conv.packet("c", b"lost in the capture", advance=True)
    conv.frames.pop()  # the capture missed it
    conv.packet("c", b"after the hole")
    conv.packet("s", S_BANNER)  # acknowledges everything the client sent
    result = run(write(tmp_path, "hole.pcap", conv.pcap()))
    (rec,) = result.finished
    assert bytes(rec.data["a"]) == C_BANNER
    assert rec.gaps == [("a", len(b"lost in the capture") + len(b"after the hole"))]
    # Reported with the server's packet that acknowledged the missing bytes, and the bytes
    # buffered beyond the hole are counted (they were sent), not delivered.
    last = [c for c in rec.calls if c[1] == "a"][-2:]
    assert [c[0] for c in last] == ["gap", "count"]
    assert all(c[2] == pytest.approx(conv.frames[-1][0], abs=1e-6) for c in last)


def test_fin_after_a_hole_gives_gap_then_close(tmp_path: Path) -> None:
    conv = Conversation().handshake().packet("c", C_BANNER)
    conv.packet("c", b"missing")
    conv.frames.pop()
    conv.packet("c", flags=FIN | ACK)
    (rec,) = run(write(tmp_path, "finhole.pcap", conv.pcap())).finished
    assert rec.gaps == [("a", len(b"missing"))]
    assert rec.closes == [("a", "fin")]
    kinds = [c[0] for c in rec.calls]
    assert kinds.index("gap") < kinds.index("fin")


def test_fin_waits_for_out_of_order_data(tmp_path: Path) -> None:
    conv = Conversation().handshake()
    conv.packet("c", C_BANNER[10:], seq=1011)
    conv.packet("c", flags=FIN | ACK, seq=1001 + len(C_BANNER))
    conv.packet("c", C_BANNER[:10], seq=1001)
    (rec,) = run(write(tmp_path, "finooo.pcap", conv.pcap())).finished
    assert bytes(rec.data["a"]) == C_BANNER
    assert rec.closes == [("a", "fin")]
    assert rec.gaps == []


def test_decided_is_reported_once(tmp_path: Path) -> None:
    conv = ssh_conversation().close()
    result = run(write(tmp_path, "d.pcap", conv.pcap()), decide_after=len(S_BANNER))
    assert len(result.decided) == 1
    assert result.decided[0] is result.finished[0]


def test_counted_bytes_skip_retransmissions(tmp_path: Path) -> None:
    conv = ssh_conversation()
    conv.packet("c", b"e" * 100).packet("c", b"e" * 100, seq=conv.next["c"] - 100)
    conv.packet("c", b"f" * 50)
    (rec,) = run(write(tmp_path, "cnt.pcap", conv.pcap()), limit=1).finished
    assert rec.total("a") == len(C_BANNER) + 16 + 150
    assert rec.total("b") == len(S_BANNER) + 16


def test_sequence_numbers_wrap_around(tmp_path: Path) -> None:
    conv = Conversation(isn=((1 << 32) - 10, 5)).handshake()
    conv.packet("c", C_BANNER).packet("c", b"tail")
    (rec,) = run(write(tmp_path, "wrap.pcap", conv.pcap())).finished
    assert bytes(rec.data["a"]) == C_BANNER + b"tail"


def test_ipv6_endpoints_and_vlan_frames(tmp_path: Path) -> None:
    conv = Conversation(("2001:db8::1", 40000), ("2001:db8::2", 22)).handshake()
    conv.packet("c", C_BANNER)
    tagged = [
        (ts, ether(data[14:], 0x86DD, (0x88A8, 0x8100)), wl + 8) for ts, data, wl in conv.frames
    ]
    (rec,) = run(write(tmp_path, "v6.pcap", pcap_bytes(tagged))).finished
    assert rec.a == Endpoint("2001:db8::1", 40000)
    assert bytes(rec.data["a"]) == C_BANNER


def test_streaming_from_a_pipe_delivers_before_the_end(tmp_path: Path) -> None:
    """A live pipe: a connection that ended is handed on while the writer still writes."""
    first = ssh_conversation().close()
    second = ssh_conversation(("10.0.0.9", 40000), t0=1_700_000_100.0)
    blob_first = first.pcap()
    blob_second = pcap_bytes(second.frames)[24:]
    read_fd, write_fd = os.pipe()
    seen = threading.Event()
    timed_out: list[bool] = []

    def writer() -> None:
        with os.fdopen(write_fd, "wb", buffering=0) as out:
            out.write(blob_first)
            timed_out.append(not seen.wait(10))
            out.write(blob_second)

    thread = threading.Thread(target=writer)
    thread.start()
    finished: list[Any] = []

    def on_finished(obs: Any) -> None:
        finished.append(obs)
        seen.set()

    with os.fdopen(read_fd, "rb") as pipe:
        read_capture(
            "-",
            Recorder,
            on_finished=on_finished,
            stdin=pipe,
        )
    thread.join()
    assert timed_out == [False]
    assert len(finished) == 2


def test_undecodable_frames_are_counted_and_skipped(tmp_path: Path) -> None:
    conv = ssh_conversation()
    good = list(conv.frames)
    bad_ihl = bytearray(good[3][1])
    bad_ihl[14] = 0x43
    bad_doff = bytearray(good[3][1])
    bad_doff[14 + 20 + 12] = 0x30
    arp = ether(b"\0" * 28, 0x0806)
    frames = [
        *good[:3],
        (9.0, bytes(bad_ihl), len(bad_ihl)),
        (9.1, bytes(bad_doff), len(bad_doff)),
        (9.2, arp, len(arp)),
        (9.3, b"", 0),
        *good[3:],
    ]
    result = run(write(tmp_path, "mixed.pcap", pcap_bytes(frames)))
    assert result.error is None
    assert result.stats is not None
    assert result.stats.malformed_frames == 3
    assert result.stats.non_tcp_frames == 1
    (rec,) = result.finished
    assert bytes(rec.data["a"]).startswith(C_BANNER)


# -- counting, chunk boundaries, odd inputs ------------------------------------------------


@pytest.mark.parametrize("syn_ack_captured", [True, False])
def test_direction_first_heard_after_inspection_is_counted(
    tmp_path: Path, syn_ack_captured: bool
) -> None:
    """Inspection ends after the client's banner; the silent server then sends bulk data."""
    conv = Conversation().handshake().packet("c", C_BANNER)
    if not syn_ack_captured:
        del conv.frames[1]
    conv.packet("s", b"s" * 300).packet("s", b"s" * 300, seq=5001)  # a retransmission
    conv.packet("s", b"t" * 200, flags=ACK | FIN)
    conv.packet("c", b"u" * 10, flags=ACK | FIN)
    (rec,) = run(write(tmp_path, "late.pcap", conv.pcap()), limit=len(C_BANNER)).finished
    assert bytes(rec.data["a"]) == C_BANNER
    assert rec.data["b"] == b""
    assert rec.total("b") == 500
    assert rec.total("a") == len(C_BANNER) + 10
    assert rec.closes == [("b", "fin"), ("a", "fin")]


def test_fin_pending_behind_a_hole_is_closed_when_inspection_ends(tmp_path: Path) -> None:
    conv = Conversation().handshake()
    conv.packet("c", C_BANNER[5:], seq=1006)
    conv.packet("c", flags=FIN | ACK, seq=1001 + len(C_BANNER))
    conv.packet("s", S_BANNER)  # inspection ends with this (limit); the client FIN is owed
    (rec,) = run(write(tmp_path, "owed.pcap", conv.pcap()), limit=len(S_BANNER)).finished
    assert ("a", "fin") in rec.closes
    assert rec.total("a") == len(C_BANNER) - 5


def test_reset_connections_are_swept_by_the_frame_loop(tmp_path: Path) -> None:
    reset = ssh_conversation(("10.0.0.5", 5555)).packet("s", flags=RST | ACK)
    bulk = ssh_conversation(t0=reset.t + 0.1)
    for _ in range(pcap.PROGRESS_EVERY + 10):
        bulk.t += 0.001
        bulk.packet("c", b"b" * 10)
    result = run(write(tmp_path, "sweep.pcap", pcap_bytes(reset.frames + bulk.frames)), limit=1)
    assert [r.a.port for r in result.finished] == [5555, 40000]
    assert result.finished[1].total("a") == len(C_BANNER) + 16 + 10 * (pcap.PROGRESS_EVERY + 10)
    rst_at = next(c for c in result.finished[0].calls if c[0] == "rst")[2]
    assert rst_at < bulk.frames[-1][0]


def test_ended_connections_are_forgotten_oldest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flowtable, "MAX_ENDED_KEYS", 4)
    frames: list[Frame] = []
    for port in range(1, 5):
        frames += ssh_conversation(("10.0.0.1", port), t0=1_700_000_000.0 + port).close().frames
    late_ack = Conversation(("10.0.0.1", 1)).packet("c", b"late")  # port 1 was forgotten
    result = run(write(tmp_path, "evict.pcap", pcap_bytes(frames + late_ack.frames)))
    assert [r.a.port for r in result.finished] == [1, 2, 3, 4, 1]


def test_buffered_bytes_of_all_connections_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flowtable, "MAX_BUFFERED_TOTAL", 150)
    one = Conversation(("10.0.0.1", 1111)).handshake()
    one.packet("c", b"1" * 100, seq=1011)  # 100 bytes waiting behind a 10-byte hole
    two = Conversation(("10.0.0.1", 2222)).handshake()
    two.packet("c", b"2" * 100, seq=1011)  # together over the bound: this hole is a gap
    one.packet("c", b"x" * 10, seq=1001)  # the first connection's hole fills as usual
    result = run(
        write(tmp_path, "budget.pcap", pcap_bytes(one.frames[:4] + two.frames + one.frames[4:]))
    )
    first, second = result.finished
    assert bytes(first.data["a"]) == b"x" * 10 + b"1" * 100
    assert first.gaps == []
    assert second.gaps == [("a", 10)]
    assert second.total("a") == 100
