"""Captures read in worker processes: each file's records, stats and error exactly as the
capture source gives them in this process, in file order, with progress and a clean end."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from kexproxy.core.record import SessionRecord
from kexproxy.sources.capfile import CaptureError, CaptureStats
from kexproxy.sources.captures import analyse_capture
from kexproxy.sources.parallel_read import (
    CaptureResult,
    ParallelReader,
    _Spool,
    read_one,
    usable_cores,
)

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = sorted(str(p) for p in (ROOT / "captures").glob("*.pcap*"))
PUBLIC = sorted(str(p) for p in (ROOT / "tests" / "data" / "public").glob("*.pcap*"))


Read = tuple[list[dict[str, object]], CaptureStats | None, str | None]


def _here(name: str, include_non_ssh: bool = False) -> Read:
    """What reading `name` in this process gives: records, stats, error."""
    records: list[SessionRecord] = []
    try:
        stats: CaptureStats | None = analyse_capture(
            name, records.append, include_non_ssh=include_non_ssh
        )
    except CaptureError as exc:
        return [r.to_dict() for r in records], exc.stats, str(exc)
    return [r.to_dict() for r in records], stats, None


def _there(result: CaptureResult) -> Read:
    """The same of a worker's result (its spool read, and so removed)."""
    return [r.to_dict() for r in result.records()], result.stats, result.error


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
        got = [_there(reader.result(i)) for i in range(len(names))]
        folder = reader.folder
        assert os.listdir(folder) == []  # every spool removed once read
    assert not os.path.exists(folder)
    want = [_here(name, include_non_ssh=True) for name in names]
    assert [error for _r, _s, error in got] == [error for _r, _s, error in want]
    assert sum(error is not None for _r, _s, error in got) == 3
    assert [stats for _r, stats, _e in got] == [stats for _r, stats, _e in want]
    assert [records for records, _s, _e in got] == [records for records, _s, _e in want]
    # The truncated file still gave the connections before the cut.
    assert got[len(BUNDLED) + 2][0]


def test_standard_input_is_left_to_the_caller() -> None:
    names = [BUNDLED[0], "-", BUNDLED[1]]
    with ParallelReader(names, jobs=4) as reader:
        first = _there(reader.result(0))
        last = _there(reader.result(2))
        with pytest.raises(KeyError):
            reader.result(1)
    assert first[0] == _here(BUNDLED[0])[0]
    assert last[0] == _here(BUNDLED[1])[0]


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


def test_the_last_report_comes_with_the_result_when_the_queue_lost_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A report put on the queue may reach the caller after the file's result, or not at all
    (the queue full): the last one travels with the result too (CI once missed it)."""
    from kexproxy.sources import parallel_read

    def lost(index: int) -> Callable[[int, int | None], None]:
        return lambda done, total: None  # every queued report lost

    monkeypatch.setattr(parallel_read, "_reporter", lost)  # forked workers inherit it
    names = [BUNDLED[0], BUNDLED[1]]
    seen: list[tuple[int, int, int | None]] = []
    with ParallelReader(names, jobs=2, progress=lambda *r: seen.append(r)) as reader:
        reader.result(0)
        reader.result(1)
    sizes = [os.path.getsize(name) for name in names]
    assert seen == [(0, sizes[0], sizes[0]), (1, sizes[1], sizes[1])]


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


def test_a_worker_spools_one_capture_as_the_source_reads_it(tmp_path: Path) -> None:
    result = read_one(BUNDLED[0], 3, False, str(tmp_path))
    assert result.spool == str(tmp_path / "3.records")
    assert _there(result) == _here(BUNDLED[0])
    assert not os.path.exists(result.spool)


def test_a_spool_of_many_batches_reads_back_in_order(tmp_path: Path) -> None:
    records: list[SessionRecord] = []
    for name in PUBLIC:
        analyse_capture(name, records.append)
    assert len(records) > 30
    spool = _Spool(str(tmp_path / "spool"), batch=3)
    for record in records:
        spool.append(record)
    spool.close()
    result = CaptureResult(spool=spool.path, count=spool.count, stats=None, error=None)
    assert spool.count == len(records)
    assert [r.to_dict() for r in result.records()] == [r.to_dict() for r in records]


def test_jobs_are_bounded_by_the_files_and_cores_by_the_affinity_mask() -> None:
    assert usable_cores() == len(os.sched_getaffinity(0))
    with ParallelReader(BUNDLED[:2], jobs=16) as reader:
        assert reader.jobs == 2
        reader.result(0)
        reader.result(1)
