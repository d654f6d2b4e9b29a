"""The live source: raw frames from a packet socket into the capture reader's frame loop."""

from __future__ import annotations

import os
import socket
import threading
import time
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


@pytest.mark.skipif(os.geteuid() != 0, reason="capturing needs root")
def test_a_connection_leaving_inspection_leaves_python_at_once() -> None:
    """400 MB of a connection no longer inspected (binary met by silence: not SSH after
    64 KiB) reach Python as a few hundred frames, not the 6,400 segments sent: the kernel
    filter takes the connection as soon as the flow table counts it, not at the next tick
    (the whole transfer takes less than one here)."""
    from kexproxy.sources.captures import Collector

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    started = threading.Event()
    done = threading.Event()
    records: list[Any] = []
    collector = Collector("live:lo", records.append, include_non_ssh=True)
    results: list[Any] = []

    def capture() -> None:
        results.append(
            sniff_interface(
                "lo",
                collector.factory,
                bpf=f"tcp port {port}",
                on_finished=collector.on_finished,
                should_stop=done.is_set,
                ready=started.set,
            )
        )

    thread = threading.Thread(target=capture)
    thread.start()
    try:
        assert started.wait(10)
        client = socket.create_connection(("127.0.0.1", port))
        peer, _ = server.accept()
        sink = threading.Thread(
            target=lambda: [None for _ in iter(lambda: peer.recv(1 << 20), b"")]
        )
        sink.start()
        block = bytes(1 << 20)
        for _ in range(400):
            client.sendall(block)
        client.close()
        sink.join(30)
        peer.close()
        time.sleep(0.5)
    finally:
        done.set()
        thread.join(30)
        server.close()
    (result,) = results
    (record,) = records
    assert record.bytes == {"c2s": 400 << 20, "s2c": 0}
    assert result.stats.frames < 1600, result.stats.frames
