"""``kexproxy logs``: sshd's and dropbear's own log lines as session records, a table or JSON lines."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from kexproxy import exitcodes

if TYPE_CHECKING:
    from kexproxy.core.record import SessionRecord
    from kexproxy.sinks.base import Sink

EPILOG = """\
examples:
  kexproxy logs /var/log/auth.log
      a table: one row per "Unable to negotiate" line (and per refused identification
      line), the client's address and port, the list and the client's offer
  journalctl -u ssh -o json --since today | kexproxy logs --json -
      the journal's entries as JSON lines (schema kexproxy/session/1, source "log")
  kexproxy logs --store fleet.db /var/log/auth.log /var/log/auth.log.2.gz
      into the store, beside captured and relayed sessions: `kexproxy tui fleet.db`
  sshd -D -e -o LogLevel=VERBOSE 2>&1 | kexproxy logs -
      sshd's own stderr, records as failures happen

Formats, mixed freely: syslog (auth.log, /var/log/secure), RFC 5424, `journalctl -o
short-iso` and `-o json`, `sshd -e` stderr (no prefix), dropbear's syslog and `-E` stderr.
Other programs' lines are skipped. Lines of one connection are joined by host and pid (or, for
`sshd -e`, by the peer's address and port); sshd names the server's own address only at
LogLevel VERBOSE ("Connection from A port P on B port Q"). A syslog line has no year: it is
the file's last change's (a month after that one is of the year before), or --year.

exit status: 0 every log read; 2 a log was missing or unreadable, or the store unusable (one
line on stderr each; the other logs are still read and every record is printed).
"""


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "logs",
        help="turn sshd's and dropbear's log lines about failed handshakes into records",
        description="Read server logs (sshd, dropbear) and report each failed negotiation.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="log file (gzip too), or -")
    parser.add_argument(
        "--json", action="store_true", help="one JSON record per line on stdout, nothing else"
    )
    parser.add_argument("--store", metavar="DB", help="also write the records to this store")
    parser.add_argument(
        "--year",
        type=int,
        metavar="YYYY",
        help="the year of syslog lines, which carry none (default: the file's last change)",
    )
    parser.set_defaults(run=run)


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from kexproxy.core.textsafe import printable
    from kexproxy.pipeline import CollectSink, Pipeline, stages
    from kexproxy.sinks.jsonl import JsonLinesSink
    from kexproxy.sources.logfile import LogFileError, LogStats, log_label, read_log

    if args.files.count("-") > 1:
        _err("kexproxy: standard input (-) can be read only once")
        return exitcodes.BAD_INPUT
    if args.year is not None and not 1970 <= args.year <= 9999:
        _err("kexproxy: --year: a year from 1970 to 9999")
        return exitcodes.BAD_INPUT
    sinks: list[Sink] = []
    if args.store is not None:
        from kexproxy.sinks.store import StoreSink, store_problem

        problem = store_problem(args.store)
        if problem is not None:
            _err(f"kexproxy: {printable(problem)}")
            return exitcodes.BAD_INPUT
        sinks.append(StoreSink(args.store, warn=_err))
    collected = CollectSink()
    sinks.append(JsonLinesSink(sys.stdout) if args.json else collected)
    pipeline = Pipeline(sinks, stages=stages())
    status = exitcodes.OK
    out: Any = None
    if not args.json:
        from kexproxy.sinks.console import stdout_console

        out = stdout_console()
    everything: list[SessionRecord] = []
    read_files = 0
    try:
        for name in args.files:
            label = printable(log_label(name))
            before = len(collected.records)
            stats: LogStats | None
            try:
                stats = read_log(name, pipeline.publish, year=args.year)
                read_files += 1
            except LogFileError as exc:
                _err(f"kexproxy: {printable(str(exc))}")
                status = exitcodes.BAD_INPUT
                stats = exc.stats
            if stats is not None:
                for note in _notes(stats):
                    _err(f"kexproxy: {label}: {note}")
            records = collected.records[before:]
            if out is not None and stats is not None:
                _print_table(out, label, records)
            everything += records
    finally:
        stored = pipeline.close()
    if args.store is not None and not stored:
        # The store said how many, naming it with any password masked.
        status = exitcodes.BAD_INPUT
    if out is not None and len(args.files) > 1 and everything:
        from kexproxy.sinks.console import print_totals

        print_totals(out, everything, files=read_files)
    return status


def _notes(stats: Any) -> list[str]:
    from kexproxy.present import plural

    notes: list[str] = []
    if stats.lines and not stats.server_lines:
        notes.append(f"none of its {stats.lines:,} lines is sshd's or dropbear's")
    if stats.long_lines:
        notes.append(f"{stats.long_lines:,} lines longer than 64 KiB were cut")
    if stats.forgotten:
        notes.append(
            f"{stats.forgotten:,} connections were forgotten before their verdict (more were "
            "open at once than kexproxy keeps)"
        )
    if stats.unaddressed:
        notes.append(
            f"{plural(stats.unaddressed, 'verdict')} of sshd before 6.8 not recorded: such a line "
            'names no peer, and no "Connection from" line of the same sshd process came before '
            "it (sshd logs that at LogLevel VERBOSE)"
        )
    return notes


def _print_table(out: Any, label: str, records: list[SessionRecord]) -> None:
    from kexproxy.sinks.console import print_messages, sessions_table

    if not records:
        out.print(f"{label}: no failed negotiations or refused identifications", markup=False)
        return
    out.print(sessions_table(records, title=label, width=out.width))
    print_messages(out, records)
