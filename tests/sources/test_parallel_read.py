"""Captures read in worker processes: each file's records, stats and error exactly as the
capture source gives them in this process, in file order, with progress and a clean end."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from kexproxy.core.record import SessionRecord
from kexproxy.sources.capfile import CaptureError, CaptureStats
from kexproxy.sources.captures import analyse_capture
from kexproxy.sources.parallel_read import CaptureResult, ParallelReader, read_one, usable_cores

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = sorted(str(p) for p in (ROOT / "captures").glob("*.pcap*"))
PUBLIC = sorted(str(p) for p in (ROOT / "tests" / "data" / "public").glob("*.pcap*"))


def _here(name: str, include_non_ssh: bool = False) -> CaptureResult:
    """What reading `name` in this process gives, in a worker's terms."""
    records: list[SessionRecord] = []
    try:
        stats: CaptureStats | None = analyse_capture(
            name, records.append, include_non_ssh=include_non_ssh
        )
    except CaptureError as exc:
        return CaptureResult(records=tuple(records), stats=exc.stats, error=str(exc))
    return CaptureResult(records=tuple(records), stats=stats, error=None)


def _bad_files(tmp_path: Path) -> list[str]:
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"\x19\xbb8J" + b"not a capture" * 20)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes((ROOT / "captures" / "openssh-success.pcap").read_bytes()[:5000])
    return [str(garbage), str(tmp_path / "missing.pcap"), str(cut)]


def test_every_capture_reads_in_workers_as_it_reads_here(tmp_path: Path) -> None:
    names = BUNDLED + _bad_files(tmp_path) + PUBLIC
    assert len(BUNDLED) >= 20 and len(PUBLIC) >= 20
    with ParallelReader(names, jobs=2, include_non_ssh=True) as reader:
        got = [reader.result(i) for i in range(len(names))]
    want = [_here(name, include_non_ssh=True) for name in names]
    assert [r.error for r in got] == [r.error for r in want]
    assert sum(r.error is not None for r in got) == 3
    assert [r.stats for r in got] == [r.stats for r in want]
    assert [[x.to_dict() for x in r.records] for r in got] == [
        [x.to_dict() for x in r.records] for r in want
    ]
    # The truncated file still gave the connections before the cut.
    assert got[len(BUNDLED) + 2].records


def test_standard_input_is_left_to_the_caller() -> None:
    names = [BUNDLED[0], "-", BUNDLED[1]]
    with ParallelReader(names, jobs=4) as reader:
        first = reader.result(0)
        last = reader.result(2)
        with pytest.raises(KeyError):
            reader.result(1)
    assert [r.id for r in first.records] == [r.id for r in _here(BUNDLED[0]).records]
    assert [r.id for r in last.records] == [r.id for r in _here(BUNDLED[1]).records]


def test_progress_reports_reach_the_caller_for_each_file() -> None:
    big = str(ROOT / "tests" / "data" / "public" / "zeek-ssh-kex-quadratic-1000.pcap")
    names = [big, BUNDLED[0]]
    seen: list[tuple[int, int, int | None]] = []
    with ParallelReader(names, jobs=2, progress=lambda *r: seen.append(r)) as reader:
        reader.result(0)
        reader.result(1)
    size = os.path.getsize(big)
    # The reader's last report is the whole file, read.
    assert (0, size, size) in seen
    assert {index for index, _done, _total in seen} <= {0, 1}


def test_leaving_on_an_error_ends_the_workers_at_once(tmp_path: Path) -> None:
    # A pipe nobody writes to: its worker would wait for ever, so only ending it returns.
    pipe = tmp_path / "silent.pcap"
    os.mkfifo(pipe)
    before = {p.pid for p in multiprocessing.active_children()}
    with pytest.raises(RuntimeError), ParallelReader([str(pipe), str(pipe)], jobs=2) as reader:
        workers = list(reader._pool._processes.values())
        raise RuntimeError("the caller failed")
    assert workers and all(w.exitcode == -signal.SIGTERM for w in workers)
    assert {p.pid for p in multiprocessing.active_children()} - before == set()


def test_a_worker_reads_one_capture_as_the_source_does() -> None:
    result = read_one(BUNDLED[0], 0, False)
    assert [r.to_dict() for r in result.records] == [r.to_dict() for r in _here(BUNDLED[0]).records]
    assert result.error is None


def test_jobs_are_bounded_by_the_files_and_cores_by_the_affinity_mask() -> None:
    assert usable_cores() == len(os.sched_getaffinity(0))
    with ParallelReader(BUNDLED[:2], jobs=16) as reader:
        assert reader.jobs == 2
        reader.result(0)
        reader.result(1)
