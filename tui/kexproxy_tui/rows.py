"""One table row per session: the columns, their cells as literal text, and their sort keys.

Cells are built from `printable(...)` strings and rendered as `rich.text.Text`, never parsed
as markup, because banners and names come from strangers. They deliberately have no
`__rich_measure__`: column widths are computed here from the plain strings, which spares
the DataTable a console measurement per cell and makes 10,000 rows load in well under a
second.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

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


class Cell:
    """A table cell: literal text in a palette role, with the value it sorts by.

    `sort_key` may be given as a `Lazy` key, worked out on the first sort only: parsing
    10,000 addresses nobody sorts by would slow down opening a store.
    """

    __slots__ = ("_key", "palette", "role", "text")

    def __init__(self, text: str, role: Role, sort_key: Any, palette: Palette) -> None:
        self.text = text
        self.role: Role = role
        self._key = sort_key
        self.palette = palette

    @property
    def sort_key(self) -> Any:
        if isinstance(self._key, Lazy):
            self._key = self._key.resolve()
        return self._key

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        # One segment, cut to the width with an ellipsis: what Text(no_wrap, ellipsis) would
        # draw for a one-line cell, without its wrapping machinery (the table redraws its
        # visible cells up to ten times a second while sessions stream in).
        text = self.text
        width = options.max_width
        if cell_len(text) > width:
            text = set_cell_size(text, max(0, width - 1)) + "…" if width > 0 else ""
        yield Segment(text, self.palette[self.role])

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Cell({self.text!r})"


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
    return software_short(record.client_banner if role == "client" else record.server_banner)


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
) -> list[Cell]:
    """The cells of a record's row, in `COLUMNS` order (`texts`: its `row_texts`, if known)."""
    if texts is None:
        texts = row_texts(record, long_dates=long_dates)
    outcome_role: Role = _outcome_role(record.outcome)
    keys: dict[str, Any] = {
        "time": (record.started or "", record.id),
        "outcome": (OUTCOMES.index(record.outcome) if record.outcome in OUTCOMES else 99),
        "client": Lazy(record.client),
        "server": Lazy(record.server),
    }
    cells = [mark_cell(palette, marked=marked)]
    for column in COLUMNS[1:]:
        text = texts[column.key]
        role: Role = outcome_role if column.key in ("outcome", "detail") else "plain"
        if column.key == "verdict":
            role = _verdict_role(record)
        if text == "-":
            role = "muted"
        cells.append(Cell(text, role, keys.get(column.key, text.lower()), palette))
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


def row_widths(texts: dict[str, str]) -> Widths:
    """The width each column (after the mark) wants for `texts`, within its limits."""
    return tuple(
        min(column.max_width, max(column.min_width, cell_len(texts[column.key])))
        for column in COLUMNS[1:]
    )


def widest(rows: Iterable[Widths]) -> Widths:
    """Column by column, the widest of `rows` (the minimum widths when there are none)."""
    out = [column.min_width for column in COLUMNS[1:]]
    for index, column_widths in enumerate(zip(*rows, strict=False)):
        out[index] = max(out[index], *column_widths)
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
