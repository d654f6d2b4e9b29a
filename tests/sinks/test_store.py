"""The SQLite session store: schema and migrations, permissions, upserts, queries, the writer."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from kexproxy.core.diagnosis import diagnosed
from kexproxy.core.record import SessionRecord
from kexproxy.sinks.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    SessionStore,
    StoreError,
    StoreSink,
    migrate,
    row_of,
)
from kexproxy.sinks.store_sqlite import SqliteEngine
from tests.builders import Transcript, client_offer, ident, kexinit, server_offer


def failed_record(session_id: str = "s-1", *, started: float | None = None) -> SessionRecord:
    t = Transcript(session_id=session_id, source="proxy")
    if started is not None:
        t.now = started
    t.client(ident("OpenSSH_9.6") + kexinit(client_offer(kex=["diffie-hellman-group1-sha1"])))
    t.server(ident("OpenSSH_9.2p1") + kexinit(server_offer()))
    t.close("client")
    return diagnosed(t.tracker.finish())


def negotiated_record(session_id: str, started: float) -> SessionRecord:
    t = Transcript(session_id=session_id, source="proxy")
    t.now = started
    t.client(ident("OpenSSH_9.6") + kexinit(client_offer()))
    t.server(ident("OpenSSH_9.2p1") + kexinit(server_offer()))
    return diagnosed(t.tracker.record())


def test_a_new_store_is_private_wal_and_at_the_current_version(tmp_path: Path) -> None:
    path = tmp_path / "kexproxy.db"
    os.umask(0o022)
    store = SessionStore.open(path)
    store.put(failed_record(), final=True)
    assert store.version == SCHEMA_VERSION == len(MIGRATIONS)
    store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    columns = {row[1] for row in db.execute("PRAGMA table_info(sessions)")}
    assert {
        "id",
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
        "record",
    } <= columns
    indexes = {row[1] for row in db.execute("PRAGMA index_list(sessions)")}
    assert {"sessions_started", "sessions_outcome", "sessions_client", "sessions_hassh"} <= indexes
    db.close()


def test_records_round_trip_with_their_indexed_columns(tmp_path: Path) -> None:
    record = failed_record()
    with_store = SessionStore.open(tmp_path / "s.db")
    with_store.put(record, final=True)
    [stored] = with_store.get(record.id)
    with_store.close()
    assert stored.final
    assert stored.record == SessionRecord.from_dict(record.to_dict())
    db = sqlite3.connect(tmp_path / "s.db")
    row = db.execute(
        "SELECT outcome, client_ip, client_port, server_port, client_banner, failing, hassh "
        "FROM sessions"
    ).fetchone()
    assert row == (
        "failed",
        record.client["ip"],
        record.client["port"],
        record.server["port"],
        "SSH-2.0-OpenSSH_9.6",
        "kex_algorithms",
        record.hassh,
    )


def test_an_update_replaces_a_live_row_and_never_undoes_the_final_one(tmp_path: Path) -> None:
    store = SessionStore.open(tmp_path / "s.db")
    live = negotiated_record("x", 1_700_000_000.0)
    final = dataclasses.replace(live, ended="2023-11-14T22:13:25.000000Z")
    store.put(live, final=False)
    [row] = store.sessions()
    assert not row.final
    store.put(final, final=True)
    store.put(live, final=False)  # a late refresh queued before the end
    [row] = store.sessions()
    assert row.final
    assert row.record.ended == final.ended
    store.close()


def test_queries_filter_by_outcome_and_time_newest_first(tmp_path: Path) -> None:
    store = SessionStore.open(tmp_path / "s.db")
    base = 1_700_000_000.0
    store.put(failed_record("old", started=base), final=True)
    store.put(negotiated_record("mid", base + 60), final=True)
    store.put(failed_record("new", started=base + 120), final=True)
    assert [s.record.id for s in store.sessions()] == ["new", "mid", "old"]
    assert [s.record.id for s in store.sessions(outcome="failed")] == ["new", "old"]
    since = "2023-11-14T22:14:00.000000Z"  # between old and mid
    assert [s.record.id for s in store.sessions(since=since)] == ["new", "mid"]
    assert [s.record.id for s in store.sessions(limit=1)] == ["new"]
    assert [s.record.id for s in store.get("n")] == ["new"]
    assert store.get("%") == []  # LIKE wildcards are literal
    store.close()


def test_a_prefix_may_match_several(tmp_path: Path) -> None:
    store = SessionStore.open(tmp_path / "s.db")
    for sid in ("abc1", "abc2"):
        store.put(failed_record(sid), final=True)
    assert len(store.get("abc")) == 2
    assert [s.record.id for s in store.get("abc2")] == ["abc2"]
    store.close()


def test_migrations_run_once_in_order_and_record_the_version(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    steps = ("CREATE TABLE a (x INTEGER)", "ALTER TABLE a ADD COLUMN y TEXT; CREATE TABLE b (z)")
    assert migrate(db, steps[:1]) == 1
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert migrate(db, steps) == 2
    assert migrate(db, steps) == 2  # nothing left to do
    assert [r[1] for r in db.execute("PRAGMA table_info(a)")] == ["x", "y"]
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2


def test_a_failing_migration_leaves_the_file_at_the_old_version(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        migrate(db, ("CREATE TABLE a (x)", "CREATE TABLE b (y); THIS IS NOT SQL"))
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'b'").fetchone() is None


def test_a_store_from_a_newer_kexproxy_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SessionStore.open(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    for readonly in (False, True):
        with pytest.raises(StoreError, match="newer than this kexproxy"):
            SessionStore.open(path, readonly=readonly)


def test_reading_a_missing_or_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no session store here"):
        SessionStore.open(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()  # reading never creates
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError):
        SessionStore.open(junk, readonly=True)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(StoreError, match="not a kexproxy session store"):
        SessionStore.open(empty, readonly=True)


def test_a_reader_sees_the_writers_rows_while_it_is_open(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    writer = SessionStore.open(path)
    reader = SessionStore.open(path, readonly=True)
    writer.put(failed_record("a"), final=False)
    assert [s.record.id for s in reader.sessions()] == ["a"]
    writer.put(failed_record("b"), final=True)
    assert {s.record.id for s in reader.sessions()} == {"a", "b"}
    reader.close()
    writer.close()


def test_the_sink_writes_in_the_background_and_flushes_on_close(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    warnings: list[str] = []
    sink = StoreSink(path, warn=warnings.append)
    for i in range(500):
        sink.update(failed_record(f"r{i:03d}"), final=True)
    sink.close()
    assert warnings == []
    store = SessionStore.open(path, readonly=True)
    assert len(store.sessions(limit=None)) == 500
    store.close()


def test_the_sink_keeps_only_the_newest_row_per_session(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    sink = StoreSink(path, warn=lambda text: None)
    live = negotiated_record("x", 1_700_000_000.0)
    for _ in range(50):
        sink.update(live, final=False)
    sink.update(dataclasses.replace(live, ended="2023-11-14T22:13:25.000000Z"), final=True)
    sink.close()
    store = SessionStore.open(path, readonly=True)
    [row] = store.sessions()
    assert row.final
    store.close()


_FILL_AND_FREEZE = r"""
import sys, time
sys.path.insert(0, sys.argv[2])
from tests.sinks.test_store import failed_record
from kexproxy.sinks.store import SessionStore, StoreSink
warnings = []
sink = StoreSink(sys.argv[1] + "/s.db", warn=warnings.append, close_timeout=1.0)
for i in range(400):  # far more than a 256 KiB file system holds
    sink.update(failed_record(f"full-{i:04d}"), final=True)
    if i % 50 == 0:
        time.sleep(0.06)
sink.close()
store = SessionStore.open(sys.argv[1] + "/s.db", readonly=True)
stored = len(store.sessions(limit=None))
print(stored, sink.unstored, "|".join(warnings))
"""


def test_a_really_full_file_system_is_reported_once(
    tmp_path: Path,
) -> None:
    """A real tmpfs of 256 KiB in a private mount namespace: SQLITE_FULL, never an exception."""
    import shutil
    import subprocess
    import sys

    from tests.peers import skip_or_fail

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        skip_or_fail("needs root and unshare for a private tmpfs")
    root = Path(__file__).resolve().parents[2]
    script = 'mount -t tmpfs -o size=256k tmpfs "$1" && "$2" -c "$3" "$1" "$4"'
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
         str(tmp_path), sys.executable, _FILL_AND_FREEZE, str(root)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if "mount:" in result.stderr or "unshare:" in result.stderr:
        skip_or_fail(f"no private tmpfs here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    stored, unstored, text = result.stdout.strip().split(" ", 2)
    said = text.split("|")
    assert [w for w in said if "cannot write" in w] == [said[0]], result.stdout
    assert "database or disk is full" in said[0]
    # Every record is in the store or counted as not: none is lost without being said.
    assert int(stored) + int(unstored) == 400 and int(unstored) > 0
    assert said[-1].endswith(f"{unstored} records could not be stored in {tmp_path}/s.db")
    assert len(said) <= 3  # and at most one "writing the session store again"


def test_a_store_in_a_missing_directory_is_reported_once_and_records_go_on(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "dir" / "s.db"
    warnings: list[str] = []
    sink = StoreSink(path, warn=warnings.append, retry_pause=0.05, close_timeout=0.3)
    for i in range(5):
        sink.update(failed_record(f"r{i}"), final=True)
        time.sleep(0.06)
    assert sink.close() is False
    assert sink.unstored == 5
    assert len(warnings) == 2 and "5 records could not be stored" in warnings[1]
    assert "cannot open the session store" in warnings[0]
    assert "records go on to the other outputs" in warnings[0]
    assert not sink.healthy


def test_a_full_disk_is_reported_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLITE_FULL from a write: reported once, the writer goes on and recovers later."""
    path = tmp_path / "s.db"
    warnings: list[str] = []
    sink = StoreSink(path, warn=warnings.append)
    real = SessionStore.put_rows
    full = {"on": True}

    def put_rows(self: SessionStore, rows: object) -> None:
        if full["on"]:
            raise sqlite3.OperationalError("database or disk is full")
        real(self, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(SessionStore, "put_rows", put_rows)
    for i in range(3):
        sink.update(failed_record(f"early{i}"), final=True)
        time.sleep(0.08)
    full["on"] = False
    sink.update(failed_record("late"), final=True)
    assert sink.close() is True
    assert sink.unstored == 0
    assert len(warnings) == 2
    assert "database or disk is full" in warnings[0]
    assert "writing the session store again" in warnings[1]
    store = SessionStore.open(path, readonly=True)
    # The records that met a full disk were kept and written once space came back.
    assert sorted(s.record.id for s in store.sessions()) == ["early0", "early1", "early2", "late"]
    store.close()


def test_a_store_that_never_recovers_counts_what_it_could_not_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.db"
    warnings: list[str] = []
    sink = StoreSink(path, warn=warnings.append, retry_pause=0.02, close_timeout=0.3)

    def put_rows(self: SessionStore, rows: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(SessionStore, "put_rows", put_rows)
    for i in range(7):
        sink.update(failed_record(f"r{i}"), final=True)
    sink.update(failed_record("r0"), final=True)  # a session updated twice counts once
    assert sink.close() is False
    assert sink.unstored == 7
    assert warnings[-1] == f"kexproxy: 7 records could not be stored in {path}"


def test_a_stuck_writer_drops_the_oldest_rows_beyond_the_bound(tmp_path: Path) -> None:
    warnings: list[str] = []
    sink = StoreSink(tmp_path / "s.db", warn=warnings.append, max_pending=3)
    with sink._worker._cond:  # hold the writer off, as a stuck disk would
        for i in range(6):
            row_id = f"r{i}"
            sink.update(failed_record(row_id), final=True)
        assert list(sink._worker._items) == ["r3", "r4", "r5"]
    assert sink.close() is False
    assert sink.unstored == 3
    assert len(warnings) == 2 and "dropped" in warnings[0]
    assert "3 records could not be stored" in warnings[1]
    store = SessionStore.open(tmp_path / "s.db", readonly=True)
    assert sorted(s.record.id for s in store.sessions()) == ["r3", "r4", "r5"]
    store.close()


def test_row_of_falls_back_to_the_end_time() -> None:
    record = dataclasses.replace(failed_record(), started=None)
    row = row_of(record, final=True)
    assert row[2] == record.ended


class _CommitFails:
    """A connection whose next COMMIT fails as a full disk's does, leaving the transaction open."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.fail_commits = 1

    @property
    def in_transaction(self) -> bool:
        return self.db.in_transaction

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql == "COMMIT" and self.fail_commits:
            self.fail_commits -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)  # type: ignore[arg-type]

    def executemany(self, sql: str, rows: object) -> sqlite3.Cursor:
        return self.db.executemany(sql, rows)  # type: ignore[arg-type]


def test_a_failed_commit_is_rolled_back_so_the_next_write_works(tmp_path: Path) -> None:
    store = SessionStore.open(tmp_path / "s.db")
    engine = store._engine
    assert isinstance(engine, SqliteEngine)
    real = engine._db
    engine._db = _CommitFails(real)  # type: ignore[assignment]
    with pytest.raises(StoreError, match="disk is full"):
        store.put(failed_record("lost"), final=True)
    assert not real.in_transaction
    store.put(failed_record("kept"), final=True)
    engine._db = real
    assert [s.record.id for s in store.sessions()] == ["kept"]
    store.close()


def test_a_store_from_before_tls_is_migrated_and_its_rows_read_as_ssh(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    migrate(db, MIGRATIONS[:1])
    old = failed_record("old1")
    data = old.to_dict()
    del data["protocol"]  # a record written before TLS had no such field
    db.execute(
        "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            old.id,
            old.source,
            old.started,
            old.ended,
            old.outcome,
            "127.0.0.1",
            1,
            "127.0.0.1",
            22,
            None,
            None,
            "kex_algorithms",
            None,
            None,
            1,
            json.dumps(data),
        ),
    )
    db.close()
    store = SessionStore.open(path)
    assert store.version == SCHEMA_VERSION
    (stored,) = store.get("old1")
    assert stored.record.protocol == "ssh"
    assert stored.record.failing_lists == old.failing_lists
    row = sqlite3.connect(path).execute("SELECT protocol, ja3 FROM sessions").fetchone()
    assert row == ("ssh", None)
    store.close()
