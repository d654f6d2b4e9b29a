"""The live source: frames from a network interface, through the same frame loop as `read`.

Theory of operation: scapy's `L2ListenSocket` opens an AF_PACKET socket on the interface,
with the BPF filter compiled and attached in the kernel, and `LiveFrames` hands each raw
frame (no dissection) and its kernel timestamp to `pcap.run_frames`, the loop that reads
capture files: the same decoding, flow table, reassembly and trackers, so a sniffed
connection gives the record `read` gives of a capture of it. Between frames (and every
`POLL_SECONDS` on a quiet link) the flow table's clock is advanced to the wall clock, so a
reset or abandoned connection ends without waiting for more traffic.

On loopback the kernel shows a packet socket every packet twice, going out and coming in;
as libpcap does, only the incoming copy is kept.
Bulk traffic is kept out of Python by that filter too: `sniff_bpf` explains how, and why
no connection still in its handshake ever loses a segment to it. Measured with
scripts/bench_sniff (a loopback transfer of 1 GB or more while sniff watches lo): the
figures are in the README.

The kernel's own counters (PACKET_STATISTICS) are read every `POLL_SECONDS` and whenever a
session ends (`DropLedger`): frames the socket's buffer had no room for are dropped before
kexproxy sees them, so every record whose session was open while some were dropped gets a
note saying so, and the last line counts them all.
"""

from __future__ import annotations

import bisect
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
from kexproxy.sources.capfile import SNAPLEN, CaptureStats, Record
from kexproxy.sources.connection_frames import FrameTap, Keep
from kexproxy.sources.flowtable import FlowTable, ObserverFactory
from kexproxy.sources.pcap import run_frames
from kexproxy.sources.sniff_bpf import BulkFilter, FilterError, attach, compile_user_filter, drain

#: Kernel drop readings kept (one per reading that found drops): older ones are merged,
#: which can only make a record's drop count larger, never hide one.
MAX_DROP_READINGS: Final = 4096
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


class DropLedger:
    """The kernel's drops over time, so a record can say how many frames were dropped while
    its session was open: the count since the last reading before its first frame, which
    is never less than the truth (a reading lags the drops it finds, never leads them)."""

    def __init__(self) -> None:
        self.total = 0
        self._times: list[float] = [float("-inf")]
        self._totals: list[int] = [0]
        self._read: Callable[[], int] | None = None

    def attach(self, read: Callable[[], int]) -> None:
        """`read` returns the drops since its previous call (the kernel resets on reading)."""
        self._read = read

    def poll(self, now: float) -> int:
        """Reads the counter; returns the total so far."""
        if self._read is not None:
            dropped = self._read()
            if dropped:
                self.total += dropped
                self._times.append(now)
                self._totals.append(self.total)
                if len(self._times) > MAX_DROP_READINGS:
                    del self._times[1], self._totals[1]
        return self.total

    def since(self, first_ts: float, now: float) -> int:
        """Frames dropped from before `first_ts` (a frame's kernel timestamp) until `now`."""
        self.poll(now)
        i = bisect.bisect_right(self._times, first_ts) - 1
        return self.total - self._totals[max(i, 0)]


def drop_note(dropped: int) -> str:
    return (
        f"the kernel dropped {dropped} frame{'s' * (dropped != 1)} while this session was "
        "open: its record may miss packets"
    )


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
        changed: Callable[[], bool] = lambda: False,
        on_change: Callable[[], None] = lambda: None,
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
        self._changed = changed
        self._on_change = on_change
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
            if self._changed():
                # A connection just left its handshake: its bulk leaves Python now, not at
                # the next tick (at 1 GB/s a quarter second is 250 MB through the socket).
                self._on_change()


def open_socket(interface: str, bpf: str | None) -> tuple[Any, BulkFilter]:
    """scapy's listening socket on `interface` with `bpf` in the kernel (behind the bulk
    prefix of `sniff_bpf`); `SniffError` with one line when it cannot be opened (no
    privilege, no such interface, a bad filter)."""
    try:
        user = compile_user_filter(bpf)
    except FilterError as exc:
        raise SniffError(f"--bpf {bpf!r}: {exc}") from None
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
        sock = L2ListenSocket(iface=interface, promisc=False)
    except PermissionError:
        raise SniffError(
            f"capturing on {interface} needs root or CAP_NET_RAW "
            "(sudo setcap cap_net_raw+ep on the python interpreter, or run as root)"
        ) from None
    except OSError as exc:
        if exc.errno in (errno.ENODEV, errno.ENXIO):
            raise SniffError(f"no interface named {interface}") from None
        raise SniffError(f"cannot capture on {interface}: {exc.strerror or exc}") from None
    except ValueError as exc:  # scapy's name lookup of an unknown interface
        raise SniffError(f"no interface named {interface} ({exc})") from None
    finally:
        runtime_log.setLevel(level)
    try:
        sock.ins.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RCVBUF_BYTES)
    except OSError:
        sock.ins.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
    try:
        # Frames queued before a filter is attached were never filtered: as libpcap does,
        # drop everything, empty the queue, then attach the real program.
        attach(sock.ins, [(0x06, 0, 0, 0)])
        drain(sock.ins)
        bulk = BulkFilter(sock.ins, user)
        bulk.update(())
    except (OSError, FilterError) as exc:
        sock.close()
        raise SniffError(f"cannot attach the capture filter on {interface}: {exc}") from None
    kernel_counts(sock)  # counters start now, not at the socket's opening
    return sock, bulk


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
    drops: DropLedger | None = None,
    keep: Keep | None = None,
) -> SniffResult:
    """Feeds every TCP connection seen on `interface` to an observer made by `factory`
    until `should_stop()` (asked between frames, and every `POLL_SECONDS`); connections
    still open then are handed to `on_finished` too; `ready` is called once the socket
    captures; `drops` is kept current (every `POLL_SECONDS` and whenever asked), so the
    callbacks can note the kernel's drops on a record; `keep`, when given, gets every TCP
    frame with its connection's observer (a `connection_frames.FrameTap`), before that
    connection is handed to `on_finished`. Raises `SniffError` before capturing."""
    sock, bulk = open_socket(interface, bpf)
    ledger = drops if drops is not None else DropLedger()
    passed = [0]

    def read_drops() -> int:
        packets, dropped = kernel_counts(sock)
        passed[0] += packets
        return dropped

    ledger.attach(read_drops)
    try:
        hatype = sock.ins.getsockname()[3]
        linktype = _LINK_TYPES.get(hatype)
        if linktype is None:
            raise SniffError(
                f"{interface}: link type {hatype} (linux/if_arp.h) is not supported; "
                "kexproxy sniffs Ethernet, loopback and raw IP interfaces"
            )
        stats = CaptureStats()
        tap = None if keep is None else FrameTap(keep, on_finished)
        conns = FlowTable(factory, on_finished if tap is None else tap.finished, on_decided, stats)
        conns.count_jumps = True  # the bulk filter's jumps are bytes sent (see sniff_bpf)
        bulk_capable = linktype == LINKTYPE_ETHERNET

        seen_changes = [conns.counted_changes]

        def changed() -> bool:
            return bulk_capable and conns.counted_changes != seen_changes[0]

        def update_bulk() -> None:
            seen_changes[0] = conns.counted_changes
            bulk.update(_bulk_keys(conns))

        def tick(now: float) -> None:
            conns.sweep(now)
            ledger.poll(now)
            if bulk_capable:
                update_bulk()  # connections that ended leave the filter here

        frames = LiveFrames(
            sock,
            linktype,
            loopback=hatype == _ARPHRD_LOOPBACK,
            should_stop=should_stop,
            tick=tick,
            changed=changed,
            on_change=update_bulk,
        )
        if ready is not None:
            ready()
        try:
            run_frames(frames if tap is None else tap.wrap(frames, conns), conns, stats, None)
        finally:
            stats.bytes_read = frames.consumed()
            conns.finish_all()
        ledger.poll(time.time())
    finally:
        ledger.attach(lambda: 0)  # the socket is closed below: no reading after
        sock.close()
    return SniffResult(stats=stats, kernel_frames=passed[0], kernel_drops=ledger.total)


def _bulk_keys(conns: FlowTable) -> list[bytes]:
    """Flow keys of the connections only counted in both directions: past inspection, so
    their large segments may stay in the kernel."""
    return [
        key
        for flow in conns.flows.values()
        if flow.a.reasm is None and flow.b.reasm is None
        for key in flow.keys
    ]
