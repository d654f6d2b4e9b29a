"""Link, IP and TCP header decoding for captured frames: pure functions over a byte buffer.

Theory of operation: a capture reader hands `decode_frame` a buffer, the offsets of one
captured frame in it and the frame's length on the wire. The decoder walks the link layer
(Ethernet with 802.1Q/QinQ tags, Linux cooked SLL/SLL2, raw IP, BSD loopback), IPv4 or IPv6
(skipping extension headers), and the tunnels that commonly carry mirrored traffic (GRE,
IP-in-IP, VXLAN, Geneve), and returns the inner TCP segment as a plain tuple of offsets into
the same buffer: nothing is copied, so a segment the caller only counts costs no allocation
beyond the tuple and its flow key. Frames that are not TCP, or that are malformed, come back
as a `Skip` code; nothing here raises on bad input.

A frame cut short by the capture (caplen < wirelen, or an IP length beyond what was
captured) is reported with ``payload_end - payload_start < payload_len``: the caller must
treat the missing bytes as a gap, never as a whole segment.
"""

from __future__ import annotations

import ipaddress
import struct
from enum import IntEnum
from typing import Final

from kexproxy.core.observer import Endpoint

__all__ = [
    "ACK",
    "FIN",
    "RST",
    "SYN",
    "Endpoint",
    "Skip",
    "TcpSegment",
    "decode_frame",
    "endpoints_of",
    "reverse_key",
    "supported_link_type",
]

#: TCP flag bits (RFC 9293 section 3.1).
FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
ACK: Final = 0x10

#: One TCP segment: (flow key, seq, ack, flags, payload_start, payload_end, payload_len).
#: The flow key is src address + dst address + the 4 bytes of src and dst port, so it is
#: directional and its length says the address family (12: IPv4, 36: IPv6). The payload is
#: ``buf[payload_start:payload_end]``; ``payload_len`` is its length on the wire, larger
#: when the capture cut the frame.
TcpSegment = tuple[bytes, int, int, int, int, int, int]


class Skip(IntEnum):
    """Why a frame yielded no TCP segment; the reader counts each kind for its summary."""

    NOT_TCP = 0
    MALFORMED = 1
    FRAGMENT = 2
    UNSUPPORTED_LINK = 3
    TRUNCATED_HEADER = 4


# pcap LINKTYPE_* values (https://www.tcpdump.org/linktypes.html).
LINKTYPE_NULL: Final = 0
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW_OPENBSD: Final = 12  # DLT_RAW is 12 on most BSDs, 14 on OpenBSD
LINKTYPE_RAW_BSD: Final = 14
LINKTYPE_RAW: Final = 101
LINKTYPE_LOOP: Final = 108
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_IPV4: Final = 228
LINKTYPE_IPV6: Final = 229
LINKTYPE_LINUX_SLL2: Final = 276

_ETHERTYPE_IPV4: Final = 0x0800
_ETHERTYPE_IPV6: Final = 0x86DD
_ETHERTYPE_TEB: Final = 0x6558  # transparent Ethernet bridging (GRE, Geneve)
_ETHERTYPE_ERSPAN2: Final = 0x88BE
_ETHERTYPE_ERSPAN3: Final = 0x22EB
#: 802.1Q, 802.1ad (QinQ) and the pre-standard 0x9100 outer tag.
_VLAN_TAGS: Final = frozenset({0x8100, 0x88A8, 0x9100})

_PROTO_IPIP: Final = 4
_PROTO_TCP: Final = 6
_PROTO_UDP: Final = 17
_PROTO_IPV6: Final = 41
_PROTO_GRE: Final = 47
#: IPv6 extension headers with the common (next header, length in 8-octet units) layout
#: (RFC 8200 section 4): hop-by-hop, routing, destination options, mobility, HIP, shim6.
_IPV6_EXT: Final = frozenset({0, 43, 60, 135, 139, 140})
_IPV6_FRAGMENT: Final = 44
_IPV6_AH: Final = 51
_UDP_VXLAN: Final = 4789  # RFC 7348
_UDP_GENEVE: Final = 6081  # RFC 8926

#: BSD loopback address family values: AF_INET everywhere; AF_INET6 is 24 (NetBSD,
#: OpenBSD), 28 (FreeBSD, DragonFly), 30 (macOS), 10 (Linux).
_AF_INET: Final = 2
_AF_INET6: Final = frozenset({10, 24, 28, 30})

#: Tunnels inside tunnels: deeper nesting is treated as not TCP, so a crafted frame that
#: nests GRE in GRE cannot make the decoder recurse without bound.
MAX_ENCAPSULATION_DEPTH: Final = 4

SUPPORTED_LINKTYPES: Final = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_RAW_OPENBSD,
        LINKTYPE_RAW_BSD,
        LINKTYPE_RAW,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    }
)

Decoded = TcpSegment | Skip

#: IPv4 version/IHL, total length, flags/fragment offset, protocol (RFC 791 section 3.1).
_IPV4_HEAD: Final = struct.Struct("!BxHxxHxB").unpack_from
#: Ethernet type, then the IPv4 fields above, then TCP seq, ack, data offset and flags,
#: for an untagged frame whose IPv4 header has no options.
_ETH_IPV4_TCP: Final = struct.Struct("!12xH" + "BxHxxHxB10x" + "4xIIBB").unpack_from
#: The same fields for a reader's own fast path (`kexproxy.sources.pcap` counts the frames
#: of connections past their handshake without building a segment).
ETH_IPV4_TCP: Final = _ETH_IPV4_TCP
ETHERTYPE_IPV4: Final = 0x0800
PROTO_TCP: Final = 6
#: TCP sequence number, acknowledgment number, data offset, flags (RFC 9293 section 3.1).
_TCP_HEAD: Final = struct.Struct("!IIBB").unpack_from


def supported_link_type(linktype: int) -> bool:
    """Whether `decode_frame` understands this link type, so a reader can say so once."""
    return linktype in SUPPORTED_LINKTYPES


def decode_frame(linktype: int, buf: bytes, start: int, end: int, wirelen: int) -> Decoded:
    """The TCP segment in ``buf[start:end]`` (a frame of `wirelen` bytes on the wire), or
    why there is none; offsets point into `buf` so the caller copies only what it keeps."""
    # A wire length below the captured length is a writer's mistake; the frame stands.
    wire_end = max(start + wirelen, end)
    if linktype == LINKTYPE_ETHERNET:
        if end - start >= 54:
            # Untagged Ethernet, IPv4 without options, TCP: nearly every frame of a large
            # capture, decoded with one unpack and no further calls.
            etype, vihl, total, frag, proto, seq, ack, doff, flags = _ETH_IPV4_TCP(buf, start)
            if etype == _ETHERTYPE_IPV4 and vihl == 0x45 and proto == _PROTO_TCP and total != 0:
                if frag & 0x3FFF:
                    return Skip.FRAGMENT
                ip_end = start + 14 + total
                payload = start + 34 + ((doff >> 4) << 2)
                if doff < 0x50 or payload > ip_end:
                    return Skip.MALFORMED
                if payload > end:
                    return Skip.TRUNCATED_HEADER
                return (
                    buf[start + 26 : start + 38],
                    seq,
                    ack,
                    flags,
                    payload,
                    ip_end if ip_end < end else end,
                    ip_end - payload,
                )
        return _ethernet(buf, start, end, wire_end, 0)
    if linktype == LINKTYPE_LINUX_SLL:
        if end - start < 16:
            return Skip.TRUNCATED_HEADER
        return _ethertype(
            buf, (buf[start + 14] << 8) | buf[start + 15], start + 16, end, wire_end, depth=0
        )
    if linktype == LINKTYPE_LINUX_SLL2:
        if end - start < 20:
            return Skip.TRUNCATED_HEADER
        return _ethertype(
            buf, (buf[start] << 8) | buf[start + 1], start + 20, end, wire_end, depth=0
        )
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_OPENBSD, LINKTYPE_RAW_BSD):
        return _ip(buf, start, end, wire_end, 0)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        return _loopback(buf, start, end, wire_end)
    if linktype == LINKTYPE_IPV4:
        return _ipv4(buf, start, end, wire_end, 0)
    if linktype == LINKTYPE_IPV6:
        return _ipv6(buf, start, end, wire_end, 0)
    return Skip.UNSUPPORTED_LINK


def _loopback(buf: bytes, start: int, end: int, wire_end: int) -> Decoded:
    # DLT_NULL writes the family in the capturing host's byte order, DLT_LOOP in network
    # order; trying both is safe because no valid family is above 0xFFFF.
    if end - start < 4:
        return Skip.TRUNCATED_HEADER
    family = int.from_bytes(buf[start : start + 4], "little")
    if family > 0xFFFF:
        family = int.from_bytes(buf[start : start + 4], "big")
    if family == _AF_INET:
        return _ipv4(buf, start + 4, end, wire_end, 0)
    if family in _AF_INET6:
        return _ipv6(buf, start + 4, end, wire_end, 0)
    return Skip.NOT_TCP


def _ethernet(buf: bytes, off: int, end: int, wire_end: int, depth: int) -> Decoded:
    if end - off < 14:
        return Skip.TRUNCATED_HEADER
    return _ethertype(
        buf, (buf[off + 12] << 8) | buf[off + 13], off + 14, end, wire_end, depth=depth
    )


def _ethertype(buf: bytes, etype: int, off: int, end: int, wire_end: int, *, depth: int) -> Decoded:
    # SLL and SLL2 keep 802.1Q tags in the payload, so tags are skipped here too; a loop,
    # not recursion, because a hostile frame may hold thousands of them.
    while etype in _VLAN_TAGS:
        if end - off < 4:
            return Skip.TRUNCATED_HEADER
        etype = (buf[off + 2] << 8) | buf[off + 3]
        off += 4
    if etype == _ETHERTYPE_IPV4:
        return _ipv4(buf, off, end, wire_end, depth)
    if etype == _ETHERTYPE_IPV6:
        return _ipv6(buf, off, end, wire_end, depth)
    return Skip.NOT_TCP


def _ip(buf: bytes, off: int, end: int, wire_end: int, depth: int) -> Decoded:
    if off >= end:
        return Skip.TRUNCATED_HEADER
    version = buf[off] >> 4
    if version == 4:
        return _ipv4(buf, off, end, wire_end, depth)
    if version == 6:
        return _ipv6(buf, off, end, wire_end, depth)
    return Skip.MALFORMED


def _ipv4(buf: bytes, off: int, end: int, wire_end: int, depth: int) -> Decoded:
    if end - off < 20:
        return Skip.TRUNCATED_HEADER
    first, total, frag, proto = _IPV4_HEAD(buf, off)
    ihl = (first & 0x0F) << 2
    if first >> 4 != 4 or ihl < 20 or 0 < total < ihl:
        return Skip.MALFORMED
    if frag & 0x3FFF:  # more fragments, or a fragment offset
        return Skip.FRAGMENT
    # A total length of 0 is what Linux TSO and BIG TCP put in super-frames over 64 KiB:
    # the frame's wire length is then the only length there is.
    ip_end = off + total if total else wire_end
    if proto != _PROTO_TCP:
        return _inner(buf, proto, off + ihl, ip_end, end, depth=depth)
    tcp = off + ihl
    if end - tcp < 20:
        return Skip.TRUNCATED_HEADER
    # With no IP options the addresses and the ports are adjacent: one slice is the key.
    key = buf[off + 12 : off + 24] if ihl == 20 else buf[off + 12 : off + 20] + buf[tcp : tcp + 4]
    # `_tcp` inlined: this is the path nearly every frame of a large capture takes.
    seq, ack, doff, flags = _TCP_HEAD(buf, tcp + 4)
    doff = (doff >> 4) << 2
    payload = tcp + doff
    if doff < 20 or payload > ip_end:
        return Skip.MALFORMED
    if payload > end:
        return Skip.TRUNCATED_HEADER
    return (key, seq, ack, flags, payload, ip_end if ip_end < end else end, ip_end - payload)


def _ipv6(buf: bytes, off: int, end: int, wire_end: int, depth: int) -> Decoded:
    if end - off < 40:
        return Skip.TRUNCATED_HEADER
    if buf[off] >> 4 != 6:
        return Skip.MALFORMED
    plen = (buf[off + 4] << 8) | buf[off + 5]
    addrs = buf[off + 8 : off + 40]
    nxt = buf[off + 6]
    ip_end = off + 40 + plen if plen else wire_end
    pos = off + 40
    while nxt != _PROTO_TCP:
        if nxt in _IPV6_EXT or nxt == _IPV6_AH:
            if end - pos < 8:
                return Skip.TRUNCATED_HEADER
            if nxt == 0 and not plen:
                jumbo = _jumbo_length(buf, pos, end)
                if jumbo:
                    ip_end = off + 40 + jumbo
            size = (buf[pos + 1] + 2) << 2 if nxt == _IPV6_AH else (buf[pos + 1] + 1) << 3
            nxt = buf[pos]
            pos += size
        elif nxt == _IPV6_FRAGMENT:
            if end - pos < 8:
                return Skip.TRUNCATED_HEADER
            if ((buf[pos + 2] << 8) | buf[pos + 3]) != 0:  # offset or more-fragments set
                return Skip.FRAGMENT
            nxt = buf[pos]
            pos += 8
        else:
            return _inner(buf, nxt, pos, ip_end, end, depth=depth)
        if pos > ip_end:
            return Skip.MALFORMED
    if end - pos < 20:
        return Skip.TRUNCATED_HEADER
    return _tcp(buf, addrs + buf[pos : pos + 4], pos, ip_end, end)


def _jumbo_length(buf: bytes, pos: int, end: int) -> int:
    """The RFC 2675 jumbo payload length in a hop-by-hop header, or 0 when there is none."""
    opt_end = min(pos + ((buf[pos + 1] + 1) << 3), end)
    i = pos + 2
    while i < opt_end:
        kind = buf[i]
        if kind == 0:  # Pad1
            i += 1
            continue
        if i + 1 >= opt_end:
            return 0
        size = buf[i + 1]
        if kind == 0xC2 and size == 4 and i + 6 <= opt_end:
            return int.from_bytes(buf[i + 2 : i + 6], "big")
        i += 2 + size
    return 0


def _inner(buf: bytes, proto: int, off: int, ip_end: int, end: int, *, depth: int) -> Decoded:
    """Tunnels whose inner TCP is worth finding: GRE, IP-in-IP, VXLAN and Geneve over UDP."""
    if depth >= MAX_ENCAPSULATION_DEPTH:
        return Skip.NOT_TCP
    depth += 1
    limit = min(ip_end, end)
    if proto == _PROTO_UDP:
        if limit - off < 8:
            return Skip.NOT_TCP
        dport = (buf[off + 2] << 8) | buf[off + 3]
        if dport == _UDP_VXLAN:
            if limit - off < 16 or not buf[off + 8] & 0x08:  # the I flag: a valid VNI
                return Skip.NOT_TCP
            return _ethernet(buf, off + 16, limit, ip_end, depth)
        if dport == _UDP_GENEVE:
            if limit - off < 16 or buf[off + 8] >> 6 != 0:  # version 0 only
                return Skip.NOT_TCP
            inner = off + 16 + ((buf[off + 8] & 0x3F) << 2)
            etype = (buf[off + 10] << 8) | buf[off + 11]
            return _tunnel_payload(buf, etype, inner, limit, ip_end, depth=depth)
        return Skip.NOT_TCP
    if proto == _PROTO_GRE:
        return _gre(buf, off, limit, ip_end, depth)
    if proto == _PROTO_IPIP:
        return _ipv4(buf, off, limit, ip_end, depth)
    if proto == _PROTO_IPV6:
        return _ipv6(buf, off, limit, ip_end, depth)
    return Skip.NOT_TCP


def _gre(buf: bytes, off: int, end: int, wire_end: int, depth: int) -> Decoded:
    # RFC 2784 / RFC 2890: checksum, key and sequence number words are present when their
    # flag is; version 1 (PPTP) and source routing carry nothing this tool reads.
    if end - off < 4:
        return Skip.NOT_TCP
    flags = buf[off]
    if buf[off + 1] & 0x07 or flags & 0x40:
        return Skip.NOT_TCP
    etype = (buf[off + 2] << 8) | buf[off + 3]
    inner = off + 4 + 4 * ((flags >> 7) + ((flags >> 5) & 1) + ((flags >> 4) & 1))
    if etype == _ETHERTYPE_ERSPAN2:
        # ERSPAN type II (sequence bit set) has an 8-byte header; type I has none.
        inner += 8 if flags & 0x10 else 0
        return _ethernet(buf, inner, end, wire_end, depth)
    if etype == _ETHERTYPE_ERSPAN3:
        if end - inner < 12:
            return Skip.NOT_TCP
        # The O bit says an 8-byte platform-specific subheader follows the 12-byte header.
        inner += 20 if buf[inner + 11] & 0x01 else 12
        return _ethernet(buf, inner, end, wire_end, depth)
    return _tunnel_payload(buf, etype, inner, end, wire_end, depth=depth)


def _tunnel_payload(
    buf: bytes, etype: int, off: int, end: int, wire_end: int, *, depth: int
) -> Decoded:
    if etype == _ETHERTYPE_TEB:
        return _ethernet(buf, off, end, wire_end, depth)
    if etype == _ETHERTYPE_IPV4:
        return _ipv4(buf, off, end, wire_end, depth)
    if etype == _ETHERTYPE_IPV6:
        return _ipv6(buf, off, end, wire_end, depth)
    return Skip.NOT_TCP


def _tcp(buf: bytes, key: bytes, off: int, ip_end: int, end: int) -> Decoded:
    """The segment at `off`, whose header the caller checked is captured in full up to
    the data offset byte; `key` already holds addresses and ports."""
    seq, ack, doff, flags = _TCP_HEAD(buf, off + 4)
    doff = (doff >> 4) << 2
    payload = off + doff
    if doff < 20 or payload > ip_end:
        return Skip.MALFORMED
    if payload > end:
        return Skip.TRUNCATED_HEADER
    return (key, seq, ack, flags, payload, ip_end if ip_end < end else end, ip_end - payload)


def reverse_key(key: bytes) -> bytes:
    """The flow key of the opposite direction, so both directions can share one flow."""
    half = (len(key) - 4) >> 1
    return key[half : 2 * half] + key[:half] + key[-2:] + key[-4:-2]


def endpoints_of(key: bytes) -> tuple[Endpoint, Endpoint]:
    """Source and destination of a flow key as text addresses, made once per connection."""
    half = (len(key) - 4) >> 1
    src = str(ipaddress.ip_address(key[:half]))
    dst = str(ipaddress.ip_address(key[half : 2 * half]))
    sport = (key[-4] << 8) | key[-3]
    dport = (key[-2] << 8) | key[-1]
    return Endpoint(src, sport), Endpoint(dst, dport)
