"""A seeded fuzzer of capture files: real captures mutated, then read as a person would.

Theory of operation: `mutate` takes one real capture (``captures/``, ``tests/data/public/``)
and damages it as disks, tools and attackers do: byte flips, truncation, pcap and pcapng
header and block corruption, records duplicated, dropped and reordered, gzip damage, IP and
TCP header corruption, payload corruption, splicing in another capture's records, and the
known killers (a segment from an endpoint to itself). `Fuzzer.run_case` then runs ``kexproxy
read --json`` in this process (through `kexproxy.cli.main`), now and then the table or
``explain`` instead, and every `process_every` cases as a process of its own (by path, or
on standard input), and checks the invariants of issue 9: no exception but the documented
error path, exit 0 or 2, no run over `MAX_SECONDS`, peak RSS under `MAX_RSS_MB`, every
record valid against the schema, no internal error contained by the reader. Case `i` of
seed `s` is always the same input, so a finding is reproduced with its two numbers.

Used by ``scripts/fuzz`` (the long run) and ``test_fuzz_captures.py`` (a short seeded pass).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import random
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from kexproxy.cli import main
from kexproxy.schema import session_record_schema

ROOT = Path(__file__).resolve().parents[2]
#: Issue 9's invariants: wall time of one read, and peak resident memory.
MAX_SECONDS = 10.0
MAX_RSS_MB = 300
#: The only lines `read` may write on stderr start so (its notes and its one error line).
STDERR_PREFIX = "kexproxy: "

# -- the captures as units (pcap records, pcapng blocks) -----------------------------------


@dataclass
class Units:
    """A capture cut into what a mutation may move: the header, then whole records or
    blocks, with where each unit's frame starts and its link type (None: not a packet)."""

    kind: str  # "pcap" or "pcapng"
    endian: str
    header: bytes
    units: list[bytes]
    frames: list[tuple[int, int] | None]  # per unit: (offset of the frame, link type)

    def join(self, units: list[bytes] | None = None) -> bytes:
        return self.header + b"".join(self.units if units is None else units)


def split(data: bytes) -> Units | None:
    """The capture's units, or None when it is neither pcap nor pcapng (say, gzip)."""
    magic = data[:4]
    if magic in (
        b"\xd4\xc3\xb2\xa1",
        b"\x4d\x3c\xb2\xa1",
        b"\xa1\xb2\xc3\xd4",
        b"\xa1\xb2\x3c\x4d",
    ):
        endian = "<" if magic[0] in (0xD4, 0x4D) else ">"
        link = struct.unpack_from(endian + "I", data, 20)[0] & 0x03FFFFFF
        units: list[bytes] = []
        pos = 24
        while pos + 16 <= len(data):
            caplen = struct.unpack_from(endian + "I", data, pos + 8)[0]
            units.append(data[pos : pos + 16 + caplen])
            pos += 16 + caplen
        return Units("pcap", endian, data[:24], units, [(16, link)] * len(units))
    if magic == b"\x0a\x0d\x0d\x0a":
        endian = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        units, frames, links = [], [], []
        pos = 0
        while pos + 12 <= len(data):
            kind, size = struct.unpack_from(endian + "II", data, pos)
            if size < 12:
                break
            block = data[pos : pos + size]
            if kind == 0x0A0D0D0A:
                links = []
            elif kind == 1 and len(block) >= 10:
                links.append(struct.unpack_from(endian + "H", block, 8)[0])
            ifid = struct.unpack_from(endian + "I", block, 8)[0] if len(block) >= 12 else -1
            frames.append((28, links[ifid]) if kind == 6 and 0 <= ifid < len(links) else None)
            units.append(block)
            pos += size
        return Units("pcapng", endian, b"", units, frames)
    return None


def records_as_pcap(units: Units) -> list[tuple[int, bytes]]:
    """(link type, frame) of every packet, to splice into a capture of another format."""
    out = []
    for unit, where in zip(units.units, units.frames, strict=True):
        if where is not None:
            out.append((where[1], unit[where[0] :]))
    return out


# -- mutations -------------------------------------------------------------------------------

Mutation = Callable[[random.Random, bytes, list[bytes]], bytes]
#: Offset of the IP header in a frame of each link type this tool decodes.
_IP_OFFSET = {0: 4, 1: 14, 12: 0, 14: 0, 101: 0, 108: 4, 113: 16, 228: 0, 229: 0, 276: 20}
_BOUNDARIES = (0, 1, 0x7F, 0x80, 0xFF)


def _flip(rng: random.Random, buf: bytearray, lo: int, hi: int, count: int) -> None:
    if hi <= lo:
        return
    for _ in range(count):
        pos = rng.randrange(lo, hi)
        buf[pos] = rng.choice(
            (rng.randrange(256), buf[pos] ^ (1 << rng.randrange(8)), *_BOUNDARIES)
        )


def byte_flips(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    buf = bytearray(data)
    _flip(rng, buf, 0, len(buf), rng.randint(1, 32))
    return bytes(buf)


def truncation(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    return data[: rng.randrange(len(data))]


def header_corruption(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    """The pcap file header, or a pcapng section or interface block, damaged."""
    units = split(data)
    buf = bytearray(data)
    if units is not None and units.kind == "pcapng":
        heads = [
            i
            for i, u in enumerate(units.units)
            if u[:4] in (b"\x0a\x0d\x0d\x0a",) or u[0] == 1 or u[3] == 1
        ]
        index = rng.choice(heads or [0])
        start = sum(len(u) for u in units.units[:index])
        size = len(units.units[index])
        _flip(rng, buf, start, start + size, rng.randint(1, 4))
        return bytes(buf)
    _flip(rng, buf, 0, min(24, len(buf)), rng.randint(1, 3))
    return bytes(buf)


def _length_fields(units: Units, index: int) -> list[tuple[int, str]]:
    if units.kind == "pcap":
        return [(0, "I"), (4, "I"), (8, "I"), (12, "I")]  # seconds, fraction, caplen, wirelen
    size = len(units.units[index])
    return [(4, "I"), (size - 4, "I"), (8, "I"), (12, "I"), (16, "I"), (20, "I"), (24, "I")]


def block_corruption(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    """A record's or block's length, interface, timestamp or option fields set to extremes."""
    units = split(data)
    if units is None or not units.units:
        return byte_flips(rng, data, _)
    out = list(units.units)
    for _round in range(rng.randint(1, 3)):
        index = rng.randrange(len(out))
        unit = bytearray(out[index])
        fields = [(off, fmt) for off, fmt in _length_fields(units, index) if off + 4 <= len(unit)]
        if not fields:
            continue
        off, fmt = rng.choice(fields)
        value = rng.choice(
            (
                0,
                1,
                3,
                12,
                0xFFFF,
                0x10000,
                0xFFFFFFFF,
                0x7FFFFFFF,
                len(unit),
                len(unit) + rng.randint(-8, 8),
            )
        )
        struct.pack_into(units.endian + fmt, unit, off, value & 0xFFFFFFFF)
        if units.kind == "pcapng" and len(unit) > 28 and rng.random() < 0.3:
            # Option-shaped damage at the block's end: a code and a length past it.
            struct.pack_into(units.endian + "HH", unit, len(unit) - 8, rng.choice((2, 9, 14)), 8)
        out[index] = bytes(unit)
    return units.join(out)


def record_shuffling(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    """Records duplicated, dropped and reordered (retransmissions, a merge of two capture
    points, a lossy capture), the header and the first unit (pcapng's section) kept."""
    units = split(data)
    if units is None or len(units.units) < 3:
        return byte_flips(rng, data, _)
    first = 0 if units.kind == "pcap" else 1
    body = list(units.units[first:])
    for _round in range(rng.randint(1, 6)):
        i = rng.randrange(len(body))
        action = rng.random()
        if action < 0.35:
            body.insert(rng.randrange(len(body) + 1), body[i])
        elif action < 0.6 and len(body) > 1:
            del body[i]
        else:
            j = rng.randrange(len(body))
            body[i], body[j] = body[j], body[i]
    if rng.random() < 0.2:
        rng.shuffle(body)
    return units.join(units.units[:first] + body)


def gzip_damage(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    packed = bytearray(gzip.compress(data, compresslevel=1, mtime=0))
    action = rng.random()
    if action < 0.4:
        return bytes(packed[: rng.randrange(2, len(packed))])
    if action < 0.8:
        _flip(rng, packed, 2, len(packed), rng.randint(1, 6))
        return bytes(packed)
    return bytes(packed) + (b"\x1f\x8b" + bytes(rng.randrange(256) for _ in range(20)))


def _frame_positions(units: Units) -> list[tuple[int, int, int]]:
    """(unit index, offset of the IP header, end of the frame) of every decodable packet."""
    out = []
    for index, where in enumerate(units.frames):
        if where is not None and where[1] in _IP_OFFSET:
            ip = where[0] + _IP_OFFSET[where[1]]
            if ip + 20 <= len(units.units[index]):
                out.append(
                    (index, ip, len(units.units[index]) - (4 if units.kind == "pcapng" else 0))
                )
    return out


def _in_frames(
    rng: random.Random, data: bytes, edit: Callable[[bytearray, int, int], None]
) -> bytes:
    units = split(data)
    positions = _frame_positions(units) if units is not None else []
    if units is None or not positions:
        return byte_flips(rng, data, [])
    out = list(units.units)
    for index, ip, end in rng.sample(positions, min(len(positions), rng.randint(1, 8))):
        unit = bytearray(out[index])
        edit(unit, ip, end)
        out[index] = bytes(unit)
    return units.join(out)


def ip_tcp_corruption(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    """IP and TCP header fields damaged, among them the LAND packet of issue 9."""

    def edit(unit: bytearray, ip: int, end: int) -> None:
        v6 = unit[ip] >> 4 == 6
        ihl = 40 if v6 else (unit[ip] & 0x0F) * 4
        tcp = ip + max(ihl, 20)
        choice = rng.random()
        if choice < 0.15 and not v6 and tcp + 4 <= end:
            unit[ip + 16 : ip + 20] = unit[ip + 12 : ip + 16]  # LAND: source is destination
            unit[tcp + 2 : tcp + 4] = unit[tcp : tcp + 2]
        elif choice < 0.3 and tcp + 14 <= end:
            unit[tcp + 13] = rng.choice((0x02, 0x12, 0x01, 0x04, 0x11, 0x3F, 0x00, 0x06))
        else:
            _flip(rng, unit, ip, min(tcp + 20, end), rng.randint(1, 4))

    return _in_frames(rng, data, edit)


def payload_corruption(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    """Bytes of the TCP payload damaged: SSH packet lengths, names, line ends."""

    def edit(unit: bytearray, ip: int, end: int) -> None:
        start = min(ip + 40, end)
        if end - start < 1:
            return
        if rng.random() < 0.3 and end - start >= 4:
            pos = rng.randrange(start, end - 3)
            value = rng.choice((0, 1, 5, 35000, 262144, 262145, 0xFFFFFFFF))
            unit[pos : pos + 4] = value.to_bytes(4, "big")
        elif rng.random() < 0.3:
            pos = rng.randrange(start, end)
            unit[pos] = rng.choice(b"\r\n,\x00\x1b\\")
        else:
            _flip(rng, unit, start, end, rng.randint(1, 8))

    return _in_frames(rng, data, edit)


def splicing(rng: random.Random, data: bytes, others: list[bytes]) -> bytes:
    """Records of another capture spliced in (the link types may differ: pcapng keeps them)."""
    mine, theirs = split(data), split(rng.choice(others))
    if mine is None or theirs is None:
        return byte_flips(rng, data, others)
    packets = records_as_pcap(mine)
    extra = records_as_pcap(theirs)
    if not extra:
        return data
    start = rng.randrange(len(extra))
    chunk = extra[start : start + rng.randint(1, 40)]
    at = rng.randrange(len(packets) + 1)
    return write_pcapng(packets[:at] + chunk + packets[at:])


def interface_options(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    """The capture as pcapng whose interface blocks carry options, some of them claiming more
    bytes than the block holds (issue 9's if_tsoffset at the very end of the block)."""
    units = split(data)
    packets = records_as_pcap(units) if units is not None else []
    if not packets:
        return byte_flips(rng, data, _)

    def options(endian: str) -> bytes:
        out = b""
        for _option in range(rng.randint(1, 3)):
            code = rng.choice((2, 9, 14, 0x8001))
            value = {
                9: bytes([rng.choice((6, 9, 0x80 | 20, 0x7F, 0xFF))]),
                14: struct.pack(endian + "q", rng.choice((0, 100, -(1 << 40), (1 << 62)))),
            }.get(code, b"eth0")
            out += struct.pack(endian + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)
        if rng.random() < 0.5:  # the last option's value cut off by the block's end
            code = rng.choice((9, 14, 2))
            out += struct.pack(endian + "HH", code, rng.choice((1, 8, 200)))
        elif rng.random() < 0.5:
            out += b"\0\0\0\0"  # opt_endofopt
        return out

    # An interface added last, with no packet after it: a capture stopped right then.
    return write_pcapng(packets, options=options, trailing_interface=rng.random() < 0.4)


def write_pcapng(
    packets: list[tuple[int, bytes]],
    *,
    options: Callable[[str], bytes] | None = None,
    trailing_interface: bool = False,
) -> bytes:
    """A little-endian pcapng with one interface per link type, timestamps ticking 1 ms;
    `options` gives each interface block's options."""

    def block(kind: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    ifids: dict[int, int] = {}
    for i, (link, frame) in enumerate(packets):
        if link not in ifids:
            ifids[link] = len(ifids)
            extra = options("<") if options is not None else b""
            out.append(block(1, struct.pack("<HHI", link & 0xFFFF, 0, 0) + extra))
        ticks = 1_700_000_000_000_000 + i * 1000
        head = struct.pack(
            "<IIIII", ifids[link], ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)
        )
        out.append(block(6, head + frame))
    if trailing_interface:
        extra = options("<") if options is not None else b""
        out.append(block(1, struct.pack("<HHI", 1, 0, 0) + extra))
    return b"".join(out)


MUTATIONS: dict[str, Mutation] = {
    "byte-flips": byte_flips,
    "truncation": truncation,
    "header": header_corruption,
    "block": block_corruption,
    "records": record_shuffling,
    "gzip": gzip_damage,
    "ip-tcp": ip_tcp_corruption,
    "payload": payload_corruption,
    "splice": splicing,
    "interface-options": interface_options,
}


def seed_captures(root: Path = ROOT) -> list[Path]:
    """The real captures mutations start from."""
    paths = sorted((root / "captures").glob("*.pcap*")) + sorted(
        (root / "tests" / "data" / "public").glob("*.pcap*")
    )
    return [p for p in paths if p.is_file()]


# -- running and checking ------------------------------------------------------------------


@dataclass
class Finding:
    case: int
    mutation: str
    seed_file: str
    kind: str
    detail: str


@dataclass
class Summary:
    seed: int
    count: int = 0
    in_process: int = 0
    processes: int = 0
    records: int = 0
    exit_codes: Counter[int] = field(default_factory=Counter)
    mutations: Counter[str] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    slowest: tuple[float, int, str] = (0.0, -1, "")
    peak_rss_mb: float = 0.0
    child_peak_rss_mb: float = 0.0
    started: float = field(default_factory=time.monotonic)

    @property
    def crashes(self) -> int:
        return len(self.findings)

    def lines(self) -> list[str]:
        secs, case, what = self.slowest
        by_kind = Counter(f.kind for f in self.findings)
        return [
            f"fuzz: {self.count} mutated captures, seed {self.seed}, "
            f"{time.monotonic() - self.started:.0f} s",
            f"  read in-process {self.in_process}, as a process {self.processes}; "
            f"{self.records} records checked against the schema",
            f"  exit codes: {dict(sorted(self.exit_codes.items()))}",
            f"  mutations: {dict(sorted(self.mutations.items()))}",
            f"  crashes (any broken invariant): {self.crashes} {dict(by_kind) if by_kind else ''}",
            f"  slowest: case {case} ({what}) {secs:.2f} s",
            f"  peak RSS: this process {self.peak_rss_mb:.0f} MB, "
            f"largest child {self.child_peak_rss_mb:.0f} MB (limit {MAX_RSS_MB} MB)",
        ]


class _Timeout(BaseException):
    """Raised by the alarm in the middle of a read that took too long."""


def _alarm(_signum: int, _frame: Any) -> None:
    raise _Timeout


class Fuzzer:
    """Mutates seed captures and reads them, collecting findings in a `Summary`."""

    def __init__(
        self,
        seed: int,
        *,
        seeds: list[Path] | None = None,
        workdir: Path,
        process_every: int = 50,
        keep: Path | None = None,
    ) -> None:
        self.seed = seed
        self.paths = seeds or seed_captures()
        self.blobs = [p.read_bytes() for p in self.paths]
        self.workdir = workdir
        self.process_every = process_every
        self.keep = keep
        self.summary = Summary(seed=seed)
        schema = session_record_schema()
        self.validator = jsonschema.validators.validator_for(schema)(schema)

    def case(self, index: int) -> tuple[str, str, bytes]:
        """Case `index` of this seed: (mutation names, seed file, bytes), always the same."""
        rng = random.Random(f"{self.seed}-{index}")
        which = rng.randrange(len(self.blobs))
        data = self.blobs[which]
        names = rng.sample(sorted(MUTATIONS), rng.choice((1, 1, 1, 2, 3)))
        for name in names:
            try:
                data = MUTATIONS[name](rng, data, self.blobs)
            except (struct.error, ValueError, IndexError):
                # An earlier mutation left nothing this one can parse: damage it plainly.
                data = byte_flips(rng, data, self.blobs)
        return "+".join(names), self.paths[which].name, data

    def run(self, count: int, seconds: float | None = None, first: int = 0) -> Summary:
        deadline = None if seconds is None else time.monotonic() + seconds
        for index in range(first, first + count):
            if deadline is not None and time.monotonic() > deadline:
                break
            self.run_case(index)
        return self.summary

    def run_case(self, index: int) -> None:
        what, origin, data = self.case(index)
        summary = self.summary
        summary.count += 1
        for name in what.split("+"):
            summary.mutations[name] += 1
        path = self.workdir / f"case-{index}.pcap"
        path.write_bytes(data)
        try:
            if self.process_every and index % self.process_every == 0:
                problems, seconds = self._as_process(
                    path, stdin=index % (2 * self.process_every) == 0
                )
                summary.processes += 1
            else:
                problems, seconds = self._in_process(path, index)
                summary.in_process += 1
        finally:
            if not self.keep:
                path.unlink(missing_ok=True)
        if seconds > summary.slowest[0]:
            summary.slowest = (seconds, index, f"{what} of {origin}")
        summary.peak_rss_mb = _rss_mb(resource.RUSAGE_SELF)
        summary.child_peak_rss_mb = _rss_mb(resource.RUSAGE_CHILDREN)
        if summary.peak_rss_mb > MAX_RSS_MB or summary.child_peak_rss_mb > MAX_RSS_MB:
            problems.append(
                ("rss", f"peak RSS {max(summary.peak_rss_mb, summary.child_peak_rss_mb):.0f} MB")
            )
        for kind, detail in problems:
            summary.findings.append(Finding(index, what, origin, kind, detail))
        if problems and self.keep is not None:
            self.keep.mkdir(parents=True, exist_ok=True)
            (self.keep / f"seed{self.seed}-case{index}.pcap").write_bytes(data)
            (self.keep / f"seed{self.seed}-case{index}.txt").write_text(
                f"{what} of {origin}\n" + "\n".join(f"{k}: {d}" for k, d in problems) + "\n"
            )

    def _argv(self, path: Path, index: int) -> list[str]:
        mode = random.Random(f"{self.seed}-{index}-mode").random()
        if mode < 0.08:
            return ["read", "--no-progress", str(path)]  # the table: rendering hostile text
        if mode < 0.13:
            return ["explain", str(path)]
        return ["read", "--json", str(path)]

    def _in_process(self, path: Path, index: int) -> tuple[list[tuple[str, str]], float]:
        argv = self._argv(path, index)
        out, err = io.StringIO(), io.StringIO()
        problems: list[tuple[str, str]] = []
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, MAX_SECONDS)
        started = time.monotonic()
        status: int | None = None
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = main(argv)
        except _Timeout:
            problems.append(("timeout", f"{' '.join(argv[:-1])}: over {MAX_SECONDS:.0f} s"))
        except BaseException as exc:  # everything: this is what the fuzzer is for
            lines = traceback.format_exception(exc)
            problems.append(("exception", "".join(lines[-3:]).strip()))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        seconds = time.monotonic() - started
        if status is not None:
            self.summary.exit_codes[status] += 1
            problems += self._check(
                status, out.getvalue(), err.getvalue(), json_out="--json" in argv
            )
        return problems, seconds

    def _as_process(self, path: Path, *, stdin: bool) -> tuple[list[tuple[str, str]], float]:
        argv = [sys.executable, "-m", "kexproxy", "read", "--json", "-" if stdin else str(path)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tui")])}
        started = time.monotonic()
        try:
            result = subprocess.run(
                argv,
                input=path.read_bytes() if stdin else None,
                capture_output=True,
                timeout=MAX_SECONDS * 3,  # a process also starts Python and imports
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return [("timeout", "as a process")], time.monotonic() - started
        seconds = time.monotonic() - started
        self.summary.exit_codes[result.returncode] += 1
        out = result.stdout.decode("utf-8", "replace")
        err = result.stderr.decode("utf-8", "replace")
        return self._check(result.returncode, out, err, json_out=True), seconds

    def _check(self, status: int, out: str, err: str, *, json_out: bool) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if status not in (0, 2):
            problems.append(("exit", f"exit status {status}"))
        if "Traceback" in err:
            problems.append(("exception", err.strip().splitlines()[-1]))
        for line in err.splitlines():
            if not line.startswith(STDERR_PREFIX):
                problems.append(("stderr", f"unexpected stderr line {line[:200]!r}"))
                break
            if "internal error" in line or "kexproxy bug" in line:
                problems.append(("contained", line[:300]))
        if json_out:
            for line in out.splitlines():
                self.summary.records += 1
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    problems.append(("json", f"not JSON: {exc}"))
                    continue
                errors = sorted(self.validator.iter_errors(record), key=lambda e: list(e.path))
                if errors:
                    problems.append(
                        ("schema", f"{list(errors[0].path)}: {errors[0].message[:300]}")
                    )
        return problems


def _rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kilobytes on Linux


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="kexproxy-fuzz-") as tmp:
        yield Path(tmp)
