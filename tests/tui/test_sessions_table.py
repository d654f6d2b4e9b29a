"""The sessions table's bulk add behaves like DataTable.add_row (it relies on Textual internals)."""

from __future__ import annotations

from dataclasses import replace

from textual.app import App, ComposeResult

from kexproxy.core.record import SessionRecord
from kexproxy_tui.palette import Palette
from kexproxy_tui.rows import COLUMN_KEYS
from kexproxy_tui.widgets.sessions_table import SessionsTable


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
