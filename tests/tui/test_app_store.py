"""Watching a store that another process writes: new sessions and updates appear live."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from kexproxy.core.record import SessionRecord
from kexproxy.sinks.store import SessionStore, StoreError
from kexproxy_tui.adapters import StoreSource, load_records, store_feed
from kexproxy_tui.app import create_app
from kexproxy_tui.feeds import StoreFeed
from kexproxy_tui.screens.detail import DetailScreen

from .conftest import CAPTURES, DASHBOARD_PCAP, ROOT, screen_lines, type_text, wait_for

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


async def test_the_detail_of_a_stored_session_is_the_whole_record(tmp_path: Path) -> None:
    """The table holds summaries; opening a session reads the whole record from the store."""
    db = tmp_path / "sessions.db"
    writer = subprocess.run(
        [sys.executable, "-m", "tests.tui.store_writer", str(db), str(DASHBOARD_PCAP)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert writer.stdout.split()[-1] == "3"
    app = create_app(store_feed(str(db)))
    async with app.run_test(size=(120, 80)) as pilot:
        await wait_for(pilot, lambda: app.sessions_screen.table.row_count == 3)
        failed = next(r for r in app.index if r.failing_lists == ["kex_algorithms"])
        assert failed.client_kexinit is None  # a summary
        assert app.index.is_partial(failed.id)
        app.sessions_screen.table.move_to(failed.id)
        await pilot.press("enter")
        text = "\n".join(screen_lines(app))
        assert "✗ diffie-hellman-group14-sha1" in text
        assert "client: Unable to negotiate with 127.0.0.1 port" in text
        assert isinstance(app.screen, DetailScreen)
        assert app.screen.record.timeline and app.screen.record.client_kexinit
        # An export writes whole records too, not the summaries the table holds.
        target = tmp_path / "export.jsonl"
        await pilot.press("escape", "e")
        await type_text(pilot, str(target))
        await pilot.press("enter")
        await wait_for(pilot, lambda: target.exists() and len(target.read_text().splitlines()) == 3)
        exported = [json.loads(line) for line in target.read_text().splitlines()]
        assert all(r["client_kexinit"] and r["timeline"] for r in exported)


@pytest.mark.peers
async def test_a_store_written_by_a_kexproxy_proxy_process(tmp_path: Path) -> None:
    """`kexproxy proxy` in its own process, real ssh and sshd; the dashboard watches its store."""
    from tests.peers import Sshd, free_port, kill_tree, run_ssh, which_or_skip

    which_or_skip("ssh")
    db = tmp_path / "proxy.db"
    with Sshd(["KexAlgorithms curve25519-sha256"]) as sshd:
        port = free_port()
        proxy = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kexproxy",
                "proxy",
                "--listen",
                f"127.0.0.1:{port}",
                "--upstream",
                f"127.0.0.1:{sshd.port}",
                "--store",
                str(db),
                "--quiet",
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proxy.stderr is not None
            assert "listening on" in proxy.stderr.readline()
            app = create_app(
                StoreFeed(
                    "proxy.db",
                    lambda: StoreSource(str(db)),
                    interval=0.1,
                    loader=lambda ids: load_records(str(db), ids),
                )
            )
            async with app.run_test(size=(120, 80)) as pilot:
                ok = await asyncio.to_thread(run_ssh, port)
                failed = await asyncio.to_thread(
                    run_ssh, port, "-oKexAlgorithms=diffie-hellman-group14-sha1"
                )
                assert failed.negotiation_message
                await wait_for(
                    pilot,
                    lambda: (
                        sorted(r.outcome for r in app.index if r.ended) == ["failed", "negotiated"]
                    ),
                )
                assert ok.returncode == 0, ok.stderr
                failure = next(r for r in app.index if r.outcome == "failed")
                app.sessions_screen.table.move_to(failure.id)
                await pilot.press("enter")
                flat = " ".join("\n".join(screen_lines(app)).split())
                assert failed.negotiation_message in flat
                assert "✗ curve25519-sha256" in flat
        finally:
            kill_tree(proxy)


async def test_a_store_is_searched_by_what_was_offered(tmp_path: Path) -> None:
    """Issue 11 item 4 over a store: its rows are summaries without the KEXINITs, but they
    keep the HASSH inputs, so `offers:` and free text still find a name only offered."""
    from kexproxy.filtering import Subject, parse_filter

    db = tmp_path / "sessions.db"
    subprocess.run(
        [sys.executable, "-m", "tests.tui.store_writer", str(db), str(DASHBOARD_PCAP)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    app = create_app(store_feed(str(db)))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.sessions_screen.table.row_count == 3)
        summaries = list(app.index)
        assert all(r.client_kexinit is None for r in summaries)
        # The failing client offered only diffie-hellman-group14-sha1; nobody chose it.
        for text in ("offers:diffie-hellman-group14-sha1", "diffie-hellman-group14-sha1"):
            matched = [r for r in summaries if parse_filter(text).matches(Subject.of(r))]
            assert [r.failing_lists for r in matched] == [["kex_algorithms"]], text
