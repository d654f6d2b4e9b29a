"""Damaged rows in a session store: each kind is left out and counted, never fatal to a read.

Rows are damaged the way another tool, a disk error or a hand edit would: with SQL on the
file, under the reader's feet. The store's own writer never makes them.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from kexproxy.sinks import store_reading
from kexproxy.sinks.jsonl import dumps
from kexproxy.sinks.store import MIGRATIONS, SessionStore, migrate
from kexproxy_tui.adapters import StoreSource, load_records
from tests.sinks.test_store import failed_record

GOOD = ("good-1", "good-2")
BAD = "bad-0"

#: SQL that damages the row `BAD`, with its parameters, and what the reader says about it.
Damage = tuple[str, tuple[object, ...], str]


def _not_utf8(db: sqlite3.Connection) -> Damage:
    (text,) = db.execute("SELECT record FROM sessions WHERE id = ?", (BAD,)).fetchone()
    raw = text.encode().replace(b"OpenSSH_9.6", b"Open\xffSSH_9.6", 1)
    return "CAST(? AS TEXT)", (raw,), "not UTF-8 (byte 0xff at offset"


def _blob(db: sqlite3.Connection) -> Damage:
    (text,) = db.execute("SELECT record FROM sessions WHERE id = ?", (BAD,)).fetchone()
    # A whole, valid record, but as a BLOB: kexproxy never writes one.
    return "?", (text.encode(),), "is a BLOB, not text"


DAMAGES: dict[str, Callable[[sqlite3.Connection], Damage]] = {
    "bad JSON": lambda db: ('\'{"id": "bad-0", \'', (), "Expecting property name"),
    "a JSON array": lambda db: ("'[]'", (), "a record is a JSON object, not list"),
    "a field of the wrong type": lambda db: (
        "json_set(record, '$.bytes', 'many')",
        (),
        "field 'bytes' has the wrong type",
    ),
    "an unknown outcome": lambda db: (
        "json_set(record, '$.outcome', 'exploded')",
        (),
        "field 'outcome' is not one of",
    ),
    "invalid UTF-8": _not_utf8,
    "a BLOB": _blob,
    "NULL": lambda db: ("NULL", (), "is NULL, not text"),
    # The column's TEXT affinity makes the number text: a JSON number, not a record.
    "a number": lambda db: ("42", (), "a record is a JSON object, not int"),
    "JSON nested too deeply": lambda db: ("?", ("[" * 9_000 + "]" * 9_000,), "too deeply"),
    "huge": lambda db: ("? || record", (" " * 30_000,), "more than a record can hold"),
}


def make_store(path: Path, kind: str) -> str:
    """A store with two good rows and one damaged `kind`'s way; returns what the reader says.

    The table allows NULL records, as a store written by another tool might.
    """
    db = sqlite3.connect(path, isolation_level=None)
    migrate(db, (MIGRATIONS[0].replace("record TEXT NOT NULL", "record TEXT"), *MIGRATIONS[1:]))
    db.close()
    store = SessionStore.open(path)
    store.put(failed_record(BAD, started=1_700_000_000.0), final=True)
    for n, sid in enumerate(GOOD, 1):
        store.put(failed_record(sid, started=1_700_000_000.0 + n), final=True)
    store.close()
    db = sqlite3.connect(path, isolation_level=None)
    sql, params, said = DAMAGES[kind](db)
    db.execute(f"UPDATE sessions SET record = {sql} WHERE id = ?", (*params, BAD))
    db.close()
    return said


@pytest.fixture(autouse=True)
def small_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records over 4,000 characters count as huge here, so that a test need not write 64 MiB."""
    monkeypatch.setattr(store_reading, "MAX_RECORD_CHARS", 20_000)
    assert len(dumps(failed_record())) < 20_000  # rows of the test's own records fit


@pytest.mark.parametrize("kind", DAMAGES)
def test_the_store_leaves_a_damaged_row_out_and_says_why(tmp_path: Path, kind: str) -> None:
    said = make_store(tmp_path / "s.db", kind)
    store = SessionStore.open(tmp_path / "s.db", readonly=True)
    try:
        assert [s.record.id for s in store.sessions()] == list(reversed(GOOD))
        assert store.damaged == 1
        assert store.damage is not None and said in store.damage
        assert [s.record.id for s in store.sessions(outcome="failed", limit=5)] == [
            "good-2",
            "good-1",
        ]
        found = store.find_one(BAD)
        assert isinstance(found, str) and "is damaged" in found and said in found
        found_good = store.find_one("good-1")
        assert not isinstance(found_good, str) and found_good.record.id == "good-1"
    finally:
        store.close()


@pytest.mark.parametrize("kind", DAMAGES)
def test_the_dashboard_leaves_a_damaged_row_out_and_counts_it(tmp_path: Path, kind: str) -> None:
    make_store(tmp_path / "s.db", kind)
    source = StoreSource(str(tmp_path / "s.db"))
    try:
        assert sorted(r.id for r in source.changes()) == list(GOOD)
        assert source.damaged == 1
        assert source.note is None
    finally:
        source.close()
    loaded = load_records(str(tmp_path / "s.db"), [BAD, *GOOD])
    assert [r.id for r in loaded] == list(GOOD)


def test_a_large_record_within_the_bound_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound is for damage, not for records: one with many long notes reads whole."""
    monkeypatch.setattr(store_reading, "MAX_RECORD_CHARS", 64 * 1024 * 1024)
    big = dataclasses.replace(failed_record("big"), notes=["é" * 20_000] * 64)
    store = SessionStore.open(tmp_path / "s.db")
    store.put(big, final=True)
    [stored] = store.sessions()
    store.close()
    assert stored.record == big and store.damaged == 0
    source = StoreSource(str(tmp_path / "s.db"))
    try:
        assert [r.id for r in source.changes()] == ["big"] and source.damaged == 0
    finally:
        source.close()
    assert load_records(str(tmp_path / "s.db"), ["big"]) == [big]


@pytest.mark.parametrize(("kind", "what"), [("integer", "a number"), ("real", "a number")])
def test_a_record_of_another_sqlite_type_is_named(kind: str, what: str) -> None:
    with pytest.raises(ValueError, match=f"is {what}, not text"):
        store_reading.decode_record(kind, 2, b"42")
