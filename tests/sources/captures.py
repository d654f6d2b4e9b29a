"""Captures for the capture-reader tests: a fake observer, a runner, pcap/pcapng writers and a
builder of TCP conversations, so each test states the frames it needs and what was heard.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from kexproxy.core.netframes import ACK, FIN, SYN, Endpoint
from kexproxy.core.observer import CloseKind, InitiatorEvidence, Leg
from kexproxy.sources.pcap import CaptureError, CaptureStats, read_capture
from tests.core.frames import (
    ETHERNET,
    frame,
    ip_tcp,
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
    data: dict[Leg, bytearray] = field(default_factory=lambda: {"a": bytearray(), "b": bytearray()})
    counted: dict[Leg, int] = field(default_factory=lambda: {"a": 0, "b": 0})
    gaps: list[tuple[Leg, int]] = field(default_factory=list)
    closes: list[tuple[Leg, CloseKind]] = field(default_factory=list)
    calls: list[tuple[str, Leg, float]] = field(default_factory=list)

    @property
    def inspecting(self) -> bool:
        return len(self.data["a"]) + len(self.data["b"]) < self.limit

    @property
    def decided(self) -> bool:
        return bool(self.closes) or len(self.data["a"]) + len(self.data["b"]) >= self.decide_after

    def receive(self, side: Leg, data: bytes, ts: float) -> None:
        assert data, "the source never sends empty data"
        self.data[side] += data
        self.calls.append(("receive", side, ts))

    def count(self, side: Leg, nbytes: int, ts: float) -> None:
        assert nbytes > 0
        self.counted[side] += nbytes
        self.calls.append(("count", side, ts))

    def receive_gap(self, side: Leg, nbytes: int, ts: float) -> None:
        self.gaps.append((side, nbytes))
        self.calls.append(("gap", side, ts))

    def receive_close(self, side: Leg, kind: CloseKind, ts: float) -> None:
        self.closes.append((side, kind))
        self.calls.append((kind, side, ts))

    def total(self, side: Leg) -> int:
        return len(self.data[side]) + self.counted[side]

    def side_of(self, ep: str) -> Leg:
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
