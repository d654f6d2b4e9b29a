"""The bulk filter's BPF program (sources/sniff_bpf.py), checked in the kernel."""

from __future__ import annotations

import os
import socket
import struct
import threading

import pytest

from kexproxy.sources.sniff_bpf import (
    ACK_SAMPLE,
    BULK_SEGMENT_BYTES,
    attach,
    bulk_prefix,
    compile_user_filter,
)


def test_no_bulk_flows_leaves_the_users_program_alone() -> None:
    assert bulk_prefix([]) == []
    assert compile_user_filter(None) == [(0x06, 0, 0, 262_144)]


def test_the_users_accept_length_becomes_the_snap_length() -> None:
    prog = compile_user_filter("tcp port 22")
    accepts = {k for code, _jt, _jf, k in prog if code == 0x06}
    assert accepts == {0, 262_144}


def _tcp_frame(
    src_port: int, dst_port: int, payload: int, flags: int = 0x18, ack: int = 0
) -> bytes:
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 40 + payload, 0, 0, 64, 6, 0, b"\x7f\0\0\1", b"\x7f\0\0\1"
    )
    tcp = struct.pack("!HHIIBBHHH", src_port, dst_port, 1, ack, 0x50, flags, 65535, 0, 0)
    return b"\0" * 12 + b"\x08\x00" + ip + tcp + b"x" * payload


@pytest.mark.skipif(os.geteuid() != 0, reason="attaching to a packet socket needs root")
def test_the_kernel_drops_only_large_plain_segments_of_bulk_flows() -> None:
    """Runs the program in the kernel: frames sent on a packet socket to lo come back to a
    second one only if its filter passes them."""
    key = socket.inet_aton("127.0.0.1") * 2 + struct.pack("!HH", 40000, 22)
    rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        rx.bind(("lo", 0))
        attach(rx, bulk_prefix([key]) + compile_user_filter("tcp port 22 or tcp port 23"))
        while True:  # frames from before the filter
            try:
                rx.recv(70000, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
        tx.bind(("lo", 0))
        big = BULK_SEGMENT_BYTES
        sent = {
            "bulk large": _tcp_frame(40000, 22, big),
            "bulk small": _tcp_frame(40000, 22, 100),
            "bulk one byte": _tcp_frame(40000, 22, 1),
            "other ACK": _tcp_frame(40001, 22, 0, flags=0x10),
            "bulk large FIN": _tcp_frame(40000, 22, big, flags=0x11),
            "other large": _tcp_frame(40001, 22, big),
            "not the user's": _tcp_frame(40000, 80, 10),
            "reverse large": _tcp_frame(22, 40000, big),
        }
        for frame in sent.values():
            tx.send(frame)
        # A bulk connection's pure ACKs: each differs (its ack number), so each is found.
        acks = [_tcp_frame(40000, 22, 0, flags=0x10, ack=n) for n in range(32 * ACK_SAMPLE)]
        for frame in acks:
            tx.send(frame)
        got: list[bytes] = []
        rx.settimeout(0.3)
        done = threading.Event()
        while not done.is_set():
            try:
                got.append(rx.recv(70000))
            except TimeoutError:
                done.set()
        passed = {name for name, frame in sent.items() if frame in got}
        assert passed == {
            "bulk small",
            "bulk one byte",
            "bulk large FIN",
            "other large",
            "reverse large",
            "other ACK",
        }
        # One in ACK_SAMPLE passes: 32 expected of 2,048; none or 96 and more would each
        # take a chance below 1e-13.
        sampled = sum(frame in got for frame in acks)
        assert 0 < sampled < 96
    finally:
        rx.close()
        tx.close()
