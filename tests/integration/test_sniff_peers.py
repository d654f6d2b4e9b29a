"""`kexproxy sniff` on loopback against a real sshd gives the records `read` makes of tcpdump's
capture of the same connections: a success and a key exchange failure."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests import peers
from tests.peers.base import _skip_or_fail
from tests.peers.capture import Tcpdump

pytestmark = pytest.mark.peers

REPO = Path(__file__).resolve().parents[2]
#: Fields that differ by design: the id is made from the capture's label, which names
#: the interface; the diagnosis is compared apart (it only reads the rest).
DIFFERENT = ("id", "capture")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tui'}"}


def _start_sniff(port: int, *extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "kexproxy", "sniff", "-i", "lo"]
    argv += ["--bpf", f"tcp port {port}", "--json", "--no-store", *extra]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()  # the socket captures once this line is out
    if "capturing on lo" not in line:
        proc.kill()
        pytest.fail(f"sniff did not start: {line}{proc.stderr.read()}")
    return proc


def _read_capture(path: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "kexproxy", "read", "--json", str(path)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines()]


def _view(record: dict[str, Any]) -> dict[str, Any]:
    return {key: _times(value) for key, value in record.items() if key not in DIFFERENT}


def _same(x: Any, y: Any) -> bool:
    """Equal, but for times within 2 microseconds: the socket's are nanosecond, tcpdump's
    pcap truncates them to microseconds and the record rounds, so the same packet's time
    may differ in the last digit."""
    if isinstance(x, float) and isinstance(y, float):
        return abs(x - y) <= 2e-6
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y, strict=True))
    return bool(x == y)


def _times(value: Any) -> Any:
    """Timestamps as floats, for `_same`."""
    if isinstance(value, dict):
        return {key: _times(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_times(item) for item in value]
    if isinstance(value, str) and TIMESTAMP.fullmatch(value):
        at = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        return at
    return value


def test_sniff_records_equal_read_of_a_tcpdump_capture(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        _skip_or_fail("sniffing lo needs root")
    pcap = tmp_path / "same.pcap"
    with peers.Sshd(["KexAlgorithms curve25519-sha256"]) as sshd, Tcpdump(pcap, sshd.port):
        sniff = _start_sniff(sshd.port)
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
    read = _read_capture(pcap)
    assert [r["outcome"] for r in read] == ["negotiated", "failed"]
    assert len(sniffed) == len(read) == 2
    for live, captured in zip(sniffed, read, strict=True):
        assert _same(_view(live), _view(captured)), (live, captured)
    assert sniffed[1]["failures"][0]["list"] == "kex_algorithms"
    assert sniffed[0]["capture"] == "live:lo"


def test_sniff_count_stops_after_that_many_sessions() -> None:
    if os.geteuid() != 0:
        _skip_or_fail("sniffing lo needs root")
    with peers.Sshd() as sshd:
        sniff = _start_sniff(sshd.port, "--count", "1")
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
        env=_env(),
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nosuch0" in lines[0], result.stderr
