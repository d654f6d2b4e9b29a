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

Used by ``scripts/fuzz`` (the long run) and ``test_fuzz_captures.py`` (a short seeded pass);
the mutations are in `capture_mutations`.
"""

from __future__ import annotations

import contextlib
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
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from kexproxy.cli import main
from kexproxy.schema import session_record_schema
from tests.integration.capture_mutations import MUTATIONS, byte_flips, seed_captures

ROOT = Path(__file__).resolve().parents[2]
#: Issue 9's invariants: wall time of one read, and peak resident memory.
MAX_SECONDS = 10.0
MAX_RSS_MB = 300
#: The only lines `read` may write on stderr start so (its notes and its one error line).
STDERR_PREFIX = "kexproxy: "

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
            f"  peak RSS: this process +{self.peak_rss_mb:.0f} MB over its start, "
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
        # The fuzzer may run inside a process that already holds memory (a test worker):
        # in-process, the limit applies to what reading the cases adds to it.
        _reset_peak()
        self._baseline_mb = _self_peak_mb()
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
        summary.peak_rss_mb = max(summary.peak_rss_mb, _self_peak_mb() - self._baseline_mb)
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
        argv = [sys.executable, "-c", _LAUNCHER, "read", "--json", "-" if stdin else str(path)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tui")])}
        started = time.monotonic()
        # A process also starts Python and imports: three times the in-process limit.
        result = _run_measured(
            argv, path.read_bytes() if stdin else None, timeout=MAX_SECONDS * 3, env=env
        )
        seconds = time.monotonic() - started
        if result is None:
            return [("timeout", "as a process")], seconds
        status, out_bytes, err_bytes, peak_mb = result
        self.summary.child_peak_rss_mb = max(self.summary.child_peak_rss_mb, peak_mb)
        self.summary.exit_codes[status] += 1
        out = out_bytes.decode("utf-8", "replace")
        err = err_bytes.decode("utf-8", "replace")
        return self._check(status, out, err, json_out=True), seconds

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


#: `python -m kexproxy` that writes its own peak RSS (VmHWM, which starts afresh at exec) to
#: the descriptor named in KEXPROXY_FUZZ_PEAK_FD when it exits: the fork before exec shares
#: the parent's pages, so the rusage of a child counts the parent's memory too.
_LAUNCHER = """
import atexit, os, sys
def _peak():
    with open("/proc/self/status") as status:
        hwm = next((l.split()[1] for l in status if l.startswith("VmHWM:")), "0")
    os.write(int(os.environ["KEXPROXY_FUZZ_PEAK_FD"]), hwm.encode())
atexit.register(_peak)
from kexproxy.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _self_peak_mb() -> float:
    """This process's peak RSS since `_reset_peak` (VmHWM), else since it started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _reset_peak() -> None:
    """Sets VmHWM back to the current RSS (Linux: "5" to /proc/self/clear_refs)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _run_measured(
    argv: list[str], stdin: bytes | None, *, timeout: float, env: dict[str, str]
) -> tuple[int, bytes, bytes, float] | None:
    """Runs `argv` (a `_LAUNCHER`); (status, stdout, stderr, the child's own peak RSS in MB),
    or None after `timeout`."""
    peak_r, peak_w = os.pipe()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**env, "KEXPROXY_FUZZ_PEAK_FD": str(peak_w)},
        pass_fds=(peak_w,),
    )
    os.close(peak_w)
    chunks: dict[str, bytes] = {}

    def drain(name: str, stream: Any) -> None:
        chunks[name] = stream.read()

    def feed() -> None:
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.write(stdin or b"")
        with contextlib.suppress(OSError):
            proc.stdin.close()

    threads = [
        threading.Thread(target=drain, args=("out", proc.stdout), daemon=True),
        threading.Thread(target=drain, args=("err", proc.stderr), daemon=True),
    ]
    if stdin is not None:
        threads.append(threading.Thread(target=feed, daemon=True))
    for thread in threads:
        thread.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        proc.wait()
    finally:
        timer.cancel()
    with os.fdopen(peak_r, "rb") as peak:
        peak_kb = int(peak.read() or b"0")
    for thread in threads:
        thread.join(10)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    if proc.returncode == -signal.SIGKILL:
        return None
    return proc.returncode, chunks.get("out", b""), chunks.get("err", b""), peak_kb / 1024


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="kexproxy-fuzz-") as tmp:
        yield Path(tmp)
