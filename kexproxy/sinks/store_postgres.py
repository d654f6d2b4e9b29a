"""The PostgreSQL back end of the session store (psycopg 3): one database, many writers.

Several proxies and sniffers write one database at once: every write is an upsert by
session id, and a batch's rows are written in id order so that two writers never wait on
each other's rows in opposite orders (a deadlock). Migrations run in one transaction under
an advisory lock, so writers starting together migrate once; the version is the one row of
``schema_version``, and a database migrated by a newer kexproxy is refused.

The URL goes to libpq as it is, so the password comes from it, from ``PGPASSWORD`` or from
``~/.pgpass``, as with psql. Messages name the store by `display_name` and have any
password struck out (`scrub`): libpq's own words never carry one, but nothing relies on it.
A connection that is lost (`broken`) is dropped by the writer, which connects anew.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import psycopg

from kexproxy.sinks.store_reading import MAX_RECORD_CHARS
from kexproxy.sinks.store_schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Row,
    StoreError,
    display_name,
    scrub,
    split_statements,
    upsert_sql,
)

#: Seconds to wait for the server to answer a connection (libpq's default waits for ever).
CONNECT_TIMEOUT: Final = 5
#: TCP keepalives, so that a server that vanished without a word is noticed in ~25 s.
KEEPALIVES: Final = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                     "keepalives_count": 3}  # fmt: skip
#: The advisory lock writers migrate under ("kexp" in ASCII): one migrates, the others wait.
MIGRATION_LOCK: Final = 0x6B657870
_UPSERT = upsert_sql("%s")


class PostgresEngine:
    """An open connection to a store database (see `store_schema.Engine`)."""

    def __init__(self, connection: psycopg.Connection[Any], target: str) -> None:
        self._db = connection
        self._target = target
        self.name = display_name(target)
        self.note: str | None = None

    @classmethod
    def open(cls, target: str, *, readonly: bool) -> PostgresEngine:
        """Connects to the store at URL `target`; for writing, creates and migrates its table."""
        name = display_name(target)
        extra: dict[str, Any] = {"application_name": "kexproxy", **KEEPALIVES}
        if readonly:
            # The server itself refuses any write on this connection, whatever a bug would try.
            extra["options"] = "-c default_transaction_read_only=on"
        try:
            db = psycopg.connect(target, autocommit=True, connect_timeout=CONNECT_TIMEOUT, **extra)
        except psycopg.Error as exc:
            raise StoreError(
                f"{name}: cannot connect to the session store: {reason(exc, target)}"
            ) from None
        engine = cls(db, target)
        try:
            engine._prepare(readonly=readonly)
        except psycopg.Error as exc:
            db.close()
            raise StoreError(
                f"{name}: cannot use the session store: {reason(exc, target)}"
            ) from None
        except BaseException:
            db.close()
            raise
        return engine

    def _prepare(self, *, readonly: bool) -> None:
        db = self._db
        with db.transaction():
            if not readonly:
                db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            if not self._exists("schema_version"):
                if readonly:
                    if self._exists("sessions"):
                        raise StoreError(f"{self.name}: not a kexproxy session store")
                    raise StoreError(
                        f"{self.name}: no session store in this database (kexproxy proxy "
                        "creates it)"
                    )
                db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                db.execute("INSERT INTO schema_version VALUES (0)")
            version = self.version
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.name}: the store has schema version {version}, newer than this "
                    f"kexproxy's {SCHEMA_VERSION}; upgrade kexproxy to read it"
                )
            if version == SCHEMA_VERSION:
                return
            if readonly:
                raise StoreError(
                    f"{self.name}: the store has schema version {version}; run kexproxy proxy "
                    "once on it to upgrade it"
                )
            # DDL is transactional here: all the steps land, or none and the version with them.
            for number in range(version, len(MIGRATIONS)):
                for statement in split_statements(MIGRATIONS[number]):
                    db.execute(statement.encode())
            db.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))

    def _exists(self, table: str) -> bool:
        row = self._db.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
        return bool(row and row[0])

    @property
    def version(self) -> int:
        row = self._db.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    @property
    def broken(self) -> bool:
        return self._db.closed or self._db.broken

    def upsert(self, rows: Sequence[Row]) -> None:
        """Writes `rows` in one transaction, in id order; a failure is a `StoreError`."""
        ordered = sorted((tuple(map(_storable, row)) for row in rows), key=lambda r: str(r[0]))
        try:
            with self._db.transaction(), self._db.cursor() as cursor:
                cursor.executemany(_UPSERT, ordered)
        except psycopg.Error as exc:
            raise StoreError(reason(exc, self._target)) from None

    def fetch(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        try:
            cursor = self._db.execute(sql.replace("?", "%s").encode(), list(params))
            return list(cursor.fetchall())
        except psycopg.Error as exc:
            raise StoreError(
                f"{self.name}: cannot read the session store: {reason(exc, self._target)}"
            ) from None

    def record_columns(self) -> str:
        # The same triple SQLite's reader gives (see store_reading.record_columns); a text
        # column here always holds valid UTF-8, and its bytes are what decode_record takes.
        return (
            "'text', length(record), CASE WHEN length(record) <= "
            f"{int(MAX_RECORD_CHARS)} THEN convert_to(record, 'UTF8') END"
        )

    def close(self) -> None:
        self._db.close()


def _storable(value: object) -> object:
    """A column value PostgreSQL's text takes: no NUL (a banner from the wire may hold one)
    and nothing that is not UTF-8. The record's own JSON is ASCII, escapes and all."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode()
    return value


def reason(exc: BaseException, target: str) -> str:
    """The driver's message on one line, without any password of `target`."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return scrub("; ".join(lines) or type(exc).__name__, target)
