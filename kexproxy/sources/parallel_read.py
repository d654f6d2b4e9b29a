"""Capture files read in worker processes, their records handed back in file order.

Theory of operation: reading a capture is nearly all frame decoding and reassembly (the
source), a few percent is the stages and sinks after it (measured on a 750 MB capture:
1.5 s reading, 0.17 s stages and JSON). So each worker runs only the source, frames to
tracker to record, for one whole file, and returns that file's records in the order the
reader finished them; the caller runs the stages and sinks itself, file after file, as
``--jobs 1`` does. That keeps the stateful stages (`ServerMemory`, which learns from every
earlier TLS session) seeing the sessions in the same order, so the output is the same
whatever the number of workers. Records cross the process boundary pickled (about 4 KB
and 0.1 ms a record), cheaper than JSON, which the stages would have to parse back, and
through a spool file in a private temporary folder rather than the pool's pipe: a worker
writes them in batches as the reader finishes them and the caller reads them back one
batch at a time, so a capture of a million connections costs disk, not memory, on both
sides, as `--jobs 1` streams them.

At most `jobs + 1` files are read ahead of the one the caller waits for. Standard input is
never given to a worker: the caller reads it itself, in its turn. Workers ignore SIGINT; an
interrupt (or any error) in the caller ends them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import queue
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Final

from kexproxy.core.record import SessionRecord
from kexproxy.sources.capfile import CaptureError, CaptureStats

#: Workers at most, whatever `--jobs` asks: each is a whole interpreter.
MAX_JOBS: Final = 64
#: Seconds between two looks at the workers' progress reports while waiting for a file.
PROGRESS_POLL: Final = 0.1
#: Progress reports waiting in the queue at most; a worker drops a report rather than wait.
MAX_PENDING_REPORTS: Final = 1024
#: Records pickled at once into a spool: what the caller holds at most while reading it.
SPOOL_BATCH: Final = 256

#: Progress of one file: its index among the names, bytes read, total bytes if known.
FileProgress = Callable[[int, int, int | None], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureResult:
    """One capture as a worker read it: where its records wait, what the reader saw, and
    the `CaptureError` message if the read ended in one (after the records before it)."""

    spool: str
    count: int
    stats: CaptureStats | None
    error: str | None
    #: The reader's last progress report (done, total), carried with the result: the one sent
    #: through the queue may come after the result, or not at all when the queue was full.
    last_report: tuple[int, int | None] | None = None

    def records(self) -> Iterator[SessionRecord]:
        """The records in the order the reader finished them, read back batch by batch;
        the spool is removed once they are all read."""
        with open(self.spool, "rb") as handle:
            left = self.count
            while left > 0:
                # Written by this reader's own worker, in a folder only this user can open.
                batch: list[SessionRecord] = pickle.load(handle)
                left -= len(batch)
                yield from batch
        os.unlink(self.spool)


class _Spool:
    """Records pickled to a file in batches: what a worker hands back."""

    def __init__(self, path: str, batch: int = SPOOL_BATCH) -> None:
        self.path = path
        self.batch = batch
        self.count = 0
        self._handle = open(path, "wb")  # noqa: SIM115 (closed by `close`)
        self._batch: list[SessionRecord] = []

    def append(self, record: SessionRecord) -> None:
        self._batch.append(record)
        if len(self._batch) >= self.batch:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            pickle.dump(self._batch, self._handle, protocol=pickle.HIGHEST_PROTOCOL)
            self.count += len(self._batch)
            self._batch = []

    def close(self) -> None:
        self._flush()
        self._handle.close()


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, as `taskset` sets it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def read_one(name: str, index: int, include_non_ssh: bool, folder: str) -> CaptureResult:
    """One capture through the source only (no stages), its records spooled into `folder`;
    what a worker runs."""
    from kexproxy.sources.captures import analyse_capture

    spool = _Spool(os.path.join(folder, f"{index}.records"))
    stats: CaptureStats | None = None
    error: str | None = None
    queued = _reporter(index)
    last: list[tuple[int, int | None]] = []

    def report(done: int, total: int | None) -> None:
        last[:] = [(done, total)]
        if queued is not None:
            queued(done, total)

    try:
        stats = analyse_capture(
            name,
            spool.append,
            include_non_ssh=include_non_ssh,
            progress=report if queued is not None else None,
        )
    except CaptureError as exc:
        stats, error = exc.stats, str(exc)
    finally:
        spool.close()
    return CaptureResult(
        spool=spool.path,
        count=spool.count,
        stats=stats,
        error=error,
        last_report=last[0] if last else None,
    )


# The progress queue reaches a worker only by inheritance (a multiprocessing queue cannot be
# pickled into a call), so the pool's initializer leaves it here, in the worker process.
_in_worker: Final[dict[str, Any]] = {}


def _start_worker(reports: Any) -> None:
    _in_worker["reports"] = reports
    # Ctrl-C reaches the whole process group; the caller decides, and ends the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _reporter(index: int) -> Callable[[int, int | None], None] | None:
    reports = _in_worker.get("reports")
    if reports is None:
        return None

    def report(done: int, total: int | None) -> None:
        # A missed report only makes the bar jump; a worker never waits for the bar.
        with contextlib.suppress(queue.Full):
            reports.put_nowait((index, done, total))

    return report


class ParallelReader:
    """Reads the named captures (never ``-``) in `jobs` worker processes; `result(i)` waits
    for the i-th name's. Use it as a context manager: leaving it ends the workers."""

    def __init__(
        self,
        names: Sequence[str],
        *,
        jobs: int,
        include_non_ssh: bool = False,
        progress: FileProgress | None = None,
    ) -> None:
        self._names = list(names)
        self._include = include_non_ssh
        self._progress = progress
        self._todo = [i for i, name in enumerate(self._names) if name != "-"]
        #: Worker processes: as asked, but no more than the files to read or `MAX_JOBS`.
        self.jobs = max(1, min(jobs, MAX_JOBS, len(self._todo)))
        self._futures: dict[int, Future[CaptureResult]] = {}
        #: Files whose result was given: a queued report of theirs that comes late is stale.
        self._given: set[int] = set()
        #: The workers' spool files; private to this user, removed by `close`.
        self.folder = tempfile.mkdtemp(prefix="kexproxy-read-")
        # fork: a worker starts in milliseconds with every module already imported.
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        self._reports: Any = context.Queue(MAX_PENDING_REPORTS) if progress else None
        self._pool = ProcessPoolExecutor(
            self.jobs,
            mp_context=context,
            initializer=_start_worker,
            initargs=(self._reports,),
        )
        self._submit_up_to(self.jobs + 1)

    def _submit_up_to(self, count: int) -> None:
        while self._todo and len(self._futures) < count:
            index = self._todo.pop(0)
            name = self._names[index]
            future = self._pool.submit(read_one, name, index, self._include, self.folder)
            self._futures[index] = future

    def result(self, index: int) -> CaptureResult:
        """The index-th capture's result, once read; the next file is started meanwhile.
        A worker's unexpected exception is raised here, as `--jobs 1` would raise it."""
        future = self._futures[index]
        while not future.done():
            wait([future], timeout=PROGRESS_POLL, return_when=FIRST_COMPLETED)
            self._drain_reports()
        self._drain_reports()
        del self._futures[index]
        self._submit_up_to(self.jobs + 1)
        result = future.result()
        self._given.add(index)
        if result.last_report is not None and self._progress is not None:
            self._progress(index, *result.last_report)
        return result

    def _drain_reports(self) -> None:
        if self._reports is None or self._progress is None:
            return
        while True:
            try:
                index, done, total = self._reports.get_nowait()
            except queue.Empty:
                return
            if index not in self._given:
                self._progress(index, done, total)

    def close(self, *, abandon: bool = False) -> None:
        """Waits for the workers to end, or ends them at once when `abandon` (an error or an
        interrupt in the caller: what they would read is no longer wanted)."""
        if abandon:
            for future in self._futures.values():
                future.cancel()
            # The pool has no public way to stop a worker mid-call; its processes are
            # plain multiprocessing children of this process.
            for child in getattr(self._pool, "_processes", {}).values():
                child.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._reports is not None:
            self._reports.close()
            self._reports.join_thread()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ParallelReader:
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self.close(abandon=exc is not None)
