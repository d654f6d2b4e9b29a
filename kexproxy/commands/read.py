"""``kexproxy read``: every SSH and TLS connection in pcap/pcapng files, as a table or JSON lines."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kexproxy import exitcodes
from kexproxy.core.record import SessionRecord

if TYPE_CHECKING:
    from kexproxy.filtering import Filter
    from kexproxy.sinks.base import Sink
    from kexproxy.sources.capfile import CaptureStats
    from kexproxy.sources.parallel_read import CaptureResult

#: What `--one-table` reads in a folder: the names captures usually have.
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")

EPILOG = """\
examples:
  kexproxy read captures/openssh-kex-fail.pcap
      a table: one row per SSH connection, then each failure's messages as the real
      OpenSSH client and sshd print them ("Unable to negotiate with ...")
  kexproxy read captures/tls-tls12-no-shared-cipher.pcap
      TLS too: which side refused which list (inferred, and said so, where the wire does
      not show it), in OpenSSL's words ("no shared cipher"), and the alert it sent
  kexproxy read --json captures/*.pcap | jq 'select(.outcome == "failed") | .failures'
      one JSON record per line (schema kexproxy/session/1), nothing else on stdout
  tcpdump -i eth0 -U -s 0 -w - 'tcp' | kexproxy read --json -
      live: each record is printed as soon as its handshake is decided
  kexproxy read --policy policies/modern.toml captures/*.pcap
      judge every negotiated handshake against a policy; exit 1 if any violates it
  kexproxy read --filter 'outcome=failed offers:hmac-md5' captures/*.pcap
      only the sessions that match, in the dashboard's filter language (the key list is in
      the dashboard's help, ?): who still OFFERS hmac-md5 among the failures
  kexproxy read --one-table captures/
      every capture in the folder (and any files named) as one table with a capture column
  kexproxy read --json --jobs 4 day/*.pcap > day.jsonl
      four captures at a time in worker processes (the default: one per usable core); the
      records, their order and the totals are the same as with --jobs 1

SSH is found by its identification line and TLS by its first record (a ClientHello, or an
SSLv2-compatible one), on any port. Other TCP streams are skipped unless --all is given. Files may be pcap (micro or nanosecond), pcapng, or gzip of either.

  kexproxy read --store postgresql://kx@db/fleet --no-progress site2/*.pcap
      also into the team's store, beside what proxies and sniffers recorded (an id is
      stable per capture file, so reading it again updates its rows, never duplicates them)

exit status: 0 all inputs read; 1 with --policy, a session violates the policy (any session
read, shown or not); 2 an input was missing or not a capture, the policy file is unusable, the
filter does not parse, or the store could not take every record (one line on stderr each; the
other inputs are still read and everything read so far is printed).
"""


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "read",
        help="analyse SSH and TLS handshakes in pcap/pcapng files",
        description="Read captures and report every SSH and TLS handshake in them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="capture file, or - for stdin")
    parser.add_argument(
        "--json", action="store_true", help="one JSON record per line on stdout, nothing else"
    )
    parser.add_argument(
        "--all", action="store_true", help="also report TCP streams that are not SSH"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar even on a terminal"
    )
    parser.add_argument(
        "--policy",
        metavar="FILE",
        help="policy (TOML, see policies/) to judge each handshake by; exit 1 on a violation",
    )
    parser.add_argument(
        "--filter",
        metavar="EXPR",
        help="only sessions that match EXPR, the dashboard's filter language, e.g. "
        "'outcome:failed list:kex', 'offers:diffie-hellman-group14-sha1', 'csw:putty'",
    )
    parser.add_argument(
        "--one-table",
        action="store_true",
        help="one table for all inputs, with a capture column; a FILE may be a folder "
        "(its .pcap, .pcapng, .cap and gzipped captures)",
    )
    parser.add_argument(
        "--store",
        metavar="DB",
        help="also write the records (those --filter keeps) to this session store: a SQLite "
        "file or a postgresql:// URL, as proxy and sniff write theirs",
    )
    parser.add_argument(
        "--jobs",
        type=_positive,
        metavar="N",
        help="read up to N captures at once in worker processes (default: the usable cores); "
        "the output is the same as with --jobs 1",
    )
    parser.set_defaults(run=run)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


def _parse_filter(text: str | None) -> Filter | None:
    """The `--filter` text parsed, None without one; raises FilterError with a hint."""
    if text is None:
        return None
    from kexproxy.filtering import parse_filter

    return parse_filter(text)


def _expand_folders(names: list[str]) -> list[str]:
    """Each folder replaced by its captures, sorted by name; other names as they are."""
    out: list[str] = []
    for name in names:
        path = Path(name)
        if name != "-" and path.is_dir():
            out += sorted(
                str(p) for p in path.iterdir() if p.is_file() and p.name.endswith(CAPTURE_SUFFIXES)
            )
        else:
            out.append(name)
    return out


class _OnlyMatching:
    """Hands on to its sinks only the records a filter keeps (`--filter`): the printed
    output and the store see the same records, the filter asked once per record."""

    def __init__(self, sinks: list[Sink], keep: Filter) -> None:
        self.sinks = sinks
        self.keep = keep

    def update(self, record: SessionRecord, *, final: bool) -> None:
        from kexproxy.filtering import Subject

        if self.keep.matches(Subject.of(record)):
            for sink in self.sinks:
                sink.update(record, final=final)

    def close(self) -> bool | None:
        # Only the per-capture outputs: the store is closed once, after every capture.
        return self.sinks[0].close()


def run(args: argparse.Namespace) -> int:
    from kexproxy.core.textsafe import printable
    from kexproxy.pipeline import CollectSink, Pipeline, PolicyFileError, stages
    from kexproxy.sinks.jsonl import JsonLinesSink
    from kexproxy.sources.captures import analyse_capture, capture_label, capture_notes
    from kexproxy.sources.pcap import CaptureError

    keep: Filter | None = None
    if args.filter is not None:
        from kexproxy.filtering import FilterError

        try:
            keep = _parse_filter(args.filter)
        except FilterError as exc:
            print(f"kexproxy: --filter: {printable(str(exc))}", file=sys.stderr)
            return exitcodes.BAD_INPUT
    if args.one_table and args.json:
        print("kexproxy: --one-table prints a table; leave it out with --json", file=sys.stderr)
        return exitcodes.BAD_INPUT
    if args.one_table:
        args.files = _expand_folders(args.files)
        if not args.files:
            print("kexproxy: no captures in the folders given", file=sys.stderr)
            return exitcodes.BAD_INPUT
    if args.files.count("-") > 1:
        print("kexproxy: standard input (-) can be read only once", file=sys.stderr)
        return exitcodes.BAD_INPUT
    try:
        steps = stages(policy=args.policy)
    except PolicyFileError as exc:
        print(f"kexproxy: {exc}", file=sys.stderr)
        return exitcodes.BAD_INPUT
    store: Sink | None = None
    if args.store is not None:
        from kexproxy.sinks.store import StoreSink, store_problem

        problem = store_problem(args.store)
        if problem is not None:
            print(f"kexproxy: {printable(problem)}", file=sys.stderr)
            return exitcodes.BAD_INPUT
        store = StoreSink(args.store, warn=lambda text: print(text, file=sys.stderr))
    violated = False
    status = exitcodes.OK
    # The bar shares the terminal with nothing: not with JSON lines printed on it too.
    show_progress = (
        not args.no_progress
        and sys.stderr.isatty()
        and not (args.json and sys.stdout.isatty())
        and not os.environ.get("CI")
    )
    out: Any = None
    err: Any = None
    print_messages: Any = None
    sessions_table: Any = None
    if not args.json or show_progress:
        # Rich only where something is drawn: JSON lines for a script need none of it.
        from kexproxy.sinks.console import (
            print_messages,
            sessions_table,
            stderr_console,
            stdout_console,
        )

        err = stderr_console()
        out = stdout_console()
    everything: list[SessionRecord] = []
    labelled: list[tuple[str, SessionRecord]] = []
    read_files = 0
    bars = _Bars(err, args.files) if show_progress else None
    reader = None
    if sum(name != "-" for name in args.files) > 1 and args.jobs != 1:
        # Imported only here: one capture needs no workers (and multiprocessing's import
        # is a measurable part of reading a small one).
        from kexproxy.sources.parallel_read import ParallelReader, usable_cores

        jobs = args.jobs or usable_cores()
        if jobs > 1:
            reader = ParallelReader(
                args.files,
                jobs=jobs,
                include_non_ssh=args.all,
                progress=bars.report if bars else None,
            )
    with reader or contextlib.nullcontext():
        for index, name in enumerate(args.files):
            label = printable(capture_label(name))
            collected = CollectSink()
            sink: Sink = JsonLinesSink(sys.stdout) if args.json else collected
            sinks = [sink] if store is None else [sink, store]
            pipeline = Pipeline(
                sinks if keep is None else [_OnlyMatching(sinks, keep)], stages=steps
            )
            emit = pipeline.publish
            failed = False
            try:
                if reader is not None and name != "-":
                    stats = _replay(reader.result(index), emit, bars, index)
                elif show_progress and name != "-":
                    stats = _read_with_progress(err, name, emit, args.all)
                else:
                    stats = analyse_capture(
                        name, emit, early=(name == "-"), include_non_ssh=args.all
                    )
            except CaptureError as exc:
                print(f"kexproxy: {printable(str(exc))}", file=sys.stderr)
                status = exitcodes.BAD_INPUT
                failed = True
                stats = exc.stats
            for note in capture_notes(stats) if stats is not None else []:
                print(f"kexproxy: {label}: {note}", file=sys.stderr)
            violated = violated or pipeline.violations > 0
            records = collected.records
            read_files += not failed or bool(records)
            if args.one_table:
                labelled += ((label, r) for r in records)
                everything += records
            elif not args.json and not (failed and not records):
                _print_table(
                    out, label, records, sessions_table, print_messages, filtered=keep is not None
                )
                everything += records
    if args.one_table and not args.json:
        _print_one_table(out, labelled, print_messages, filtered=keep is not None)
    if not args.json and len(args.files) > 1 and everything:
        from kexproxy.sinks.console import print_totals

        print_totals(out, everything, files=read_files, ssh_only=not args.all)
    if store is not None and not store.close():
        status = exitcodes.BAD_INPUT  # the store said how many records it could not take
    if violated and status == exitcodes.OK:
        status = exitcodes.POLICY_VIOLATION
    return status


def _print_table(
    out: Any,
    label: str,
    records: list[SessionRecord],
    table: Any,
    messages: Any,
    *,
    filtered: bool,
) -> None:
    if not records:
        matching = " match the filter" if filtered else ""
        out.print(f"{label}: no SSH or TLS connections{matching}", markup=False)
        return
    out.print(table(records, title=label, width=out.width))
    messages(out, records)


def _print_one_table(
    out: Any, labelled: list[tuple[str, SessionRecord]], messages: Any, *, filtered: bool
) -> None:
    """Every input's sessions in one table, the capture's name beside each."""
    from rich.text import Text

    from kexproxy.sinks.console import stacked_cells, stacked_table

    if not labelled:
        out.print(
            "no SSH or TLS connections" + (" match the filter" if filtered else ""), markup=False
        )
        return
    software = out.width >= 80
    table = stacked_table("#", "capture", software=software)
    for index, (label, record) in enumerate(labelled, 1):
        table.add_row(
            str(index),
            Text(label),
            *stacked_cells(record, software=software),
            end_section=index < len(labelled),
        )
    out.print(table)
    messages(out, [record for _label, record in labelled])


def _replay(
    result: CaptureResult, emit: Any, bars: _Bars | None, index: int
) -> CaptureStats | None:
    """A worker's records through this process's stages and sinks, as if read here; its
    `CaptureError` raised again after them."""
    from kexproxy.sources.pcap import CaptureError

    if bars is not None:
        bars.done(index)
    for record in result.records():
        emit(record)
    if result.error is not None:
        raise CaptureError(result.error, result.stats)
    return result.stats


class _Bars:
    """Progress bars on stderr for the captures the workers are reading, shown while this
    process waits for one (never while it prints: stdout may be the same terminal)."""

    def __init__(self, err: Any, names: list[str]) -> None:
        from kexproxy.core.textsafe import printable

        self.err = err
        self.names = [printable(Path(name).name).replace("[", "\\[") for name in names]
        self.progress: Any = None
        self.tasks: dict[int, Any] = {}

    def report(self, index: int, done: int, total: int | None) -> None:
        if self.progress is None:
            from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

            self.progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TimeRemainingColumn(),
                console=self.err,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self.progress.start()
        if index not in self.tasks:
            self.tasks[index] = self.progress.add_task(self.names[index], total=None)
        self.progress.update(self.tasks[index], completed=done, total=total)

    def done(self, index: int) -> None:
        """Called between two waits: the bars leave the terminal until the next report."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
            self.tasks.clear()


def _read_with_progress(
    err: Any, name: str, emit: Any, include_non_ssh: bool
) -> CaptureStats | None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from kexproxy.core.textsafe import printable
    from kexproxy.sources.captures import analyse_capture

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    ) as progress:
        task = progress.add_task(printable(Path(name).name).replace("[", "\\["), total=None)

        def report(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        return analyse_capture(name, emit, include_non_ssh=include_non_ssh, progress=report)
