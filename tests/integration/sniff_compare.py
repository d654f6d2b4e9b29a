"""Running `kexproxy sniff` and `kexproxy read` as subprocesses, and comparing their records.

Shared by the sniff tests that hold a live capture against `read` of tcpdump's file of the
same traffic: the two differ by design only in the id and capture label, and in the last
digit of times (see `same`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import Popen
from typing import IO, Any

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Fields that differ by design: the id is made from the capture's label, which names
#: the interface; the diagnosis is compared apart (it only reads the rest).
DIFFERENT = ("id", "capture")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def env() -> dict[str, str]:
    """This checkout first on the path, so the subprocesses run the code under test."""
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tui'}"}


def start_sniff(bpf: str, *extra: str, stdout: IO[str] | int = subprocess.PIPE) -> Popen[str]:
    """`kexproxy sniff -i lo --json --no-store --bpf BPF`, returned once it captures.

    Records go to a pipe by default, which holds some 64 KiB: a test expecting more than a
    few records passes a file as `stdout`, or sniff blocks writing while nobody reads.
    """
    argv = [sys.executable, "-m", "kexproxy", "sniff", "-i", "lo"]
    argv += ["--bpf", bpf, "--json", "--no-store", *extra]
    proc = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE, text=True, env=env())
    assert proc.stderr is not None
    line = proc.stderr.readline()  # the socket captures once this line is out
    if "capturing on lo" not in line:
        proc.kill()
        pytest.fail(f"sniff did not start: {line}{proc.stderr.read()}")
    return proc


def read_capture(path: Path, *, timeout: float = 60) -> list[dict[str, Any]]:
    """The records `kexproxy read --json` makes of a capture file."""
    result = subprocess.run(
        [sys.executable, "-m", "kexproxy", "read", "--json", str(path)],
        capture_output=True,
        text=True,
        env=env(),
        timeout=timeout,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines()]


#: How far the same packet's time may be apart in the two records by default: the
#: socket's are nanosecond, tcpdump's pcap truncates them to microseconds and the record
#: rounds. A busier machine needs more (see `same`).
TIME_SLACK_MICROS = 2


@dataclass(frozen=True, slots=True)
class Instant:
    """A record's time in whole microseconds since the epoch: exact, where a float of
    today's seconds carries only some 0.24 microseconds and made 2 read as 2.15."""

    micros: int


def view(record: dict[str, Any]) -> dict[str, Any]:
    """A record without the fields that differ by design, its times as `Instant`s for `same`."""
    return {key: _times(value) for key, value in record.items() if key not in DIFFERENT}


def same(x: Any, y: Any, *, slack: int = TIME_SLACK_MICROS) -> bool:
    """Equal, but for times within `slack` microseconds.

    The two packet sockets do not share a timestamp. A loopback TCP segment carries its
    delivery time (monotonic, for pacing), which af_packet replaces with the wall clock as it
    queues the frame on each socket (`skb_clear_delivery_time` in `packet_rcv`), one tap
    after the other, the socket opened last first: the same frame's times differ by what the
    kernel spends in between. Measured on loopback: 0.4 to 1.6 microseconds idle; beside a
    bulk upload or another test worker on a busy VM, tens of microseconds now and then, and
    once 2.7 milliseconds. A retransmission, the nearest thing to "another frame", comes
    200 ms or more later (Linux's minimum RTO), which bounds any slack a test may use.
    """
    if isinstance(x, Instant) and isinstance(y, Instant):
        return abs(x.micros - y.micros) <= slack
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(same(x[k], y[k], slack=slack) for k in x)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(same(a, b, slack=slack) for a, b in zip(x, y, strict=True))
    return bool(x == y)


def differences(x: Any, y: Any, path: str = "", *, slack: int = TIME_SLACK_MICROS) -> list[str]:
    """Where `same(x, y)` fails: one line per differing leaf, for an assertion's message."""
    if isinstance(x, dict) and isinstance(y, dict):
        found = [f"{path}.{k}: only in one" for k in x.keys() ^ y.keys()]
        for k in x.keys() & y.keys():
            found += differences(x[k], y[k], f"{path}.{k}", slack=slack)
        return found
    if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        return [
            d
            for i, (a, b) in enumerate(zip(x, y, strict=True))
            for d in differences(a, b, f"{path}[{i}]", slack=slack)
        ]
    return [] if same(x, y, slack=slack) else [f"{path}: {x!r} != {y!r}"]


def at(timestamp: str) -> Instant:
    """A record's time (``started``, ``ended``), comparable with another's."""
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return Instant((moment - EPOCH) // timedelta(microseconds=1))


def _times(value: Any) -> Any:
    """Timestamps as `Instant`s, for `same`."""
    if isinstance(value, dict):
        return {key: _times(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_times(item) for item in value]
    if isinstance(value, str) and TIMESTAMP.fullmatch(value):
        return at(value)
    return value
