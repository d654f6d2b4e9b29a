"""Mutations of capture files, as disks, tools and attackers damage them, for the fuzzer.

Each mutation takes a random source, a capture's bytes and the other seed captures (for
splicing) and returns new bytes; one that cannot parse what an earlier mutation left may
raise `struct.error`, `ValueError` or `IndexError`, and the caller then flips bytes instead.
Structural mutations work on `Units` (pcap records or pcapng blocks) so that what they
move, duplicate or damage is what a reader walks.
"""

from __future__ import annotations

import gzip
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# -- the captures as units (pcap records, pcapng blocks) -----------------------------------


@dataclass
class Units:
    """A capture cut into what a mutation may move: the header, then whole records or
    blocks, with where each unit's frame starts and its link type (None: not a packet)."""

    kind: str  # "pcap" or "pcapng"
    endian: str
    header: bytes
    units: list[bytes]
    frames: list[tuple[int, int] | None]  # per unit: (offset of the frame, link type)

    def join(self, units: list[bytes] | None = None) -> bytes:
        return self.header + b"".join(self.units if units is None else units)


def split(data: bytes) -> Units | None:
    """The capture's units, or None when it is neither pcap nor pcapng (say, gzip)."""
    magic = data[:4]
    if magic in (
        b"\xd4\xc3\xb2\xa1",
        b"\x4d\x3c\xb2\xa1",
        b"\xa1\xb2\xc3\xd4",
        b"\xa1\xb2\x3c\x4d",
    ):
        endian = "<" if magic[0] in (0xD4, 0x4D) else ">"
        link = struct.unpack_from(endian + "I", data, 20)[0] & 0x03FFFFFF
        units: list[bytes] = []
        pos = 24
        while pos + 16 <= len(data):
            caplen = struct.unpack_from(endian + "I", data, pos + 8)[0]
            units.append(data[pos : pos + 16 + caplen])
            pos += 16 + caplen
        return Units("pcap", endian, data[:24], units, [(16, link)] * len(units))
    if magic == b"\x0a\x0d\x0d\x0a":
        endian = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        units, frames, links = [], [], []
        pos = 0
        while pos + 12 <= len(data):
            kind, size = struct.unpack_from(endian + "II", data, pos)
            if size < 12:
                break
            block = data[pos : pos + size]
            if kind == 0x0A0D0D0A:
                links = []
            elif kind == 1 and len(block) >= 10:
                links.append(struct.unpack_from(endian + "H", block, 8)[0])
            ifid = struct.unpack_from(endian + "I", block, 8)[0] if len(block) >= 12 else -1
            frames.append((28, links[ifid]) if kind == 6 and 0 <= ifid < len(links) else None)
            units.append(block)
            pos += size
        return Units("pcapng", endian, b"", units, frames)
    return None


def records_as_pcap(units: Units) -> list[tuple[int, bytes]]:
    """(link type, frame) of every packet, to splice into a capture of another format."""
    out = []
    for unit, where in zip(units.units, units.frames, strict=True):
        if where is not None:
            out.append((where[1], unit[where[0] :]))
    return out


# -- mutations -------------------------------------------------------------------------------

Mutation = Callable[[random.Random, bytes, list[bytes]], bytes]
#: Offset of the IP header in a frame of each link type this tool decodes.
_IP_OFFSET = {0: 4, 1: 14, 12: 0, 14: 0, 101: 0, 108: 4, 113: 16, 228: 0, 229: 0, 276: 20}
_BOUNDARIES = (0, 1, 0x7F, 0x80, 0xFF)


def _flip(rng: random.Random, buf: bytearray, lo: int, hi: int, count: int) -> None:
    if hi <= lo:
        return
    for _ in range(count):
        pos = rng.randrange(lo, hi)
        buf[pos] = rng.choice(
            (rng.randrange(256), buf[pos] ^ (1 << rng.randrange(8)), *_BOUNDARIES)
        )


def byte_flips(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    buf = bytearray(data)
    _flip(rng, buf, 0, len(buf), rng.randint(1, 32))
    return bytes(buf)


def truncation(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    return data[: rng.randrange(len(data))]


def header_corruption(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    """The pcap file header, or a pcapng section or interface block, damaged."""
    units = split(data)
    buf = bytearray(data)
    if units is not None and units.kind == "pcapng":
        heads = [
            i
            for i, u in enumerate(units.units)
            if u[:4] in (b"\x0a\x0d\x0d\x0a",) or u[0] == 1 or u[3] == 1
        ]
        index = rng.choice(heads or [0])
        start = sum(len(u) for u in units.units[:index])
        size = len(units.units[index])
        _flip(rng, buf, start, start + size, rng.randint(1, 4))
        return bytes(buf)
    _flip(rng, buf, 0, min(24, len(buf)), rng.randint(1, 3))
    return bytes(buf)


def _length_fields(units: Units, index: int) -> list[tuple[int, str]]:
    if units.kind == "pcap":
        return [(0, "I"), (4, "I"), (8, "I"), (12, "I")]  # seconds, fraction, caplen, wirelen
    size = len(units.units[index])
    return [(4, "I"), (size - 4, "I"), (8, "I"), (12, "I"), (16, "I"), (20, "I"), (24, "I")]


def block_corruption(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    """A record's or block's length, interface, timestamp or option fields set to extremes."""
    units = split(data)
    if units is None or not units.units:
        return byte_flips(rng, data, _)
    out = list(units.units)
    for _round in range(rng.randint(1, 3)):
        index = rng.randrange(len(out))
        unit = bytearray(out[index])
        fields = [(off, fmt) for off, fmt in _length_fields(units, index) if off + 4 <= len(unit)]
        if not fields:
            continue
        off, fmt = rng.choice(fields)
        value = rng.choice(
            (
                0,
                1,
                3,
                12,
                0xFFFF,
                0x10000,
                0xFFFFFFFF,
                0x7FFFFFFF,
                len(unit),
                len(unit) + rng.randint(-8, 8),
            )
        )
        struct.pack_into(units.endian + fmt, unit, off, value & 0xFFFFFFFF)
        if units.kind == "pcapng" and len(unit) > 28 and rng.random() < 0.3:
            # Option-shaped damage at the block's end: a code and a length past it.
            struct.pack_into(units.endian + "HH", unit, len(unit) - 8, rng.choice((2, 9, 14)), 8)
        out[index] = bytes(unit)
    return units.join(out)


def record_shuffling(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    """Records duplicated, dropped and reordered (retransmissions, a merge of two capture
    points, a lossy capture), the header and the first unit (pcapng's section) kept."""
    units = split(data)
    if units is None or len(units.units) < 3:
        return byte_flips(rng, data, _)
    first = 0 if units.kind == "pcap" else 1
    body = list(units.units[first:])
    for _round in range(rng.randint(1, 6)):
        i = rng.randrange(len(body))
        action = rng.random()
        if action < 0.35:
            body.insert(rng.randrange(len(body) + 1), body[i])
        elif action < 0.6 and len(body) > 1:
            del body[i]
        else:
            j = rng.randrange(len(body))
            body[i], body[j] = body[j], body[i]
    if rng.random() < 0.2:
        rng.shuffle(body)
    return units.join(units.units[:first] + body)


def gzip_damage(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    packed = bytearray(gzip.compress(data, compresslevel=1, mtime=0))
    action = rng.random()
    if action < 0.4:
        return bytes(packed[: rng.randrange(2, len(packed))])
    if action < 0.8:
        _flip(rng, packed, 2, len(packed), rng.randint(1, 6))
        return bytes(packed)
    return bytes(packed) + (b"\x1f\x8b" + bytes(rng.randrange(256) for _ in range(20)))


def _frame_positions(units: Units) -> list[tuple[int, int, int]]:
    """(unit index, offset of the IP header, end of the frame) of every decodable packet."""
    out = []
    for index, where in enumerate(units.frames):
        if where is not None and where[1] in _IP_OFFSET:
            ip = where[0] + _IP_OFFSET[where[1]]
            if ip + 20 <= len(units.units[index]):
                out.append(
                    (index, ip, len(units.units[index]) - (4 if units.kind == "pcapng" else 0))
                )
    return out


def _in_frames(
    rng: random.Random, data: bytes, edit: Callable[[bytearray, int, int], None]
) -> bytes:
    units = split(data)
    positions = _frame_positions(units) if units is not None else []
    if units is None or not positions:
        return byte_flips(rng, data, [])
    out = list(units.units)
    for index, ip, end in rng.sample(positions, min(len(positions), rng.randint(1, 8))):
        unit = bytearray(out[index])
        edit(unit, ip, end)
        out[index] = bytes(unit)
    return units.join(out)


def ip_tcp_corruption(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    """IP and TCP header fields damaged, among them the LAND packet of issue 9."""

    def edit(unit: bytearray, ip: int, end: int) -> None:
        v6 = unit[ip] >> 4 == 6
        ihl = 40 if v6 else (unit[ip] & 0x0F) * 4
        tcp = ip + max(ihl, 20)
        choice = rng.random()
        if choice < 0.15 and not v6 and tcp + 4 <= end:
            unit[ip + 16 : ip + 20] = unit[ip + 12 : ip + 16]  # LAND: source is destination
            unit[tcp + 2 : tcp + 4] = unit[tcp : tcp + 2]
        elif choice < 0.3 and tcp + 14 <= end:
            unit[tcp + 13] = rng.choice((0x02, 0x12, 0x01, 0x04, 0x11, 0x3F, 0x00, 0x06))
        else:
            _flip(rng, unit, ip, min(tcp + 20, end), rng.randint(1, 4))

    return _in_frames(rng, data, edit)


def payload_corruption(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    """Bytes of the TCP payload damaged: SSH packet lengths, names, line ends."""

    def edit(unit: bytearray, ip: int, end: int) -> None:
        start = min(ip + 40, end)
        if end - start < 1:
            return
        if rng.random() < 0.3 and end - start >= 4:
            pos = rng.randrange(start, end - 3)
            value = rng.choice((0, 1, 5, 35000, 262144, 262145, 0xFFFFFFFF))
            unit[pos : pos + 4] = value.to_bytes(4, "big")
        elif rng.random() < 0.3:
            pos = rng.randrange(start, end)
            unit[pos] = rng.choice(b"\r\n,\x00\x1b\\")
        else:
            _flip(rng, unit, start, end, rng.randint(1, 8))

    return _in_frames(rng, data, edit)


def splicing(rng: random.Random, data: bytes, others: list[bytes]) -> bytes:
    """Records of another capture spliced in (the link types may differ: pcapng keeps them)."""
    mine, theirs = split(data), split(rng.choice(others))
    if mine is None or theirs is None:
        return byte_flips(rng, data, others)
    packets = records_as_pcap(mine)
    extra = records_as_pcap(theirs)
    if not extra:
        return data
    start = rng.randrange(len(extra))
    chunk = extra[start : start + rng.randint(1, 40)]
    at = rng.randrange(len(packets) + 1)
    return write_pcapng(packets[:at] + chunk + packets[at:])


def interface_options(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    """The capture as pcapng whose interface blocks carry options, some of them claiming more
    bytes than the block holds (issue 9's if_tsoffset at the very end of the block)."""
    units = split(data)
    packets = records_as_pcap(units) if units is not None else []
    if not packets:
        return byte_flips(rng, data, _)

    def options(endian: str) -> bytes:
        out = b""
        for _option in range(rng.randint(1, 3)):
            code = rng.choice((2, 9, 14, 0x8001))
            value = {
                9: bytes([rng.choice((6, 9, 0x80 | 20, 0x7F, 0xFF))]),
                14: struct.pack(endian + "q", rng.choice((0, 100, -(1 << 40), (1 << 62)))),
            }.get(code, b"eth0")
            out += struct.pack(endian + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)
        if rng.random() < 0.5:  # the last option's value cut off by the block's end
            code = rng.choice((9, 14, 2))
            out += struct.pack(endian + "HH", code, rng.choice((1, 8, 200)))
        elif rng.random() < 0.5:
            out += b"\0\0\0\0"  # opt_endofopt
        return out

    # An interface added last, with no packet after it: a capture stopped right then.
    return write_pcapng(packets, options=options, trailing_interface=rng.random() < 0.4)


def write_pcapng(
    packets: list[tuple[int, bytes]],
    *,
    options: Callable[[str], bytes] | None = None,
    trailing_interface: bool = False,
) -> bytes:
    """A little-endian pcapng with one interface per link type, timestamps ticking 1 ms;
    `options` gives each interface block's options."""

    def block(kind: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    ifids: dict[int, int] = {}
    for i, (link, frame) in enumerate(packets):
        if link not in ifids:
            ifids[link] = len(ifids)
            extra = options("<") if options is not None else b""
            out.append(block(1, struct.pack("<HHI", link & 0xFFFF, 0, 0) + extra))
        ticks = 1_700_000_000_000_000 + i * 1000
        head = struct.pack(
            "<IIIII", ifids[link], ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)
        )
        out.append(block(6, head + frame))
    if trailing_interface:
        extra = options("<") if options is not None else b""
        out.append(block(1, struct.pack("<HHI", 1, 0, 0) + extra))
    return b"".join(out)


MUTATIONS: dict[str, Mutation] = {
    "byte-flips": byte_flips,
    "truncation": truncation,
    "header": header_corruption,
    "block": block_corruption,
    "records": record_shuffling,
    "gzip": gzip_damage,
    "ip-tcp": ip_tcp_corruption,
    "payload": payload_corruption,
    "splice": splicing,
    "interface-options": interface_options,
}


def seed_captures(root: Path = ROOT) -> list[Path]:
    """The real captures mutations start from."""
    paths = sorted((root / "captures").glob("*.pcap*")) + sorted(
        (root / "tests" / "data" / "public").glob("*.pcap*")
    )
    return [p for p in paths if p.is_file()]
