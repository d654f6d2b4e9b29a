"""The session store: one interface (`SessionStore`) over two back ends, and its writer.

A store is named by a path (SQLite, `store_sqlite`: the embedded default, one file) or by a
``postgresql://`` / ``postgres://`` URL (PostgreSQL, `store_postgres`: one database that
many proxies and sniffers share); `SessionStore.open` picks the back end from the name.
Both keep one row per session: the full record as JSON (the only source of truth) plus
indexed columns copied from it for filtering, built by the same migrations
(`store_schema`). Queries are written once, here, and run on either engine.

`StoreSink` is the proxy's writer: it turns records into rows in the caller's thread and
writes them from its own thread in batches, so a slow disk or a lost database connection
never holds up the relay. A lost connection is dropped and made anew, with a growing pause.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from kexproxy.core.record import SessionRecord
from kexproxy.sinks.jsonl import dumps
from kexproxy.sinks.store_reading import decode_record
from kexproxy.sinks.store_schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Engine,
    Row,
    StoreError,
    display_name,
    is_postgres_url,
)
from kexproxy.sinks.store_sqlite import SqliteEngine, migrate
from kexproxy.worker import Worker

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SessionStore",
    "StoreError",
    "StoreSink",
    "StoredSession",
    "display_name",
    "is_postgres_url",
    "migrate",
    "row_of",
    "store_problem",
]

#: How long the writer lets records gather before a transaction (visibility delay).
BATCH_DELAY = 0.05
#: Rows per transaction, the pause between transactions of one batch, and the batch size
#: past which the writer stops pausing (see `StoreSink._run`).
WRITE_SLICE = 8
SLICE_PAUSE = 0.001
BEHIND = 512
#: Sessions waiting for the writer thread; past this (a stuck disk) the oldest are dropped.
MAX_PENDING = 10_000
#: Seconds between two tries of a batch the store refused (a full disk, a lock, a database
#: that is down); each further failure in a row doubles it, up to `MAX_RETRY_PAUSE`.
RETRY_PAUSE = 0.5
MAX_RETRY_PAUSE: Final = 4.0
#: Seconds `StoreSink.close` goes on trying a store that refuses writes before giving up.
CLOSE_RETRY_TIMEOUT = 5.0
#: Ids per query in `SessionStore.by_ids` (SQLite's variable limit is 32766).
IDS_PER_QUERY: Final = 500


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A record as stored, and whether it is final (its session ended) or still live."""

    record: SessionRecord
    final: bool


def row_of(record: SessionRecord, *, final: bool) -> Row:
    """The record as a row: indexed copies of its fields, then the record's JSON itself.

    `started` falls back to `ended` so that every row sorts and filters by time.
    """
    client, server = record.client, record.server
    return (
        record.id,
        record.source,
        record.started or record.ended,
        record.ended,
        record.outcome,
        client.get("ip"),
        client.get("port"),
        server.get("ip"),
        server.get("port"),
        record.client_banner,
        record.server_banner,
        ",".join(record.failing_lists),
        record.hassh,
        record.hassh_server,
        1 if final else 0,
        dumps(record),
        record.protocol,
        record.ja3,
        record.ja4,
        _server_name(record),
    )


def _server_name(record: SessionRecord) -> str | None:
    hello = record.client_hello
    name = hello.get("server_name") if isinstance(hello, dict) else None
    return name if isinstance(name, str) else None


def open_engine(target: str, *, readonly: bool) -> Engine:
    """The back end `target` names: a PostgreSQL URL, or else a SQLite file's path."""
    if not is_postgres_url(target):
        return SqliteEngine.open(target, readonly=readonly)
    try:
        from kexproxy.sinks.store_postgres import PostgresEngine
    except ImportError:
        raise StoreError(
            f"{display_name(target)}: a PostgreSQL store needs psycopg 3: "
            "pip install 'kexproxy[postgres]'"
        ) from None
    return PostgresEngine.open(target, readonly=readonly)


class SessionStore:
    """One open store: migrations on open, upserts, and the queries the commands need."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        #: The store's name as messages show it (a URL's password masked).
        self.path = engine.name
        #: Rows whose record could not be read, left out of the results, and the first reason.
        self.damaged = 0
        self.damage: str | None = None
        #: What a reader should know about how the store was opened (see `connect_readonly`).
        self.note: str | None = engine.note

    @classmethod
    def open(cls, target: str | os.PathLike[str], *, readonly: bool = False) -> SessionStore:
        """Opens the store `target` names (for writing: creates and migrates it)."""
        return cls(open_engine(os.fspath(target), readonly=readonly))

    @property
    def version(self) -> int:
        return self._engine.version

    @property
    def broken(self) -> bool:
        """The connection is lost: only a store opened anew can be written."""
        return self._engine.broken

    def put(self, record: SessionRecord, *, final: bool) -> None:
        self.put_rows([row_of(record, final=final)])

    def put_rows(self, rows: Sequence[Row]) -> None:
        """Writes `rows` in one transaction (one commit for a whole batch)."""
        self._engine.upsert(rows)

    def sessions(
        self,
        *,
        outcome: str | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> list[StoredSession]:
        """Stored sessions, newest first; `since` is an RFC 3339 UTC time as records write it."""
        clauses: list[str] = []
        params: list[object] = []
        if outcome is not None:
            clauses.append("outcome = ?")
            params.append(outcome)
        if since is not None:
            clauses.append("started >= ?")
            params.append(since)
        sql = f"SELECT {self._engine.record_columns()}, final FROM sessions"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY started DESC, id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self._records(sql, params)

    def get(self, prefix: str, *, limit: int = 2) -> list[StoredSession]:
        """Sessions whose id starts with `prefix` (a whole id matches itself only), at most
        `limit` of them: two tell a unique prefix from an ambiguous one."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return self._records(
            f"SELECT {self._engine.record_columns()}, final FROM sessions "
            "WHERE id LIKE ? ESCAPE '\\' ORDER BY id LIMIT ?",
            [escaped + "%", limit],
        )

    def by_ids(self, ids: Sequence[str]) -> list[StoredSession]:
        """The sessions with these whole ids, in the order of `ids` (those not found, or
        damaged and counted, left out)."""
        found: dict[str, StoredSession] = {}
        for start in range(0, len(ids), IDS_PER_QUERY):
            chunk = list(ids[start : start + IDS_PER_QUERY])
            marks = ",".join("?" * len(chunk))
            for stored in self._records(
                f"SELECT {self._engine.record_columns()}, final FROM sessions "
                f"WHERE id IN ({marks})",
                chunk,
            ):
                found[stored.record.id] = stored
        return [found[i] for i in ids if i in found]

    def find_one(self, ident: str) -> StoredSession | str:
        """The one session `ident` (an id or a unique prefix) names, or what to tell the user."""
        if not ident.strip():
            return "give a session id (or the start of one)"
        found = self.get(ident, limit=6)
        if len(found) > 1:
            ids = ", ".join(s.record.id for s in found[:5]) + (", ..." if len(found) > 5 else "")
            return f"{ident!r} matches more than one session ({ids}); give more of the id"
        if not found:
            if self.damaged:
                return f"the stored record {ident!r} is damaged ({self.damage})"
            return f"no session {ident!r} in {self.path}"
        return found[0]

    def _records(self, sql: str, params: Iterable[object]) -> list[StoredSession]:
        out = []
        for kind, size, raw, final in self._engine.fetch(sql, list(params)):
            try:
                out.append(StoredSession(decode_record(kind, size, raw), bool(final)))  # type: ignore[arg-type]
            except (ValueError, TypeError) as exc:
                # One damaged row must not hide the others: it is counted and said once.
                self.damaged += 1
                self.damage = self.damage or str(exc)
        return out

    def close(self) -> None:
        self._engine.close()


def store_problem(target: str) -> str | None:
    """Why the store `target` names cannot be used (a directory, not a store, too new, a
    database that refuses us), or None.

    Opened and closed once at start: a front end must not begin with a store it could
    never write. A store that fails later (a full disk, a lost connection) is retried.
    """
    try:
        SessionStore.open(target).close()
    except StoreError as exc:
        return str(exc)
    return None


class StoreSink:
    """The `Sink` that writes to a store from a thread of its own, in batches.

    `update` never blocks: it renders the row and leaves it for the writer (a `Worker`),
    which keeps only the newest row per session. A batch that cannot be written (a full
    disk, a locked or missing file) is kept and tried again after a pause, so that every
    record reaches the store once space comes back; rows are dropped only when more than
    `max_pending` sessions wait, or when the store still fails at close. Those sessions are
    counted (`unstored`) so that nobody is told they are in the store when they are not.
    A lost database connection is closed and opened anew at the next try; the pause between
    tries doubles while they fail, up to `MAX_RETRY_PAUSE`. Trouble is reported once
    through `warn`, and its recovery once.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        warn: Callable[[str], None],
        max_pending: int = MAX_PENDING,
        retry_pause: float = RETRY_PAUSE,
        close_timeout: float = CLOSE_RETRY_TIMEOUT,
    ) -> None:
        self._target = os.fspath(path)
        #: The store's name in messages: a URL's password never shows.
        self._path = display_name(self._target)
        self._warn = warn
        self._retry_pause = retry_pause
        self._close_timeout = close_timeout
        self._failed = False
        self._said_failed = False
        self._said_recovered = False
        self._said_dropped = False
        self._closing = False
        #: Set by `close`, so that a pause between tries ends at once.
        self._wake = threading.Event()
        self._failures = 0
        #: Sessions whose newest row was dropped or could not be written, by id.
        self._lost: set[str] = set()
        self._lost_lock = threading.Lock()
        self.written = 0
        self._store: SessionStore | None = None
        try:
            self._store = SessionStore.open(self._target)
        except StoreError as exc:
            self._report(str(exc))
        # Rows are rendered (the record's JSON) by the caller, one at a time as records come:
        # rendering a whole batch at once in the writer held the interpreter for
        # milliseconds when the caller shares it with a relay (setup p99 doubled).
        self._worker: Worker[Row] = Worker(
            self._write_batch,
            name="store",
            max_queued=max_pending,
            key=lambda row: row[0],  # the session's id: only its newest row waits
            gather=BATCH_DELAY,
            on_drop=self._dropped,
        )

    @property
    def healthy(self) -> bool:
        return self._store is not None and not self._failed

    @property
    def unstored(self) -> int:
        """Sessions whose newest record is not in the store (dropped, or failed at close)."""
        with self._lost_lock:
            return len(self._lost)

    def update(self, record: SessionRecord, *, final: bool) -> None:
        self._worker.put(row_of(record, final=final))

    def close(self) -> bool:
        """Writes what is waiting (retrying for a while), then closes the file.

        False when some sessions' records could not be stored (`unstored` says how many).
        """
        self._closing = True
        self._wake.set()
        self._worker.close()
        if self._store is not None:
            self._store.close()
        if self.unstored:
            self._warn(
                f"kexproxy: {self.unstored} record{'s' * (self.unstored != 1)} could not be "
                f"stored in {self._path}"
            )
        return self.unstored == 0

    def _dropped(self, row: Row) -> None:
        with self._lost_lock:
            self._lost.add(str(row[0]))
        if not self._said_dropped:
            self._said_dropped = True
            self._warn(
                "kexproxy: the session store is not keeping up; records are being "
                "dropped from it (JSON output is not affected)"
            )

    def _write_batch(self, batch: list[Row]) -> None:
        # Small transactions with a breath between them: a burst of SQLite work takes a
        # core from the relay and the peers for milliseconds; slices keep each
        # interruption short. A writer that has fallen behind writes without pausing.
        behind = len(batch) > BEHIND
        deadline = time.monotonic() + self._close_timeout
        for start in range(0, len(batch), WRITE_SLICE):
            rows = batch[start : start + WRITE_SLICE]
            while not self._write(rows):
                if self._closing and time.monotonic() >= deadline:
                    self._give_up(batch[start:])
                    return
                if not self._closing:
                    # Kept, not lost: back in the queue behind what came meanwhile, and the
                    # rest of this batch with it, after a pause (a full disk stays full
                    # for a while; trying at once would only spin).
                    self._requeue(batch[start:])
                    self._wake.wait(self._pause())
                    return
                time.sleep(min(self._retry_pause, 0.2))
            if not behind and start + WRITE_SLICE < len(batch):
                time.sleep(SLICE_PAUSE)

    def _requeue(self, rows: list[Row]) -> None:
        for row in rows:
            # A newer row of the same session may have arrived meanwhile: it wins.
            self._worker.put_if_absent(row)

    def _give_up(self, rows: list[Row]) -> None:
        with self._lost_lock:
            self._lost.update(str(row[0]) for row in rows)

    def _write(self, rows: list[Row]) -> bool:
        try:
            if self._store is None:
                self._store = SessionStore.open(self._target)
            self._store.put_rows(rows)
        except (sqlite3.Error, StoreError, OSError) as exc:
            self._failures += 1
            self._report(f"{self._path}: cannot write the session store: {exc}")
            if self._store is not None and self._store.broken:
                # Only a new connection can write again; it is made at the next try.
                self._store.close()
                self._store = None
            return False
        self._failures = 0
        self.written += len(rows)
        with self._lost_lock:
            self._lost.difference_update(str(row[0]) for row in rows)
        if self._failed:
            self._failed = False
            if not self._said_recovered:
                self._said_recovered = True
                self._warn(f"kexproxy: {self._path}: writing the session store again")
        return True

    def _pause(self) -> float:
        """The pause before the next try: doubled by each failure in a row, bounded."""
        doubled = self._retry_pause * float(2 ** min(max(self._failures - 1, 0), 16))
        return min(doubled, max(MAX_RETRY_PAUSE, self._retry_pause))

    def _report(self, text: str) -> None:
        # Once per run, not once per failed write: a nearly full disk fails and succeeds
        # by turns, and stderr must not fill with it.
        if not self._failed:
            self._failed = True
            if not self._said_failed:
                self._said_failed = True
                self._warn(
                    f"kexproxy: {text}; records go on to the other outputs, and are kept "
                    "for the store until it can be written"
                )
