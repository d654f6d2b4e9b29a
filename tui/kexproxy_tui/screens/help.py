"""The help screen: every key of every screen, taken from the bindings themselves, and the filter language."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from kexproxy.filtering import FILTER_HELP

#: Keys that come from the widgets themselves (table, input), not from our bindings.
BUILTIN_KEYS: tuple[tuple[str, str, str], ...] = (
    ("sessions", "↑ ↓ pgup pgdn home end", "move in the table"),
    (
        "sessions",
        "click",
        "a row: choose it, click again to open it; a header: sort (again: reverse)",
    ),
    ("filter", "enter", "apply the filter now and go back to the table"),
    ("filter", "↑ ↓", "earlier filters of this session"),
    ("detail", "↑ ↓ pgup pgdn, wheel", "scroll"),
    ("everywhere", "ctrl+p", "command palette (themes, screenshots)"),
)

Section = tuple[str, Sequence[BindingType]]


def key_table(sections: Sequence[Section]) -> Table:
    table = Table(box=None, show_header=True, expand=True, pad_edge=False)
    table.add_column("where", style="dim", no_wrap=True)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("does", ratio=1)
    for where, bindings in sections:
        for binding in bindings:
            if not isinstance(binding, Binding):
                continue
            table.add_row(
                where,
                binding.key_display or _key_name(binding.key),
                binding.tooltip or binding.description,
            )
    for where, key, does in BUILTIN_KEYS:
        table.add_row(where, key, does)
    return table


def _key_name(key: str) -> str:
    return {"slash": "/", "question_mark": "?", "escape": "esc", "enter": "enter"}.get(key, key)


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
