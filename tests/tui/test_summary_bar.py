"""The summary bar asked to show counters before it has its parts (the app's flush timer can
fire then, or while the app quits): no crash, and the counters show once it is mounted."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Static

from kexproxy_tui.model import Counters
from kexproxy_tui.palette import Palette
from kexproxy_tui.widgets.summary import SummaryBar


async def test_counters_asked_for_before_mounting_are_shown_after() -> None:
    bar = SummaryBar(Palette(), id="summary")
    counters = Counters()
    bar.show(counters, 7, 9)  # not composed: used to raise NoMatches

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield bar

    app = Host()
    async with app.run_test() as pilot:
        await pilot.pause()
        text = str(bar.query_one("#counters", Static).render())
        assert text.startswith("0 sessions (of 9)"), text
