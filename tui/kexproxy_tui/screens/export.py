"""The export prompt: where to write the shown or marked sessions as JSON lines."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

DEFAULT_EXPORT_PATH = "kexproxy-export.jsonl"


class ExportScreen(ModalScreen[str | None]):
    """Asks for a path; dismisses with it, or with None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, count: int, what: str, path: str = DEFAULT_EXPORT_PATH) -> None:
        super().__init__()
        self.count = count
        self.what = what
        self.path = path

    def compose(self) -> ComposeResult:
        noun = "session" if self.count == 1 else "sessions"
        with Vertical(id="export"):
            yield Static(
                Text(f"Export {self.count} {self.what} {noun} as JSON lines to:", end=""),
                markup=False,
            )
            yield Input(value=self.path, id="export-path", select_on_focus=False)
            yield Static(
                Text("enter writes (an existing file is replaced) · escape cancels", end=""),
                classes="hint",
                markup=False,
            )

    def on_mount(self) -> None:
        field = self.query_one("#export-path", Input)
        field.focus()
        field.cursor_position = len(field.value)

    @on(Input.Submitted, "#export-path")
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or DEFAULT_EXPORT_PATH)

    def action_cancel(self) -> None:
        self.dismiss(None)
