"""The dashboard's PostgreSQL source on a real database: what changed, as summaries, woken
by the store's notices, and a cut connection said once and resumed.

The database is a throwaway cluster's (tests/peers/postgres.py); the connections are cut
for real (pg_terminate_backend), as a database fail-over cuts them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kexproxy.core.record import SessionRecord
from kexproxy.sinks.store import SessionStore, StoreError, row_of
from kexproxy_tui import postgres_source
from kexproxy_tui.adapters import CHUNK, StoreSource
from kexproxy_tui.postgres_source import PostgresSource, load_records
from tests.sinks.test_store import failed_record

pytestmark = pytest.mark.peers


def raw(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        cursor = db.execute(sql.encode())
        return list(cursor.fetchall()) if cursor.description else []


def test_what_changed_comes_as_the_same_summaries_as_sqlites(
    postgres_url: str, tmp_path: Path, dashboard_records: list[SessionRecord]
) -> None:
    ok, kex, cipher = dashboard_records
    store = SessionStore.open(postgres_url)
    lite = SessionStore.open(tmp_path / "s.db")
    store.put(replace(ok, ended=None), final=False)
    source = PostgresSource(postgres_url)
    try:
        [live] = source.changes()
        assert live.id == ok.id and live.ended is None and live.client_kexinit is None
        assert source.changes() == [] and not source.more
        for record in dashboard_records:
            store.put(record, final=True)
            lite.put(record, final=True)
        mine = {r.id: r.to_dict() for r in source.changes()}
        theirs = {r.id: r.to_dict() for r in StoreSource(str(tmp_path / "s.db")).changes()}
        assert mine == theirs and len(mine) == 3  # the live one came back, ended
        assert mine[ok.id]["ended"] == ok.ended
        assert source.changes() == []
        loaded = load_records(postgres_url, [cipher.id, kex.id])
        assert [r.id for r in loaded] == [cipher.id, kex.id]
        assert load_records(postgres_url, [kex.id])[0].client_kexinit is not None
    finally:
        source.close()
        store.close()
        lite.close()


def test_a_big_store_comes_in_chunks(postgres_url: str) -> None:
    store = SessionStore.open(postgres_url)
    store.put_rows([row_of(failed_record(f"s{i:05d}"), final=True) for i in range(CHUNK + 10)])
    store.close()
    source = PostgresSource(postgres_url)
    try:
        assert len(source.changes()) == CHUNK and source.more
        assert len(source.changes()) == 10 and not source.more
    finally:
        source.close()


def test_a_look_fetches_a_bounded_number_of_characters(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Big rows come a few at a time, each look under the budget but for its last row, and
    none is missed or fetched twice."""
    store = SessionStore.open(postgres_url)
    store.put_rows([row_of(failed_record(f"s{i:03d}"), final=True) for i in range(30)])
    store.close()
    [(size,)] = raw(postgres_url, "SELECT max(length(record)) FROM sessions")
    monkeypatch.setattr(postgres_source, "CHUNK_CHARS", size * 4)
    source = PostgresSource(postgres_url)
    try:
        looks: list[list[str]] = []
        while not looks or source.more:
            looks.append([r.id for r in source.changes()])
        assert [i for look in looks for i in look] == [f"s{i:03d}" for i in range(30)]
        assert all(1 <= len(look) <= 5 for look in looks), [len(look) for look in looks]
        assert len(looks) >= 6
    finally:
        source.close()


def test_wait_returns_at_the_notice_not_at_the_timeout(postgres_url: str) -> None:
    store = SessionStore.open(postgres_url)
    source = PostgresSource(postgres_url)
    writer = threading.Timer(0.2, store.put, (failed_record("new"),), {"final": True})
    try:
        assert source.changes() == []
        began = time.monotonic()
        assert source.wait(0.3) is False
        assert time.monotonic() - began >= 0.25
        writer.start()
        began = time.monotonic()
        assert source.wait(20) is True
        assert time.monotonic() - began < 5
        assert [r.id for r in source.changes()] == ["new"]
    finally:
        source.close()
        writer.cancel()
        if writer.is_alive():
            writer.join(10)  # the notice comes at commit, before put has quite returned
        store.close()


def test_a_nul_banner_is_kept_and_damaged_rows_are_counted(postgres_url: str) -> None:
    """A NUL from the wire stays in the record (jsonb would refuse it); a row that is not
    JSON, or too big to be a record, is counted, and neither stops the others."""
    store = SessionStore.open(postgres_url)
    store.put(replace(failed_record("nul"), client_banner="SSH-2.0-x\x00y"), final=True)
    raw(postgres_url, "INSERT INTO sessions (id, source, outcome, failing, final, record) "
        "VALUES ('bad', 'proxy', 'failed', '', 1, '{not json')")  # fmt: skip
    raw(postgres_url, "INSERT INTO sessions (id, source, outcome, failing, final, record) "
        "VALUES ('big', 'proxy', 'failed', '', 1, repeat(' ', 64 * 1024 * 1024 + 1))")  # fmt: skip
    store.put(failed_record("good"), final=True)
    store.close()
    source = PostgresSource(postgres_url)
    try:
        found = {r.id: r for r in source.changes()}
        assert set(found) == {"nul", "good"}
        assert found["nul"].client_banner == "SSH-2.0-x\x00y"
        assert source.damaged == 2
    finally:
        source.close()


def test_a_cut_connection_is_said_in_one_way_and_resumed_where_it_stopped(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_source, "RECONNECT_PAUSE", 0.2)
    SessionStore.open(postgres_url).close()
    source = PostgresSource(postgres_url)
    try:
        assert source.changes() == []
        cut = raw(postgres_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                  "application_name = 'kexproxy' AND datname = current_database()")  # fmt: skip
        assert len(cut) == 2  # the reading and the listening connection
        store = SessionStore.open(postgres_url)
        store.put(failed_record("meanwhile"), final=True)
        store.close()
        said: set[str] = set()
        found: list[str] = []
        deadline = time.monotonic() + 15
        while not found and time.monotonic() < deadline:
            source.wait(0.1)
            try:
                found = [r.id for r in source.changes()]
            except StoreError as exc:
                said.add(str(exc))
        assert found == ["meanwhile"]
        [message] = said
        assert message.startswith("lost the connection to the session store (")
        assert "reconnecting" in message
    finally:
        source.close()


def test_a_store_that_cannot_be_read_is_refused_at_once(postgres_url: str) -> None:
    with pytest.raises(StoreError, match="kexproxy proxy creates it"):
        PostgresSource(postgres_url)


def test_a_role_that_may_only_read_is_enough_to_watch(postgres_cluster: Any) -> None:
    """The README's fleet roles: the proxies' role owns the database, the dashboard's may
    only SELECT (granted ahead by default privileges); LISTEN needs no grant."""
    import psycopg

    name = f"fleet_{int(time.time() * 1000) % 10**8}"
    writer, reader = f"{name}_w", f"{name}_r"
    with postgres_cluster.connect() as db:
        for sql in (f"CREATE ROLE {writer} LOGIN", f"CREATE ROLE {reader} LOGIN",
                    f"CREATE DATABASE {name} OWNER {writer}"):  # fmt: skip
            db.execute(sql.encode())
    with postgres_cluster.connect(name) as db:
        db.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {writer} IN SCHEMA public "
                   f"GRANT SELECT ON TABLES TO {reader}".encode())  # fmt: skip
    as_writer = postgres_cluster.url(name, user=writer)
    as_reader = postgres_cluster.url(name, user=reader)
    store = SessionStore.open(as_writer)
    source = PostgresSource(as_reader)
    try:
        assert source.changes() == []
        store.put(failed_record("seen"), final=True)
        assert source.wait(10) is True
        assert [r.id for r in source.changes()] == ["seen"]
        with psycopg.connect(as_reader, autocommit=True) as db, pytest.raises(psycopg.Error):
            db.execute(b"DELETE FROM sessions")
    finally:
        source.close()
        store.close()
