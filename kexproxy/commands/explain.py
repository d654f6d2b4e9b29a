"""``kexproxy explain``: one handshake explained in full, from a capture or the session store.

This module finds the records (a capture's connections, or a stored session by id) and runs
them through the pipeline into `kexproxy.present_report`, which lays the report out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kexproxy import exitcodes
from kexproxy.core.record import SessionRecord
from kexproxy.core.textsafe import printable
from kexproxy.present_report import report

EPILOG = """\
examples:
  kexproxy explain capture.pcap                 every SSH or TLS connection in the capture
  kexproxy explain capture.pcap --connection 2  the second one (numbered as in `read`)
  kexproxy explain 4de92dfa                     a session the proxy stored (an id prefix)
  kexproxy explain capture.pcap --policy policies/modern.toml
  kexproxy explain capture.pcap --json          the records, diagnosis included, as JSON lines

exit status: 0 explained; 1 with --policy, a session violates the policy; 2 no such
capture or session, or an unusable policy file.
"""


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "explain",
        help="explain one handshake: offers, rejections, fixes, security verdicts",
        description="Explain SSH and TLS handshakes from a capture file or the session store.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "target",
        metavar="FILE|ID",
        help="a pcap/pcapng file (- for stdin), or a stored session id (or its start)",
    )
    parser.add_argument(
        "--connection",
        "-c",
        type=int,
        metavar="N",
        help="only connection N of the capture (1-based)",
    )
    parser.add_argument(
        "--store",
        default="kexproxy.db",
        metavar="FILE|URL",
        help="the session store an ID is looked up in: a SQLite file (default ./kexproxy.db) "
        "or a postgresql:// URL",
    )
    parser.add_argument("--policy", metavar="FILE", help="also judge against a policy (TOML)")
    parser.add_argument("--json", action="store_true", help="the records as JSON lines instead")
    parser.add_argument("--pcap", metavar="OUT", help="also write the session's capture to OUT")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from kexproxy.pipeline import Pipeline, PolicyFileError, stages
    from kexproxy.sinks.console import stdout_console
    from kexproxy.sinks.jsonl import JsonLinesSink
    from kexproxy.sources.session_capture import export_capture

    try:
        steps = stages(policy=args.policy)
    except PolicyFileError as exc:
        return _fail(str(exc))

    found, problem = _records(args)
    numbers = [index for index, _record in found]
    sink = JsonLinesSink(sys.stdout) if args.json else _ReportSink(stdout_console(), numbers)
    pipeline = Pipeline([sink], stages=steps)
    for _index, record in found:
        pipeline.publish(record)
    if args.pcap and problem is None:  # once the session was explained
        problem = export_capture(args.target, [record for _i, record in found], args.pcap)
    if problem is not None:  # after whatever could be explained
        return _fail(problem)
    return exitcodes.POLICY_VIOLATION if pipeline.violations else exitcodes.OK


class _ReportSink:
    """Prints each record's report, numbered as `read` numbers the connections."""

    def __init__(self, out: Any, numbers: list[int]) -> None:
        self._out = out
        self._numbers = iter(numbers)

    def update(self, record: SessionRecord, *, final: bool) -> None:
        for part in report(record, next(self._numbers, 1)):
            self._out.print(part, soft_wrap=False)

    def close(self) -> None:
        pass


def _fail(message: str) -> int:
    print(f"kexproxy: {printable(message)}", file=sys.stderr)
    return exitcodes.BAD_INPUT


Found = list[tuple[int, SessionRecord]]


def _records(args: argparse.Namespace) -> tuple[Found, str | None]:
    """The records to explain, numbered as `read` numbers them, and what went wrong, if
    anything (a truncated capture still explains the connections before the damage)."""
    target: str = args.target
    path = Path(target)
    if target == "-" or path.exists():
        if path.is_dir():
            return [], f"{target}: is a directory, not a capture"
        return _from_capture(args, target)
    if args.connection is not None:
        return [], f"no file {target!r}: --connection N picks a connection of a capture file"
    return _from_store(args, target)


def _from_capture(args: argparse.Namespace, target: str) -> tuple[Found, str | None]:
    from kexproxy.sources.captures import analyse_capture
    from kexproxy.sources.pcap import CaptureError

    records: list[SessionRecord] = []
    problem = None
    try:
        analyse_capture(target, records.append)
    except CaptureError as exc:
        problem = str(exc)
    numbered = list(enumerate(records, 1))
    if args.connection is not None:
        if not 1 <= args.connection <= len(records):
            where = f"{target} has {len(records)} connection(s); no connection {args.connection}"
            return [], f"{where}{' (' + problem + ')' if problem else ''}"
        numbered = [numbered[args.connection - 1]]
    if not numbered and problem is None:
        problem = f"{target}: no SSH or TLS connections"
    return numbered, problem


def _from_store(args: argparse.Namespace, target: str) -> tuple[Found, str | None]:
    from kexproxy.sinks.store import SessionStore, StoreError, is_postgres_url

    if not is_postgres_url(args.store) and not Path(args.store).exists():
        return [], f"no file {target!r}, and no session store {args.store!r} to look it up in"
    try:
        store = SessionStore.open(args.store, readonly=True)
        try:
            found = store.find_one(target)
        finally:
            store.close()
    except StoreError as exc:
        return [], str(exc)
    if store.note:
        print(f"kexproxy: {printable(store.note)}", file=sys.stderr)
    if isinstance(found, str):
        return [], f"no file {target!r}, and {found}" if found.startswith("no session") else found
    return [(1, found.record)], None
