"""The pcap source: file formats, the flow table, what observers hear, and hostile input.

A fake observer records every call, so these tests need no SSH parser; the public captures
are checked against their oracle (EXPECTED.json) for endpoints, who connected, byte counts,
banners and closes, and hand-built captures cover what the public ones do not.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexproxy.core.netframes import ACK, FIN, RST, SYN, Endpoint
from kexproxy.core.observer import CloseKind, InitiatorEvidence
from kexproxy.core.observer import Leg as Side
from kexproxy.sources import capfile, pcap
from kexproxy.sources.pcap import CaptureError, CaptureStats, read_capture
from tests.core.frames import (
    ETHERNET,
    LOOP,
    NULL,
    RAW,
    SLL2,
    ether,
    frame,
    ip_tcp,
    ipv4,
    tcp_header,
)

PUBLIC = Path(__file__).resolve().parents[2] / "tests" / "data" / "public"
EXPECTED: list[dict[str, Any]] = json.loads((PUBLIC / "EXPECTED.json").read_text())
BY_FILE = {entry["file"]: entry for entry in EXPECTED}


# -- a fake observer -----------------------------------------------------------------------


@dataclass
class Recorder:
    """Records what the source says; stops inspecting after `limit` received bytes."""

    a: Endpoint
    b: Endpoint
    initiator: InitiatorEvidence
    flow_index: int
    first_ts: float
    limit: int = 1 << 62
    decide_after: int = 1 << 62
    data: dict[Side, bytearray] = field(
        default_factory=lambda: {"a": bytearray(), "b": bytearray()}
    )
    counted: dict[Side, int] = field(default_factory=lambda: {"a": 0, "b": 0})
    gaps: list[tuple[Side, int]] = field(default_factory=list)
    closes: list[tuple[Side, CloseKind]] = field(default_factory=list)
    calls: list[tuple[str, Side, float]] = field(default_factory=list)

    @property
    def inspecting(self) -> bool:
        return len(self.data["a"]) + len(self.data["b"]) < self.limit

    @property
    def decided(self) -> bool:
        return bool(self.closes) or len(self.data["a"]) + len(self.data["b"]) >= self.decide_after

    def receive(self, side: Side, data: bytes, ts: float) -> None:
        assert data, "the source never sends empty data"
        self.data[side] += data
        self.calls.append(("receive", side, ts))

    def count(self, side: Side, nbytes: int, ts: float) -> None:
        assert nbytes > 0
        self.counted[side] += nbytes
        self.calls.append(("count", side, ts))

    def receive_gap(self, side: Side, nbytes: int, ts: float) -> None:
        self.gaps.append((side, nbytes))
        self.calls.append(("gap", side, ts))

    def receive_close(self, side: Side, kind: CloseKind, ts: float) -> None:
        self.closes.append((side, kind))
        self.calls.append((kind, side, ts))

    def total(self, side: Side) -> int:
        return len(self.data[side]) + self.counted[side]

    def side_of(self, ep: str) -> Side:
        return "a" if text(self.a) == ep else "b"


@dataclass
class Run:
    """One `read_capture` call: the observers in the order they finished, and the rest."""

    finished: list[Recorder] = field(default_factory=list)
    decided: list[Recorder] = field(default_factory=list)
    made: list[Recorder] = field(default_factory=list)
    stats: CaptureStats | None = None
    error: CaptureError | None = None
    progress: list[tuple[int, int | None]] = field(default_factory=list)


def run(
    source: Any, *, limit: int = 1 << 62, decide_after: int = 1 << 62, stdin: Any = None
) -> Run:
    out = Run()

    def factory(
        a: Endpoint, b: Endpoint, initiator: InitiatorEvidence, flow_index: int, first_ts: float
    ) -> Recorder:
        rec = Recorder(
            a, b, initiator, flow_index, first_ts, limit=limit, decide_after=decide_after
        )
        out.made.append(rec)
        return rec

    def finished(obs: Any) -> None:
        out.finished.append(obs)

    def decided(obs: Any) -> None:
        out.decided.append(obs)

    try:
        out.stats = read_capture(
            source,
            factory,
            on_finished=finished,
            on_decided=decided,
            progress=lambda done, total: out.progress.append((done, total)),
            stdin=stdin,
        )
    except CaptureError as exc:
        out.error = exc
        out.stats = exc.stats
    return out


def text(ep: Endpoint) -> str:
    return f"[{ep.ip}]:{ep.port}" if ":" in ep.ip else f"{ep.ip}:{ep.port}"


@cache
def public(name: str, limit: int = 1 << 62) -> Run:
    result = run(str(PUBLIC / name), limit=limit)
    assert result.error is None
    return result


# -- capture writers ----------------------------------------------------------------------

Frame = tuple[float, bytes, int]  # timestamp, captured bytes, wire length


def pcap_bytes(
    frames: Iterable[Frame],
    *,
    link: int = ETHERNET,
    nano: bool = False,
    endian: str = "<",
    snaplen: int = 262144,
) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, link)]
    for ts, data, wirelen in frames:
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if nano else 1e6))
        out.append(struct.pack(endian + "IIII", sec, frac, len(data), wirelen) + data)
    return b"".join(out)


def pcapng_block(kind: int, body: bytes, endian: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    size = len(body) + 12
    return struct.pack(endian + "II", kind, size) + body + struct.pack(endian + "I", size)


def pcapng_option(code: int, value: bytes, endian: str = "<") -> bytes:
    return struct.pack(endian + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def shb(endian: str = "<") -> bytes:
    body = struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    return pcapng_block(0x0A0D0D0A, body, endian)


def idb(link: int, *, tsresol: int | None = None, tsoffset: int = 0, endian: str = "<") -> bytes:
    options = b""
    if tsresol is not None:
        options += pcapng_option(9, bytes([tsresol]), endian)
    if tsoffset:
        options += pcapng_option(14, struct.pack(endian + "q", tsoffset), endian)
    if options:
        options += pcapng_option(0, b"", endian)
    return pcapng_block(1, struct.pack(endian + "HHI", link, 0, 0) + options, endian)


def epb(
    data: bytes, ticks: int, *, ifid: int = 0, wirelen: int | None = None, endian: str = "<"
) -> bytes:
    head = struct.pack(
        endian + "IIIII", ifid, ticks >> 32, ticks & 0xFFFFFFFF, len(data), wirelen or len(data)
    )
    return pcapng_block(6, head + data, endian)


def pcapng_bytes(frames: Iterable[Frame], *, link: int = ETHERNET, endian: str = "<") -> bytes:
    blocks = [shb(endian), idb(link, endian=endian)]
    blocks += [epb(data, round(ts * 1e6), wirelen=wl, endian=endian) for ts, data, wl in frames]
    return b"".join(blocks)


# -- a conversation builder --------------------------------------------------------------


class Conversation:
    """Frames of one TCP connection, with sequence numbers kept for each side."""

    def __init__(
        self,
        client: tuple[str, int] = ("10.0.0.1", 40000),
        server: tuple[str, int] = ("10.0.0.2", 22),
        *,
        link: int = ETHERNET,
        isn: tuple[int, int] = (1000, 5000),
        t0: float = 1_700_000_000.0,
    ) -> None:
        self.ends = {"c": client, "s": server}
        self.link = link
        self.next = {"c": isn[0], "s": isn[1]}
        self.t = t0
        self.frames: list[Frame] = []

    def packet(
        self,
        who: str,
        payload: bytes = b"",
        flags: int = ACK,
        *,
        seq: int | None = None,
        keep: int | None = None,
        advance: bool = True,
    ) -> Conversation:
        """One segment from `who` ("c" or "s"); `keep` cuts the captured frame to that size."""
        other = "s" if who == "c" else "c"
        this_seq = self.next[who] if seq is None else seq
        packet = ip_tcp(
            self.ends[who], self.ends[other], this_seq, payload, ack=self.next[other], flags=flags
        )
        data = frame(self.link, packet)
        self.t += 0.001
        self.frames.append((self.t, data if keep is None else data[:keep], len(data)))
        if advance and seq is None:
            self.next[who] = (this_seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) % (
                1 << 32
            )
        return self

    def handshake(self) -> Conversation:
        return self.packet("c", flags=SYN).packet("s", flags=SYN | ACK).packet("c")

    def close(self) -> Conversation:
        return self.packet("c", flags=FIN | ACK).packet("s", flags=FIN | ACK).packet("c")

    def pcap(self, **kw: Any) -> bytes:
        return pcap_bytes(self.frames, link=self.link, **kw)


C_BANNER = b"SSH-2.0-OpenSSH_9.6\r\n"
S_BANNER = b"SSH-2.0-dropbear_2022.83\r\n"


def ssh_conversation(client: tuple[str, int] = ("10.0.0.1", 40000), **kw: Any) -> Conversation:
    conv = Conversation(client, **kw).handshake()
    conv.packet("s", S_BANNER).packet("c", C_BANNER)
    conv.packet("c", b"\0\0\0\x0c\x0a\x14" + b"k" * 10).packet(
        "s", b"\0\0\0\x0c\x0a\x14" + b"K" * 10
    )
    return conv


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


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


def test_pcapng_with_a_pcap_name() -> None:
    result = public("ndpi-ssh.pcap")
    assert result.stats is not None
    assert result.stats.format == "pcapng"
    assert len(result.finished) == 2


def test_nanosecond_pcap() -> None:
    result = public("zeek-http-get-to-ssh-server.pcap")
    assert result.stats is not None
    assert result.stats.format == "pcap (nanosecond)"
    (rec,) = result.finished
    assert rec.first_ts > 1e9
    assert rec.closes == [("b", "rst")]


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


def test_gzip_stdin_and_open_files_read_the_same(tmp_path: Path) -> None:
    name = "zeek-ssh-sshguess.pcap"
    raw = (PUBLIC / name).read_bytes()
    gz = write(tmp_path, "x.pcap.gz", gzip.compress(raw))
    plain = public(name)
    variants = [
        run(gz),
        run("-", stdin=io.BytesIO(raw)),
        run("-", stdin=io.BytesIO(gzip.compress(raw))),
    ]
    with open(PUBLIC / name, "rb") as handle:
        variants.append(run(handle))
    for other in variants:
        assert other.error is None
        assert [(r.a, r.b, r.initiator, r.first_ts, r.data, r.closes) for r in other.finished] == [
            (r.a, r.b, r.initiator, r.first_ts, r.data, r.closes) for r in plain.finished
        ]
    assert variants[0].stats is not None
    assert variants[0].stats.format == "pcap+gzip"


def test_progress_reports_bytes_of_the_file() -> None:
    result = public("zeek-ssh-ssh_kex_mlkem.pcap")
    size = (PUBLIC / "zeek-ssh-ssh_kex_mlkem.pcap").stat().st_size
    assert result.progress[-1] == (size, size)
    assert len(result.progress) == 1 + 3763 // pcap.PROGRESS_EVERY
    assert all(done <= size for done, _ in result.progress)


# -- hand-made captures: connections -------------------------------------------------------


def test_synthetic_conversation_in_every_format(tmp_path: Path) -> None:
    conv = ssh_conversation().close()
    payloads = [
        conv.pcap(),
        conv.pcap(nano=True, endian=">"),
        pcapng_bytes(conv.frames),
        pcapng_bytes(conv.frames, endian=">"),
        gzip.compress(pcapng_bytes(conv.frames)),
    ]
    for i, blob in enumerate(payloads):
        result = run(write(tmp_path, f"c{i}.cap", blob))
        assert result.error is None, result.error
        (rec,) = result.finished
        assert rec.initiator == "syn"
        assert (rec.a, rec.b) == (Endpoint("10.0.0.1", 40000), Endpoint("10.0.0.2", 22))
        assert bytes(rec.data["a"]).startswith(C_BANNER)
        assert bytes(rec.data["b"]).startswith(S_BANNER)
        assert rec.closes == [("a", "fin"), ("b", "fin")]
        assert rec.first_ts == pytest.approx(conv.frames[0][0], abs=1e-6)


@pytest.mark.parametrize("link", [NULL, LOOP, SLL2, RAW, ETHERNET])
def test_loopback_super_frames_are_read_whole(tmp_path: Path, link: int) -> None:
    """Loopback captures carry frames far above 65,535 bytes (scapy's readers cut them)."""
    big = bytes(range(256)) * 1000  # 256,000 bytes
    conv = Conversation(("::1", 50000), ("::1", 22), link=link).handshake()
    conv.packet("s", S_BANNER).packet("c", C_BANNER + big).close()
    path = write(tmp_path, "lo.pcap", conv.pcap())
    result = run(path)
    (rec,) = result.finished
    assert bytes(rec.data["a"]) == C_BANNER + big
    assert rec.gaps == []
    v4 = Conversation(("127.0.0.1", 50000), ("127.0.0.1", 22), link=link).handshake()
    v4.packet("c", C_BANNER)
    packet = ipv4("127.0.0.1", "127.0.0.1", 6, tcp_header(50000, 22, v4.next["c"]) + big, total=0)
    v4.frames.append((v4.t + 1, frame(link, packet), len(frame(link, packet))))
    (rec,) = run(write(tmp_path, "lo4.pcap", v4.pcap())).finished
    assert bytes(rec.data["a"]) == C_BANNER + big


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


def test_snaplen_cut_with_an_honest_wire_length_of_65535(tmp_path: Path) -> None:
    """What a reader capped at 65,535 bytes would deliver: the rest must be a gap."""
    conv = Conversation(("127.0.0.1", 1), ("127.0.0.1", 22), link=NULL).handshake()
    conv.packet("c", C_BANNER + b"y" * 100_000, keep=65535).close()
    (rec,) = run(write(tmp_path, "snap.pcap", conv.pcap(snaplen=65535))).finished
    assert rec.data["a"] == b""
    assert rec.gaps and rec.gaps[0][0] == "a"


def test_caplen_above_snaplen_is_still_decoded(tmp_path: Path) -> None:
    conv = ssh_conversation().close()
    (rec,) = run(write(tmp_path, "s.pcap", conv.pcap(snaplen=64))).finished
    assert bytes(rec.data["a"]).startswith(C_BANNER)


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
    later = ssh_conversation(("10.0.0.3", 40001), t0=first.t + pcap.RST_LINGER + 0.5)
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


# -- hand-made captures: damaged files -----------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    result = run(str(tmp_path / "nope.pcap"))
    assert result.error is not None
    assert str(result.error) == f"{tmp_path / 'nope.pcap'}: no such file or directory"


def test_directory(tmp_path: Path) -> None:
    result = run(str(tmp_path))
    assert result.error is not None
    assert str(result.error).startswith(f"{tmp_path}: is a directory")


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"<!DOCTYPE html>", "not a pcap or pcapng file (starts with 3c 21 44 4f)"),
        (b"", "empty file (not a pcap or pcapng file)"),
        (b"\xd4\xc3", "not a pcap or pcapng file (starts with d4 c3)"),
        (
            gzip.compress(b"hello world", mtime=0),
            "not a pcap or pcapng file inside gzip (starts with 68 65 6c 6c)",
        ),
        (gzip.compress(b"", mtime=0), "gzip file holds no capture"),
        (b"\x1f\x8b\x08\x00garbage-not-deflate", "corrupt or truncated gzip data"),
        (b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00", "truncated pcap file header"),
        (
            b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x01\x02\x03\x04" + b"\0" * 16,
            "corrupt pcapng section header",
        ),
    ],
)
def test_not_a_capture(tmp_path: Path, blob: bytes, message: str) -> None:
    path = write(tmp_path, "bad.pcap", blob)
    result = run(path)
    assert result.error is not None
    assert str(result.error).startswith(f"{path}: {message}")
    assert "\n" not in str(result.error)


def test_stdin_label() -> None:
    result = run("-", stdin=io.BytesIO(b"garbage!"))
    assert result.error is not None
    assert str(result.error) == "stdin: not a pcap or pcapng file (starts with 67 61 72 62)"


@pytest.mark.parametrize("cut", [10, 5, 1])
def test_truncated_pcap_delivers_everything_then_raises(tmp_path: Path, cut: int) -> None:
    first = ssh_conversation().close()
    second = ssh_conversation(("10.0.0.9", 40000)).packet("c", b"z" * 100)
    blob = pcap_bytes(first.frames + second.frames)[:-cut]
    result = run(write(tmp_path, "trunc.pcap", blob))
    assert result.error is not None
    assert "truncated capture" in str(result.error)
    assert [r.flow_index for r in result.finished] == [0, 1]
    assert bytes(result.finished[1].data["a"]).startswith(C_BANNER)
    assert result.stats is not None
    assert result.stats.frames == len(first.frames) + len(second.frames) - 1


def test_truncated_record_header(tmp_path: Path) -> None:
    blob = ssh_conversation().pcap() + b"\x01\x02\x03"
    result = run(write(tmp_path, "hdr.pcap", blob))
    assert result.error is not None
    assert "record header of record" in str(result.error)
    assert len(result.finished) == 1


def test_truncated_gzip_delivers_everything_then_raises(tmp_path: Path) -> None:
    blob = gzip.compress(ssh_conversation().close().pcap() * 1)
    result = run(write(tmp_path, "t.pcap.gz", blob[:-12]))
    assert result.error is not None
    assert "gzip" in str(result.error) or "truncated" in str(result.error)


def test_absurd_caplen_is_corrupt(tmp_path: Path) -> None:
    blob = (
        ssh_conversation().pcap() + struct.pack("<IIII", 1, 0, 0xFFFFFFF0, 0xFFFFFFF0) + b"x" * 100
    )
    result = run(write(tmp_path, "huge.pcap", blob))
    assert result.error is not None
    assert "claims 4294967280 captured bytes" in str(result.error)
    assert len(result.finished) == 1


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


def test_unsupported_link_type(tmp_path: Path) -> None:
    result = run(write(tmp_path, "usb.pcap", pcap_bytes([(1.0, b"\0" * 64, 64)], link=189)))
    assert result.error is None
    assert result.stats is not None
    assert result.stats.unsupported_link_frames == 1
    assert result.stats.link_types == {189}


def test_pcapng_blocks_sections_and_clocks(tmp_path: Path) -> None:
    conv = ssh_conversation()
    f = conv.frames
    blob = b"".join(
        [
            shb(),
            pcapng_block(0x0BAD, b"custom block, skipped"),
            idb(ETHERNET, tsresol=9),  # nanoseconds
            idb(ETHERNET, tsresol=0x80 | 20, tsoffset=100),  # 2^-20 seconds, +100 s
            epb(f[0][1], round(f[0][0] * 1e9)),
            epb(f[1][1], round((f[1][0] - 100) * (1 << 20)), ifid=1),
            epb(f[2][1], 0, ifid=7),  # no such interface: counted, skipped
            pcapng_block(5, b"\0" * 8),  # interface statistics: skipped
            shb(">"),  # a new section in the other byte order forgets the interfaces
            idb(ETHERNET, endian=">"),
            pcapng_block(3, struct.pack(">I", len(f[2][1])) + f[2][1], ">"),  # simple packet
            pcapng_block(
                2,
                struct.pack(">HHQII", 0, 0, round(f[3][0] * 1e6), len(f[3][1]), len(f[3][1]))
                + f[3][1],
                ">",
            ),
            *[epb(data, round(ts * 1e6), endian=">") for ts, data, _ in f[4:]],
        ]
    )
    result = run(write(tmp_path, "ng.pcapng", blob))
    assert result.error is None, result.error
    (rec,) = result.finished
    assert rec.first_ts == pytest.approx(f[0][0], abs=1e-6)
    assert bytes(rec.data["a"]).startswith(C_BANNER)
    assert bytes(rec.data["b"]).startswith(S_BANNER)
    assert result.stats is not None
    assert result.stats.malformed_frames == 1
    assert rec.calls[0][2] == pytest.approx(
        f[3][0], abs=1e-4
    )  # banner time from the SPB's neighbour


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (lambda blob: blob[:-3], "truncated capture: the file ends inside the block"),
        (
            lambda blob: blob + b"\x06\0\0\0",
            "truncated capture: the file ends inside the block header",
        ),
        (lambda blob: blob + struct.pack("<II", 6, 13) + b"\0" * 8, "corrupt pcapng block"),
        (
            lambda blob: blob + struct.pack("<II", 6, 16) + b"\0" * 4 + struct.pack("<I", 20),
            "corrupt pcapng block",
        ),
    ],
)
def test_damaged_pcapng(tmp_path: Path, tail: Any, message: str) -> None:
    blob = pcapng_bytes(ssh_conversation().close().frames)
    result = run(write(tmp_path, "bad.pcapng", tail(blob)))
    assert result.error is not None
    assert message in str(result.error)
    assert len(result.finished) == 1


def damaged_bases() -> dict[str, bytes]:
    conv = ssh_conversation(link=RAW).packet("s", b"k" * 500).close()
    return {
        "pcap": conv.pcap(),
        "pcapng": pcapng_bytes(conv.frames, link=RAW),
        "gzip": gzip.compress(conv.pcap()),
    }


DAMAGED_BASES = damaged_bases()


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from(sorted(DAMAGED_BASES)),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=12),
    cut=st.integers(0, 4000),
)
def test_damaged_files_raise_only_capture_error(
    base: str, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(DAMAGED_BASES[base])
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    result = run("-", stdin=io.BytesIO(bytes(data[:cut])))
    if result.error is not None:
        assert "\n" not in str(result.error)
        assert str(result.error).startswith("stdin: ")
    # Every connection made was handed on, error or not.
    assert {id(r) for r in result.finished} == {id(r) for r in result.made}


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
    monkeypatch.setattr(pcap, "MAX_ENDED_KEYS", 4)
    frames: list[Frame] = []
    for port in range(1, 5):
        frames += ssh_conversation(("10.0.0.1", port), t0=1_700_000_000.0 + port).close().frames
    late_ack = Conversation(("10.0.0.1", 1)).packet("c", b"late")  # port 1 was forgotten
    result = run(write(tmp_path, "evict.pcap", pcap_bytes(frames + late_ack.frames)))
    assert [r.a.port for r in result.finished] == [1, 2, 3, 4, 1]


def test_records_and_blocks_spanning_read_chunks(tmp_path: Path) -> None:
    conv = Conversation(link=RAW).handshake()
    sizes = [70_000, 200_000, 1, 150_000, 33_333, 250_000, 99_999] * 5
    payload = b""
    for i, size in enumerate(sizes):
        chunk = bytes([i]) * size
        payload += chunk
        conv.packet("c", chunk)
    blobs = [conv.pcap(), pcapng_bytes(conv.frames, link=RAW)]
    assert all(len(blob) > 3 * capfile.READ_CHUNK for blob in blobs)
    for i, blob in enumerate(blobs):
        (rec,) = run(write(tmp_path, f"big{i}", blob)).finished
        assert bytes(rec.data["a"]) == payload


class FailingStream(io.BytesIO):
    """Reads a few bytes, then fails like a disk or a network file system can."""

    def read1(self, n: int | None = -1) -> bytes:
        if self.tell() > 100:
            raise OSError(5, "Input/output error")
        return super().read1(50 if n is None or n < 0 else min(n, 50))


def test_read_errors_are_capture_errors() -> None:
    result = run(FailingStream(ssh_conversation().pcap()))
    assert result.error is not None
    assert str(result.error) == "stream: read error (Input/output error)"


def test_obsolete_packet_block_with_an_unknown_interface(tmp_path: Path) -> None:
    conv = ssh_conversation()
    bad = pcapng_block(2, struct.pack("<HHQII", 3, 0, 0, 4, 4) + b"abcd")
    blob = (
        pcapng_bytes(conv.frames[:3])
        + bad
        + b"".join(epb(data, round(ts * 1e6)) for ts, data, _ in conv.frames[3:])
    )
    result = run(write(tmp_path, "pb.pcapng", blob))
    (rec,) = result.finished
    assert bytes(rec.data["a"]).startswith(C_BANNER)


def test_buffered_bytes_of_all_connections_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pcap, "MAX_BUFFERED_TOTAL", 150)
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


def test_pcapng_timestamps_beyond_any_date_are_replaced(tmp_path: Path) -> None:
    conv = ssh_conversation()
    f = conv.frames
    blob = b"".join(
        [
            shb(),
            idb(ETHERNET),
            epb(f[0][1], round(f[0][0] * 1e6)),
            epb(f[1][1], (1 << 64) - 1),  # year 586,524: corrupt
            *[epb(data, round(ts * 1e6)) for ts, data, _ in f[2:]],
        ]
    )
    result = run(write(tmp_path, "clock.pcapng", blob))
    assert result.stats is not None
    assert result.stats.bad_timestamps == 1
    (rec,) = result.finished
    assert bytes(rec.data["b"]).startswith(S_BANNER)
    assert max(c[2] for c in rec.calls) < 2e9
