"""Frame decoding: every link type, IP variants, tunnels, lengths cut by the capture, and garbage that never raises."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexproxy.core import netframes
from kexproxy.core.netframes import (
    ACK,
    FIN,
    RST,
    SYN,
    Endpoint,
    Skip,
    decode_frame,
    endpoints_of,
    reverse_key,
    supported_link_type,
)
from tests.core.frames import (
    C4,
    C6,
    ETHERNET,
    LOOP,
    NULL,
    RAW,
    S4,
    S6,
    SLL,
    SLL2,
    decode,
    ether,
    ethertype_of,
    frame,
    ip_tcp,
    ipv4,
    ipv6,
    payload_of,
    tcp_header,
)

# -- link types --------------------------------------------------------------------------


@pytest.mark.parametrize("link", [ETHERNET, SLL, SLL2, RAW, 12, 14, 228, NULL, LOOP])
@pytest.mark.parametrize(("src", "dst"), [(C4, S4), (C6, S6)])
def test_every_link_type_yields_the_segment(link: int, src: str, dst: str) -> None:
    if link == 228 and ":" in src:
        link = 229
    data = frame(
        link, ip_tcp((src, 40000), (dst, 22), 1000, b"SSH-2.0-x\r\n", ack=7, flags=ACK | FIN)
    )
    seg = decode(link, data)
    assert isinstance(seg, tuple)
    key, seq, ack, flags, _start, _end, plen = seg
    assert (seq, ack, flags, plen) == (1000, 7, ACK | FIN, 11)
    assert payload_of(data, seg) == b"SSH-2.0-x\r\n"
    assert endpoints_of(key) == (Endpoint(src, 40000), Endpoint(dst, 22))
    assert supported_link_type(link)


def test_bsd_loopback_family_in_either_byte_order() -> None:
    packet = ip_tcp((C6, 1), (S6, 2), 3, b"x")
    for header in (struct.pack("<I", 28), struct.pack(">I", 28), struct.pack("<I", 10)):
        assert isinstance(decode(NULL, header + packet), tuple)
    assert decode(NULL, struct.pack("<I", 7) + packet) is Skip.NOT_TCP


@pytest.mark.parametrize("tags", [(0x8100,), (0x88A8, 0x8100), (0x9100, 0x8100, 0x8100)])
def test_vlan_tags_are_skipped(tags: tuple[int, ...]) -> None:
    data = ether(ip_tcp((C4, 1), (S4, 2), 3, b"hello"), 0x0800, tags)
    assert payload_of(data, decode(ETHERNET, data)) == b"hello"


def test_vlan_tag_inside_linux_cooked_capture() -> None:
    packet = ip_tcp((C4, 1), (S4, 2), 3, b"hello")
    data = (
        struct.pack("!HHH8sH", 0, 1, 6, b"\0" * 8, 0x8100) + struct.pack("!HH", 5, 0x0800) + packet
    )
    assert payload_of(data, decode(SLL, data)) == b"hello"


def test_unsupported_link_type() -> None:
    assert decode(147, b"\0" * 80) is Skip.UNSUPPORTED_LINK
    assert not supported_link_type(147)


def test_non_ip_and_non_tcp_frames() -> None:
    assert decode(ETHERNET, ether(b"\0" * 40, 0x0806)) is Skip.NOT_TCP  # ARP
    udp = ipv4(C4, S4, 17, struct.pack("!HHHH", 5353, 5353, 8, 0))
    assert decode(RAW, udp) is Skip.NOT_TCP
    icmp = ipv4(C4, S4, 1, b"\x08\0\0\0" + ip_tcp((C4, 1), (S4, 2), 3, b"quoted"))
    assert decode(RAW, icmp) is Skip.NOT_TCP  # a quoted TCP header inside ICMP is not a segment


# -- IP variants -------------------------------------------------------------------------


def test_ipv4_options_move_the_tcp_header() -> None:
    segment = tcp_header(5, 6, 7) + b"data"
    data = ipv4(C4, S4, 6, segment, options=b"\x01\x01\x01\x00")
    seg = decode(RAW, data)
    assert payload_of(data, seg) == b"data"
    assert isinstance(seg, tuple)
    assert endpoints_of(seg[0]) == (Endpoint(C4, 5), Endpoint(S4, 6))


def test_tcp_options_move_the_payload() -> None:
    segment = tcp_header(5, 6, 7, options=b"\x01" * 12) + b"data"
    data = ipv4(C4, S4, 6, segment)
    assert payload_of(data, decode(RAW, data)) == b"data"


def test_ethernet_padding_is_not_payload() -> None:
    data = ether(ip_tcp((C4, 1), (S4, 2), 3, b"")) + b"\0" * 6  # padded to the 60-byte minimum
    seg = decode(ETHERNET, data)
    assert isinstance(seg, tuple)
    assert seg[6] == 0
    assert payload_of(data, seg) == b""


def test_ipv6_extension_headers_are_skipped() -> None:
    segment = tcp_header(5, 6, 7) + b"data"
    hop = bytes([43, 0]) + b"\x01\x04\0\0\0\0"  # next: routing; PadN
    routing = bytes([60, 0, 0, 0]) + b"\0" * 4  # next: destination options
    dest = bytes([51, 0]) + b"\x01\x04\0\0\0\0"  # next: AH
    ah = bytes([44, 1, 0, 0]) + b"\0" * 8  # AH length 1 = 12 bytes; next: fragment
    frag = bytes([6, 0, 0, 0]) + b"\0\0\0\1"  # offset 0, no more fragments: atomic
    data = ipv6(C6, S6, 0, hop + routing + dest + ah + frag + segment)
    assert payload_of(data, decode(RAW, data)) == b"data"


def test_fragments_are_skipped() -> None:
    segment = tcp_header(5, 6, 7) + b"data"
    assert decode(RAW, ipv4(C4, S4, 6, segment, frag=0x2000)) is Skip.FRAGMENT  # MF
    assert decode(RAW, ipv4(C4, S4, 6, segment, frag=0x0010)) is Skip.FRAGMENT  # offset
    assert isinstance(decode(RAW, ipv4(C4, S4, 6, segment, frag=0x4000)), tuple)  # DF only
    data = ether(ipv4(C4, S4, 6, segment, frag=0x2000))
    assert decode(ETHERNET, data) is Skip.FRAGMENT
    frag6 = bytes([6, 0, 0, 1]) + b"\0\0\0\1"  # more fragments
    assert decode(RAW, ipv6(C6, S6, 44, frag6 + segment)) is Skip.FRAGMENT


def test_ipv6_jumbo_payload_length() -> None:
    segment = tcp_header(5, 6, 7) + b"x" * 100
    hop = bytes([6, 0]) + b"\xc2\x04" + struct.pack("!I", 8 + len(segment))
    data = ipv6(C6, S6, 0, hop + segment, plen=0)
    seg = decode(RAW, data)
    assert isinstance(seg, tuple)
    assert seg[6] == 100
    assert payload_of(data, seg) == b"x" * 100


# -- tunnels -----------------------------------------------------------------------------


def gre(
    payload: bytes,
    proto: int = 0x0800,
    *,
    checksum: bool = False,
    key: bool = False,
    seq: bool = False,
) -> bytes:
    flags = (0x80 if checksum else 0) | (0x20 if key else 0) | (0x10 if seq else 0)
    words = b"\0" * 4 * (checksum + key + seq)
    return bytes([flags, 0]) + struct.pack("!H", proto) + words + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


INNER = ip_tcp(("172.16.0.1", 40000), ("172.16.0.2", 22), 1, b"SSH-2.0-inner\r\n")


@pytest.mark.parametrize(
    "outer",
    [
        pytest.param(ipv4(C4, S4, 47, gre(INNER)), id="gre"),
        pytest.param(
            ipv4(C4, S4, 47, gre(INNER, checksum=True, key=True, seq=True)), id="gre-options"
        ),
        pytest.param(ipv4(C4, S4, 47, gre(ether(INNER), 0x6558, key=True)), id="gre-teb"),
        pytest.param(
            ipv4(C4, S4, 47, gre(b"\0" * 8 + ether(INNER), 0x88BE, seq=True)), id="erspan-ii"
        ),
        pytest.param(ipv6(C6, S6, 47, gre(INNER)), id="gre-over-ipv6"),
        pytest.param(ipv4(C4, S4, 4, INNER), id="ipip"),
        pytest.param(ipv6(C6, S6, 4, INNER), id="ipv4-in-ipv6"),
        pytest.param(
            ipv4(C4, S4, 17, udp(1234, 4789, b"\x08\0\0\0\0\0\x01\0" + ether(INNER))), id="vxlan"
        ),
        pytest.param(
            ipv4(C4, S4, 17, udp(1234, 6081, b"\0\0\x65\x58\0\0\x01\0" + ether(INNER))), id="geneve"
        ),
        pytest.param(
            ipv4(C4, S4, 17, udp(1234, 6081, b"\x02\0\x08\0\0\0\x01\0" + b"\0" * 8 + INNER)),
            id="geneve-options-ipv4",
        ),
    ],
)
def test_tunnels_yield_the_inner_segment(outer: bytes) -> None:
    data = ether(outer, ethertype_of(outer))
    seg = decode(ETHERNET, data)
    assert payload_of(data, seg) == b"SSH-2.0-inner\r\n"
    assert isinstance(seg, tuple)
    assert endpoints_of(seg[0]) == (Endpoint("172.16.0.1", 40000), Endpoint("172.16.0.2", 22))


def test_tunnels_not_followed() -> None:
    pptp = bytes([0x30, 0x01]) + b"\x88\x0b" + b"\0" * 8 + INNER  # GRE version 1
    assert decode(RAW, ipv4(C4, S4, 47, pptp)) is Skip.NOT_TCP
    vxlan_no_vni = udp(1, 4789, b"\0" * 8 + ether(INNER))
    assert decode(RAW, ipv4(C4, S4, 17, vxlan_no_vni)) is Skip.NOT_TCP
    geneve_v1 = udp(1, 6081, b"\x40\0\x65\x58\0\0\0\0" + ether(INNER))
    assert decode(RAW, ipv4(C4, S4, 17, geneve_v1)) is Skip.NOT_TCP
    assert decode(RAW, ipv4(C4, S4, 47, gre(b"\0" * 20, 0x880B))) is Skip.NOT_TCP


def test_nesting_is_bounded() -> None:
    packet = INNER
    for _ in range(netframes.MAX_ENCAPSULATION_DEPTH):
        packet = ipv4(C4, S4, 47, gre(packet))
    assert isinstance(decode(RAW, packet), tuple)
    assert decode(RAW, ipv4(C4, S4, 47, gre(packet))) is Skip.NOT_TCP


def test_scapy_built_frames_agree() -> None:
    """scapy's layers are an independent builder of the same headers."""
    from scapy.contrib.geneve import GENEVE
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop
    from scapy.layers.l2 import GRE, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
    from scapy.layers.vxlan import VXLAN

    inner = (
        IP(src="172.16.0.1", dst="172.16.0.2")
        / TCP(sport=4000, dport=22, seq=9, flags="PA")
        / b"hi"
    )
    cases = [
        (ETHERNET, Ether() / Dot1AD(vlan=1) / Dot1Q(vlan=2) / inner),
        (ETHERNET, Ether() / IP(src=C4, dst=S4) / GRE(key_present=1, key=5) / inner),
        (
            ETHERNET,
            Ether()
            / IP(src=C4, dst=S4)
            / UDP(sport=1, dport=4789)
            / VXLAN(vni=3)
            / Ether()
            / inner,
        ),
        (
            ETHERNET,
            Ether()
            / IP(src=C4, dst=S4)
            / UDP(sport=1, dport=6081)
            / GENEVE(vni=3, proto=0x6558)
            / Ether()
            / inner,
        ),
        (SLL, CookedLinux(proto=0x0800) / inner),
        (SLL2, CookedLinuxV2(proto=0x0800) / inner),
        (
            ETHERNET,
            Ether()
            / IPv6(src=C6, dst=S6)
            / IPv6ExtHdrHopByHop()
            / IPv6ExtHdrDestOpt()
            / TCP(sport=4000, dport=22, seq=9)
            / b"hi",
        ),
    ]
    for link, packet in cases:
        data = bytes(packet)
        seg = decode(link, data)
        assert payload_of(data, seg) == b"hi", packet.summary()
        assert isinstance(seg, tuple)
        assert seg[1] == 9


# -- lengths, truncation and garbage -----------------------------------------------------


def test_frame_cut_by_the_capture_reports_the_wire_length() -> None:
    data = ether(ip_tcp((C4, 1), (S4, 2), 3, b"x" * 1000))
    cut = data[:200]
    seg = decode(ETHERNET, cut, wirelen=len(data))
    assert isinstance(seg, tuple)
    _key, _seq, _ack, _flags, start, end, plen = seg
    assert plen == 1000
    assert end - start == 200 - 54 < plen


def test_ip_length_beyond_the_capture_is_a_cut_even_if_wirelen_agrees() -> None:
    # Some writers store caplen as the wire length after a snaplen cut.
    data = ether(ip_tcp((C4, 1), (S4, 2), 3, b"x" * 1000))[:300]
    seg = decode(ETHERNET, data)
    assert isinstance(seg, tuple)
    assert seg[5] - seg[4] < seg[6] == 1000


@pytest.mark.parametrize("link", [ETHERNET, RAW, NULL])
def test_ipv4_total_length_zero_is_a_super_frame(link: int) -> None:
    """Linux TSO / BIG TCP frames over 64 KiB carry total length 0; the frame's length rules."""
    payload = bytes(range(256)) * 800  # 204,800 bytes
    packet = ipv4(C4, S4, 6, tcp_header(1, 2, 3) + payload, total=0)
    data = frame(link, packet)
    seg = decode(link, data)
    assert payload_of(data, seg) == payload
    assert isinstance(seg, tuple)
    assert seg[6] == len(payload)
    cut = decode(link, data[:65535], wirelen=len(data))
    assert isinstance(cut, tuple)
    assert cut[5] - cut[4] < cut[6] == len(payload)


def test_ipv6_payload_length_zero_without_jumbo_option() -> None:
    payload = b"y" * 70000
    data = frame(LOOP, ipv6(C6, S6, 6, tcp_header(1, 2, 3) + payload, plen=0))
    assert payload_of(data, decode(LOOP, data)) == payload


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (
            b"\x43" + b"\0" * 39,
            Skip.MALFORMED,
        ),  # IHL 3
        (b"\x44" + ipv4(C4, S4, 6, tcp_header(1, 2, 3))[1:], Skip.MALFORMED),  # IHL 4
        (b"\x55" + ipv4(C4, S4, 6, tcp_header(1, 2, 3))[1:], Skip.MALFORMED),  # version 5
        (ipv4(C4, S4, 6, tcp_header(1, 2, 3), total=10), Skip.MALFORMED),
        (
            ipv4(C4, S4, 6, struct.pack("!HHIIBB", 1, 2, 3, 0, 0x40, ACK) + b"\0" * 6),
            Skip.MALFORMED,
        ),  # doff 4
        (
            ipv4(C4, S4, 6, struct.pack("!HHIIBB", 1, 2, 3, 0, 0xF0, ACK) + b"\0" * 6),
            Skip.MALFORMED,
        ),  # doff past IP end
        (ipv4(C4, S4, 6, b"")[:12], Skip.TRUNCATED_HEADER),
        (ipv4(C4, S4, 6, tcp_header(1, 2, 3))[:30], Skip.TRUNCATED_HEADER),
        (ipv6(C6, S6, 6, tcp_header(1, 2, 3))[:50], Skip.TRUNCATED_HEADER),
        (
            ipv6(C6, S6, 0, b"\x06\x05" + b"\0" * 6 + tcp_header(1, 2, 3)),
            Skip.MALFORMED,
        ),  # ext past end
        (b"", Skip.TRUNCATED_HEADER),
        (b"\x10" * 60, Skip.MALFORMED),
    ],
)
def test_malformed_headers_are_reported_not_raised(data: bytes, why: Skip) -> None:
    assert decode(RAW, data) is why


@pytest.mark.parametrize(("link", "size"), [(ETHERNET, 13), (SLL, 15), (SLL2, 19), (NULL, 3)])
def test_short_link_headers(link: int, size: int) -> None:
    assert decode(link, b"\0" * size) is Skip.TRUNCATED_HEADER


def test_fast_path_rejects_what_the_general_path_rejects() -> None:
    good = ether(ip_tcp((C4, 1), (S4, 2), 3, b"z" * 20))
    bad_doff = bytearray(good)
    bad_doff[14 + 20 + 12] = 0x40
    assert decode(ETHERNET, bytes(bad_doff)) is Skip.MALFORMED
    beyond = bytearray(good)
    beyond[14 + 20 + 12] = 0xF0  # 60-byte TCP header in a 40-byte IP packet with 20 of data
    assert decode(ETHERNET, bytes(beyond)[:60]) is Skip.MALFORMED
    assert decode(ETHERNET, bytes(beyond)) is Skip.MALFORMED


def test_thousands_of_vlan_tags_do_not_recurse() -> None:
    data = (
        struct.pack("!HHH8sH", 0, 1, 6, b"\0" * 8, 0x8100) + struct.pack("!HH", 0, 0x8100) * 20000
    )
    assert decode(SLL, data) is Skip.TRUNCATED_HEADER


LINKS = st.sampled_from([NULL, ETHERNET, 12, 14, RAW, LOOP, SLL, 228, 229, SLL2, 147])


@settings(max_examples=2000, deadline=None)
@given(link=LINKS, data=st.binary(max_size=200), extra=st.integers(0, 1 << 20))
def test_garbage_never_raises(link: int, data: bytes, extra: int) -> None:
    result = decode(link, data, wirelen=len(data) + extra)
    if isinstance(result, tuple):
        _key, _seq, _ack, _flags, start, end, plen = result
        assert 0 <= start <= end <= len(data)
        assert end - start <= plen


@settings(max_examples=500, deadline=None)
@given(
    link=LINKS,
    head=st.sampled_from(
        [
            ether(ip_tcp((C4, 1), (S4, 2), 3, b"abc")),
            ether(ipv4(C4, S4, 47, gre(ether(INNER), 0x6558))),
            frame(SLL2, ip_tcp((C6, 1), (S6, 2), 3, b"abc")),
            ip_tcp((C6, 1), (S6, 2), 3, b"abc"),
        ]
    ),
    flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=8),
    cut=st.integers(0, 200),
)
def test_mutated_frames_never_raise(
    link: int, head: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(head)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    blob = bytes(data[:cut])
    result = decode(link, blob, wirelen=len(head))
    if isinstance(result, tuple):
        assert 0 <= result[4] <= result[5] <= len(blob)


# -- keys --------------------------------------------------------------------------------


def test_reverse_key_swaps_addresses_and_ports() -> None:
    for src, dst in ((C4, S4), (C6, S6)):
        data = ip_tcp((src, 40000), (dst, 22), 1)
        back = ip_tcp((dst, 22), (src, 40000), 1)
        a, b = decode(RAW, data), decode(RAW, back)
        assert isinstance(a, tuple)
        assert isinstance(b, tuple)
        assert reverse_key(a[0]) == b[0]
        assert reverse_key(b[0]) == a[0]


def test_segment_offsets_point_into_a_larger_buffer() -> None:
    data = ether(ip_tcp((C4, 1), (S4, 2), 3, b"payload"))
    buf = b"\xff" * 100 + data + b"\xee" * 50
    seg = decode_frame(ETHERNET, buf, 100, 100 + len(data), len(data))
    assert isinstance(seg, tuple)
    assert buf[seg[4] : seg[5]] == b"payload"


def test_flags_are_passed_through() -> None:
    for flags in (SYN, SYN | ACK, FIN | ACK, RST, RST | ACK):
        seg = decode(RAW, ip_tcp((C4, 1), (S4, 2), 3, flags=flags))
        assert isinstance(seg, tuple)
        assert seg[3] == flags


def with_doff(packet: bytes, tcp_at: int, doff_words: int) -> bytes:
    out = bytearray(packet)
    out[tcp_at + 12] = doff_words << 4
    return bytes(out)


@pytest.mark.parametrize(
    ("link", "packet", "tcp_at"),
    [
        (ETHERNET, ether(ip_tcp((C4, 1), (S4, 2), 3, b"q" * 40)), 34),
        (RAW, ipv4(C4, S4, 6, tcp_header(1, 2, 3) + b"q" * 40, options=b"\0" * 4), 24),
        (RAW, ip_tcp((C6, 1), (S6, 2), 3, b"q" * 40), 40),
    ],
)
def test_tcp_options_cut_by_the_capture(link: int, packet: bytes, tcp_at: int) -> None:
    data = with_doff(packet, tcp_at, 10)  # a 40-byte TCP header, cut after 24 of it
    assert decode(link, data[: tcp_at + 24], wirelen=len(data)) is Skip.TRUNCATED_HEADER
    assert isinstance(decode(link, data), tuple)
    assert decode(link, with_doff(packet, tcp_at, 3)) is Skip.MALFORMED


def test_ipv6_extension_headers_cut_by_the_capture() -> None:
    segment = tcp_header(5, 6, 7) + b"data"
    hop = bytes([6, 0]) + b"\x01\x04\0\0\0\0"
    assert decode(RAW, ipv6(C6, S6, 0, hop + segment)[:44]) is Skip.TRUNCATED_HEADER
    frag = bytes([6, 0, 0, 0]) + b"\0\0\0\1"
    assert decode(RAW, ipv6(C6, S6, 44, frag + segment)[:44]) is Skip.TRUNCATED_HEADER


def test_jumbo_option_search_skips_padding_and_stops_at_garbage() -> None:
    segment = tcp_header(5, 6, 7) + b"x" * 10
    padded = (
        bytes([6, 1])
        + b"\0\0"
        + b"\x01\x02\0\0"
        + b"\xc2\x04"
        + struct.pack("!I", 16 + len(segment))
        + b"\0\0"
    )
    data = ipv6(C6, S6, 0, padded + segment, plen=0)
    assert payload_of(data, decode(RAW, data)) == b"x" * 10
    only_padding = bytes([6, 0]) + b"\x01\x04\0\0\0\0"
    data = ipv6(C6, S6, 0, only_padding + segment, plen=0)
    assert payload_of(data, decode(RAW, data)) == b"x" * 10
    dangling = bytes([6, 0]) + b"\0\0\0\0\0\x05"  # an option type with no room for its length
    data = ipv6(C6, S6, 0, dangling + segment, plen=0)
    assert payload_of(data, decode(RAW, data)) == b"x" * 10


def test_ipv6_in_ip_and_erspan_iii() -> None:
    inner6 = ip_tcp(("2001:db8::7", 40000), ("2001:db8::8", 22), 1, b"SSH-2.0-six\r\n")
    data = ipv4(C4, S4, 41, inner6)
    assert payload_of(data, decode(RAW, data)) == b"SSH-2.0-six\r\n"
    erspan3 = b"\0" * 11 + b"\0"
    with_subheader = b"\0" * 11 + b"\x01" + b"\0" * 8
    for header in (erspan3, with_subheader):
        data = ipv4(C4, S4, 47, gre(header + ether(INNER), 0x22EB, seq=True))
        assert payload_of(data, decode(RAW, data)) == b"SSH-2.0-inner\r\n"
    assert decode(RAW, ipv4(C4, S4, 47, gre(b"\0" * 4, 0x22EB, seq=True))) is Skip.NOT_TCP


def test_short_or_unknown_tunnel_payloads() -> None:
    assert decode(RAW, ipv4(C4, S4, 17, b"\0\0\0")) is Skip.NOT_TCP
    assert decode(RAW, ipv4(C4, S4, 47, b"\0\0")) is Skip.NOT_TCP
    geneve_other = udp(1, 6081, b"\0\0\x88\x47\0\0\x01\0" + INNER)
    assert decode(RAW, ipv4(C4, S4, 17, geneve_other)) is Skip.NOT_TCP
    geneve_ipv6 = udp(1, 6081, b"\0\0\x86\xdd\0\0\x01\0" + ip_tcp((C6, 1), (S6, 2), 3, b"v6"))
    data = ipv4(C4, S4, 17, geneve_ipv6)
    assert payload_of(data, decode(RAW, data)) == b"v6"
