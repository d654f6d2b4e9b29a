"""Watching a store that another process writes: new sessions and updates appear live."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from kexproxy_tui.adapters import StoreSource, store_feed
from kexproxy_tui.app import create_app
from kexproxy_tui.feeds import StoreFeed

from kexproxy.core.record import SessionRecord
from kexproxy.sinks.store import SessionStore, StoreError

from .conftest import CAPTURES, DASHBOARD_PCAP, ROOT, screen_lines, wait_for

STORE_CAPTURES = [str(DASHBOARD_PCAP), *sorted(str(p) for p in CAPTURES.glob("openssh-*.pcap"))]


def test_store_source_reports_new_rows_and_changes_of_live_ones(
    tmp_path: Path, dashboard_records: list[SessionRecord]
) -> None:
    ok, kex, cipher = dashboard_records
    db = tmp_path / "s.db"
    store = SessionStore.open(db)
    store.put(replace(ok, ended=None), final=False)
    store.put(kex, final=True)
    source = StoreSource(str(db))
    try:
        assert [r.id for r in source.changes()] == [ok.id, kex.id]
        assert source.changes() == []
        store.put(ok, final=True)  # the live one ends
        store.put(cipher, final=False)
        changed = source.changes()
        assert {r.id for r in changed} == {ok.id, cipher.id}
        assert next(r for r in changed if r.id == ok.id).ended == ok.ended
        assert source.changes() == []
        store.put(replace(cipher, bytes={"c2s": 1, "s2c": 2}), final=False)
        (update,) = source.changes()
        assert update.bytes == {"c2s": 1, "s2c": 2}
    finally:
        source.close()
        store.close()


def test_store_source_refuses_what_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        StoreSource(str(tmp_path / "missing.db"))
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite")
    with pytest.raises(StoreError):
        StoreSource(str(junk))


async def test_a_bad_store_is_reported(tmp_path: Path) -> None:
    app = create_app(store_feed(str(tmp_path / "missing.db")))
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_for(pilot, lambda: app.feed_done)
        assert any("no session store here" in n.message for n in app._notifications)


async def test_sessions_from_a_store_written_by_another_process(tmp_path: Path) -> None:
    db = tmp_path / "sessions.db"
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.tui.store_writer", str(db), *STORE_CAPTURES],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        app = create_app(StoreFeed("sessions.db", lambda: StoreSource(str(db)), interval=0.1))
        async with app.run_test(size=(120, 30)) as pilot:
            # Live versions first: no end time yet.
            await wait_for(pilot, lambda: len(app.index) >= 2)
            assert any(r.ended is None for r in app.index)
            # Then every session, final, with its end.
            await wait_for(pilot, lambda: writer.poll() is not None, timeout=30)
            expected = int(writer.stdout.readline().split()[1])
            await wait_for(
                pilot,
                lambda: len(app.index) == expected and all(r.ended for r in app.index),
            )
            app.flush()
            await pilot.pause()
            assert app.sessions_screen.table.row_count == expected
            text = "\n".join(screen_lines(app))
            assert "watching sessions.db" in text
            assert f"{expected} sessions" in text
            assert app.sessions_screen.counters.failed >= 2
    finally:
        writer.kill()
        writer.wait()
