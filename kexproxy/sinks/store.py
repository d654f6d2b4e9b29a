"""The session store: SQLite, the embedded default, shared by the proxy, `sessions` and the TUI.

One row per session: the full record as JSON (the only source of truth) plus indexed
columns copied from it for filtering. WAL mode lets other processes read while the proxy
writes. The schema is versioned with ``PRAGMA user_version``; `MIGRATIONS` brings any
older file up to date, and a file from a newer kexproxy is refused rather than guessed at.

`StoreSink` is the proxy's writer: it turns records into rows in the caller's thread and
writes them from its own thread in batches, so a slow or full disk never holds up the relay.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from kexproxy.core.record import SessionRecord
from kexproxy.sinks.jsonl import dumps
from kexproxy.sinks.store_reading import (
    BUSY_TIMEOUT_MS,
    connect_readonly,
    decode_record,
    record_columns,
)
from kexproxy.worker import Worker

#: Each entry upgrades the schema by one version; ``user_version`` counts those applied.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        started TEXT,
        ended TEXT,
        outcome TEXT NOT NULL,
        client_ip TEXT,
        client_port INTEGER,
        server_ip TEXT,
        server_port INTEGER,
        client_banner TEXT,
        server_banner TEXT,
        failing TEXT NOT NULL,
        hassh TEXT,
        hassh_server TEXT,
        final INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX sessions_started ON sessions (started);
    CREATE INDEX sessions_outcome ON sessions (outcome, started);
    CREATE INDEX sessions_client ON sessions (client_ip, started);
    CREATE INDEX sessions_server ON sessions (server_ip, server_port, started);
    CREATE INDEX sessions_hassh ON sessions (hassh);
    """,
    # TLS (issue 12): rows stored before it are SSH; the fingerprints and the name the
    # client asked for are columns so that a store of many sites can be searched by them.
    """
    ALTER TABLE sessions ADD COLUMN protocol TEXT NOT NULL DEFAULT 'ssh';
    ALTER TABLE sessions ADD COLUMN ja3 TEXT;
    ALTER TABLE sessions ADD COLUMN ja4 TEXT;
    ALTER TABLE sessions ADD COLUMN server_name TEXT;
    CREATE INDEX sessions_protocol ON sessions (protocol, started);
    CREATE INDEX sessions_ja3 ON sessions (ja3);
    CREATE INDEX sessions_ja4 ON sessions (ja4);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
#: How long the writer lets records gather before a transaction (visibility delay).
BATCH_DELAY = 0.05
#: Rows per transaction, the pause between transactions of one batch, and the batch size
#: past which the writer stops pausing (see `StoreSink._run`).
WRITE_SLICE = 8
SLICE_PAUSE = 0.001
BEHIND = 512
#: Sessions waiting for the writer thread; past this (a stuck disk) the oldest are dropped.
MAX_PENDING = 10_000
#: Seconds between two tries of a batch the store refused (a full disk, a lock).
RETRY_PAUSE = 0.5
#: Seconds `StoreSink.close` goes on trying a store that refuses writes before giving up.
CLOSE_RETRY_TIMEOUT = 5.0

_COLUMNS = (
    "id",
    "source",
    "started",
    "ended",
    "outcome",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "client_banner",
    "server_banner",
    "failing",
    "hassh",
    "hassh_server",
    "final",
    "record",
    "protocol",
    "ja3",
    "ja4",
    "server_name",
)
_UPSERT = (
    f"INSERT INTO sessions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "id")
    # A late non-final update (a refresh queued before the end) never undoes the final one.
    + " WHERE sessions.final = 0 OR excluded.final = 1"
)

Row = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A record as stored, and whether it is final (its session ended) or still live."""

    record: SessionRecord
    final: bool


class StoreError(Exception):
    """The store cannot be opened or read; the message is fit for the command line."""


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


class SessionStore:
    """One open store file: migrations on open, upserts, and the queries the commands need."""

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self._db = connection
        self.path = path
        #: Rows whose record could not be read, left out of the results, and the first reason.
        self.damaged = 0
        self.damage: str | None = None
        #: What a reader should know about how the file was opened (see `connect_readonly`).
        self.note: str | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, readonly: bool = False) -> SessionStore:
        """Opens (and for writing creates, mode 0600, and migrates) the store at `path`."""
        name = os.fspath(path)
        if os.path.isdir(name):
            raise StoreError(f"{name}: is a directory, not a session store")
        if os.path.exists(name) and not os.path.isfile(name):
            # A FIFO or a device: SQLite would wait on it for ever.
            raise StoreError(f"{name}: not a regular file, so not a session store")
        try:
            if readonly:
                if not os.path.exists(name):
                    raise StoreError(f"{name}: no session store here (kexproxy proxy creates it)")
                db, note = connect_readonly(name)
            else:
                # Created before SQLite sees it, so it is never readable by others, even briefly;
                # SQLite gives the -wal and -shm files the same mode.
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                os.close(fd)
                db = sqlite3.connect(name, check_same_thread=False, isolation_level=None)
                db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                note = None
            store = cls(db, name)
            store.note = note
            store._prepare(readonly=readonly)
        except sqlite3.Error as exc:
            raise StoreError(f"{name}: cannot use the session store: {exc}") from exc
        except OSError as exc:
            raise StoreError(
                f"{name}: cannot open the session store: {exc.strerror or exc}"
            ) from exc
        return store

    def _prepare(self, *, readonly: bool) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: the store has schema version {version}, newer than this "
                f"kexproxy's {SCHEMA_VERSION}; upgrade kexproxy to read it"
            )
        if readonly:
            if version < SCHEMA_VERSION:
                if version == 0 and not self._has_table():
                    raise StoreError(f"{self.path}: not a kexproxy session store (or an empty one)")
                raise StoreError(
                    f"{self.path}: the store has schema version {version}; run kexproxy proxy "
                    "once on it to upgrade it"
                )
            return
        self._db.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL syncs at checkpoints only: a power cut may lose the last
        # records, never the file; the relay does not wait on fsync per session.
        self._db.execute("PRAGMA synchronous = NORMAL")
        migrate(self._db, MIGRATIONS)

    def _has_table(self) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sessions'"
        ).fetchone()
        return row is not None

    @property
    def version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def put(self, record: SessionRecord, *, final: bool) -> None:
        self.put_rows([row_of(record, final=final)])

    def put_rows(self, rows: Sequence[Row]) -> None:
        """Writes `rows` in one transaction (one commit for a whole batch)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(_UPSERT, rows)
            # A full disk fails the COMMIT (WAL frames are written then) and SQLite may
            # or may not roll back by itself: left open, the transaction would make every
            # later BEGIN fail, and the store would never be written again.
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise

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
        sql = f"SELECT {record_columns()}, final FROM sessions"
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
            f"SELECT {record_columns()}, final FROM sessions WHERE id LIKE ? ESCAPE '\\' "
            "ORDER BY id LIMIT ?",
            [escaped + "%", limit],
        )

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
        try:
            rows = self._db.execute(sql, list(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read the session store: {exc}") from exc
        out = []
        for kind, size, raw, final in rows:
            try:
                out.append(StoredSession(decode_record(kind, size, raw), bool(final)))
            except (ValueError, TypeError) as exc:
                # One damaged row must not hide the others: it is counted and said once.
                self.damaged += 1
                self.damage = self.damage or str(exc)
        return out

    def close(self) -> None:
        self._db.close()


def store_problem(path: str) -> str | None:
    """Why the store at `path` cannot be used (a directory, not a store, too new), or None.

    Opened and closed once at start: a front end must not begin with a store it could
    never write. A store that fails later (a full disk) is reported and retried.
    """
    try:
        SessionStore.open(path).close()
    except StoreError as exc:
        return str(exc)
    return None


def migrate(db: sqlite3.Connection, migrations: Sequence[str]) -> int:
    """Applies the migrations the file has not had yet, each in its own transaction."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    for number in range(version, len(migrations)):
        db.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            current = int(db.execute("PRAGMA user_version").fetchone()[0])
            if current > number:
                db.execute("ROLLBACK")
                continue
            for statement in _statements(migrations[number]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number + 1}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return len(migrations)


def _statements(script: str) -> list[str]:
    """A migration script split at semicolons (executescript would commit on its own)."""
    return [s.strip() for s in script.split(";") if s.strip()]


class StoreSink:
    """The `Sink` that writes to a store from a thread of its own, in batches.

    `update` never blocks: it renders the row and leaves it for the writer (a `Worker`),
    which keeps only the newest row per session. A batch that cannot be written (a full
    disk, a locked or missing file) is kept and tried again after a pause, so that every
    record reaches the store once space comes back; rows are dropped only when more than
    `max_pending` sessions wait, or when the store still fails at close. Those sessions are
    counted (`unstored`) so that nobody is told they are in the store when they are not.
    Trouble is reported once through `warn`, and its recovery once.
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
        self._path = os.fspath(path)
        self._warn = warn
        self._retry_pause = retry_pause
        self._close_timeout = close_timeout
        self._failed = False
        self._said_failed = False
        self._said_recovered = False
        self._said_dropped = False
        self._closing = False
        #: Sessions whose newest row was dropped or could not be written, by id.
        self._lost: set[str] = set()
        self._lost_lock = threading.Lock()
        self.written = 0
        self._store: SessionStore | None = None
        try:
            self._store = SessionStore.open(self._path)
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
                    time.sleep(self._retry_pause)
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
                self._store = SessionStore.open(self._path)
            self._store.put_rows(rows)
        except (sqlite3.Error, StoreError, OSError) as exc:
            self._report(f"{self._path}: cannot write the session store: {exc}")
            return False
        self.written += len(rows)
        with self._lost_lock:
            self._lost.difference_update(str(row[0]) for row in rows)
        if self._failed:
            self._failed = False
            if not self._said_recovered:
                self._said_recovered = True
                self._warn(f"kexproxy: {self._path}: writing the session store again")
        return True

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
