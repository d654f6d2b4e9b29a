"""The dashboard over a PostgreSQL session store: what changed, found by change number and
woken by LISTEN/NOTIFY instead of a poll.

Theory of operation. The store's PostgreSQL step (`kexproxy.sinks.store_postgres`) gives
every row a ``change_seq`` that a trigger bumps on every insert and update, committed in
number order, and notifies ``kexproxy_sessions``. So "what changed since the last look" is
the rows numbered above the last number seen, in chunks, and a session that is still live
comes back by itself each time it changes (no re-reading of live rows, as SQLite needs).
`StoreFeed` calls `wait` between looks: it returns as soon as a notice comes, or after
the feed's fallback poll (a notice lost with a connection costs at most that much).

The summaries are cut here, not in the database as SQLite's source does: measured on
2,000 stored records of ~9 KB, PostgreSQL's cast to jsonb and the removals took 0.87 s,
fetching the text and cutting it in Python 0.16 s; and jsonb refuses the ``\\u0000`` a
stranger's banner may carry. A row that is not a record is counted as damaged.

A lost connection (a restart, a fail-over) is a `StoreError` from `changes`, the same
words until it is back (the feed says a message once, not once per look); the source tries
to reconnect every `RECONNECT_PAUSE` and resumes from the last number it saw, so nothing
committed meanwhile is missed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from functools import partial
from typing import Final

from kexproxy.core.record import SessionRecord
from kexproxy.sinks import store_reading
from kexproxy.sinks.store import SessionStore, open_engine
from kexproxy.sinks.store_postgres import ChangeListener
from kexproxy.sinks.store_schema import Engine, StoreError, display_name
from kexproxy_tui.adapters import CHUNK, SUMMARY_DROPS, summary_from_data
from kexproxy_tui.feeds import StoreFeed

#: Seconds between two tries to reconnect to a store whose connection was lost.
RECONNECT_PAUSE: Final = 1.0
#: Seconds `StoreFeed` waits for a notice before it looks anyway.
NOTICE_FALLBACK: Final = 5.0


#: Characters of stored records one look fetches at most (a row is fetched whole, so one
#: look may pass this by one record): 2,000 rows of a stranger's records near
#: `store_reading.MAX_RECORD_CHARS` each would otherwise be fetched at once.
CHUNK_CHARS: Final = 64 * 1024 * 1024

#: Rows numbered above the last seen, in number order, while the characters before each are
#: under the look's budget (the first always comes); a row too big to be a record comes as
#: NULL (counted as damaged) so that a stranger's giant row is never fetched.
_CHANGES: Final = (
    "SELECT change_seq, record, failing FROM ("
    " SELECT change_seq, record, failing,"
    "  sum(coalesce(length(record), 0)) OVER (ORDER BY change_seq ROWS UNBOUNDED PRECEDING)"
    "  - coalesce(length(record), 0) AS before"
    " FROM (SELECT change_seq, failing, CASE WHEN length(record) <= "
    f"{int(store_reading.MAX_RECORD_CHARS)} THEN record END AS record FROM sessions"
    "  WHERE change_seq > ? ORDER BY change_seq LIMIT ?) AS numbered"
    ") AS chunk WHERE before < ? ORDER BY change_seq"
)
#: `SUMMARY_DROPS` as key paths.
_DROPS: Final = tuple(tuple(path.removeprefix("$.").split(".")) for path in SUMMARY_DROPS)


def summary_of(text: str, failing: str) -> SessionRecord:
    """The summary of a stored record, as SQLite's source cuts it (see `SUMMARY_DROPS`).

    Raises ValueError for a row that is not a record.
    """
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError("the stored record is JSON nested too deeply") from None
    for *parents, name in _DROPS:
        holder = data
        for key in parents:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(holder, dict):
            holder.pop(name, None)
    return summary_from_data(data, failing)


class PostgresSource:
    """A `SessionSource` over a PostgreSQL store, with `wait` for the store's notices."""

    partial = True

    def __init__(self, url: str) -> None:
        """Connects at once: a store that cannot be read is a `StoreError` here."""
        self._url = url
        self.name = display_name(url)
        self.note: str | None = None
        self.damaged = 0
        self.more = False
        self._last = 0
        self._engine: Engine | None = None
        self._listener: ChangeListener | None = None
        #: The loss noticed by `wait`, for `changes` to say.
        self._lost: str | None = None
        #: What `changes` says while the connection is lost.
        self._away: StoreError | None = None
        self._retry_at = 0.0
        self._connect()

    def _connect(self) -> None:
        # Listening before reading: a change committed in between is read and noticed.
        listener = ChangeListener(self._url)
        try:
            engine = open_engine(self._url, readonly=True)
        except BaseException:
            listener.close()
            raise
        self._listener, self._engine = listener, engine

    def _drop(self) -> None:
        for part in (self._listener, self._engine):
            if part is not None:
                part.close()
        self._listener = self._engine = None
        self._retry_at = time.monotonic() + RECONNECT_PAUSE

    def _lose(self, why: str) -> StoreError:
        self._drop()
        self.more = False
        self._away = StoreError(
            f"lost the connection to the session store ({why}); reconnecting, and "
            "resuming where it stopped"
        )
        return self._away

    def changes(self) -> list[SessionRecord]:
        """Sessions changed since the previous call, at most `CHUNK` (`more` says if
        others wait); raises `StoreError` once when the connection is lost."""
        if self._lost is not None:
            why, self._lost = self._lost, None
            raise self._lose(why)
        if self._engine is None:
            away = self._away or StoreError("not connected")
            if time.monotonic() < self._retry_at:
                raise away
            try:
                self._connect()
            except StoreError:  # still away: said in the same words
                self._retry_at = time.monotonic() + RECONNECT_PAUSE
                raise away from None
            self._away = None
        assert self._engine is not None
        try:
            rows = self._engine.fetch(_CHANGES, [self._last, CHUNK, CHUNK_CHARS])
        except StoreError as exc:
            if not self._engine.broken:
                raise
            raise self._lose(str(exc).rpartition(": ")[2]) from None
        fetched = sum(len(text) for _seq, text, _f in rows if isinstance(text, str))
        self.more = len(rows) == CHUNK or fetched >= CHUNK_CHARS
        out: list[SessionRecord] = []
        for seq, text, failing in rows:
            self._last = max(self._last, int(seq))  # type: ignore[call-overload]
            if not isinstance(text, str):
                self.damaged += 1
                continue
            try:
                out.append(summary_of(text, str(failing or "")))
            except (TypeError, ValueError):
                self.damaged += 1
        return out

    def wait(self, timeout: float) -> bool:
        """True when the store changed (or it is time to reconnect) within `timeout` s."""
        if self._listener is None:
            pause = self._retry_at - time.monotonic()
            if pause > timeout:
                time.sleep(timeout)
                return False
            time.sleep(max(0.0, pause))
            return True
        try:
            return self._listener.wait(timeout)
        except StoreError as exc:
            self._lost = str(exc)
            return True

    def close(self) -> None:
        self._drop()


def load_records(url: str, ids: Sequence[str]) -> list[SessionRecord]:
    """Whole records by id, through the store interface, in the order of `ids`."""
    store = SessionStore.open(url, readonly=True)
    try:
        return [stored.record for stored in store.by_ids(ids)]
    finally:
        store.close()


def postgres_feed(url: str, *, fallback: float = NOTICE_FALLBACK) -> StoreFeed:
    """Watches the PostgreSQL store at `url`; its password is never shown."""
    return StoreFeed(
        display_name(url),
        lambda: PostgresSource(url),
        fallback,
        loader=partial(load_records, url),
    )
