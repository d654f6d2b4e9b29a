"""One table row per session: the columns, their cells as literal text, and their sort keys.

Cells are built from `printable(...)` strings and rendered as `rich.text.Text`, never parsed
as markup, because banners and names come from strangers. They deliberately have no
`__rich_measure__`: column widths are computed here from the plain strings, which spares
the DataTable a console measurement per cell and makes 10,000 rows load in well under a
second.

At 100,000 sessions the cost per row is what counts. Most cells repeat from row to row
(the same outcome, software, fix and server for thousands of sessions), so a `CellCache`
hands out one shared, immutable `Cell` per distinct text, role and sort key: a row then
costs a few dictionary look-ups, and each distinct text is measured once. A cell's sort
key, when it is its lower-cased text, is worked out on the first sort only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleOptions
from rich.segment import Segment

from kexproxy.core.record import OUTCOMES, SessionRecord
from kexproxy.core.textsafe import printable
from kexproxy.present import (
    endpoint,
    failing_kinds,
    recipe_action,
    side_label,
    software_short,
    summary,
    verdict_short,
)
from kexproxy_tui.palette import GRADE_ROLE, OUTCOME_ROLE, Palette, Role
from kexproxy_tui.recipes import recipe_options, shaped_record


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    #: Widest the column grows to; longer text ends with an ellipsis (the detail screen has it all).
    max_width: int
    min_width: int = 1


#: Left to right by what a responder asks first: what happened, which lists, who fixes what,
#: who the two sides are, then the command; addresses and HASSH give way at the far right.
COLUMNS: tuple[Column, ...] = (
    Column("mark", "✓", 1, 1),
    Column("time", "time UTC", 14, 8),
    Column("outcome", "outcome", 10, 7),
    Column("detail", "why", 30, 3),
    Column("verdict", "fix / verdict", 60, 5),
    Column("client_software", "client", 26, 6),
    Column("server_software", "server", 26, 6),
    Column("command", "fix command", 90, 11),
    Column("client", "client address", 30, 6),
    Column("server", "server address", 30, 6),
    Column("hassh", "HASSH", 32, 5),
)
#: The columns a row must show without scrolling when the screen is wide enough: the rest
#: start where these end.
LEAD = ("mark", "time", "outcome", "detail", "verdict", "client_software", "server_software")
#: How the lead is squeezed when it does not fit, step by step, each column to no less than
#: its width here: the chosen algorithms of a working session first (every failing kind
#: still fits, "compression" the longest), then unknown software's long names ("Dropbear 2022.83"
#: still fits), then the fix's tail, and only then the rest.
SQUEEZE: tuple[tuple[str, int], ...] = (
    ("detail", 11),
    ("client_software", 16),
    ("server_software", 16),
    ("verdict", 40),
    ("client_software", 11),
    ("server_software", 11),
)
#: When the lead cannot fit even so (80 columns), the columns left of the fix give it room
#: ("failed", "aborted", "host key" stay whole) and the software runs off to the right.
SQUEEZE_NARROW: tuple[tuple[str, int], ...] = (("detail", 8), ("outcome", 7))
COLUMN_KEYS = tuple(c.key for c in COLUMNS)
SORTABLE = tuple(k for k in COLUMN_KEYS if k != "mark")
MARK = "●"


#: A cell's sort key when it is its text in lower case, worked out when first sorted by.
FROM_TEXT: Final = object()

#: Distinct cells a `CellCache` keeps; past this, cells are made anew for each row (a store
#: of strangers' banners must not grow it without end).
CELL_CACHE_LIMIT: Final = 50_000

#: Distinct banners whose short software name is remembered.
SOFTWARE_CACHE_SIZE: Final = 4_096


class Cell:
    """A table cell: literal text in a palette role, with the value it sorts by.

    `sort_key` may be given as a `Lazy` key, or `FROM_TEXT`, worked out on the first sort
    only: parsing 10,000 addresses nobody sorts by would slow down opening a store. A cell
    never changes what it shows, so one cell may stand in many rows.
    """

    __slots__ = ("_key", "palette", "role", "text", "width")

    def __init__(
        self, text: str, role: Role, sort_key: Any, palette: Palette, width: int | None = None
    ) -> None:
        self.text = text
        self.role: Role = role
        self._key = sort_key
        self.palette = palette
        #: The cells the text takes (ASCII, nearly always: one a character).
        self.width = (len(text) if text.isascii() else cell_len(text)) if width is None else width

    @property
    def sort_key(self) -> Any:
        key = self._key
        if key is FROM_TEXT:
            key = self._key = self.text.lower()
        elif isinstance(key, Lazy):
            key = self._key = key.resolve()
        return key

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        # One segment, cut to the width with an ellipsis: what Text(no_wrap, ellipsis) would
        # draw for a one-line cell, without its wrapping machinery (the table redraws its
        # visible cells up to ten times a second while sessions stream in).
        text = self.text
        width = options.max_width
        if self.width > width:
            text = set_cell_size(text, max(0, width - 1)) + "…" if width > 0 else ""
        yield Segment(text, self.palette[self.role])

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Cell({self.text!r})"


class CellCache:
    """Shared cells by (column, text, role, key): one object per distinct cell, bounded."""

    __slots__ = ("_cells", "palette")

    def __init__(self, palette: Palette) -> None:
        self.palette = palette
        self._cells: dict[tuple[str, str, str, Any], Cell] = {}

    def get(self, column: str, text: str, role: Role, key: Any, sort_key: Any) -> Cell:
        """The cell for `text` in `column`; `key` identifies its sort key (hashable)."""
        cache_key = (column, text, role, key)
        cell = self._cells.get(cache_key)
        if cell is None:
            cell = Cell(text, role, sort_key, self.palette)
            if len(self._cells) < CELL_CACHE_LIMIT:
                self._cells[cache_key] = cell
        return cell

    def __len__(self) -> int:
        return len(self._cells)


@dataclass(frozen=True, slots=True)
class Lazy:
    """An address sort key, computed when first needed."""

    endpoint: dict[str, Any]

    def resolve(self) -> tuple[int, int, str, int]:
        return _address_key(self.endpoint)


def time_text(started: str | None, *, long_dates: bool) -> str:
    """``14:44:49`` of ``2015-03-30T14:44:49.214476Z``, or ``03-30 14:44:49`` when the table
    spans days; the detail screen has the whole time."""
    if not started or len(started) < 19:
        return "-"
    return f"{started[5:10]} {started[11:19]}" if long_dates else started[11:19]


def time_cell(record: SessionRecord, text: str, palette: Palette) -> Cell:
    """The time cell of `record`'s row showing `text` (a `time_text`): unique to the session,
    so never shared, and sorted by the start time, then the id."""
    return Cell(
        text, "muted" if text == "-" else "plain", (record.started or "", record.id), palette
    )


def _address_key(ep: dict[str, Any]) -> tuple[int, int, str, int]:
    text = str(ep.get("ip", ""))
    port = ep.get("port")
    port_n = port if isinstance(port, int) else -1
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return (9, 0, text, port_n)
    return (ip.version, int(ip), "", port_n)


def row_texts(record: SessionRecord, *, long_dates: bool = False) -> dict[str, str]:
    """Each column's text for a record, control characters made visible."""
    shaped = shaped_record(record)
    return {
        "time": time_text(record.started, long_dates=long_dates),
        "outcome": record.outcome,
        "detail": printable(why(record)),
        "client": printable(endpoint(record.client)),
        "server": printable(endpoint(record.server)),
        "client_software": printable(_side(record, "client")),
        "server_software": printable(_side(record, "server")),
        "verdict": printable(verdict_short(shaped)) or "-",
        "command": printable(fix_command(shaped)) or "-",
        "hassh": printable(record.hassh) or "-",
    }


def _side(record: SessionRecord, role: str) -> str:
    """Who a side is: its SSH software, or for TLS its newest version or the SNI."""
    if record.protocol == "tls":
        return side_label(record, role)
    return _software_short(record.client_banner if role == "client" else record.server_banner)


@lru_cache(maxsize=SOFTWARE_CACHE_SIZE)
def _software_short(banner: str | None) -> str:
    # A fleet has a few dozen distinct banners over 100,000 sessions; naming one walks the
    # catalogue of implementations' patterns.
    return software_short(banner)


def why(record: SessionRecord) -> str:
    """The failing lists once per kind (the outcome beside it says "failed"), else the summary."""
    if record.outcome == "failed" and record.failing_lists:
        return failing_kinds(record)
    return summary(record)


def fix_command(record: SessionRecord) -> str:
    """The top recipe's first line in the changing side's own syntax (its command, option
    or config line); the detail screen has every line and every other recipe."""
    recipes = recipe_options(record.diagnosis or {})
    if not recipes:
        return ""
    return recipe_action(recipes[0]).split("\n", 1)[0]


def row_cells(
    record: SessionRecord,
    palette: Palette,
    *,
    marked: bool,
    long_dates: bool = False,
    texts: dict[str, str] | None = None,
    cache: CellCache | None = None,
) -> list[Cell]:
    """The cells of a record's row, in `COLUMNS` order (`texts`: its `row_texts`, if known;
    `cache`: where repeating cells are shared from)."""
    if texts is None:
        texts = row_texts(record, long_dates=long_dates)
    if cache is None:
        cache = CellCache(palette)
    outcome = record.outcome
    outcome_role: Role = _outcome_role(outcome)
    verdict_role = _verdict_role(record)
    cells = [mark_cell(palette, marked=marked)]
    get = cache.get
    for column in COLUMNS[1:]:
        key = column.key
        text = texts[key]
        if text == "-":
            role: Role = "muted"
        elif key in ("outcome", "detail"):
            role = outcome_role
        elif key == "verdict":
            role = verdict_role
        else:
            role = "plain"
        if key == "time":
            cells.append(time_cell(record, text, palette))
        elif key == "outcome":
            rank = OUTCOMES.index(outcome) if outcome in OUTCOMES else 99
            cells.append(get(key, text, role, rank, rank))
        elif key in ("client", "server"):
            ep = record.client if key == "client" else record.server
            ip, port = ep.get("ip", ""), ep.get("port")
            ident = (str(ip), port if isinstance(port, int) else -1)
            cells.append(get(key, text, role, ident, Lazy(ep)))
        else:
            cells.append(get(key, text, role, None, FROM_TEXT))
    return cells


def mark_cell(palette: Palette, *, marked: bool) -> Cell:
    return Cell(MARK if marked else " ", "marked", 0 if marked else 1, palette)


def _verdict_role(record: SessionRecord) -> Role:
    if record.outcome == "failed":
        return "accent"
    grade = (record.diagnosis or {}).get("grade")
    return GRADE_ROLE.get(str(grade), "muted")


def _outcome_role(outcome: str) -> Role:
    return OUTCOME_ROLE.get(outcome, "plain")


Widths = tuple[int, ...]


def cell_widths(cells: list[Cell]) -> Widths:
    """The width each column (after the mark) wants for a row's cells after the mark, within
    its limits (each cell's text measured once, when the cell was made)."""
    return tuple(
        min(column.max_width, max(column.min_width, cell.width))
        for column, cell in zip(COLUMNS[1:], cells, strict=True)
    )


def widest(rows: Iterable[Widths]) -> Widths:
    """Column by column, the widest of `rows` (the minimum widths when there are none)."""
    out = [column.min_width for column in COLUMNS[1:]]
    # One `max` over each column's widths at C speed, not one call per row.
    for index, column_widths in enumerate(zip(*rows, strict=False)):
        out[index] = max((out[index], *column_widths))
    return tuple(out)


def fit_widths(widths: dict[str, int], available: int, padding: int) -> dict[str, int]:
    """`widths` squeezed as `SQUEEZE` says until the `LEAD` columns fit in `available` cells
    (each column also takes `padding`); if they cannot, squeezed as `SQUEEZE_NARROW` says,
    the rest a column-wise scroll away."""
    fitted, over = _squeezed(widths, available, padding, SQUEEZE)
    if over > 0:
        fitted, over = _squeezed(widths, available, padding, SQUEEZE_NARROW)
    return fitted


def _squeezed(
    widths: dict[str, int], available: int, padding: int, steps: tuple[tuple[str, int], ...]
) -> tuple[dict[str, int], int]:
    """`widths` after `steps`, and how many cells the lead is still over `available`."""
    fitted = dict(widths)
    # A column is never narrower than its label, so the label is its least width here too.
    least = {column.key: max(column.min_width, cell_len(column.label)) for column in COLUMNS}
    over = sum(max(fitted.get(key, 0), least[key]) + padding for key in LEAD) - available
    for key, floor in steps:
        if over <= 0:
            break
        current = max(fitted.get(key, 0), least[key])
        take = min(over, max(0, current - max(floor, least[key])))
        fitted[key] = current - take
        over -= take
    return fitted, over


def widen(wanted: Widths, current: dict[str, int]) -> bool:
    """Widens `current` to `wanted`; True if anything changed."""
    changed = False
    for column, want in zip(COLUMNS[1:], wanted, strict=True):
        if want > current.get(column.key, 0):
            current[column.key] = want
            changed = True
    return changed
