"""The help screen lists every key the app binds, from the bindings themselves (issue 11)."""

from __future__ import annotations

import pytest
from textual.dom import DOMNode
from textual.widgets import OptionList

from kexproxy.core.record import SessionRecord
from kexproxy_tui.app import KexproxyApp, create_app
from kexproxy_tui.feeds import RecordsFeed
from kexproxy_tui.screens.detail import DetailScreen
from kexproxy_tui.screens.export import ExportScreen
from kexproxy_tui.screens.help import HelpScreen, help_rows, key_name
from kexproxy_tui.screens.sessions import SessionsScreen
from kexproxy_tui.screens.whatif import WhatIfScreen
from kexproxy_tui.widgets.filter_bar import FilterInput
from kexproxy_tui.widgets.sessions_table import SessionsTable
from tests.tui.conftest import screen_lines, settle

SECTIONS = [
    ("everywhere", KexproxyApp.BINDINGS),
    ("sessions", SessionsScreen.BINDINGS),
    ("detail", DetailScreen.BINDINGS),
    ("what-if", WhatIfScreen.BINDINGS),
]
#: Every class whose bindings act somewhere in the app.
BOUND: tuple[type[DOMNode], ...] = (
    KexproxyApp,
    SessionsScreen,
    DetailScreen,
    SessionsTable,
    FilterInput,
    OptionList,
    ExportScreen,
    HelpScreen,
    WhatIfScreen,
)


@pytest.mark.parametrize("cls", BOUND, ids=lambda c: c.__name__)
def test_every_bound_key_is_in_the_help(cls: type[DOMNode]) -> None:
    said = {key for _where, keys, does in help_rows(SECTIONS) for key in f"{keys} {does}".split()}
    for key, bindings in cls._merge_bindings().key_to_bindings.items():
        shown = bindings[-1].key_display or key_name(key)
        assert shown in said, (cls.__name__, key)


def test_the_help_names_the_keys_a_responder_asks_for() -> None:
    rows = {(where, keys): does for where, keys, does in help_rows(SECTIONS)}
    assert "choose a fix" in rows[("everywhere", "tab")]
    assert "command" in rows[("detail", "c")] and "config" in rows[("detail", "C")]
    assert rows[("sessions", "→")] == "scroll right one column"
    assert rows[("sessions", "↑ ↓")] == "up or down a row"
    places = [where for where, _keys, _does in help_rows(SECTIONS)]
    assert (
        places.index("detail")
        > places.index("sessions")
        > max(i for i, where in enumerate(places) if where == "everywhere")
    )
    for where, keys in [
        ("sessions", "/"),
        ("sessions", "m"),
        ("sessions", "e"),
        ("sessions", "s"),
        ("sessions", "f"),
        ("sessions", "enter"),
        ("everywhere", "?"),
        ("everywhere", "q"),
        ("detail", "esc"),
    ]:
        assert rows[(where, keys)], (where, keys)


async def test_question_mark_shows_the_keys(dashboard_records: list[SessionRecord]) -> None:
    app = create_app(RecordsFeed(dashboard_records))
    async with app.run_test(size=(120, 60)) as pilot:
        await settle(pilot, app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = "\n".join(screen_lines(app))
        assert "choose a fix" in text
        assert "scroll right one column" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
