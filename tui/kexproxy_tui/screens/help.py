"""The help screen: every key of every screen, taken from the bindings themselves, and the filter language.

The rows come from the `BINDINGS` of our screens (given by the app) and from the merged
bindings of the Textual classes they build on (the table, the filter field, the recipe
list, every screen, the app), so a key added anywhere shows up here without anyone
remembering to document it; only the words for Textual's own actions are written here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import OptionList, Static

from kexproxy.filtering import FILTER_HELP
from kexproxy_tui.screens.export import ExportScreen
from kexproxy_tui.widgets.filter_bar import FilterInput
from kexproxy_tui.widgets.sessions_table import SessionsTable

#: What only the mouse does: no binding says it.
MOUSE: tuple[tuple[str, str, str], ...] = (
    (
        "sessions",
        "click",
        "a row: choose it, click again to open it; a header: sort (again: reverse)",
    ),
    ("detail", "wheel", "scroll"),
    ("export", "enter", "write the file (an existing one is replaced)"),
)


@dataclass(frozen=True, slots=True)
class Inherited:
    """The merged bindings of a Textual class, with our words for its actions.

    `rest`, when given, is said once for every key whose action has no words here (the
    filter field's many editing keys), instead of a row per key in Textual's words.
    """

    where: str
    cls: type[DOMNode]
    words: Mapping[str, str] = field(default_factory=dict)
    rest: str | None = None


INHERITED: tuple[Inherited, ...] = (
    Inherited(
        "everywhere",
        Screen,
        {
            "app.focus_next": "next part; in the detail, the recipe list: "
            "choose a fix with ↑ ↓, then c, C or enter",
            "app.focus_previous": "previous part",
            "screen.copy_text": "copy the text selected with the mouse",
        },
    ),
    Inherited("everywhere", App, {"quit": "quit", "help_quit": "say how to quit"}),
    Inherited(
        "sessions",
        SessionsTable,
        {
            "cursor_up": "up or down a row",
            "cursor_down": "up or down a row",
            "cursor_left": "scroll left one column",
            "cursor_right": "scroll right one column",
            "select_cursor": "open the session under the cursor",
            "page_up": "a page up or down",
            "page_down": "a page up or down",
            "page_left": "a page left or right",
            "page_right": "a page left or right",
            "scroll_home": "first row",
            "scroll_end": "last row",
            "scroll_top": "first row",
            "scroll_bottom": "last row",
        },
    ),
    Inherited(
        "filter",
        FilterInput,
        {
            "history(-1)": "earlier or later filters of this session",
            "history(1)": "earlier or later filters of this session",
            "submit": "apply the filter now and go back to the table",
        },
        rest="edit the filter text",
    ),
    Inherited(
        "recipe list",
        OptionList,
        {"select": "copy the chosen recipe's command (as c does)"},
        rest="choose a recipe",
    ),
)

#: The order of the places in the help (a stable sort keeps each place's own order).
PLACES = ("everywhere", "sessions", "filter", "detail", "recipe list", "export", "help")

Section = tuple[str, Sequence[BindingType]]
#: One help row: where the keys work, the keys, what they do.
Row = tuple[str, str, str]

_KEY_NAMES = {
    "slash": "/",
    "question_mark": "?",
    "escape": "esc",
    "up": "↑",
    "down": "↓",
    "left": "←",
    "right": "→",
    "pageup": "pgup",
    "pagedown": "pgdn",
}


def key_name(key: str) -> str:
    """A key as the help shows it: ``/`` for slash, ``ctrl+pgup`` for ctrl+pageup."""
    *mods, last = key.split("+")
    return "+".join([*mods, _KEY_NAMES.get(last, last)])


def help_rows(sections: Sequence[Section]) -> list[Row]:
    """Every key: the `sections` given, then `INHERITED`; keys that do the same in one
    place share a row, and a key already said in a place is not said again there (the
    first binding of a key is the one that acts)."""
    grouped: dict[tuple[str, str], list[str]] = {}
    said: set[tuple[str, str]] = set()

    def add(where: str, keys: str, does: str) -> None:
        if (where, keys) not in said:
            said.add((where, keys))
            grouped.setdefault((where, does), []).append(keys)

    ours = [("export", ExportScreen.BINDINGS), ("help", HelpScreen.BINDINGS)]
    for where, bindings in [*sections, *ours]:
        for binding in bindings:
            if isinstance(binding, Binding):
                keys = binding.key_display or " ".join(
                    key_name(k.strip()) for k in binding.key.split(",")
                )
                add(where, keys, binding.tooltip or binding.description)
    rests: dict[tuple[str, str], list[str]] = {}
    for inherited in INHERITED:
        merged = inherited.cls._merge_bindings().key_to_bindings
        for key, bindings in merged.items():
            binding = bindings[-1]
            does = inherited.words.get(binding.action)
            if does is not None:
                add(inherited.where, key_name(key), does)
            elif inherited.rest is not None:
                if (inherited.where, key_name(key)) not in said:
                    rests.setdefault((inherited.where, inherited.rest), []).append(key_name(key))
            else:
                add(inherited.where, key_name(key), binding.tooltip or binding.description)
    rows = [(where, " ".join(keys), does) for (where, does), keys in grouped.items()]
    # The many keys of one kind are said in the wide column, where they take few lines.
    rows += [
        (where, "other keys", f"{does}: {' '.join(keys)}") for (where, does), keys in rests.items()
    ]
    rows += MOUSE
    return sorted(rows, key=lambda row: PLACES.index(row[0]) if row[0] in PLACES else 99)


def key_table(sections: Sequence[Section]) -> Table:
    table = Table(box=None, show_header=True, expand=True, pad_edge=False)
    table.add_column("where", style="dim", no_wrap=True)
    table.add_column("key", style="bold", max_width=24)
    table.add_column("does", ratio=1)
    for row in help_rows(sections):
        table.add_row(*row)
    return table


class HelpScreen(ModalScreen[None]):
    """Every key, then the filter language; any of escape, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close help"),
    ]

    def __init__(self, sections: Sequence[Section]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(Text("Keys", style="bold", end=""), markup=False)
            yield Static(key_table(self.sections), markup=False)
            yield Static(Text("\nFilter language", style="bold", end=""), markup=False)
            yield Static(Text(FILTER_HELP, end=""), markup=False)
            yield Static(Text("escape, q or ? closes this help", style="dim", end=""), markup=False)

    def on_mount(self) -> None:
        self.query_one("#help").focus()

    def action_close(self) -> None:
        self.dismiss()
