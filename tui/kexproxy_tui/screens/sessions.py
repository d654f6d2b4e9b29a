"""The sessions screen: counters, the failures chart, the filter and the live table."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, Static

from kexproxy.core.record import SessionRecord
from kexproxy.filtering import MATCH_ALL, Filter, FilterError, broken_filter, parse_filter
from kexproxy_tui.messages import DetailWanted, ExportWanted, WhatIfWanted
from kexproxy_tui.model import Change, Counters, SessionIndex, collector_paused
from kexproxy_tui.palette import Palette
from kexproxy_tui.rows import SORTABLE
from kexproxy_tui.widgets.filter_bar import FilterInput
from kexproxy_tui.widgets.sessions_table import SessionsTable
from kexproxy_tui.widgets.summary import SummaryBar

#: Seconds of quiet typing before the filter applies (enter applies at once).
FILTER_DEBOUNCE = 0.25
#: Above this many rows a live re-sort waits for the next sort tick instead of every batch.
EAGER_SORT_ROWS = 2_000
#: A batch this large is applied by rebuilding the table rather than row by row.
BULK_CHANGES = 500
#: Seconds between two re-sorts of a large table while sessions stream in.
SORT_INTERVAL = 1.0


class SessionsScreen(Screen[None]):
    """Every session that matches the filter, newest arrivals applied in batches.

    It reads the app's `index` and `palette`, given to it, and asks for a detail or an
    export with a message, so that it knows nothing of the app.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        # A priority binding runs as the key is read, before the keys after it are handed
        # on: `/` then `enter` sent at once must reach the filter, not the table.
        Binding(
            "slash",
            "focus_filter",
            "Filter",
            key_display="/",
            tooltip="type a filter (see below)",
            priority=True,
        ),
        Binding("enter", "open", "Detail", show=False, tooltip="open the session under the cursor"),
        Binding("f", "follow", "Follow", tooltip="follow: keep the cursor on the newest session"),
        Binding("m", "mark", "Mark", tooltip="mark the session for export and go down"),
        Binding(
            "e",
            "export",
            "Export",
            tooltip="write the marked sessions, or all shown, as JSON lines",
        ),
        Binding(
            "w",
            "whatif",
            "What if",
            tooltip="type an sshd_config change, see which clients it breaks",
        ),
        Binding("s", "sort_next", "Sort", tooltip="sort by the next column"),
        Binding(
            "S",
            "sort_reverse",
            "Reverse sort",
            show=False,
            key_display="S",
            tooltip="reverse the sort",
        ),
        Binding("u", "unmark_all", "Unmark all", show=False, tooltip="unmark every session"),
        Binding(
            "escape",
            "leave_filter",
            "Back to table",
            show=False,
            tooltip="leave the filter, back to the table",
        ),
    ]

    def __init__(self, index: SessionIndex, palette: Palette) -> None:
        super().__init__()
        self.index = index
        self.palette = palette
        self.filter: Filter = MATCH_ALL
        self.marked: set[str] = set()
        self.counters = Counters()
        self.follow = False
        self.status_text = ""
        self.filter_problem: str | None = None
        self._debounce: Timer | None = None
        self._sort_dirty = False

    def compose(self) -> ComposeResult:
        palette = self.palette
        yield SummaryBar(palette, id="summary")
        with Horizontal(id="filter-row"):
            yield FilterInput(id="filter")
            yield Static(id="status", markup=False)
        yield SessionsTable(palette, id="sessions")
        yield Footer()

    @property
    def table(self) -> SessionsTable:
        return self.query_one(SessionsTable)

    def on_mount(self) -> None:
        self.set_interval(SORT_INTERVAL, self._sort_tick)
        self.table.focus()
        self.refresh_header()

    # --- sessions arriving ------------------------------------------------------------

    def sessions_changed(self, changes: list[Change]) -> None:
        """Applies one batch from the app: add, update or drop rows, then counters and sort."""
        table = self.table
        if len(changes) > BULK_CHANGES:
            # A store opening or a capture read at full speed: new rows go in as one block.
            fresh = [c.new for c in changes if c.old is None]
            changes = [c for c in changes if c.old is not None]
            shown = [r for r in fresh if self._matches(r)]
            facts = self.index.facts
            for record in shown:
                self.counters.add(facts(record))
            if self._dates_changed():
                self._rebuild()
                changes = []
            else:
                table.append_sessions(shown, self.marked)
            if self.follow and shown:
                table.move_to(shown[-1].id)
        newest: SessionRecord | None = None
        added = 0
        for change in changes:
            old, new = change.old, change.new
            was = old is not None and table.has_session(old.id)
            now = self._matches(new)
            if was and old is not None:
                self.counters.remove(self.index.facts(old))
            if now:
                self.counters.add(self.index.facts(new))
                if was:
                    table.update_session(new, new.id in self.marked)
                else:
                    table.add_session(new, new.id in self.marked)
                    added += 1
                newest = new
            elif was:
                table.remove_session(new.id)
        if self._dates_changed():
            self._rebuild()
            added = 0
        if added:
            if table.row_count <= EAGER_SORT_ROWS:
                table.resort()
            else:
                self._sort_dirty = True
        if self.follow and newest is not None:
            table.move_to(newest.id)
        self.refresh_header()

    def _matches(self, record: SessionRecord) -> bool:
        return not self.filter or self.filter.matches(self.index.subject(record.id))

    def _sort_tick(self) -> None:
        if self._sort_dirty:
            self._sort_dirty = False
            self.table.resort()
            if self.follow:
                self._follow_newest()

    def _follow_newest(self) -> None:
        ids = self.table.shown_ids()
        if not ids:
            return
        newest = max(ids, key=lambda i: _arrival_key(self.index.get(i)))
        self.table.move_to(newest)

    def set_status(self, text: str) -> None:
        self.status_text = text
        self._refresh_status()

    # --- the filter -------------------------------------------------------------------

    @on(Input.Changed, "#filter")
    def _typed(self, event: Input.Changed) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(FILTER_DEBOUNCE, lambda: self.apply_filter(event.value))

    @on(Input.Submitted, "#filter")
    def _submitted(self, event: Input.Submitted) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self.apply_filter(event.value)
        if self.filter_problem is None:
            self.query_one(FilterInput).remember(event.value)
            self.table.focus()

    def apply_filter(self, text: str) -> None:
        """Shows the sessions that match `text`; a bad filter shows none, and says why."""
        try:
            new = parse_filter(text)
        except FilterError as exc:
            new = broken_filter(text, exc)
        self.filter_problem = new.error
        if (new.terms, new.error) == (self.filter.terms, self.filter.error):
            self._refresh_status()
            return
        self.filter = new
        self._rebuild()

    def _dates_changed(self) -> bool:
        """True when the time column must switch between time of day and full date."""
        span = self.counters.span
        long_dates = span is not None and int(span[0] // 86400) != int(span[1] // 86400)
        if long_dates == self.table.long_dates:
            return False
        self.table.long_dates = long_dates
        return True

    def _rebuild(self) -> None:
        with collector_paused():
            self._rebuild_rows()

    def _rebuild_rows(self) -> None:
        index = self.index
        shown = index.matching(self.filter)
        facts = index.facts
        self.counters = Counters.of([facts(r) for r in shown])
        self._dates_changed()
        self.table.replace_rows(shown, self.marked)
        self._sort_dirty = False
        self.refresh_header()

    # --- actions ----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # In the filter a `/` is text (10.0.0.0/8): the priority binding stands aside.
        return not (action == "focus_filter" and isinstance(self.focused, Input))

    def action_focus_filter(self) -> None:
        # At once, not with `focus()` (which waits its turn behind keys already read).
        self.set_focus(self.query_one(FilterInput))

    def action_leave_filter(self) -> None:
        self.table.focus()

    def action_open(self) -> None:
        session_id = self.table.current_id
        if session_id is not None:
            self.post_message(DetailWanted(session_id))

    @on(DataTable.RowSelected, "#sessions")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.post_message(DetailWanted(event.row_key.value))

    @on(DataTable.HeaderSelected, "#sessions")
    def _header_selected(self, event: DataTable.HeaderSelected) -> None:
        if event.column_key.value is not None:
            self.table.sort_by(event.column_key.value)
            self._refresh_status()

    def action_follow(self) -> None:
        self.follow = not self.follow
        if self.follow:
            self._follow_newest()
        self.notify(
            "follow on: the cursor stays on the newest session" if self.follow else "follow off",
            timeout=2,
        )
        self._refresh_status()

    def action_mark(self) -> None:
        session_id = self.table.current_id
        if session_id is None:
            return
        if session_id in self.marked:
            self.marked.discard(session_id)
        else:
            self.marked.add(session_id)
        self.table.set_mark(session_id, session_id in self.marked)
        self.table.action_cursor_down()
        self._refresh_status()

    def action_unmark_all(self) -> None:
        for session_id in list(self.marked):
            self.table.set_mark(session_id, False)
        self.marked.clear()
        self._refresh_status()

    def action_sort_next(self) -> None:
        columns = list(SORTABLE)
        following = columns[(columns.index(self.table.sort_column) + 1) % len(columns)]
        self.table.sort_by(following, reverse=False)
        self._refresh_status()

    def action_sort_reverse(self) -> None:
        self.table.sort_by(self.table.sort_column, reverse=not self.table.sort_reverse)
        self._refresh_status()

    def action_whatif(self) -> None:
        self.post_message(WhatIfWanted(self.table.current_id))

    def action_export(self) -> None:
        self.post_message(ExportWanted(*self.export_selection()))

    def export_selection(self) -> tuple[list[SessionRecord], str]:
        """The marked sessions if any, else every shown one, in table order."""
        index = self.index
        ids = self.table.shown_ids()
        if self.marked:
            chosen = [i for i in ids if i in self.marked]
            chosen += sorted(self.marked - set(chosen))
            what = "marked"
        else:
            chosen = ids
            what = "shown"
        records = [r for r in (index.get(i) for i in chosen) if r is not None]
        return records, what

    # --- header and status ------------------------------------------------------------

    def refresh_header(self) -> None:
        self.query_one(SummaryBar).show(self.counters, self.counters.total, len(self.index))
        self._refresh_status()

    def _refresh_status(self) -> None:
        palette = self.palette
        status = Text(no_wrap=True, overflow="ellipsis", end="")
        if self.filter_problem is not None:
            status.append(f"no sessions shown: {self.filter_problem}", palette["bad"])
        else:
            parts = [self.status_text] if self.status_text else []
            if self.marked:
                parts.append(f"{len(self.marked)} marked")
            if self.follow:
                parts.append("follow")
            table = self.table
            if (table.sort_column, table.sort_reverse) != ("time", False):
                parts.append(f"sort {table.sort_column}{'↓' if table.sort_reverse else '↑'}")
            status.append(" · ".join(parts), palette["muted"])
        self.query_one("#status", Static).update(status)


def _arrival_key(record: SessionRecord | None) -> str:
    return (record.started or "") if record is not None else ""
