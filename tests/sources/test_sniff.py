"""The live source: raw frames from a packet socket into the capture reader's frame loop."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

from kexproxy.core.netframes import LINKTYPE_ETHERNET
from kexproxy.sources.sniff import LiveFrames, SniffError, open_socket, sniff_interface


class ScriptedSocket:
    """Stands in for scapy's socket: `ins` is readable, `_recv_raw` returns scripted frames."""

    def __init__(self, frames: list[tuple[bytes, int, float | None]]) -> None:
        self.ins, self._peer = socket.socketpair()
        self._peer.send(b"x")  # always readable: select never waits
        self._frames = frames

    def _recv_raw(self, _sock: Any, _size: int) -> tuple[bytes, tuple[Any, ...], float | None]:
        frame, pkttype, ts = self._frames.pop(0)
        return frame, ("lo", 0x0800, pkttype, 772, b""), ts

    def close(self) -> None:
        self.ins.close()
        self._peer.close()


def _frames(loopback: bool) -> list[tuple[int, bytes, int, int, int, float]]:
    sock = ScriptedSocket(
        [
            (b"out" * 20, socket.PACKET_OUTGOING, 1.0),
            (b"in" * 30, socket.PACKET_HOST, 2.0),
            (b"", socket.PACKET_HOST, 3.0),
        ]
    )
    stop_after = 3
    asked = 0

    def should_stop() -> bool:
        nonlocal asked
        asked += 1
        return asked > stop_after

    frames = LiveFrames(
        sock, LINKTYPE_ETHERNET, loopback=loopback, should_stop=should_stop, tick=lambda _: None
    )
    try:
        return list(frames.records())
    finally:
        sock.close()


def test_loopback_keeps_only_the_incoming_copy_of_each_packet() -> None:
    records = _frames(loopback=True)
    assert records == [(LINKTYPE_ETHERNET, b"in" * 30, 0, 60, 60, 2.0)]


def test_other_interfaces_keep_outgoing_packets() -> None:
    records = _frames(loopback=False)
    assert [r[1] for r in records] == [b"out" * 20, b"in" * 30]


@pytest.mark.skipif(os.geteuid() != 0, reason="opening a packet socket needs root")
def test_a_missing_interface_is_a_sniff_error() -> None:
    with pytest.raises(SniffError, match="nosuch0"):
        open_socket("nosuch0", None)


@pytest.mark.skipif(os.geteuid() != 0, reason="opening a packet socket needs root")
def test_a_filter_that_does_not_compile_is_a_sniff_error() -> None:
    with pytest.raises(SniffError, match="--bpf"):
        sniff_interface("lo", lambda *a: None, bpf="tcp port")  # type: ignore[arg-type,return-value]


@pytest.mark.skipif(os.geteuid() != 0, reason="opening a packet socket needs root")
def test_a_stopped_capture_reports_the_kernels_counts() -> None:
    result = sniff_interface(
        "lo",
        lambda *a: None,
        bpf="tcp port 9",
        should_stop=lambda: True,  # type: ignore[arg-type,return-value]
    )
    assert result.kernel_drops == 0
    assert result.stats.frames == 0
