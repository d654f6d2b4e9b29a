"""The sessions table's bulk add behaves like DataTable.add_row (it relies on Textual internals)."""

from __future__ import annotations

from dataclasses import replace

from textual.app import App, ComposeResult

from kexproxy.core.record import SessionRecord
from kexproxy_tui.app import create_app
from kexproxy_tui.feeds import RecordsFeed
from kexproxy_tui.palette import Palette
from kexproxy_tui.rows import COLUMN_KEYS
from kexproxy_tui.widgets.sessions_table import SessionsTable
from tests.tui.conftest import settle


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield SessionsTable(Palette(), id="bulk")
        yield SessionsTable(Palette(), id="single")


def variants(records: list[SessionRecord], n: int) -> list[SessionRecord]:
    return [replace(records[i % len(records)], id=f"s{i:04d}") for i in range(n)]


async def test_bulk_add_matches_add_row(sshguess_records: list[SessionRecord]) -> None:
    records = variants(sshguess_records, 40)
    app = TableApp()
    async with app.run_test(size=(200, 30)) as pilot:
        bulk = app.query_one("#bulk", SessionsTable)
        single = app.query_one("#single", SessionsTable)
        bulk.replace_rows(records, {"s0003"})
        for record in records:
            single.add_session(record, record.id == "s0003")
        single.resort()
        await pilot.pause()
        assert bulk.row_count == single.row_count == 40
        assert bulk.shown_ids() == single.shown_ids()
        assert bulk.virtual_size == single.virtual_size
        for record in records:
            assert [str(c) for c in bulk.get_row(record.id)] == [
                str(c) for c in single.get_row(record.id)
            ]
        assert str(bulk.get_row("s0003")[0]) == "●"
        # The usual operations still work on bulk-added rows.
        bulk.move_to("s0010")
        assert bulk.current_id == "s0010"
        bulk.remove_session("s0010")
        assert not bulk.has_session("s0010") and bulk.row_count == 39
        bulk.update_session(replace(records[11], outcome="failed"), False)
        assert str(bulk.get_row("s0011")[COLUMN_KEYS.index("outcome")]) == "failed"
        bulk.sort_by("client")
        assert bulk.sort_column == "client"
        bulk.append_sessions(variants(sshguess_records, 45)[40:], set())
        assert bulk.row_count == 44
        await pilot.pause()
        assert bulk.virtual_size.height == 44 + 1


async def test_appending_in_time_order_needs_no_sort(sshguess_records: list[SessionRecord]) -> None:
    records = sorted(variants(sshguess_records, 20), key=lambda r: (r.started or "", r.id))
    app = TableApp()
    async with app.run_test(size=(200, 30)) as pilot:
        table = app.query_one("#bulk", SessionsTable)
        table.append_sessions(records[:10], set())
        sorts = 0
        original = table.resort

        def counted() -> None:
            nonlocal sorts
            sorts += 1
            original()

        table.resort = counted  # type: ignore[method-assign]
        table.append_sessions(records[10:], set())
        assert sorts == 0
        table.append_sessions([replace(records[0], id="early")], set())
        assert sorts == 1
        assert table.shown_ids()[0] in ("early", records[0].id)
        await pilot.pause()


async def test_the_time_column_shows_dates_only_while_the_rows_span_days(
    sshguess_records: list[SessionRecord],
) -> None:
    days = ("2030-01-01", "2030-01-02")
    records = [
        replace(r, id=f"day{i % 2}-{i}", started=f"{days[i % 2]}T10:00:{i:02d}.000000Z")
        for i, r in enumerate(variants(sshguess_records, 6))
    ]
    app = create_app(RecordsFeed(records))
    async with app.run_test(size=(200, 30)) as pilot:
        await settle(pilot, app)
        screen = app.sessions_screen
        table = screen.table

        def times() -> list[str]:
            column = COLUMN_KEYS.index("time")
            return [str(table.get_row(i)[column]) for i in table.shown_ids()]

        assert times()[0] == "01-01 10:00:00"
        screen.apply_filter("day0")
        await pilot.pause()
        assert times() == ["10:00:00", "10:00:02", "10:00:04"]
        screen.apply_filter("")
        await pilot.pause()
        assert times() == [f"{days[i % 2][5:]} 10:00:{i:02d}" for i in (0, 2, 4, 1, 3, 5)]
        assert table.row_count == 6
