"""A relayed session's capture file (`proxy --pcap DIR`): its handshake as one TCP connection.

Theory of operation. The relay kept the bytes each side sent while it was inspecting (a
`Tape`); here they become the packets a capture between the real client and the real
server would hold: SYN, SYN-ACK and ACK at the accept, the data cut into segments of at
most `MSS` bytes with sequence and acknowledgement numbers that follow the bytes, and each
FIN or RST where it happened. A close after inspection stopped carries the sequence number
of every byte sent (the relay counted them), so a reader sees the bulk as a gap, not as
bytes that were never sent. Built with scapy's layers (checksums and lengths filled in) and
written with its `PcapWriter`, so Wireshark and `kexproxy read` open it as any capture.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from kexproxy.core.observer import Leg, other_leg
from kexproxy.sources.proxy_tape import Tape, TapeChunk, TapeClose

#: Payload per segment: Ethernet's 1500-byte MTU less the IPv4 and TCP headers and the
#: 12-byte timestamp option Linux sends, i.e. the MSS a Linux peer uses on Ethernet.
MSS = 1448
#: Time between packets that share one relay timestamp (the capture format's resolution).
TICK = 1e-6
_MACS: dict[Leg, str] = {"a": "02:00:00:00:00:01", "b": "02:00:00:00:00:02"}


def capture_name(session_id: str) -> str:
    """The file one session's capture is written to, inside the `--pcap` directory."""
    return f"kexproxy-{session_id}.pcap"


def write_capture(tape: Tape, path: str | Path) -> None:
    """Writes `tape` as a pcap file at `path` (replacing one there)."""
    from scapy.utils import PcapWriter

    writer = PcapWriter(str(path), linktype=1, sync=False)
    try:
        for packet in _packets(tape):
            writer.write(packet)
    finally:
        writer.close()


def _packets(tape: Tape) -> list[Any]:
    """The capture's packets in order, each with its `time` set."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    ends = {"a": tape.client.ip, "b": tape.server.ip}
    ports = {"a": tape.client.port, "b": tape.server.port}
    ipv6 = any(":" in ip for ip in ends.values())
    if ipv6:
        # A relay can join an IPv6 client to an IPv4 server; one TCP connection has one
        # family, so the IPv4 side is written as its IPv4-mapped IPv6 address.
        ends = {side: ip if ":" in ip else f"::ffff:{ip}" for side, ip in ends.items()}
    digest = hashlib.sha256(tape.session_id.encode()).digest()
    # Initial sequence numbers look like a kernel's (random 32-bit) and stay the same for
    # one session, so writing its file twice gives the same file.
    isn: dict[Leg, int] = {"a": int.from_bytes(digest[:4]), "b": int.from_bytes(digest[4:8])}
    sent: dict[Leg, int] = {"a": 0, "b": 0}
    finned: dict[Leg, bool] = {"a": False, "b": False}
    packets: list[Any] = []
    clock = [tape.opened - TICK]

    def seq(side: Leg) -> int:
        return (isn[side] + 1 + sent[side] + finned[side]) & 0xFFFFFFFF

    def emit(
        side: Leg, ts: float, flags: str, *, seq_no: int, ack: int = 0, load: bytes = b""
    ) -> None:
        src, dst = ends[side], ends[other_leg(side)]
        layer3 = IPv6(src=src, dst=dst) if ipv6 else IP(src=src, dst=dst, flags="DF")
        tcp = TCP(
            sport=ports[side], dport=ports[other_leg(side)], flags=flags, seq=seq_no, ack=ack,
            window=65535,
        )  # fmt: skip
        packet = Ether(src=_MACS[side], dst=_MACS[other_leg(side)]) / layer3 / tcp
        if load:
            packet = packet / load
        clock[0] = max(ts, clock[0] + TICK)
        packet.time = clock[0]
        packets.append(packet)

    emit("a", tape.opened, "S", seq_no=isn["a"])
    emit("b", tape.opened, "SA", seq_no=isn["b"], ack=seq("a"))
    emit("a", tape.opened, "A", seq_no=seq("a"), ack=seq("b"))
    for event in tape.events:
        side = event.side
        if isinstance(event, TapeChunk):
            data = event.data
            for start in range(0, len(data), MSS):
                piece = data[start : start + MSS]
                last = start + MSS >= len(data)
                flags = "PA" if last else "A"
                emit(side, event.ts, flags, seq_no=seq(side), ack=seq(other_leg(side)), load=piece)
                sent[side] += len(piece)
            continue
        assert isinstance(event, TapeClose)
        # Bytes forwarded after inspection stopped were counted, not kept: the close
        # follows them, as it did on the wire.
        sent[side] = max(sent[side], event.sent)
        if event.kind == "fin":
            emit(side, event.ts, "FA", seq_no=seq(side), ack=seq(other_leg(side)))
            finned[side] = True
        else:
            emit(side, event.ts, "R", seq_no=seq(side))
    return packets
