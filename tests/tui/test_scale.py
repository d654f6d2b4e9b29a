"""Scale: a store of 10,000 sessions opens page by page, filters and scrolls; filters over a
fleet's day of 100,000 sessions find exactly the matching sessions; 100 new sessions a second
are taken in as throttled table updates while someone types a filter.

The sessions come from the real pipeline over the bundled captures, copied with other ids,
client addresses and times (tests/tui/scale.py). Speed is measured, not asserted, here: the
figures are printed (run with -s to see them), and scripts/bench_dashboard measures the
issue's limits (open under 2 s, a filter under 1 s) on a quiet machine. On a shared test
machine a time limit fails for the load of other jobs, not for the code (CI once took
2.20 s of CPU to open 10,000 sessions where a quiet run takes 1.6 s).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from kexproxy.core.record import SessionRecord
from kexproxy.filtering import parse_filter
from kexproxy_tui.adapters import CHUNK, store_feed
from kexproxy_tui.app import create_app
from kexproxy_tui.feeds import Post, RecordsFeed
from kexproxy_tui.messages import FeedFinished, SessionsArrived
from kexproxy_tui.model import Change

from .conftest import settle, wait_for
from .scale import many, seed_records, write_store

SESSIONS = 10_000
#: A fleet's day (issue 15). scripts/bench_dashboard measured a filter over it at 0.3-0.7 s;
#: before subjects were worked out on arrival and rows prepared once, the first filter took
#: 4-6 s and showing all 100,000 again 2.5 s.
FLEET_SESSIONS = 100_000
#: The table is redrawn at most this many times a second however fast sessions arrive.
MAX_UPDATES_A_SECOND = 11

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def seed() -> list[SessionRecord]:
    return seed_records()


@pytest.fixture(scope="module")
def sessions(seed: list[SessionRecord]) -> list[SessionRecord]:
    return many(seed, SESSIONS)


@pytest.fixture(scope="module")
def store(sessions: list[SessionRecord], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scale") / "sessions.db"
    write_store(path, sessions)
    return path


async def test_a_store_of_10000_sessions_opens_filters_and_scrolls(store: Path) -> None:
    # The fixtures' 10,000 records are not the app's: out of the collector's sight, they do
    # not slow this process down more than a fresh `kexproxy tui --store` would be.
    gc.collect()
    gc.freeze()
    app = create_app(store_feed(str(store)))
    wall, cpu = time.perf_counter(), time.process_time()
    shown_at: list[tuple[int, float, float]] = []
    original = app.sessions_screen.sessions_changed

    def timed(changes: list[Change]) -> None:
        original(changes)
        rows = app.sessions_screen.table.row_count
        shown_at.append((rows, time.perf_counter() - wall, time.process_time() - cpu))

    app.sessions_screen.sessions_changed = timed  # type: ignore[method-assign]
    arrived: list[int] = []
    take = app.pending.add

    def counted(records: Sequence[SessionRecord], **kwargs: Any) -> None:
        arrived.append(len(records))
        take(records, **kwargs)

    app.pending.add = counted  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.sessions_screen.table
        await wait_for(pilot, lambda: table.row_count == SESSIONS, timeout=30)
        first_rows = shown_at[0][1]
        _rows, opened, opened_cpu = next(t for t in shown_at if t[0] == SESSIONS)
        print(
            f"\nopen {SESSIONS} sessions: first {shown_at[0][0]} rows shown after "
            f"{first_rows:.2f} s, all after {opened:.2f} s wall, {opened_cpu:.2f} s CPU"
        )

        screen = app.sessions_screen
        timings: list[tuple[str, float, int]] = []
        for text in ("outcome:failed", "list:kex !software:openssh", "client:10.0.0.0/16", ""):
            start = time.perf_counter()
            screen.apply_filter(text)
            await pilot.pause()
            timings.append((text or "(none)", time.perf_counter() - start, table.row_count))
        for text, seconds, rows in timings:
            print(f"filter {text!r}: {seconds:.2f} s, {rows} rows")
        assert timings[-1][2] == SESSIONS
        assert timings[0][2] == sum(1 for r in app.index if r.outcome == "failed")

        table.focus()
        top = table.cursor_row
        start = time.perf_counter()
        for _ in range(8):
            await pilot.press("pagedown")
        page = (time.perf_counter() - start) / 8
        paged = table.cursor_row
        start = time.perf_counter()
        for _ in range(8):
            await pilot.press("down")
        line = (time.perf_counter() - start) / 8
        print(f"scroll: {page * 1000:.0f} ms a page, {line * 1000:.0f} ms a line (with Pilot)")

        # Paged from the store: the sessions come a chunk at a time, not all in one read (how
        # many are shown at the first redraw depends on how busy the machine is).
        assert sum(arrived) == SESSIONS and max(arrived) <= CHUNK < SESSIONS, arrived
        assert len(arrived) >= SESSIONS // CHUNK
        assert [rows for rows, _w, _c in shown_at] == sorted(rows for rows, _w, _c in shown_at)
        assert paged > top + 8 * 8, (top, paged)
        assert table.cursor_row == paged + 8


async def test_filters_over_100000_sessions_take_under_the_limit(
    seed: list[SessionRecord],
) -> None:
    records = many(seed, FLEET_SESSIONS)
    failed = sum(1 for r in records if r.outcome == "failed")
    in_block = sum(1 for r in records if str(r.client["ip"]).startswith("10.1."))
    gc.collect()
    gc.freeze()
    app = create_app(RecordsFeed(records))
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.sessions_screen.table
        await wait_for(pilot, lambda: table.row_count == FLEET_SESSIONS, timeout=120)
        screen = app.sessions_screen
        timings: list[tuple[str, float, float]] = []
        for text, expected in (
            ("outcome:failed", failed),
            ("client:10.1.0.0/16", in_block),
            ("list:kex", None),
            ("", FLEET_SESSIONS),
        ):
            wall, cpu = time.perf_counter(), time.process_time()
            screen.apply_filter(text)
            await pilot.pause()
            timings.append((text, time.perf_counter() - wall, time.process_time() - cpu))
            if expected is not None:
                assert table.row_count == expected, text
            assert screen.counters.total == table.row_count
        for text, seconds, cpu_seconds in timings:
            print(
                f"\nfilter {text or '(none)'!r} over {FLEET_SESSIONS}: {seconds:.2f} s wall, "
                f"{cpu_seconds:.2f} s CPU"
            )


class Flood:
    """A feed that sends `rate` sessions a second, one message each, like a busy proxy."""

    label = "flood"

    def __init__(self, records: list[SessionRecord], rate: int) -> None:
        self.records = records
        self.rate = rate

    def run(self, post: Post, stop: threading.Event) -> None:
        interval = 1 / self.rate
        next_at = time.monotonic()
        for record in self.records:
            if stop.is_set():
                return
            post(SessionsArrived((record,)))
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        post(FeedFinished(f"{len(self.records)} sessions"))


async def test_100_sessions_a_second_do_not_freeze_typing(sessions: list[SessionRecord]) -> None:
    """The app's event loop (keys, mouse, drawing) is never held up long while a store of
    5,000 sessions gets 100 more a second and someone types a filter."""
    base, live = sessions[:5000], sessions[5000:5250]
    app = create_app(RecordsFeed(base))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        screen = app.sessions_screen
        updates = 0
        original = screen.sessions_changed

        def counted(changes: list[Change]) -> None:
            nonlocal updates
            updates += 1
            original(changes)

        screen.sessions_changed = counted  # type: ignore[method-assign]
        lags: list[float] = []
        probing = True

        async def probe() -> None:
            # How late a 10 ms sleep wakes up is how long the loop was busy elsewhere.
            while probing:
                start = time.perf_counter()
                await asyncio.sleep(0.01)
                lags.append(time.perf_counter() - start - 0.01)

        prober = asyncio.create_task(probe())
        flood = Flood(live, rate=100)
        app._stop.clear()
        app.run_worker(lambda: flood.run(app.post_message, app._stop), thread=True)
        start = time.perf_counter()
        await pilot.press("slash")
        for ch in "software:ssh !outcome:n":
            await pilot.press({" ": "space", ":": "colon", "!": "exclamation_mark"}.get(ch, ch))
        await wait_for(pilot, lambda: len(app.index) == len(base) + len(live), timeout=30)
        elapsed = time.perf_counter() - start
        probing = False
        await prober
        lags.sort()
        p99 = lags[int(len(lags) * 0.99)]
        print(
            f"\n100 sessions/s for {elapsed:.1f} s while typing a filter: {updates} table "
            f"updates ({updates / elapsed:.1f}/s); event loop held up at most "
            f"{lags[-1] * 1000:.0f} ms, 99% under {p99 * 1000:.0f} ms"
        )
        assert screen.query_one("#filter").value == "software:ssh !outcome:n"  # type: ignore[attr-defined]
        assert updates / elapsed <= MAX_UPDATES_A_SECOND
        # The typed filter holds for the sessions that arrived while it was typed: the rows
        # added one batch at a time are those a filter over all of them shows.
        expected = len(app.index.matching(parse_filter("software:ssh !outcome:n")))
        await wait_for(pilot, lambda: screen.table.row_count == expected, timeout=10)
        assert 0 < expected < len(app.index)
