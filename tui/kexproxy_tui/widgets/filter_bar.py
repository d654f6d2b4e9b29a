"""The filter input: one line, with the filters used in this session a keystroke away."""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.widgets import Input

#: Filters remembered per session, newest last.
HISTORY_SIZE = 50

PLACEHOLDER = "press / to filter, e.g. outcome:failed list:kex client:10.0.0.0/8 · ? help"


class FilterInput(Input):
    """An Input that remembers applied filters; up and down walk through them."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "history(-1)", "Older filter", show=False),
        Binding("down", "history(1)", "Newer filter", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(placeholder=PLACEHOLDER, id=id, compact=True, select_on_focus=False)
        self.history: list[str] = []
        self._position = 0

    async def _on_key(self, event: events.Key) -> None:
        # Ctrl-U as a binding runs after the printable keys already queued behind it
        # (tmux send-keys "/" C-u "text" Enter lost the text): clear here, in order.
        if event.key == "ctrl+u":
            event.stop()
            event.prevent_default()
            self.delete(0, self.cursor_position)
            return
        await super()._on_key(event)

    def remember(self, text: str) -> None:
        text = text.strip()
        if text and (not self.history or self.history[-1] != text):
            self.history.append(text)
            del self.history[:-HISTORY_SIZE]
        self._position = len(self.history)

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        self._position = max(0, min(len(self.history), self._position + step))
        self.value = self.history[self._position] if self._position < len(self.history) else ""
        self.cursor_position = len(self.value)
