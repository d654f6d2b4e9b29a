"""Builders of link-layer frames, IP and TCP headers for the frame-decoding and pcap source tests."""

from __future__ import annotations

import ipaddress
import struct

from kexproxy.core.netframes import (
    ACK,
    Skip,
    TcpSegment,
    decode_frame,
)

ETHERNET = 1
RAW = 101
NULL = 0
LOOP = 108
SLL = 113
SLL2 = 276

# -- builders (also used by the pcap source tests) ----------------------------------------


def tcp_header(
    sport: int, dport: int, seq: int, *, ack: int = 0, flags: int = ACK, options: bytes = b""
) -> bytes:
    doff = (20 + len(options)) // 4
    return (
        struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 65535, 0, 0) + options
    )


def ipv4(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    *,
    options: bytes = b"",
    total: int | None = None,
    frag: int = 0,
) -> bytes:
    ihl = (20 + len(options)) // 4
    length = 20 + len(options) + len(payload) if total is None else total
    if length > 0xFFFF:
        length = 0  # as Linux writes super-frames over 64 KiB
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        length,
        1,
        frag,
        64,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return header + options + payload


def ipv6(src: str, dst: str, proto: int, payload: bytes, *, plen: int | None = None) -> bytes:
    length = len(payload) if plen is None else plen
    if length > 0xFFFF:
        length = 0  # as Linux writes super-frames over 64 KiB (no jumbo option)
    return (
        struct.pack("!IHBB", 6 << 28, length, proto, 64)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + payload
    )


def ip_tcp(
    src: tuple[str, int],
    dst: tuple[str, int],
    seq: int,
    payload: bytes = b"",
    *,
    ack: int = 0,
    flags: int = ACK,
) -> bytes:
    """An IPv4 or IPv6 packet (by the form of `src`) carrying one TCP segment."""
    segment = tcp_header(src[1], dst[1], seq, ack=ack, flags=flags) + payload
    if ":" in src[0]:
        return ipv6(src[0], dst[0], 6, segment)
    return ipv4(src[0], dst[0], 6, segment)


def ether(payload: bytes, ethertype: int = 0x0800, tags: tuple[int, ...] = ()) -> bytes:
    head = b"\x00\x11\x22\x33\x44\x55" + b"\x66\x77\x88\x99\xaa\xbb"
    for tpid in tags:
        head += struct.pack("!HH", tpid, 100)
    return head + struct.pack("!H", ethertype) + payload


def ethertype_of(packet: bytes) -> int:
    return 0x86DD if packet[0] >> 4 == 6 else 0x0800


def frame(link: int, packet: bytes) -> bytes:
    """`packet` (an IP packet) framed for `link`."""
    etype = ethertype_of(packet)
    if link == ETHERNET:
        return ether(packet, etype)
    if link == SLL:
        return struct.pack("!HHH8sH", 0, 772, 6, b"\0" * 8, etype) + packet
    if link == SLL2:
        return struct.pack("!HHIHBB8s", etype, 0, 1, 772, 0, 6, b"\0" * 8) + packet
    if link == NULL:
        return struct.pack("<I", 2 if etype == 0x0800 else 30) + packet
    if link == LOOP:
        return struct.pack(">I", 2 if etype == 0x0800 else 24) + packet
    return packet


def decode(link: int, data: bytes, wirelen: int | None = None) -> TcpSegment | Skip:
    return decode_frame(link, data, 0, len(data), len(data) if wirelen is None else wirelen)


def payload_of(data: bytes, seg: TcpSegment | Skip) -> bytes:
    assert isinstance(seg, tuple), seg
    return data[seg[4] : seg[5]]


C4, S4 = "10.0.0.1", "192.168.1.2"
C6, S6 = "2001:db8::1", "fe80::2"
