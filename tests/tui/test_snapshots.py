"""Snapshots of the sessions, detail and help screens at 80x24 and 120x40.

Fixed records from real captures (no clock, no live source), so the pictures only change
when the dashboard does. Regenerate after a deliberate change with
``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from kexproxy.core.record import SessionRecord
from kexproxy_tui.app import KexproxyApp, create_app
from kexproxy_tui.feeds import RecordsFeed

from .conftest import settle

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]

SnapCompare = Callable[..., bool]


def loaded(*keys: str) -> Callable[[Pilot[None]], Any]:
    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, KexproxyApp)
        await settle(pilot, app)
        if keys:
            await pilot.press(*keys)
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_sessions_screen(
    snap_compare: SnapCompare,
    size: tuple[int, int],
    dashboard_records: list[SessionRecord],
    quadratic_record: SessionRecord,
) -> None:
    app = create_app(RecordsFeed([*dashboard_records, quadratic_record], label="captures"))
    assert snap_compare(app, terminal_size=size, run_before=loaded())


@pytest.mark.parametrize("size", SIZES)
def test_detail_screen_of_a_kex_failure(
    snap_compare: SnapCompare, size: tuple[int, int], dashboard_records: list[SessionRecord]
) -> None:
    app = create_app(RecordsFeed(dashboard_records))
    assert snap_compare(app, terminal_size=size, run_before=loaded("down", "enter"))


@pytest.mark.parametrize("size", SIZES)
def test_help_screen(
    snap_compare: SnapCompare, size: tuple[int, int], dashboard_records: list[SessionRecord]
) -> None:
    app = create_app(RecordsFeed(dashboard_records))
    assert snap_compare(app, terminal_size=size, run_before=loaded("question_mark"))


def test_hostile_record_in_the_table_and_detail(
    snap_compare: SnapCompare, hostile_record: SessionRecord, dashboard_records: list[SessionRecord]
) -> None:
    app = create_app(RecordsFeed([dashboard_records[0], hostile_record]))
    assert snap_compare(app, terminal_size=(120, 40), run_before=loaded("down", "enter"))


def test_filtered_sessions_at_80x24(
    snap_compare: SnapCompare, dashboard_records: list[SessionRecord]
) -> None:
    app = create_app(RecordsFeed(dashboard_records))

    async def run_before(pilot: Pilot[None]) -> None:
        await loaded()(pilot)
        screen = app.sessions_screen
        await pilot.press("slash")
        screen.query_one("#filter").value = "outcome:failed"  # type: ignore[attr-defined]
        await pilot.press("enter", "m")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
