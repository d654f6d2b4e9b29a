"""`kexproxy sniff` on loopback against a real sshd gives the records `read` makes of tcpdump's
capture of the same connections: a success and a key exchange failure."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import peers
from tests.integration.sniff_compare import (
    differences,
    env,
    read_capture,
    same,
    start_sniff,
    view,
)
from tests.peers.base import _skip_or_fail
from tests.peers.capture import Tcpdump

pytestmark = pytest.mark.peers


def test_sniff_records_equal_read_of_a_tcpdump_capture(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        _skip_or_fail("sniffing lo needs root")
    pcap = tmp_path / "same.pcap"
    with peers.Sshd(["KexAlgorithms curve25519-sha256"]) as sshd, Tcpdump(pcap, sshd.port):
        sniff = start_sniff(f"tcp port {sshd.port}")
        try:
            ok = peers.run_ssh(sshd.port, command="echo kexproxy-ok")
            failed = peers.run_ssh(sshd.port, "-oKexAlgorithms=diffie-hellman-group14-sha1")
            time.sleep(0.5)  # the last FIN/ACKs
        finally:
            sniff.send_signal(signal.SIGINT)
            out, err = sniff.communicate(timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert failed.returncode == 255
    assert sniff.returncode == 0, err
    last = err.strip().splitlines()[-1]
    assert "2 sessions ended, 1 failed to negotiate" in last, err
    assert "dropped by the kernel" in last
    sniffed = [json.loads(line) for line in out.splitlines()]
    read = read_capture(pcap)
    assert [r["outcome"] for r in read] == ["negotiated", "failed"]
    assert len(sniffed) == len(read) == 2
    for live, captured in zip(sniffed, read, strict=True):
        # Times within 50 ms: tcpdump's socket and sniff's are stamped one after the other
        # (`sniff_compare.same`), microseconds apart, once 2.7 ms beside a busy test worker;
        # a frame from another moment (a retransmission) is 200 ms or more away.
        slack = 50_000
        assert same(view(live), view(captured), slack=slack), differences(
            view(live), view(captured), slack=slack
        )
    assert sniffed[1]["failures"][0]["list"] == "kex_algorithms"
    assert sniffed[0]["capture"] == "live:lo"


def test_sniff_count_stops_after_that_many_sessions() -> None:
    if os.geteuid() != 0:
        _skip_or_fail("sniffing lo needs root")
    with peers.Sshd() as sshd:
        sniff = start_sniff(f"tcp port {sshd.port}", "--count", "1")
        try:
            peers.run_ssh(sshd.port)
            out, err = sniff.communicate(timeout=30)
        finally:
            sniff.kill()
    assert sniff.returncode == 0, err
    assert [json.loads(line)["outcome"] for line in out.splitlines()] == ["negotiated"]
    assert "1 session ended" in err.strip().splitlines()[-1]


def test_sniff_on_a_missing_interface_is_one_line_and_status_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kexproxy", "sniff", "-i", "nosuch0", "--no-store"],
        check=False,
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nosuch0" in lines[0], result.stderr
