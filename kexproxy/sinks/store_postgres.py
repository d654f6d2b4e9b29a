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

A dashboard watches the store live (`ChangeListener`): PostgreSQL has no rowid to tell a
reader what is new, so PostgreSQL's own schema step (`POSTGRES_STEPS`, counted apart from
the shared migrations in ``postgres_schema_version``, because SQLite has its rowid and no
NOTIFY) gives every row a ``change_seq`` from a sequence, bumped by a trigger on every
insert and update, and has the same trigger ``NOTIFY kexproxy_sessions``. Sequence numbers
are taken in order but committed in any order, and a reader that saw 11 before 10 was
committed would miss 10 for ever; so the trigger first takes a transaction-level advisory
lock (`CHANGE_LOCK`), which makes writers' transactions commit in the order of their
numbers. Writers' transactions are a few upserts, so they wait on each other for
milliseconds; a writer from before this step still gets numbers and notices, the trigger
being the database's.
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
#: The advisory lock taken by the change trigger ("kexc"): changes commit in sequence order.
CHANGE_LOCK: Final = 0x6B657863
#: The channel the change trigger notifies; the payload is empty so that PostgreSQL folds
#: a transaction's notices into one.
CHANNEL: Final = "kexproxy_sessions"
_UPSERT = upsert_sql("%s")

#: PostgreSQL's own schema steps, applied after the shared migrations and counted in
#: ``postgres_schema_version``: a change number and notice for live readers. Statements,
#: not scripts: a function body holds semicolons.
POSTGRES_STEPS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE SEQUENCE sessions_change_seq AS BIGINT",
        "ALTER TABLE sessions ADD COLUMN change_seq BIGINT",
        "UPDATE sessions SET change_seq = nextval('sessions_change_seq')",
        "ALTER TABLE sessions ALTER COLUMN change_seq SET NOT NULL",
        "CREATE INDEX sessions_changes ON sessions (change_seq)",
        f"""CREATE FUNCTION kexproxy_session_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock({CHANGE_LOCK});
            NEW.change_seq := nextval('sessions_change_seq');
            PERFORM pg_notify('{CHANNEL}', '');
            RETURN NEW;
        END $$""",
        "CREATE TRIGGER sessions_changed BEFORE INSERT OR UPDATE ON sessions "
        "FOR EACH ROW EXECUTE FUNCTION kexproxy_session_changed()",
    ),
)
POSTGRES_VERSION: Final = len(POSTGRES_STEPS)


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
            if version < SCHEMA_VERSION:
                if readonly:
                    raise StoreError(self._too_old(version))
                # DDL is transactional here: all the steps land, or none and the version.
                for number in range(version, len(MIGRATIONS)):
                    for statement in split_statements(MIGRATIONS[number]):
                        db.execute(statement.encode())
                db.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))
            self._own_steps(readonly=readonly)

    def _own_steps(self, *, readonly: bool) -> None:
        """PostgreSQL's own steps (`POSTGRES_STEPS`), in the caller's transaction."""
        db = self._db
        if not self._exists("postgres_schema_version"):
            if readonly:
                raise StoreError(self._too_old(SCHEMA_VERSION))
            db.execute("CREATE TABLE postgres_schema_version (version INTEGER NOT NULL)")
            db.execute("INSERT INTO postgres_schema_version VALUES (0)")
        row = db.execute("SELECT max(version) FROM postgres_schema_version").fetchone()
        done = int(row[0]) if row and row[0] is not None else 0
        if done > POSTGRES_VERSION:
            raise StoreError(
                f"{self.name}: the store's PostgreSQL steps are at version {done}, newer than "
                f"this kexproxy's {POSTGRES_VERSION}; upgrade kexproxy to read it"
            )
        if done == POSTGRES_VERSION:
            return
        if readonly:
            raise StoreError(self._too_old(SCHEMA_VERSION))
        for number in range(done, POSTGRES_VERSION):
            for statement in POSTGRES_STEPS[number]:
                db.execute(statement.encode())
        db.execute("UPDATE postgres_schema_version SET version = %s", (POSTGRES_VERSION,))

    def _too_old(self, version: int) -> str:
        return (
            f"{self.name}: the store has schema version {version} (an older kexproxy made "
            "it); run kexproxy proxy once on it to upgrade it"
        )

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


class ChangeListener:
    """A connection of its own that LISTENs for the change trigger's notices (`CHANNEL`).

    Kept apart from the reading connection so that waiting for a notice never holds up a
    query. Made before the first read, so that a change committed in between is both read
    and noticed (a notice too many costs one empty read; one too few, a fallback poll).
    """

    def __init__(self, target: str) -> None:
        self._target = target
        self.name = display_name(target)
        extra: dict[str, Any] = {"application_name": "kexproxy", **KEEPALIVES}
        try:
            self._db = psycopg.connect(
                target, autocommit=True, connect_timeout=CONNECT_TIMEOUT, **extra
            )
        except psycopg.Error as exc:
            raise StoreError(
                f"{self.name}: cannot connect to the session store: {reason(exc, target)}"
            ) from None
        try:
            self._db.execute(f"LISTEN {CHANNEL}".encode())
        except psycopg.Error as exc:
            self._db.close()
            raise StoreError(f"{self.name}: cannot listen: {reason(exc, target)}") from None

    def wait(self, timeout: float) -> bool:
        """True when a change was noticed within `timeout` seconds (and every notice that
        came with it taken too); a lost connection is a `StoreError`."""
        try:
            noticed = any(True for _ in self._db.notifies(timeout=timeout, stop_after=1))
            if noticed:
                # A burst of writers is one look for the reader, not one per notice.
                for _ in self._db.notifies(timeout=0.0):
                    pass
        except psycopg.Error as exc:
            raise StoreError(reason(exc, self._target)) from None
        return noticed

    @property
    def broken(self) -> bool:
        return self._db.closed or self._db.broken

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
