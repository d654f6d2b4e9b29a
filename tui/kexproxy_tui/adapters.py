"""Feeds over the other parts of kexproxy: the SQLite session store and the live proxy.

Kept apart from `feeds` because only this module knows their APIs; the rest of the
dashboard sees the `SessionSource` and `Feed` protocols.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from kexproxy import present
from kexproxy.core.observer import Endpoint
from kexproxy.core.record import SessionRecord
from kexproxy.pipeline import Pipeline, Stage
from kexproxy.pipeline import stages as default_stages
from kexproxy.sinks import store_reading
from kexproxy.sinks.base import Sink
from kexproxy_tui.feeds import MessageSink, Post, StoreFeed
from kexproxy_tui.messages import FeedFinished, FeedProblem, FeedStatus

#: Seconds between two checks whether the app is closing, in the proxy's thread.
STOP_POLL = 0.1
#: Live rows re-read per poll at most; the rest wait for the next poll.
MAX_LIVE_CHECKS = 2_000


#: What the table and the filter do not need, left in the store until a session is opened:
#: most of a record's size (the offers, the timeline, most of the diagnosis).
SUMMARY_DROPS = (
    "$.client_kexinit",
    "$.server_kexinit",
    "$.timeline",
    "$.failures",
    "$.rejections",
    "$.notes",
    "$.host_key",
    "$.dh_gex",
    "$.pre_banner_lines",
    "$.evidence.closes",
    "$.evidence.disconnects",
    "$.evidence.timeout",
    "$.diagnosis.algorithms",
    "$.diagnosis.reasons",
    "$.diagnosis.real_fix",
    "$.diagnosis.fixes",
    "$.diagnosis.terrapin",
    "$.diagnosis.post_quantum",
    "$.diagnosis.host_key_size",
    "$.diagnosis.dh_gex",
    "$.diagnosis.version_hint",
    "$.diagnosis.unknown",
)
#: The fields dropped above, as a summary record has them.
_SUMMARY_DEFAULTS: dict[str, object] = {
    "client_kexinit": None,
    "server_kexinit": None,
    "timeline": [],
    "hassh_algorithms": None,
    "hassh_server_algorithms": None,
    "rejections": {},
    "notes": [],
    "host_key": None,
}
# SQLite cuts the summary out of the stored JSON in C: decoding whole records in Python
# takes seconds for 10,000 sessions, a summary a tenth of that. A damaged row (not text,
# too big, not JSON) gives NULL instead of failing the whole query, and the summary comes
# as bytes: the driver would fail the whole fetch on one that is not UTF-8.
_SUMMARY = (
    "CAST(CASE WHEN typeof(record) <> 'text' OR length(record) > {limit} THEN NULL "
    "WHEN json_valid(record) THEN json_remove(record, "
    + ", ".join(f"'{path}'" for path in SUMMARY_DROPS)
    + ") END AS BLOB)"
)
#: New sessions read per poll; a fuller store takes several polls, done back to back.
CHUNK = 2_000
#: Ids per query when loading whole records (SQLite's variable limit is 32766).
LOAD_CHUNK = 500


def summary_record(summary: bytes, failing: bytes) -> SessionRecord:
    """A record from its stored summary: the dropped fields empty, the failing lists from
    the store's own column (without the offers).

    Raises ValueError for a damaged row (not UTF-8, not a record, JSON nested too deeply).
    """
    try:
        data = json.loads(summary.decode())
        names = failing.decode()
    except RecursionError:
        raise ValueError("the stored record is JSON nested too deeply") from None
    return summary_from_data(data, names)


def summary_from_data(data: object, names: str) -> SessionRecord:
    """A record from a decoded summary and the store's ``failing`` column (see
    `summary_record`); raises ValueError when `data` is not a record."""
    if not isinstance(data, dict):
        raise ValueError("a stored record is not a JSON object")
    for name, value in _SUMMARY_DEFAULTS.items():
        data.setdefault(name, value)
    data["failures"] = [
        {"list": name, "client_offer": [], "server_offer": []} for name in names.split(",") if name
    ]
    return SessionRecord.from_dict(data)


class StoreSource:
    """What changed in a session store since the last look, read without ever writing.

    New rows are found by rowid (the store upserts, so a session keeps its rowid); rows not
    yet final (live sessions) are re-read until they are, because only they still change.
    `SessionStore.open(readonly=True)` checks the file and its schema version first. It
    gives summaries (`partial`); `load_records` reads whole records.
    """

    partial = True

    def __init__(self, path: str) -> None:
        self._db, self.note = _connect(path)
        self._last_rowid = 0
        #: rowid -> the stored summary of sessions still live, to see whether they changed.
        self._live: dict[int, bytes] = {}
        self.damaged = 0
        #: Set by `changes` when more new sessions wait: the next poll need not wait.
        self.more = False

    def changes(self) -> list[SessionRecord]:
        """New and changed sessions, at most `CHUNK` new ones: a big store arrives in
        pieces, so the first rows show at once and the rest follow."""
        out: list[SessionRecord] = []
        summary = _SUMMARY.format(limit=int(store_reading.MAX_RECORD_CHARS))
        rows = self._db.execute(
            f"SELECT rowid, {summary}, CAST(failing AS BLOB), final FROM sessions WHERE rowid > ? "
            "ORDER BY rowid LIMIT ?",
            (self._last_rowid, CHUNK),
        ).fetchall()
        self.more = len(rows) == CHUNK
        live_ids = list(self._live)[:MAX_LIVE_CHECKS]
        if live_ids:
            marks = ",".join("?" * len(live_ids))
            rows += self._db.execute(
                f"SELECT rowid, {summary}, CAST(failing AS BLOB), final FROM sessions "
                f"WHERE rowid IN ({marks})",
                live_ids,
            ).fetchall()
        for rowid, text, failing, final in rows:
            self._last_rowid = max(self._last_rowid, rowid)
            if text is None:
                self.damaged += 1
                self._live.pop(rowid, None)
                continue
            if self._live.get(rowid) == text:
                continue
            if final:
                self._live.pop(rowid, None)
            else:
                self._live[rowid] = text
            try:
                out.append(summary_record(text, failing or b""))
            except (TypeError, ValueError):
                self.damaged += 1
        return out

    def close(self) -> None:
        self._db.close()


def _connect(path: str) -> tuple[sqlite3.Connection, str | None]:
    """A read-only connection to the store (checked first), and what to note about it."""
    from kexproxy.sinks.store import SessionStore

    SessionStore.open(path, readonly=True).close()
    return store_reading.connect_readonly(path)


def load_records(path: str, ids: Sequence[str]) -> list[SessionRecord]:
    """Whole records by id, in the order of `ids` (those not found are left out)."""
    db, _ = _connect(path)
    try:
        found: dict[str, SessionRecord] = {}
        for start in range(0, len(ids), LOAD_CHUNK):
            chunk = list(ids[start : start + LOAD_CHUNK])
            marks = ",".join("?" * len(chunk))
            for kind, size, raw in db.execute(
                f"SELECT {store_reading.record_columns()} FROM sessions WHERE id IN ({marks})",
                chunk,
            ).fetchall():
                try:
                    record = store_reading.decode_record(kind, size, raw)
                except (ValueError, TypeError):  # damaged: its summary was counted already
                    continue
                found[record.id] = record
    finally:
        db.close()
    return [found[i] for i in ids if i in found]


def store_feed(path: str) -> StoreFeed:
    """Watches the store at `path` (written by ``kexproxy proxy``)."""
    return StoreFeed(Path(path).name, lambda: StoreSource(path), loader=partial(load_records, path))


class ProxyFeed:
    """Runs the proxy in a thread with its own event loop; records reach the app as messages.

    The relay never waits for the UI: its loop is not the app's, and publishing a record
    only queues a message. Optionally also records into a store, as ``kexproxy proxy`` does.
    """

    def __init__(
        self,
        listen: tuple[str, int],
        upstream: tuple[str, int] | None,
        *,
        store: str | None = None,
        use_uvloop: bool = True,
        stages: Sequence[Stage] | None = None,
        tproxy: bool = False,
    ) -> None:
        """`upstream` None: transparent mode, each connection to its original destination
        (iptables REDIRECT, or TPROXY with `tproxy`)."""
        self.tproxy = tproxy
        self.listen = listen
        self.upstream = upstream
        self.store = store
        self.use_uvloop = use_uvloop
        self.stages = tuple(default_stages() if stages is None else stages)
        self.label = f"proxy {_show(listen)} → {self._target}"
        #: Where the proxy really listens (port 0 resolved), once it does.
        self.address: Endpoint | None = None
        self.ready = threading.Event()
        #: Set by `stop_accepting`: the relay takes no new connection, the open ones go on.
        self.draining = threading.Event()

    def stop_accepting(self) -> None:
        """Takes no new connection from now on (the dashboard waits for the open ones)."""
        self.draining.set()

    @property
    def _target(self) -> str:
        return "original destinations" if self.upstream is None else _show(self.upstream)

    def run(self, post: Post, stop: threading.Event) -> None:
        from kexproxy.sources.proxy import (
            ProxyConfig,
            new_event_loop,
            raise_fd_limit,
            serve,
        )

        raise_fd_limit()
        sinks: list[Sink] = [MessageSink(post)]
        store_sink = None
        warn = _warner(post)
        if self.store is not None:
            from kexproxy.sinks.store import StoreSink

            store_sink = StoreSink(self.store, warn=warn)
            sinks.append(store_sink)

        pipeline = Pipeline(sinks, stages=self.stages)

        config = ProxyConfig(
            listen=self.listen,
            upstream=self.upstream,
            transparent=self.upstream is None and not self.tproxy,
            tproxy=self.tproxy,
        )

        def ready(address: Endpoint) -> None:
            self.address = address
            self.ready.set()
            post(FeedStatus(f"proxy {_show((address.ip, address.port))} → {self._target}"))

        async def main() -> None:
            halt = asyncio.Event()
            drain = asyncio.Event()

            async def watch() -> None:
                # The app's stop is a thread Event; a few checks a second cost nothing.
                while not stop.is_set():
                    if self.draining.is_set():
                        drain.set()
                    await asyncio.sleep(STOP_POLL)
                halt.set()

            watcher = asyncio.create_task(watch())
            try:
                await serve(
                    config,
                    pipeline.publish,
                    stop=halt,
                    ready=ready,
                    warn=warn,
                    shutdown_reason=lambda: "the dashboard was closed while the session was open",
                    drain=drain,
                )
            finally:
                watcher.cancel()

        loop = new_event_loop(use_uvloop=self.use_uvloop)
        try:
            loop.run_until_complete(main())
        except OSError as exc:
            post(FeedProblem(f"cannot listen on {_show(self.listen)}: {exc.strerror or exc}"))
            post(FeedFinished("proxy not running"))
            return
        finally:
            loop.close()
            self.ready.set()
            pipeline.close()
        post(FeedFinished("proxy stopped"))


def _warner(post: Post) -> Callable[[str], None]:
    def warn(text: str) -> None:
        post(FeedProblem(text.removeprefix("kexproxy: ")))

    return warn


def _show(address: tuple[str, int]) -> str:
    return present.address(*address)


def proxy_feed(
    listen: str,
    upstream: str | None,
    *,
    store: str | None = None,
    stages: Sequence[Stage] | None = None,
    tproxy: bool = False,
) -> ProxyFeed:
    """The proxy from `listen` (``[HOST:]PORT``) to `upstream` (``HOST[:PORT]``), resolved now;
    `upstream` None for transparent mode.

    Raises ValueError with a message for the command line.
    """
    from kexproxy.sources.proxy import parse_address, resolve

    # TPROXY hands connections to a listener matching their destination: a wildcard one.
    where = parse_address(listen, default_host="::" if tproxy else "127.0.0.1", default_port=None)
    if upstream is None:
        return ProxyFeed(where, None, store=store, stages=stages, tproxy=tproxy)
    to = parse_address(upstream, default_host=None, default_port=22)
    try:
        resolve(*to)
    except OSError as exc:
        raise ValueError(f"cannot resolve the upstream {to[0]}: {exc.strerror or exc}") from exc
    return ProxyFeed(where, to, store=store, stages=stages)
