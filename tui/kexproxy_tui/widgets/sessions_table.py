"""The sessions table: one row per session, keyed by session id, sortable, updated in place.

A DataTable keeps, besides the rows, a list of every line's row (`_y_offsets`), rebuilt
after each change, and re-sorts by building a key for every row: at 100,000 sessions that
is seconds a batch. Every row here is one line high, so the line list is replaced by a view
of the row order itself, and a sort that would change nothing (sessions arriving in time
order) is skipped. tests/tui/test_sessions_table.py checks the result against DataTable's
own methods, and fails first if Textual changes these internals.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from textual._two_way_dict import TwoWayDict
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
    COLUMN_KEYS,
    COLUMNS,
    SORTABLE,
    Cell,
    CellCache,
    Widths,
    cell_widths,
    fit_widths,
    mark_cell,
    row_cells,
    row_texts,
    time_cell,
    time_text,
    widen,
    widest,
)

#: The table's column keys, in `COLUMNS` order (the mark first).
_COLUMN_KEYS = tuple(ColumnKey(column.key) for column in COLUMNS)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A session's row, made once per version of its record: the texts' widths, the
    cells after the mark, and what the DataTable keeps for a row (its key, its `Row`, its
    cells by column, mark included)."""

    record: SessionRecord
    widths: Widths
    cells: list[Cell]
    key: RowKey
    row: Row
    cells_by_column: dict[ColumnKey, Cell]
    #: Whether the time cell shows the date (`SessionsTable.long_dates` when made).
    long_dates: bool


class SessionsTable(DataTable[Cell]):
    """A DataTable whose rows are sessions; the screen decides which sessions it holds."""

    def __init__(self, palette: Palette, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.palette = palette
        self.sort_column = "time"
        self.sort_reverse = False
        self._widths: dict[str, int] = {}
        self._long_dates = False
        #: Per session: what its row is made of, so that a new filter re-shows rows
        #: without working them out again.
        self._prepared: dict[str, Prepared] = {}
        self._marks = {flag: mark_cell(palette, marked=flag) for flag in (False, True)}
        #: Sessions marked at some time: the only ones whose row can show the mark.
        self._ever_marked: set[str] = set()
        self._cell_cache = CellCache(palette)

    @property
    def long_dates(self) -> bool:
        """Dates in the time column: set by the screen when the shown sessions span days."""
        return self._long_dates

    @long_dates.setter
    def long_dates(self, value: bool) -> None:
        # Prepared rows keep their other cells: only the time cell is made again, as each
        # row is next shown (100,000 whole rows again would take seconds).
        self._long_dates = value

    def _prepare(self, record: SessionRecord) -> Prepared:
        cached = self._prepared.get(record.id)
        if cached is not None and cached.record is record:
            if cached.long_dates == self._long_dates:
                return cached
            return self._redated(cached)
        texts = row_texts(record, long_dates=self._long_dates)
        cells = row_cells(record, self.palette, marked=False, texts=texts, cache=self._cell_cache)
        row_key = RowKey(record.id)
        prepared = Prepared(
            record,
            cell_widths(cells[1:]),
            cells[1:],
            row_key,
            Row(row_key, 1, None, False),
            dict(zip(_COLUMN_KEYS, cells, strict=True)),
            self._long_dates,
        )
        self._prepared[record.id] = prepared
        return prepared

    def _redated(self, prepared: Prepared) -> Prepared:
        """`prepared` with the time cell for the present `long_dates`."""
        record = prepared.record
        text = time_text(record.started, long_dates=self._long_dates)
        redone = time_cell(record, text, self.palette)
        cells = [redone, *prepared.cells[1:]]
        by_column = dict(prepared.cells_by_column)
        by_column[_COLUMN_KEYS[1]] = redone
        redated = Prepared(
            record,
            cell_widths(cells),
            cells,
            prepared.key,
            prepared.row,
            by_column,
            self._long_dates,
        )
        self._prepared[record.id] = redated
        return redated

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
        prepared = [self._prepare(r) for r in records]
        # Sorted here, as a list, rather than by `_sort_rows` once in the table: the same
        # stable order, without looking every row up by its key (sessions mostly arrive in
        # time order, which this sort only confirms).
        column = COLUMN_KEYS.index(self.sort_column) - 1
        prepared.sort(key=lambda p: p.cells[column].sort_key, reverse=self.sort_reverse)
        self._widths = {}
        widen(widest(p.widths for p in prepared), self._widths)
        self.clear()
        self._apply_widths()
        self._add_many(prepared, marked)
        self._place_cursor(previous if previous in self.rows else None)

    def _add_many(self, prepared: list[Prepared], marked: set[str]) -> None:
        """`add_row` for many rows at once, with the state changes it makes done once.

        DataTable.add_row costs about 0.1 ms a row (a reactive cursor update, an idle check,
        a measurement of every cell later); 100,000 rows would hold the screen for ten
        seconds. Every row here is one line high, has no label, and has widths set by
        `widen`, so the prepared rows (key, row and cells made once per session) are entered
        directly, in C-level dictionary updates, and the table is told once. Tested against
        add_row in tests/tui/test_sessions_table.py, which fails first if Textual changes
        these.
        """
        was_empty = self.row_count == 0
        data = self._data
        keys = [p.key for p in prepared]
        start = len(self._row_locations)
        if start == 0:
            locations = dict(zip(keys, range(len(keys)), strict=True))
            if len(locations) != len(keys):
                raise DuplicateKey(f"The row key {_duplicate(keys).value!r} already exists.")
        elif not data.keys().isdisjoint(keys) or len(set(keys)) != len(keys):
            taken = next(k for i, k in enumerate(keys) if k in data or k in keys[:i])
            raise DuplicateKey(f"The row key {taken.value!r} already exists.")
        # The row's cells are the prepared dictionary itself, made with the mark off: only
        # the sessions ever marked can need it changed.
        marks, mark_key, cache = self._marks, _COLUMN_KEYS[0], self._prepared
        self._ever_marked |= marked
        for session_id in self._ever_marked:
            entry = cache.get(session_id)
            if entry is not None:
                entry.cells_by_column[mark_key] = marks[session_id in marked]
        rows_before = self._ordered_row_cache.get((start, self._update_count))
        if start == 0:
            self._row_locations = TwoWayDict(locations)
        else:
            table_locations = self._row_locations
            for index, row_key in enumerate(keys, start):
                table_locations[row_key] = index
        data.update(zip(keys, (p.cells_by_column for p in prepared), strict=True))
        new_rows = [p.row for p in prepared]
        self.rows.update(zip(keys, new_rows, strict=True))
        self._require_update_dimensions = True
        self._update_count += 1
        # The rows in order are known here: handed to DataTable's cache of them, which it
        # would otherwise rebuild by looking up every row (a tenth of a second at 100,000).
        if start == 0 or rows_before is not None:
            ordered = new_rows if start == 0 else [*(rows_before or ()), *new_rows]
            self._ordered_row_cache[(self.row_count, self._update_count)] = ordered
        self.cursor_coordinate = self.cursor_coordinate
        if was_empty and self.row_count and self.show_cursor and self.cursor_type != "none":
            self._highlight_cursor()
        self.check_idle()

    def append_sessions(self, records: list[SessionRecord], marked: set[str]) -> None:
        """Adds many new sessions at once; sorts only if they do not already come in order."""
        if not records:
            return
        prepared = [self._prepare(r) for r in records]
        if widen(widest(p.widths for p in prepared), self._widths):
            self._apply_widths()
        in_order = self._in_time_order(records)
        self._add_many(prepared, marked)
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
        prepared = self._prepare(record)
        if widen(prepared.widths, self._widths):
            self._apply_widths()
        return [self._marks[marked], *prepared.cells]

    def add_session(self, record: SessionRecord, marked: bool) -> None:
        if marked:
            self._ever_marked.add(record.id)
        self.add_row(*self._cells(record, marked), key=record.id)

    def update_session(self, record: SessionRecord, marked: bool) -> None:
        if marked:
            self._ever_marked.add(record.id)
        for column, cell in zip(COLUMNS, self._cells(record, marked), strict=True):
            self.update_cell(record.id, column.key, cell)

    def remove_session(self, session_id: str) -> None:
        with contextlib.suppress(RowDoesNotExist):
            self.remove_row(session_id)

    def has_session(self, session_id: str) -> bool:
        return session_id in self.rows

    def set_mark(self, session_id: str, marked: bool) -> None:
        if marked:
            self._ever_marked.add(session_id)
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
            self._sort_rows()
        self._place_cursor(keep)

    def _place_cursor(self, keep: str | None) -> None:
        """Puts the cursor on `keep`, or on the top row when None."""
        if keep is not None:
            self.move_to(keep)
        elif self.row_count:
            self.move_cursor(row=0, animate=False)

    def _sort_rows(self) -> None:
        """`DataTable.sort` by the sort column's keys, without its per-row tuple of cells
        and key wrapper (same stable order: both sort the rows in the order they were added)."""
        column = ColumnKey(self.sort_column)
        data = self._data
        order = sorted(
            data, key=lambda row_key: data[row_key][column].sort_key, reverse=self.sort_reverse
        )
        self._row_locations = TwoWayDict({row_key: index for index, row_key in enumerate(order)})
        self._update_count += 1
        self.refresh()

    @property
    def _y_offsets(self) -> _RowLines:  # type: ignore[override]
        # Every row is one line: the row at a line is the row at that index.
        return _RowLines(self._row_locations, self.row_count)

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


def _duplicate(keys: list[RowKey]) -> RowKey:
    seen: set[RowKey] = set()
    for key in keys:
        if key in seen:
            return key
        seen.add(key)
    raise ValueError("no duplicate")


class _RowLines:
    """What DataTable's `_y_offsets` list holds (each line's row key and the line within
    the row), worked out per line asked for instead of listed for every row."""

    __slots__ = ("_count", "_locations")

    def __init__(self, locations: TwoWayDict[RowKey, int], count: int) -> None:
        self._locations = locations
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, line: int) -> tuple[RowKey, int]:
        if not 0 <= line < self._count:
            raise IndexError(line)
        row_key = self._locations.get_key(line)
        assert row_key is not None
        return row_key, 0

    def __iter__(self) -> Iterator[tuple[RowKey, int]]:
        return (self[line] for line in range(self._count))

    def clear(self) -> None:
        """DataTable.clear empties its cached list; there is nothing to empty here."""
