"""The sessions table: one row per session, keyed by session id, sortable, updated in place."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowDoesNotExist

from kexproxy.core.record import SessionRecord
from kexproxy_tui.palette import Palette
from kexproxy_tui.rows import COLUMNS, SORTABLE, Cell, mark_cell, row_cells, row_texts, widths


class SessionsTable(DataTable[Cell]):
    """A DataTable whose rows are sessions; the screen decides which sessions it holds."""

    def __init__(self, palette: Palette, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.palette = palette
        self.sort_column = "time"
        self.sort_reverse = False
        self._widths: dict[str, int] = {}
        #: Dates in the time column: set by the screen when the shown sessions span days.
        self.long_dates = False

    def on_mount(self) -> None:
        for column in COLUMNS:
            self.add_column(column.label, key=column.key)
        self._apply_widths()

    # --- rows -------------------------------------------------------------------------

    def replace_rows(self, records: Iterable[SessionRecord], marked: set[str]) -> None:
        """Shows exactly `records` (a new filter): clear, add them all, then sort once."""
        records = list(records)
        self._widths = {}
        for record in records:
            widths(row_texts(record, long_dates=self.long_dates), self._widths)
        self.clear()
        self._apply_widths()
        palette = self.palette
        for record in records:
            self.add_row(
                *row_cells(record, palette, marked=record.id in marked, long_dates=self.long_dates),
                key=record.id,
            )
        self.resort()

    def add_session(self, record: SessionRecord, marked: bool) -> None:
        if widths(row_texts(record, long_dates=self.long_dates), self._widths):
            self._apply_widths()
        self.add_row(
            *row_cells(record, self.palette, marked=marked, long_dates=self.long_dates),
            key=record.id,
        )

    def update_session(self, record: SessionRecord, marked: bool) -> None:
        if widths(row_texts(record, long_dates=self.long_dates), self._widths):
            self._apply_widths()
        for column, cell in zip(
            COLUMNS,
            row_cells(record, self.palette, marked=marked, long_dates=self.long_dates),
            strict=True,
        ):
            self.update_cell(record.id, column.key, cell)

    def remove_session(self, session_id: str) -> None:
        with contextlib.suppress(RowDoesNotExist):
            self.remove_row(session_id)

    def has_session(self, session_id: str) -> bool:
        return session_id in self.rows

    def set_mark(self, session_id: str, marked: bool) -> None:
        with contextlib.suppress(CellDoesNotExist, RowDoesNotExist):
            self.update_cell(session_id, "mark", mark_cell(self.palette, marked=marked))

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
        if self.row_count < 2:
            return
        current = self.current_id
        self.sort(self.sort_column, key=_cell_key, reverse=self.sort_reverse)
        if current is not None:
            self.move_to(current)

    # --- widths -----------------------------------------------------------------------

    def _apply_widths(self) -> None:
        for column in COLUMNS:
            col = self.columns.get(ColumnKey(column.key))
            if col is None:
                continue
            want = max(self._widths.get(column.key, column.min_width), col.label.cell_len)
            col.content_width = want
        self._require_update_dimensions = True
        self.refresh()


def _cell_key(cell: Cell) -> Any:
    return cell.sort_key
