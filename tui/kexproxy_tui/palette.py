"""Colours by meaning, taken from the current Textual theme so they read on dark and light.

Rich renderables (table cells, offer tables) need concrete colours; this maps the theme's
variables ($text-success, $text-error, ...) to Rich styles and is refreshed when the theme
changes, so that no colour is hard-coded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from rich.style import Style
from textual.color import Color, ColorParseError

Role = Literal[
    "plain", "best", "ok", "bad", "warn", "muted", "chosen", "accent", "heading", "marked"
]

_VARIABLES: dict[Role, str] = {
    "best": "text-success",
    "ok": "text-success",
    "bad": "text-error",
    "warn": "text-warning",
    "chosen": "text-success",
    "accent": "text-accent",
    "heading": "text-primary",
    "marked": "text-accent",
}

#: How each outcome is coloured in the table and the detail screen.
OUTCOME_ROLE: dict[str, Role] = {
    "negotiated": "ok",
    "failed": "bad",
    "aborted": "warn",
    "incomplete": "muted",
    "not_ssh": "muted",
    "in_progress": "accent",
}

#: How a diagnosis grade (strong, good, weak, broken) is coloured: strong as good, in bold.
GRADE_ROLE: dict[str, Role] = {"strong": "best", "good": "ok", "weak": "warn", "broken": "bad"}


class Palette:
    """Rich styles by role; one shared instance that `update` refreshes on a theme change."""

    def __init__(self, variables: Mapping[str, str] | None = None) -> None:
        self._styles: dict[Role, Style] = {}
        self.update(variables or {})

    def update(self, variables: Mapping[str, str]) -> None:
        styles: dict[Role, Style] = {
            "plain": Style(),
            "muted": Style(dim=True),
        }
        for role, name in _VARIABLES.items():
            styles[role] = Style(color=_rich_color(variables.get(name)))
        styles["bad"] += Style(bold=True)
        styles["best"] += Style(bold=True)
        styles["chosen"] += Style(bold=True)
        styles["heading"] += Style(bold=True)
        styles["marked"] += Style(bold=True)
        self._styles = styles

    def __getitem__(self, role: Role) -> Style:
        return self._styles[role]

    def outcome(self, outcome: str) -> Style:
        return self._styles[OUTCOME_ROLE.get(outcome, "plain")]


def _rich_color(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return Color.parse(value).rich_color.name
    except ColorParseError:
        return None
