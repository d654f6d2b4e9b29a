"""Untrusted text is shown literally: no markup is interpreted, no escape sequence reaches the terminal."""

from __future__ import annotations

import re

from rich.console import Console

from kexproxy.core.record import SessionRecord
from kexproxy.present import recipe_action
from kexproxy_tui.app import create_app
from kexproxy_tui.feeds import RecordsFeed
from kexproxy_tui.palette import Palette
from kexproxy_tui.recipes import recipe_options
from kexproxy_tui.render import offers, overview, recipe_prompts
from kexproxy_tui.rows import COLUMN_KEYS, row_cells
from kexproxy_tui.screens.detail import DetailScreen

from .conftest import HOSTILE_BANNER, HOSTILE_NAME, screen_lines, settle, terminal_output

#: What the terminal may receive from a redraw: colours (SGR) and cursor moves, nothing else.
ALLOWED_ESCAPES = re.compile(r"\x1b\[[0-9;]*m|\x1b\[\d+;\d+H")
SHOWN_BANNER = "SSH-2.0-[bold red]x[/]\\x1b[2J"


def assert_only_harmless_escapes(output: str) -> None:
    leftover = ALLOWED_ESCAPES.sub("", output)
    assert "\x1b" not in leftover, repr(leftover[leftover.index("\x1b") - 20 :][:60])
    assert "\x1b]8;" not in output  # no OSC 8 hyperlink from [link=...]
    assert "\x1b[2J" not in output


def test_cells_and_detail_renderables_are_literal(hostile_record: SessionRecord) -> None:
    palette = Palette()
    console = Console(width=200, force_terminal=True, color_system="truecolor", file=None)
    with console.capture() as capture:
        for cell in row_cells(hostile_record, palette, marked=False):
            console.print(cell)
        console.print(overview(hostile_record, palette))
        console.print(offers(hostile_record, palette))
        console.print(*recipe_prompts(recipe_options(hostile_record.diagnosis or {}), palette))
    output = capture.get()
    assert_only_harmless_escapes(output)
    plain = ALLOWED_ESCAPES.sub("", output)
    assert "[bold red]x[/]\\x1b[2J" in plain
    assert HOSTILE_NAME in plain
    assert f"1. Both sides (client {SHOWN_BANNER}, server {SHOWN_BANNER})" in plain
    assert f"{HOSTILE_NAME}\\x1b[2J" in plain  # a recipe's step, warning and reach


async def test_table_and_detail_show_markup_literally(hostile_record: SessionRecord) -> None:
    app = create_app(RecordsFeed([hostile_record]))
    async with app.run_test(size=(200, 60)) as pilot:
        await settle(pilot, app)
        table = app.sessions_screen.table
        row = table.get_row(hostile_record.id)
        software = row[COLUMN_KEYS.index("client_software")]
        assert str(software) == "[bold red]x[/]\\x1b[2J"
        text = "\n".join(screen_lines(app))
        assert "[bold red]x[/]\\x1b[2J" in text
        assert_only_harmless_escapes(terminal_output(app))

        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        text = "\n".join(screen_lines(app))
        assert f"client {SHOWN_BANNER}" in text
        assert f"server {SHOWN_BANNER}[/]" in text
        assert f"✗ {HOSTILE_NAME}" in text  # the client's name, which the server lacks
        assert f"✗ {HOSTILE_NAME}s" in text
        assert "Their offer: " + HOSTILE_NAME not in text  # the messages are the real ones
        assert f"Both sides (client {SHOWN_BANNER}, server {SHOWN_BANNER})" in text
        assert f"{HOSTILE_NAME}\\x1b[2J" in text
        assert_only_harmless_escapes(terminal_output(app))


async def test_notifications_of_copied_text_are_literal(hostile_record: SessionRecord) -> None:
    app = create_app(RecordsFeed([hostile_record]))
    async with app.run_test(size=(200, 60)) as pilot:
        await settle(pilot, app)
        await pilot.press("enter", "y")
        await pilot.pause()
        message = hostile_record.rejections["client"]["message"]
        assert app.clipboard == message
        assert_only_harmless_escapes(terminal_output(app))
        await pilot.press("c")
        await pilot.pause()
        # The clipboard gets the recipe as it is; only the screen shows it escaped.
        assert app.clipboard == recipe_action((hostile_record.diagnosis or {})["recipes"][0])
        assert app.clipboard.endswith(HOSTILE_NAME + "\x1b[2J")
        assert_only_harmless_escapes(terminal_output(app))


def test_the_hostile_record_really_is_hostile(hostile_record: SessionRecord) -> None:
    assert hostile_record.client_banner == HOSTILE_BANNER
    assert "\x1b" in HOSTILE_BANNER
