"""The sessions table: one row per session, keyed by session id, sortable, updated in place."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from textual.widgets import DataTable
from textual.widgets.data_table import (
    CellDoesNotExist,
    ColumnKey,
    DuplicateKey,
    Row,
    RowDoesNotExist,
    RowKey,
)

from kexproxy.core.record import SessionRecord
from kexproxy_tui.palette import Palette
from kexproxy_tui.rows import (
    COLUMNS,
    SORTABLE,
    Cell,
    Widths,
    fit_widths,
    mark_cell,
    row_cells,
    row_texts,
    row_widths,
    widen,
    widest,
)


class SessionsTable(DataTable[Cell]):
    """A DataTable whose rows are sessions; the screen decides which sessions it holds."""

    def __init__(self, palette: Palette, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.palette = palette
        self.sort_column = "time"
        self.sort_reverse = False
        self._widths: dict[str, int] = {}
        self._long_dates = False
        #: Per session: the record version, its row texts and cells (without the mark), so
        #: a new filter re-shows rows without working them out again.
        self._prepared: dict[str, tuple[SessionRecord, Widths, list[Cell]]] = {}
        self._marks = {flag: mark_cell(palette, marked=flag) for flag in (False, True)}

    @property
    def long_dates(self) -> bool:
        """Dates in the time column: set by the screen when the shown sessions span days."""
        return self._long_dates

    @long_dates.setter
    def long_dates(self, value: bool) -> None:
        if value != self._long_dates:
            self._long_dates = value
            self._prepared.clear()

    def _prepare(self, record: SessionRecord) -> tuple[Widths, list[Cell]]:
        cached = self._prepared.get(record.id)
        if cached is not None and cached[0] is record:
            return cached[1], cached[2]
        texts = row_texts(record, long_dates=self._long_dates)
        cells = row_cells(record, self.palette, marked=False, texts=texts)[1:]
        wanted = row_widths(texts)
        self._prepared[record.id] = (record, wanted, cells)
        return wanted, cells

    def forget(self, session_id: str) -> None:
        """Drops what was prepared for a session that is gone for good."""
        self._prepared.pop(session_id, None)

    def on_mount(self) -> None:
        for column in COLUMNS:
            self.add_column(column.label, key=column.key)
        self._apply_widths()

    # --- rows -------------------------------------------------------------------------

    def replace_rows(self, records: Iterable[SessionRecord], marked: set[str]) -> None:
        """Shows exactly `records` (a new filter): clear, add them all, then sort once. The
        cursor stays on its session if that is still shown, else it goes to the top."""
        previous = self.current_id
        prepared = [(r, *self._prepare(r)) for r in records]
        self._widths = {}
        widen(widest(wanted for _r, wanted, _c in prepared), self._widths)
        self.clear()
        self._apply_widths()
        marks = self._marks
        self._add_many(
            (record.id, [marks[record.id in marked], *cells]) for record, _t, cells in prepared
        )
        self.resort_to(previous if previous in self.rows else None)

    def _add_many(self, rows: Iterable[tuple[str, list[Cell]]]) -> None:
        """`add_row` for many rows at once, with the state changes it makes done once.

        DataTable.add_row costs about 0.1 ms a row (a reactive cursor update, an idle check,
        a measurement of every cell later); 10,000 rows would hold the screen for a second.
        Every row here is one line high, has no label, and has widths set by `widen`, so
        the rows are entered directly and the table is told once. Tested against add_row
        in tests/tui/test_sessions_table.py, which fails first if Textual changes these.
        """
        was_empty = self.row_count == 0
        locations = self._row_locations
        data = self._data
        table_rows = self.rows
        keys = [column.key for column in self.ordered_columns]
        index = len(locations)
        for key, cells in rows:
            row_key = RowKey(key)
            if row_key in locations:
                raise DuplicateKey(f"The row key {key!r} already exists.")
            locations[row_key] = index
            index += 1
            data[row_key] = dict(zip(keys, cells, strict=True))
            table_rows[row_key] = Row(row_key, 1, None, False)
        self._require_update_dimensions = True
        self._update_count += 1
        self.cursor_coordinate = self.cursor_coordinate
        if was_empty and self.row_count and self.show_cursor and self.cursor_type != "none":
            self._highlight_cursor()
        self.check_idle()

    def append_sessions(self, records: list[SessionRecord], marked: set[str]) -> None:
        """Adds many new sessions at once; sorts only if they do not already come in order."""
        if not records:
            return
        prepared = [(r, *self._prepare(r)) for r in records]
        if widen(widest(wanted for _r, wanted, _c in prepared), self._widths):
            self._apply_widths()
        in_order = self._in_time_order(records)
        marks = self._marks
        self._add_many(
            (record.id, [marks[record.id in marked], *cells]) for record, _t, cells in prepared
        )
        if not in_order:
            self.resort()

    def _in_time_order(self, records: list[SessionRecord]) -> bool:
        """True when appending `records` keeps a table sorted by time, oldest first."""
        if self.sort_column != "time" or self.sort_reverse:
            return False
        last = self._last_time_key()
        for record in records:
            key = (record.started or "", record.id)
            if last is not None and key < last:
                return False
            last = key
        return True

    def _last_time_key(self) -> Any:
        if self.row_count == 0:
            return None
        row_key = self._row_locations.get_key(self.row_count - 1)
        if row_key is None:
            return None
        return self._data[row_key][ColumnKey("time")].sort_key

    def _cells(self, record: SessionRecord, marked: bool) -> list[Cell]:
        wanted, cells = self._prepare(record)
        if widen(wanted, self._widths):
            self._apply_widths()
        return [self._marks[marked], *cells]

    def add_session(self, record: SessionRecord, marked: bool) -> None:
        self.add_row(*self._cells(record, marked), key=record.id)

    def update_session(self, record: SessionRecord, marked: bool) -> None:
        for column, cell in zip(COLUMNS, self._cells(record, marked), strict=True):
            self.update_cell(record.id, column.key, cell)

    def remove_session(self, session_id: str) -> None:
        with contextlib.suppress(RowDoesNotExist):
            self.remove_row(session_id)

    def has_session(self, session_id: str) -> bool:
        return session_id in self.rows

    def set_mark(self, session_id: str, marked: bool) -> None:
        with contextlib.suppress(CellDoesNotExist, RowDoesNotExist):
            self.update_cell(session_id, "mark", self._marks[marked])

    @property
    def current_id(self) -> str | None:
        """The session under the cursor, if any."""
        if self.row_count == 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:
            return None
        return key.value

    def move_to(self, session_id: str) -> None:
        try:
            index = self.get_row_index(session_id)
        except RowDoesNotExist:
            return
        self.move_cursor(row=index, animate=False)

    def shown_ids(self) -> list[str]:
        """The ids of the rows, top to bottom as shown."""
        return [row.key.value for row in self.ordered_rows if row.key.value is not None]

    # --- sorting ----------------------------------------------------------------------

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        """Sorts by `column`; choosing the current column again flips the direction."""
        if column not in SORTABLE:
            return
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column = column
        self.sort_reverse = reverse
        self.resort()

    def resort(self) -> None:
        """Sorts again; the cursor stays on its session, or on the top row if it was there
        (sessions streaming in would otherwise carry it down the table)."""
        self.resort_to(None if self.cursor_row == 0 else self.current_id)

    def resort_to(self, keep: str | None) -> None:
        """Sorts again and puts the cursor on `keep`, or on the top row when None."""
        if self.row_count >= 2:
            self.sort(self.sort_column, key=_cell_key, reverse=self.sort_reverse)
        if keep is not None:
            self.move_to(keep)
        elif self.row_count:
            self.move_cursor(row=0, animate=False)

    # --- widths -----------------------------------------------------------------------

    def _apply_widths(self) -> None:
        """Sets each column's width: what its text wants, squeezed to keep the lead columns
        (outcome, lists, fix, both sides' software) in view at the table's present width."""
        widths = self._widths
        room = self.scrollable_content_region.width
        if room > 0:
            widths = fit_widths(widths, room, 2 * self.cell_padding)
        for column in COLUMNS:
            col = self.columns.get(ColumnKey(column.key))
            if col is None:
                continue
            want = max(widths.get(column.key, column.min_width), col.label.cell_len)
            col.content_width = want
        self._require_update_dimensions = True
        self.refresh()

    def on_resize(self) -> None:
        self._apply_widths()

    def watch_show_vertical_scrollbar(self) -> None:
        # The scrollbar takes its cells from the row: fit the lead again beside it.
        self._apply_widths()

    # --- scrolling --------------------------------------------------------------------

    def column_starts(self) -> list[int]:
        """Where each column begins, in cells from the table's left edge."""
        starts, x = [], 0
        for column in self.ordered_columns:
            starts.append(x)
            x += column.get_render_width(self)
        return starts

    def action_cursor_right(self) -> None:
        """Scrolls right by one column: the next column becomes the first in view."""
        self._set_hover_cursor(False)
        later = [x for x in self.column_starts() if x > self.scroll_x]
        if later:
            self.scroll_to(x=min(later[0], self.max_scroll_x), animate=False)

    def action_cursor_left(self) -> None:
        """Scrolls left by one column: the column before the first in view comes back."""
        self._set_hover_cursor(False)
        earlier = [x for x in self.column_starts() if x < self.scroll_x]
        if earlier:
            self.scroll_to(x=earlier[-1], animate=False)


def _cell_key(cell: Cell) -> Any:
    return cell.sort_key
