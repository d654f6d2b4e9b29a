"""What both session-store back ends share: the schema, its migrations, the row, the errors.

SQLite (`store_sqlite`) and PostgreSQL (`store_postgres`) hold the same table with the same
columns and indexes, built by the same migration scripts (plain SQL both engines take), so
that a record reads the same from either. The record itself is kept as text, not jsonb: it
is stored exactly as written (jsonb would reorder keys and refuses ``\\u0000``, which a
stranger's banner may carry), and the indexed columns beside it are what queries filter on.

A store is named by a path or by a URL, and a URL may carry a password: `display_name`
is the only form of the name that messages show.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: Each entry upgrades the schema by one version; both back ends count those applied.
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
SCHEMA_VERSION: Final = len(MIGRATIONS)

COLUMNS: Final = (
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

#: The URL schemes that name a PostgreSQL store (libpq takes both); anything else is a path.
POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")
_MASK: Final = "***"

Row = tuple[object, ...]


class StoreError(Exception):
    """The store cannot be opened, read or written; the message is fit for the command line."""


def upsert_sql(placeholder: str) -> str:
    """The statement that writes a row, or updates the session's row already there."""
    return (
        f"INSERT INTO sessions ({', '.join(COLUMNS)}) "
        f"VALUES ({', '.join([placeholder] * len(COLUMNS))}) "
        "ON CONFLICT(id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "id")
        # A late non-final update (a refresh queued before the end) never undoes the final one.
        + " WHERE sessions.final = 0 OR excluded.final = 1"
    )


def split_statements(script: str) -> list[str]:
    """A migration script split at semicolons (one statement per call, for either engine)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def is_postgres_url(target: str) -> bool:
    return target.lower().startswith(POSTGRES_SCHEMES)


def display_name(target: str) -> str:
    """`target` as messages may show it: a URL's password (in its user part or its query)
    replaced by ``***``; a path unchanged."""
    if not is_postgres_url(target):
        return target
    try:
        parts = urlsplit(target)
        netloc = parts.netloc
        if "@" in netloc:
            user, _, hosts = netloc.rpartition("@")
            if ":" in user:
                user = user.split(":", 1)[0] + ":" + _MASK
            netloc = f"{user}@{hosts}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, _MASK if k.lower() == "password" else v) for k, v in pairs], safe="*"
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        # Not even a URL's shape: nothing of it is shown but what kind of name it was.
        return target.split("://", 1)[0] + "://(an unreadable URL)"


def secrets_of(target: str) -> list[str]:
    """The password(s) `target` carries, to be struck from any message a driver writes."""
    if not is_postgres_url(target):
        return []
    found: list[str] = []
    try:
        parts = urlsplit(target)
        if parts.password:
            found.append(parts.password)
            found.append(parts.password.replace("%40", "@"))
        found += [v for k, v in parse_qsl(parts.query) if k.lower() == "password" and v]
    except ValueError:
        pass
    # The URL's user part as written, in case a driver quotes it raw.
    head = target.split("://", 1)[-1].split("/", 1)[0]
    if "@" in head and ":" in head.rpartition("@")[0]:
        found.append(head.rpartition("@")[0].split(":", 1)[1])
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, target: str) -> str:
    """`text` with any password of `target` masked."""
    for secret in secrets_of(target):
        text = text.replace(secret, _MASK)
    return text


class Engine(Protocol):
    """One open connection to a store: what `SessionStore` needs of a back end.

    Queries are written with ``?`` for parameters; an engine that takes another style
    translates. Reading failures are `StoreError`; a write failure may be the driver's own.
    """

    #: The store's name as messages show it (`display_name`).
    name: str
    #: What a reader should know about how the store was opened, or None.
    note: str | None

    @property
    def version(self) -> int: ...

    @property
    def broken(self) -> bool:
        """True when the connection is lost and only a new one can write again."""
        ...

    def upsert(self, rows: Sequence[Row]) -> None: ...

    def fetch(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]: ...

    def record_columns(self) -> str:
        """SELECT terms giving the record as `store_reading.decode_record` takes it."""
        ...

    def close(self) -> None: ...
