"""The quit question of the built-in relay: open sessions are not cut without asking.

Closing the dashboard closes the relay, and a relayed ``ssh`` then prints "closed by remote
host"; the question says how many sessions that would cut and offers to wait for them.
Without a store the sessions live only in this process, so it also offers to save them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Static


@dataclass(frozen=True, slots=True, kw_only=True)
class QuitChoice:
    """What the user chose: quit `now` or `after` the open sessions end, saving or not."""

    when: Literal["now", "after"]
    #: Where to write the in-memory sessions as JSON lines on quit; None: not saved.
    save_to: str | None


def sessions(count: int, noun: str = "relayed session") -> str:
    """``1 relayed session``, ``2 relayed sessions``."""
    return f"{count} {noun}{'s' * (count != 1)}"


class QuitScreen(ModalScreen[QuitChoice | None]):
    """Asks before the relay closes; dismisses with a `QuitChoice`, or None to stay."""

    DEFAULT_CSS = """
    QuitScreen {
        align: center middle;
    }
    #quit {
        width: 90;
        max-width: 95%;
        height: auto;
        border: round $warning;
        background: $surface;
        padding: 0 1;
    }
    #quit Horizontal {
        height: auto;
    }
    #quit Button {
        margin: 1 1 0 0;
        min-width: 10;
    }
    #quit Checkbox {
        border: none;
        padding: 0;
        margin-top: 1;
    }
    #quit .hint {
        color: $text-muted;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("k", "keep", "Keep relaying, then quit", show=False),
        Binding("y", "quit_now", "Quit now", show=False),
        Binding("s", "toggle_save", "Save or not", show=False),
        Binding("escape", "cancel", "Cancel", show=False),
    ]

    def __init__(self, open_count: int, unsaved: int, save_path: str) -> None:
        """`open_count` sessions still relayed; `unsaved` sessions held only in memory (0 with
        a store), offered to be saved to `save_path`."""
        super().__init__()
        self.open_count = open_count
        self.unsaved = unsaved
        self.save_path = save_path

    def compose(self) -> ComposeResult:
        with Vertical(id="quit"):
            if self.open_count:
                yield Static(
                    Text(
                        f"{sessions(self.open_count)} still open: quitting now cuts "
                        f"{'it' if self.open_count == 1 else 'them'} (the relay closes).",
                        end="",
                    ),
                    id="quit-open",
                    markup=False,
                )
            if self.unsaved:
                # Labels as Text: a path is shown as it is, never read as markup.
                yield Checkbox(
                    Text(
                        f"save the {sessions(self.unsaved, 'session')} seen (no --store) "
                        "as JSON lines on quit, to:"
                    ),
                    value=True,
                    id="quit-save",
                )
                yield Static(Text(self.save_path, end=""), id="quit-path", markup=False)
            with Horizontal():
                if self.open_count:
                    yield Button(Text("Keep relaying, quit when they end (k)"), id="quit-keep")
                yield Button(Text("Quit now (y)"), id="quit-now", variant="warning")
                yield Button(Text("Cancel (esc)"), id="quit-cancel")
            hint = "enter answers the highlighted button"
            if self.unsaved:
                hint += " · s: save or not"
            yield Static(Text(hint, end=""), classes="hint", markup=False)

    def on_mount(self) -> None:
        # The harmless answer has the focus: enter never cuts a session by accident.
        first = "#quit-keep" if self.open_count else "#quit-now"
        self.query_one(first, Button).focus()

    def _save_to(self) -> str | None:
        if not self.unsaved:
            return None
        return self.save_path if self.query_one("#quit-save", Checkbox).value else None

    @on(Button.Pressed, "#quit-keep")
    def action_keep(self) -> None:
        if self.open_count:
            self.dismiss(QuitChoice(when="after", save_to=self._save_to()))

    @on(Button.Pressed, "#quit-now")
    def action_quit_now(self) -> None:
        self.dismiss(QuitChoice(when="now", save_to=self._save_to()))

    @on(Button.Pressed, "#quit-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_toggle_save(self) -> None:
        if self.unsaved:
            self.query_one("#quit-save", Checkbox).toggle()
