"""The SQLite back end of the session store: one file, the embedded default.

WAL mode lets other processes read while the proxy writes. The schema version is
``PRAGMA user_version``; `migrate` brings an older file up to date under the write lock,
and a file from a newer kexproxy is refused rather than guessed at.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Sequence
from typing import Final

from kexproxy.sinks.store_reading import BUSY_TIMEOUT_MS, connect_readonly, record_columns
from kexproxy.sinks.store_schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Row,
    StoreError,
    split_statements,
    upsert_sql,
)

_UPSERT = upsert_sql("?")

#: Seconds between two tries to switch a new store to WAL while another opener holds it.
_LOCKED_PAUSE: Final = 0.02


#: Free bytes under which a store's disk is called full (SQLite writes in pages of 4 KiB and
#: grows its -shm by 32 KiB).
_NEARLY_FULL: Final = 64 * 1024


def with_space(exc: sqlite3.Error, name: str) -> str:
    """SQLite's words for `exc`, and when the store's disk has no room left, that too: a full
    disk shows as "disk I/O error" when the -shm file cannot grow, not only as "database or
    disk is full"."""
    text = str(exc)
    if "full" in text:
        return text
    try:
        disk = os.statvfs(os.path.dirname(os.path.abspath(name)))
    except OSError:
        return text
    free = (disk.f_bfree if os.geteuid() == 0 else disk.f_bavail) * disk.f_frsize
    return f"{text} (its disk is full)" if free < _NEARLY_FULL else text


class SqliteEngine:
    """An open store file (see `store_schema.Engine`)."""

    def __init__(self, connection: sqlite3.Connection, name: str) -> None:
        self._db = connection
        self.name = name
        self.note: str | None = None

    @classmethod
    def open(cls, name: str, *, readonly: bool) -> SqliteEngine:
        """Opens (and for writing creates, mode 0600, and migrates) the store file `name`."""
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
            engine = cls(db, name)
            engine.note = note
            engine._prepare(readonly=readonly)
        except sqlite3.Error as exc:
            raise StoreError(
                f"{name}: cannot use the session store: {with_space(exc, name)}"
            ) from exc
        except OSError as exc:
            raise StoreError(
                f"{name}: cannot open the session store: {exc.strerror or exc}"
            ) from exc
        return engine

    def _prepare(self, *, readonly: bool) -> None:
        version = self.version
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.name}: the store has schema version {version}, newer than this "
                f"kexproxy's {SCHEMA_VERSION}; upgrade kexproxy to read it"
            )
        if readonly:
            if version < SCHEMA_VERSION:
                if version == 0 and not self._has_table():
                    raise StoreError(f"{self.name}: not a kexproxy session store (or an empty one)")
                raise StoreError(
                    f"{self.name}: the store has schema version {version}; run kexproxy proxy "
                    "once on it to upgrade it"
                )
            return
        # Switching a new file to WAL takes an exclusive lock, and SQLite answers "database
        # is locked" at once, without its busy timeout, when another connection opening the
        # same new file holds a lock meanwhile (several proxies started together on one
        # store): tried again until the busy timeout has passed, as any other lock waits.
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(_LOCKED_PAUSE)
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

    @property
    def broken(self) -> bool:
        # A file has no connection to lose: every failure is worth retrying as it is.
        return False

    def upsert(self, rows: Sequence[Row]) -> None:
        """Writes `rows` in one transaction (one commit for a whole batch)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(_UPSERT, rows)
            # A full disk fails the COMMIT (WAL frames are written then) and SQLite may
            # or may not roll back by itself: left open, the transaction would make every
            # later BEGIN fail, and the store would never be written again.
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(with_space(exc, self.name)) from exc
            raise

    def fetch(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        try:
            return self._db.execute(sql, list(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.name}: cannot read the session store: {exc}") from exc

    def record_columns(self) -> str:
        return record_columns()

    def close(self) -> None:
        self._db.close()


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
            for statement in split_statements(migrations[number]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number + 1}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return len(migrations)
