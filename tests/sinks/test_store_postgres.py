"""The store's contract on both back ends (SQLite file, real PostgreSQL), and PostgreSQL's own.

Every test of the contract runs twice, once on a SQLite file and once on a database of a
throwaway PostgreSQL cluster (tests/peers/postgres.py): the commands must not be able to
tell the back ends apart. The PostgreSQL tests cut real connections (pg_terminate_backend)
and give real wrong passwords.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kexproxy.core.record import SessionRecord
from kexproxy.sinks.store import (
    SCHEMA_VERSION,
    SessionStore,
    StoreError,
    StoreSink,
    row_of,
    store_problem,
)
from tests.peers.postgres import PASSWORD, PASSWORD_ROLE
from tests.sinks.test_store import failed_record, negotiated_record


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store not yet created: a SQLite file's path, or an empty database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "s.db")
    url: str = request.getfixturevalue("postgres_url")
    return url


def raw(target: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """`sql` run on the store behind kexproxy's back, as another program would."""
    if target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(target, autocommit=True) as db:
            cursor = db.execute(sql.replace("?", "%s").encode(), params)
            return list(cursor.fetchall()) if cursor.description else []
    db = sqlite3.connect(target, isolation_level=None)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


# -- the contract, on both back ends ------------------------------------------------------------


def test_records_round_trip_with_their_indexed_columns(target: str) -> None:
    record = failed_record()
    store = SessionStore.open(target)
    assert store.version == SCHEMA_VERSION
    store.put(record, final=True)
    [stored] = store.get(record.id)
    store.close()
    assert stored.final
    assert stored.record == SessionRecord.from_dict(record.to_dict())
    row = raw(
        target, "SELECT outcome, client_ip, client_port, failing, hassh, protocol FROM sessions"
    )
    assert row == [
        (
            "failed",
            record.client["ip"],
            record.client["port"],
            "kex_algorithms",
            record.hassh,
            "ssh",
        )
    ]


def test_the_same_indexes_on_both(target: str) -> None:
    SessionStore.open(target).close()
    if target.startswith("postgresql://"):
        rows = raw(
            target,
            "SELECT indexname FROM pg_indexes WHERE tablename = 'sessions' AND indexname <> 'sessions_pkey'",
        )
    else:
        rows = raw(
            target,
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sessions' AND sql IS NOT NULL",
        )
    # PostgreSQL's own step adds one more: the change number its live readers follow.
    own = {"sessions_changes"} if target.startswith("postgresql://") else set()
    assert {r[0] for r in rows} == {
        "sessions_started", "sessions_outcome", "sessions_client", "sessions_server",
        "sessions_hassh", "sessions_protocol", "sessions_ja3", "sessions_ja4",
    } | own  # fmt: skip


def test_an_update_never_undoes_the_final_row(target: str) -> None:
    store = SessionStore.open(target)
    live = negotiated_record("x", 1_700_000_000.0)
    final = dataclasses.replace(live, ended="2023-11-14T22:13:25.000000Z")
    store.put(live, final=False)
    assert [s.final for s in store.sessions()] == [False]
    store.put(final, final=True)
    store.put(live, final=False)  # a late refresh queued before the end
    [row] = store.sessions()
    assert row.final and row.record.ended == final.ended
    store.close()


def test_queries_filter_by_outcome_time_and_prefix(target: str) -> None:
    store = SessionStore.open(target)
    base = 1_700_000_000.0
    store.put(failed_record("old", started=base), final=True)
    store.put(negotiated_record("mid", base + 60), final=True)
    store.put(failed_record("new", started=base + 120), final=True)
    store.put(failed_record("a_b%c", started=base + 1), final=True)
    assert [s.record.id for s in store.sessions()] == ["new", "mid", "a_b%c", "old"]
    assert [s.record.id for s in store.sessions(outcome="failed")] == ["new", "a_b%c", "old"]
    since = "2023-11-14T22:14:00.000000Z"
    assert [s.record.id for s in store.sessions(since=since)] == ["new", "mid"]
    assert [s.record.id for s in store.sessions(limit=1)] == ["new"]
    assert [s.record.id for s in store.get("n")] == ["new"]
    assert store.get("%") == [] and store.get("a%") == []  # LIKE wildcards are literal
    assert [s.record.id for s in store.get("a_b%")] == ["a_b%c"]
    assert isinstance(store.find_one("zzz"), str)
    store.close()


def test_a_store_from_a_newer_kexproxy_is_refused(target: str) -> None:
    SessionStore.open(target).close()
    if target.startswith("postgresql://"):
        raw(target, "UPDATE schema_version SET version = ?", SCHEMA_VERSION + 1)
    else:
        raw(target, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    for readonly in (False, True):
        with pytest.raises(StoreError, match="newer than this kexproxy"):
            SessionStore.open(target, readonly=readonly)
    assert store_problem(target) is not None


def test_reading_a_store_never_made_is_a_clear_error_and_creates_nothing(target: str) -> None:
    with pytest.raises(StoreError, match="kexproxy proxy creates it"):
        SessionStore.open(target, readonly=True)
    if target.startswith("postgresql://"):
        assert raw(target, "SELECT to_regclass('sessions'), to_regclass('schema_version')") == [
            (None, None)
        ]
    else:
        assert not Path(target).exists()


def test_a_damaged_row_is_counted_and_the_others_read(target: str) -> None:
    store = SessionStore.open(target)
    store.put(failed_record("good"), final=True)
    raw(target, "INSERT INTO sessions (id, source, outcome, failing, final, record) "
        "VALUES ('bad', 'proxy', 'failed', '', 1, '{not json')")  # fmt: skip
    reader = SessionStore.open(target, readonly=True)
    assert [s.record.id for s in reader.sessions()] == ["good"]
    assert reader.damaged == 1 and reader.damage
    reader.close()
    store.close()


def test_a_reader_sees_the_writers_rows_while_it_is_open(target: str) -> None:
    writer = SessionStore.open(target)
    reader = SessionStore.open(target, readonly=True)
    writer.put(failed_record("a"), final=False)
    assert [s.record.id for s in reader.sessions()] == ["a"]
    writer.put(failed_record("b"), final=True)
    assert {s.record.id for s in reader.sessions()} == {"a", "b"}
    reader.close()
    writer.close()


def test_several_writers_at_once_upsert_by_id(target: str) -> None:
    """Three sinks (as three proxies) open the new store together and write overlapping ids."""
    warnings: list[str] = []
    sinks: list[StoreSink] = []
    lock = threading.Lock()

    def write(n: int) -> None:
        sink = StoreSink(target, warn=warnings.append)
        with lock:
            sinks.append(sink)
        for i in range(120):
            # ids 0-39 are written by every writer: the same sessions seen three times
            sid = f"shared{i:03d}" if i < 40 else f"w{n}-{i:03d}"
            sink.update(failed_record(sid), final=True)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(sink.close() for sink in sinks), warnings
    assert warnings == []
    store = SessionStore.open(target, readonly=True)
    ids = [s.record.id for s in store.sessions()]
    store.close()
    assert len(ids) == len(set(ids)) == 40 + 3 * 80


# -- PostgreSQL's own -----------------------------------------------------------------------------


def test_writers_starting_together_migrate_once(postgres_url: str) -> None:
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            SessionStore.open(postgres_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert raw(postgres_url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


def test_a_banner_with_a_nul_is_stored(postgres_url: str) -> None:
    """PostgreSQL's text refuses NUL, which a stranger may send: the column gets U+FFFD,
    the record (JSON, escaped) keeps what was sent."""
    record = dataclasses.replace(failed_record("nul"), client_banner="SSH-2.0-x\x00y")
    store = SessionStore.open(postgres_url)
    store.put(record, final=True)
    [stored] = store.get("nul")
    store.close()
    assert stored.record.client_banner == "SSH-2.0-x\x00y"
    assert raw(postgres_url, "SELECT client_banner FROM sessions") == [("SSH-2.0-x\ufffdy",)]


def test_a_cut_connection_is_made_anew_and_nothing_is_lost(postgres_url: str) -> None:
    warnings: list[str] = []
    sink = StoreSink(postgres_url, warn=warnings.append, retry_pause=0.05)
    sink.update(failed_record("before"), final=True)
    time.sleep(0.3)
    cut = raw(postgres_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
              "WHERE application_name = 'kexproxy' AND datname = current_database()")  # fmt: skip
    assert cut == [(True,)]
    for i in range(20):
        sink.update(failed_record(f"after{i:02d}"), final=True)
    assert sink.close() is True, warnings
    assert sink.unstored == 0
    assert len(warnings) == 2, warnings
    assert "cannot write the session store" in warnings[0]
    assert "writing the session store again" in warnings[1]
    assert raw(postgres_url, "SELECT count(*) FROM sessions") == [(21,)]


def test_a_database_that_stays_away_counts_what_it_could_not_store(postgres_cluster: Any) -> None:
    from tests.peers.base import free_port

    url = f"postgresql://{PASSWORD_ROLE}:{PASSWORD}@127.0.0.1:{free_port()}/nowhere"
    warnings: list[str] = []
    sink = StoreSink(url, warn=warnings.append, retry_pause=0.02, close_timeout=0.3)
    for i in range(4):
        sink.update(failed_record(f"r{i}"), final=True)
    assert sink.close() is False
    assert sink.unstored == 4
    assert warnings[-1].endswith("4 records could not be stored in "
                                 f"postgresql://{PASSWORD_ROLE}:***@127.0.0.1:{url.split(':')[3]}")  # fmt: skip
    assert "cannot connect" in warnings[0] and "refused" in warnings[0].lower()
    assert not any(PASSWORD in w for w in warnings)


def test_a_wrong_password_is_one_line_without_it(postgres_cluster: Any) -> None:
    wrong = "wr0ng-Pass"
    url = f"postgresql://{PASSWORD_ROLE}:{wrong}@127.0.0.1:{postgres_cluster.port}/postgres"
    problem = store_problem(url)
    assert problem is not None
    assert "password authentication failed" in problem
    assert wrong not in problem and "***" in problem and "\n" not in problem


def test_the_password_may_come_from_pgpassword(
    postgres_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"postgresql://{PASSWORD_ROLE}@127.0.0.1:{postgres_cluster.port}/postgres"
    monkeypatch.setenv("PGPASSWORD", "not-it")
    assert "password authentication failed" in (store_problem(url) or "")
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    store = SessionStore.open(postgres_cluster.database().replace("postgres@", f"{PASSWORD_ROLE}@"))
    assert store.version == SCHEMA_VERSION
    store.close()


def test_a_reader_cannot_write(postgres_url: str) -> None:
    SessionStore.open(postgres_url).close()
    reader = SessionStore.open(postgres_url, readonly=True)
    with pytest.raises(StoreError, match="read-only transaction"):
        reader.put(failed_record("w"), final=True)
    reader.close()


def test_whole_records_by_id_in_the_order_asked(target: str) -> None:
    store = SessionStore.open(target)
    for name in ("a", "b", "c"):
        store.put(failed_record(name), final=name != "b")
    found = store.by_ids(["c", "missing", "a", "b"])
    assert [(s.record.id, s.final) for s in found] == [("c", True), ("a", True), ("b", False)]
    assert found[0].record.client_kexinit is not None  # the whole record, not a summary
    store.close()


# -- PostgreSQL's own step: change numbers and notices for live readers ---------------------


def test_every_change_gets_a_later_number_and_a_notice(postgres_url: str) -> None:
    from kexproxy.sinks.store_postgres import ChangeListener

    store = SessionStore.open(postgres_url)
    listener = ChangeListener(postgres_url)
    try:
        assert listener.wait(0.2) is False
        store.put(failed_record("x"), final=False)
        assert listener.wait(5) is True
        [(first,)] = raw(postgres_url, "SELECT change_seq FROM sessions")
        rows = [row_of(failed_record(f"r{i}"), final=True) for i in range(5)]
        store.put_rows([*rows, row_of(failed_record("x"), final=True)])
        assert listener.wait(5) is True
        assert listener.wait(0.2) is False  # one transaction, one notice
        [(again,)] = raw(postgres_url, "SELECT change_seq FROM sessions WHERE id = 'x'")
        assert again > first
        numbers = raw(postgres_url, "SELECT change_seq FROM sessions ORDER BY change_seq")
        assert len({n for (n,) in numbers}) == 6
    finally:
        listener.close()
        store.close()


def test_changes_commit_in_the_order_of_their_numbers(postgres_url: str) -> None:
    """A reader that saw number n must never later see a smaller one committed: a second
    writer waits for the first one's commit before it gets its number."""
    import psycopg

    SessionStore.open(postgres_url).close()
    insert = ("INSERT INTO sessions (id, source, outcome, failing, final, record) "
              "VALUES (%s, 'proxy', 'failed', '', 1, '{}')")  # fmt: skip
    first = psycopg.connect(postgres_url)
    first.execute(insert, ("one",))  # its transaction stays open
    done = threading.Event()

    def second() -> None:
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute(insert, ("two",))
        done.set()

    thread = threading.Thread(target=second)
    thread.start()
    assert not done.wait(0.5)  # held behind the first writer's commit
    first.commit()
    first.close()
    thread.join(10)
    assert done.is_set()
    order = raw(postgres_url, "SELECT id FROM sessions ORDER BY change_seq")
    assert order == [("one",), ("two",)]


def test_a_store_made_before_the_postgres_step_is_upgraded_by_a_writer(postgres_url: str) -> None:
    store = SessionStore.open(postgres_url)
    store.put(failed_record("old"), final=True)
    store.close()
    for statement in ("DROP TABLE postgres_schema_version",
                      "DROP TRIGGER sessions_changed ON sessions",
                      "DROP FUNCTION kexproxy_session_changed",
                      "ALTER TABLE sessions DROP COLUMN change_seq",
                      "DROP SEQUENCE sessions_change_seq"):  # fmt: skip
        raw(postgres_url, statement)
    with pytest.raises(StoreError, match="run kexproxy proxy once on it"):
        SessionStore.open(postgres_url, readonly=True)
    SessionStore.open(postgres_url).close()
    assert raw(postgres_url, "SELECT id, change_seq > 0 FROM sessions") == [("old", True)]
    reader = SessionStore.open(postgres_url, readonly=True)
    assert [s.record.id for s in reader.sessions()] == ["old"]
    reader.close()
