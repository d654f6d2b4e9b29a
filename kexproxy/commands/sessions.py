"""``kexproxy sessions`` and ``kexproxy show``: what the proxy stored, as a table, JSON lines or one record."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import TYPE_CHECKING, Any

from kexproxy import exitcodes
from kexproxy.core.record import rfc3339
from kexproxy.core.textsafe import printable

if TYPE_CHECKING:
    from kexproxy.filtering import Filter
    from kexproxy.sinks.store import SessionStore, StoredSession

SESSIONS_EPILOG = """\
examples:
  kexproxy sessions                         the newest sessions in ./kexproxy.db
  kexproxy sessions --outcome failed --since 1h
  kexproxy sessions --store postgresql://reader@db/fleet
      the sessions of a PostgreSQL store that several proxies and sniffers write
  kexproxy sessions --outcome fail,abort    more than one outcome; a prefix will do
  kexproxy sessions --filter 'csw:putty list:kex'
      the dashboard's filter language (see its help, ?): PuTTY clients that found no kex;
      offers:NAME finds an algorithm either side offered
  kexproxy sessions --json --limit 0 | jq -r .hassh | sort | uniq -c
  kexproxy show 4de92dfa                    one record in full (an id prefix is enough)

The store is read while the proxy writes it: live sessions appear when they are accepted
(outcome in_progress), again once their handshake's outcome is known, and are updated when
they end. Newest first.

exit status: 0 listed (possibly nothing); 2 the store is missing or unreadable, or bad
arguments (a filter or outcome that does not parse: one line saying what to type).
"""

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DEFAULT_LIMIT = 50


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "sessions",
        help="list the sessions the proxy stored",
        description="List the sessions in a kexproxy session store, newest first.",
        epilog=SESSIONS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _store_argument(parser)
    parser.add_argument(
        "--json", action="store_true", help="one JSON record per line on stdout, nothing else"
    )
    parser.add_argument(
        "--outcome",
        metavar="OUTCOME[,OUTCOME]",
        help="only sessions with these outcomes: negotiated, failed, aborted, incomplete, "
        "not_ssh, in_progress (a prefix will do; a comma gives more than one)",
    )
    parser.add_argument(
        "--filter",
        metavar="EXPR",
        help="only sessions that match EXPR, the dashboard's filter language, e.g. "
        "'outcome=failed offers:hmac-md5', 'ssw:dropbear !list:kex'",
    )
    parser.add_argument(
        "--since",
        metavar="WHEN",
        type=since_time,
        help="only sessions started since: a duration back from now (30s, 10m, 2h, 7d) "
        "or an RFC 3339 UTC time",
    )
    parser.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N sessions (default {DEFAULT_LIMIT}; 0 for all)",
    )
    parser.set_defaults(run=run_sessions)

    show = sub.add_parser(
        "show",
        help="print one stored session in full (JSON)",
        description="Print one stored session record in full, as pretty JSON.",
    )
    _store_argument(show)
    show.add_argument("id", metavar="ID", help="the session's id, or a unique prefix of it")
    show.set_defaults(run=run_show)


def _outcomes(text: str | None) -> frozenset[str] | None:
    """`--outcome`, as the dashboard's ``outcome:`` takes it (prefixes, commas); raises
    FilterError saying what to type."""
    if text is None:
        return None
    from kexproxy.filtering import FilterError, parse_filter

    terms = parse_filter(f"outcome:{text.strip()}").terms
    if len(terms) != 1:
        raise FilterError(f"outcome:{text}: one word, e.g. --outcome failed,aborted")
    return terms[0].outcomes


def _store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default="kexproxy.db",
        metavar="FILE|URL",
        help="the session store: a SQLite file (default ./kexproxy.db) or a "
        "postgresql://user@host:port/db URL",
    )


def since_time(text: str, *, now: float | None = None) -> str:
    """`--since`: a duration back from now, or an RFC 3339 time, as the store compares times."""
    match = _DURATION.match(text.strip())
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        when = rfc3339((time.time() if now is None else now) - seconds)
        if when is None:
            raise argparse.ArgumentTypeError(f"{text!r} reaches back too far")
        return when
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration (10m, 2h, 7d) nor an RFC 3339 time"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    result = rfc3339(parsed.timestamp())
    if result is None:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range")
    return result


#: More than any store holds; SQLite's integers stop at 2**63 - 1.
MAX_LIMIT = 10**12


def _limit(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    if int(text) > MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"at most {MAX_LIMIT} (or 0 for all)")
    return int(text)


def _open(path: str) -> SessionStore:
    from kexproxy.sinks.store import SessionStore

    return SessionStore.open(path, readonly=True)


def run_sessions(args: argparse.Namespace) -> int:
    from kexproxy.filtering import FilterError, parse_filter
    from kexproxy.sinks.jsonl import dumps
    from kexproxy.sinks.store import StoreError

    try:
        outcomes = _outcomes(args.outcome)
    except FilterError as exc:
        print(f"kexproxy: --outcome: {printable(str(exc))}", file=sys.stderr)
        return exitcodes.BAD_INPUT
    try:
        keep = parse_filter(args.filter) if args.filter is not None else None
    except FilterError as exc:
        print(f"kexproxy: --filter: {printable(str(exc))}", file=sys.stderr)
        return exitcodes.BAD_INPUT
    try:
        store = _open(args.store)
        try:
            rows = _select(store, outcomes, keep, since=args.since, limit=args.limit or None)
        finally:
            store.close()
    except StoreError as exc:
        print(f"kexproxy: {exc}", file=sys.stderr)
        return exitcodes.BAD_INPUT
    damaged = say_damage(store)
    if args.json:
        for stored in rows:
            sys.stdout.write(dumps(stored.record) + "\n")
        sys.stdout.flush()
    else:
        from kexproxy.sinks.console import stdout_console

        out = stdout_console()
        if rows:
            out.print(sessions_table(rows, width=out.width))
        else:
            out.print("no sessions", markup=False)
    return exitcodes.BAD_INPUT if damaged and not rows else exitcodes.OK


def _select(
    store: SessionStore,
    outcomes: frozenset[str] | None,
    keep: Filter | None,
    *,
    since: str | None,
    limit: int | None,
) -> list[StoredSession]:
    """The newest sessions that pass the outcome(s) and the filter, at most `limit`.

    One outcome and no filter stay in SQL; otherwise every session since `since` is read
    and the limit applies to what matches, so that `--limit 10` still means ten shown.
    """
    if keep is None and (outcomes is None or len(outcomes) == 1):
        one = next(iter(outcomes)) if outcomes else None
        return store.sessions(outcome=one, since=since, limit=limit)
    from kexproxy.filtering import Subject

    rows = [
        stored
        for stored in store.sessions(since=since)
        if (outcomes is None or stored.record.outcome in outcomes)
        and (keep is None or keep.matches(Subject.of(stored.record)))
    ]
    return rows[:limit] if limit is not None else rows


def say_damage(store: SessionStore) -> bool:
    """One line on stderr when rows of the store could not be read; whether there were any.

    Before it, the store's note, if opening it had one (a read-only mount hiding its log).
    """
    if store.note:
        print(f"kexproxy: {printable(store.note)}", file=sys.stderr)
    if store.damaged:
        count = store.damaged
        print(
            f"kexproxy: {store.path}: {count} damaged record{'s' * (count != 1)} left out "
            f"({store.damage})",
            file=sys.stderr,
        )
    return bool(store.damaged)


def sessions_table(rows: list[StoredSession], *, width: int = 200) -> Any:
    """The listing: id first, so that `kexproxy show ID` can follow; two lines per session."""
    from rich.text import Text

    from kexproxy.core.textsafe import printable
    from kexproxy.sinks.console import stacked_cells, stacked_table

    software = width >= 100  # below, the software column goes (`show` has it)
    table = stacked_table("id\nstarted (UTC)", software=software)
    for index, stored in enumerate(rows, 1):
        record = stored.record
        started = (record.started or record.ended or "-").replace("T", " ")[:19]
        ident = Text(printable(record.id), style="bold")
        ident.append(f"\n{printable(started)}", style="dim")
        table.add_row(
            ident,
            *stacked_cells(record, live=not stored.final, software=software),
            end_section=index < len(rows),
        )
    return table


def run_show(args: argparse.Namespace) -> int:
    from kexproxy.sinks.store import StoreError

    try:
        store = _open(args.store)
        try:
            found = store.find_one(args.id)
        finally:
            store.close()
    except StoreError as exc:
        print(f"kexproxy: {exc}", file=sys.stderr)
        return exitcodes.BAD_INPUT
    if store.note:
        print(f"kexproxy: {printable(store.note)}", file=sys.stderr)
    if isinstance(found, str):
        print(f"kexproxy: {printable(found)}", file=sys.stderr)
        return exitcodes.BAD_INPUT
    # ensure_ascii: a stranger's banner cannot put raw control characters on the terminal.
    sys.stdout.write(json.dumps(found.record.to_dict(), indent=2, ensure_ascii=True) + "\n")
    return exitcodes.OK
