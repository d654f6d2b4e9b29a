"""The live source: frames from a network interface, through the same frame loop as `read`.

Theory of operation: scapy's `L2ListenSocket` opens an AF_PACKET socket on the interface,
with the BPF filter compiled and attached in the kernel, and `LiveFrames` hands each raw
frame (no dissection) and its kernel timestamp to `pcap.run_frames`, the loop that reads
capture files: the same decoding, flow table, reassembly and trackers, so a sniffed
connection gives the record `read` gives of a capture of it. Between frames (and every
`POLL_SECONDS` on a quiet link) the flow table's clock is advanced to the wall clock, so a
reset or abandoned connection ends without waiting for more traffic.

On loopback the kernel shows a packet socket every packet twice, going out and coming in;
as libpcap does, only the incoming copy is kept. The kernel's own counters
(PACKET_STATISTICS) are read at the end: frames the socket's buffer had no room for are
dropped before kexproxy sees them, and the caller must say so.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from kexproxy.core.netframes import LINKTYPE_ETHERNET, LINKTYPE_RAW
from kexproxy.core.observer import ConnectionObserver
from kexproxy.sources.capfile import CaptureStats, Record
from kexproxy.sources.flowtable import FlowTable, ObserverFactory
from kexproxy.sources.pcap import run_frames

#: Bytes asked of the socket per frame: libpcap's largest snap length. scapy's default
#: (65,535) would cut loopback frames, whose MTU is 65,536 plus the Ethernet header.
SNAPLEN: Final = 262_144
#: Seconds between two looks at the stop condition and the flow table's timers on a quiet
#: link: short enough for Ctrl-C to feel immediate, long enough to cost nothing.
POLL_SECONDS: Final = 0.25
#: Receive buffer asked for: a burst of handshakes during bulk traffic waits here while
#: Python catches up (the kernel caps it at net.core.rmem_max unless root forces it).
RCVBUF_BYTES: Final = 64 << 20

# linux/if_arp.h device types -> the pcap link type of the frames a packet socket gives.
_ARPHRD_ETHER: Final = 1
_ARPHRD_LOOPBACK: Final = 772  # Linux loopback frames carry an all-zero Ethernet header
_ARPHRD_RAWIP: Final = 519
_ARPHRD_NONE: Final = 0xFFFE  # tun devices: IP with no link header
_LINK_TYPES: Final = {
    _ARPHRD_ETHER: LINKTYPE_ETHERNET,
    _ARPHRD_LOOPBACK: LINKTYPE_ETHERNET,
    _ARPHRD_RAWIP: LINKTYPE_RAW,
    _ARPHRD_NONE: LINKTYPE_RAW,
}
# linux/if_packet.h
_SOL_PACKET: Final = 263
_PACKET_STATISTICS: Final = 6
_SO_RCVBUFFORCE: Final = 33

Obs = TypeVar("Obs", bound=ConnectionObserver)


class SniffError(Exception):
    """The interface could not be captured on; the message is one line saying why."""


@dataclass(frozen=True, slots=True)
class SniffResult:
    """What the capture saw: the reader's counts, and the kernel's for the socket."""

    stats: CaptureStats
    #: Frames that passed the BPF filter, as the kernel counted them (loopback: both copies).
    kernel_frames: int
    #: Frames the kernel dropped because the socket's buffer was full: never seen here.
    kernel_drops: int


class LiveFrames:
    """A `pcap.FrameInput` over a packet socket: raw frames and their kernel timestamps."""

    def __init__(
        self,
        sock: Any,
        linktype: int,
        *,
        loopback: bool,
        should_stop: Callable[[], bool],
        tick: Callable[[float], None],
    ) -> None:
        self.total: int | None = None
        self.link_types = {linktype}
        self.bad_records = 0
        self.bad_timestamps = 0
        self.format = "live"
        self._sock = sock
        self._linktype = linktype
        self._loopback = loopback
        self._should_stop = should_stop
        self._tick = tick
        self._bytes = 0

    def consumed(self) -> int:
        return self._bytes

    def records(self) -> Iterator[Record]:
        sock = self._sock
        raw = sock.ins
        recv = sock._recv_raw  # raw bytes, address and kernel timestamp, no dissection
        linktype = self._linktype
        outgoing = socket.PACKET_OUTGOING
        skip_outgoing = self._loopback
        next_tick = time.time() + POLL_SECONDS
        while not self._should_stop():
            ready, _, _ = select.select([raw], [], [], POLL_SECONDS)
            now = time.time()
            if now >= next_tick:
                self._tick(now)
                next_tick = now + POLL_SECONDS
            if not ready:
                continue
            frame, address, ts = recv(raw, SNAPLEN)
            if not frame or (skip_outgoing and address[2] == outgoing):
                continue
            self._bytes += len(frame)
            size = len(frame)
            yield linktype, frame, 0, size, size, ts if ts is not None else now


def open_socket(interface: str, bpf: str | None) -> Any:
    """scapy's listening socket on `interface` with `bpf` in the kernel; `SniffError` with
    one line when it cannot be opened (no privilege, no such interface, a bad filter)."""
    from scapy.error import Scapy_Exception

    try:
        # The class conf.L2listen names on Linux, imported directly: `conf` fills that in
        # only once scapy.all (seconds of imports) has run. Packet sockets are Linux's.
        from scapy.arch.linux import L2ListenSocket
    except ImportError:
        raise SniffError("kexproxy sniff captures through Linux packet sockets only") from None
    # scapy warns that it cannot guess the dissector for the link type: kexproxy never asks
    # it to dissect, so the warning would only confuse the one line a user reads.
    runtime_log = logging.getLogger("scapy.runtime")
    level = runtime_log.level
    runtime_log.setLevel(logging.ERROR)
    try:
        sock = L2ListenSocket(iface=interface, filter=bpf, promisc=False)
    except PermissionError:
        raise SniffError(
            f"capturing on {interface} needs root or CAP_NET_RAW "
            "(sudo setcap cap_net_raw+ep on the python interpreter, or run as root)"
        ) from None
    except OSError as exc:
        if exc.errno in (errno.ENODEV, errno.ENXIO):
            raise SniffError(f"no interface named {interface}") from None
        raise SniffError(f"cannot capture on {interface}: {exc.strerror or exc}") from None
    except Scapy_Exception as exc:
        raise SniffError(f"--bpf {bpf!r}: {exc}") from None
    except ValueError as exc:  # scapy's name lookup of an unknown interface
        raise SniffError(f"no interface named {interface} ({exc})") from None
    finally:
        runtime_log.setLevel(level)
    try:
        sock.ins.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RCVBUF_BYTES)
    except OSError:
        sock.ins.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
    return sock


def kernel_counts(sock: Any) -> tuple[int, int]:
    """Frames passed and dropped since the last call (struct tpacket_stats; reading resets)."""
    data = sock.ins.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8)
    packets, drops = struct.unpack("II", data)
    return int(packets), int(drops)


def sniff_interface(
    interface: str,
    factory: ObserverFactory[Obs],
    *,
    bpf: str | None = None,
    on_finished: Callable[[Obs], None] | None = None,
    on_decided: Callable[[Obs], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    ready: Callable[[], None] | None = None,
) -> SniffResult:
    """Feeds every TCP connection seen on `interface` to an observer made by `factory`
    until `should_stop()` (asked between frames, and every `POLL_SECONDS`); connections
    still open then are handed to `on_finished` too; `ready` is called once the socket
    captures. Raises `SniffError` before capturing."""
    sock = open_socket(interface, bpf)
    try:
        hatype = sock.ins.getsockname()[3]
        linktype = _LINK_TYPES.get(hatype)
        if linktype is None:
            raise SniffError(
                f"{interface}: link type {hatype} (linux/if_arp.h) is not supported; "
                "kexproxy sniffs Ethernet, loopback and raw IP interfaces"
            )
        stats = CaptureStats()
        conns = FlowTable(factory, on_finished, on_decided, stats)
        frames = LiveFrames(
            sock,
            linktype,
            loopback=hatype == _ARPHRD_LOOPBACK,
            should_stop=should_stop,
            tick=conns.sweep,
        )
        if ready is not None:
            ready()
        try:
            run_frames(frames, conns, stats, None)
        finally:
            stats.bytes_read = frames.consumed()
            conns.finish_all()
        kernel_frames, kernel_drops = kernel_counts(sock)
    finally:
        sock.close()
    return SniffResult(stats=stats, kernel_frames=kernel_frames, kernel_drops=kernel_drops)
