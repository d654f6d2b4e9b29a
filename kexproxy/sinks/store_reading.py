"""Reading a session store safely: read-only connections, and rows decoded one by one.

A reader must never be stopped by the file it reads: not by a read-only mount (a WAL
store's reader wants to create the -shm file), and not by one damaged row (SQLite's driver
decodes TEXT while fetching, so a row that is not UTF-8 fails the whole query). Rows are
fetched as bytes and decoded here, each failure a `ValueError` that names the damage.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from kexproxy.core.record import SessionRecord

#: How long a connection waits for another process's write lock before giving up.
BUSY_TIMEOUT_MS = 5000
#: Characters of one stored record past which the row is taken for damage and not read: a
#: record is bounded by `kexproxy.core.limits` (names kept, notes, KEX bytes) to a few MiB,
#: and a reader must not take gigabytes because something else wrote a giant row.
MAX_RECORD_CHARS = 64 * 1024 * 1024


#: What a read-only connection says when it cannot make the store's -shm file.
_NO_SHARED_MEMORY = frozenset(
    {
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_IOERR_SHMOPEN,
        sqlite3.SQLITE_IOERR_SHMSIZE,
        sqlite3.SQLITE_IOERR_SHMMAP,
    }
)


def connect_readonly(name: str) -> tuple[sqlite3.Connection, str | None]:
    """A connection that reads the store without ever writing, and a note for the reader.

    A WAL store is read through its -shm file, which a reader creates when it is missing:
    on a read-only mount (or in a directory the reader may not write) it cannot, and
    ``mode=ro`` fails with "unable to open database file"; on a full disk it cannot size
    it, and fails with "disk I/O error" (SQLITE_IOERR_SHMSIZE: a store on a full tmpfs,
    its writer gone). Then the file is opened ``immutable``: SQLite skips the locks and the
    -shm. Writes still in a -wal file are not read that way, and the note says so.
    """
    base = Path(name).resolve().as_uri()
    db = sqlite3.connect(base + "?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode not in _NO_SHARED_MEMORY:
            raise
        db.close()
        db = sqlite3.connect(
            base + "?immutable=1", uri=True, check_same_thread=False, isolation_level=None
        )
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error:
            db.close()
            raise exc from None
        try:
            unread = os.path.getsize(name + "-wal")
        except OSError:
            unread = 0
        if unread:
            return db, (
                f"{name}: read as it is on disk: its write-ahead log ({unread} bytes, "
                "the latest writes) cannot be read where the file cannot be written or the "
                "disk is full"
            )
    return db, None


def record_columns(column: str = "record") -> str:
    """The SELECT terms that read a stored record as `decode_record` takes it: its type, its
    size, and its bytes when it is not too big.

    Bytes, not text: SQLite's driver decodes TEXT while fetching, so one row that is not
    UTF-8 would fail the whole query before any row could be looked at.
    """
    return (
        f"typeof({column}), length({column}), "
        f"CASE WHEN length({column}) <= {int(MAX_RECORD_CHARS)} THEN CAST({column} AS BLOB) END"
    )


def decode_record(kind: str, size: int | None, raw: bytes | None) -> SessionRecord:
    """The record in a row read with `record_columns`; ValueError says what is wrong with it."""
    if kind != "text":
        # kexproxy writes text only: a BLOB, a number or NULL came from something else.
        what = {"null": "NULL", "blob": "a BLOB"}.get(kind, "a number")
        raise ValueError(f"the stored record is {what}, not text")
    if raw is None:
        raise ValueError(f"the stored record has {size} characters, more than a record can hold")
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"the stored record is not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError("the stored record is JSON nested too deeply") from None
    return SessionRecord.from_dict(data)
