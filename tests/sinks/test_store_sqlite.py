"""The SQLite engine under `SessionStore`: what only a file has (its mode, WAL, user_version).

The contract both back ends share is in test_store_postgres.py (run on each), the writer's
fault handling in test_store.py.
"""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from kexproxy.sinks.store_schema import MIGRATIONS, SCHEMA_VERSION, StoreError
from kexproxy.sinks.store_sqlite import SqliteEngine, migrate


def test_a_new_file_is_private_wal_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    engine = SqliteEngine.open(str(path), readonly=False)
    assert engine.version == SCHEMA_VERSION and not engine.broken
    engine.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    db.close()


def test_a_directory_or_a_fifo_is_refused_before_sqlite_sees_it(tmp_path: Path) -> None:
    import os

    with pytest.raises(StoreError, match="is a directory"):
        SqliteEngine.open(str(tmp_path), readonly=False)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(StoreError, match="not a regular file"):
        SqliteEngine.open(str(fifo), readonly=True)


def test_reading_goes_through_the_byte_safe_columns(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    SqliteEngine.open(path, readonly=False).close()
    raw = sqlite3.connect(path, isolation_level=None)
    migrate(raw, MIGRATIONS)  # nothing left to do
    raw.execute(
        "INSERT INTO sessions (id, source, outcome, failing, final, record) "
        "VALUES ('x', 'proxy', 'failed', '', 1, CAST(X'ff' AS TEXT))"
    )
    raw.close()
    engine = SqliteEngine.open(path, readonly=True)
    [(kind, size, data)] = engine.fetch(f"SELECT {engine.record_columns()} FROM sessions", [])
    engine.close()
    assert (kind, size, data) == ("text", 1, b"\xff")  # not decoded by the driver


def test_writers_opening_one_new_file_together_all_open_it(tmp_path: Path) -> None:
    """Six writers (as proxies started together) open one new file at once, 200 times: the
    switch to WAL, which SQLite refuses at once while another opener holds the file, is
    tried again within the busy timeout (before, some 11 rounds in 300 lost an opener)."""
    failed: list[str] = []
    for n in range(200):
        path = str(tmp_path / f"{n}.db")
        start = threading.Barrier(6)

        def open_it(path: str = path, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                SqliteEngine.open(path, readonly=False).close()
            except StoreError as exc:
                failed.append(str(exc))

        threads = [threading.Thread(target=open_it) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failed == []
