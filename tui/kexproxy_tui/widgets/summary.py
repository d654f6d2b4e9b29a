"""The header of the sessions screen: counters of the shown sessions and failures over time."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import Sparkline, Static

from kexproxy.core.record import rfc3339
from kexproxy.core.textsafe import printable
from kexproxy_tui.model import Counters
from kexproxy_tui.palette import Palette, Role

#: Bars in the failures chart; the Sparkline folds them into its width.
HISTOGRAM_BUCKETS = 40
#: Entries per counter line before "…": the line must fit 80 columns.
TOP = 4


def _clock(ts: float | None) -> str:
    """``2015-03-30 14:44:49`` in UTC; a record's time, never the local clock."""
    text = rfc3339(ts)
    return f"{text[:10]} {text[11:19]}" if text else "-"


def counter_lines(counters: Counters, shown: int, total: int, palette: Palette) -> list[Text]:
    """The three lines of counters, as literal text (software names come from banners)."""
    first = Text(no_wrap=True, overflow="ellipsis", end="")
    first.append(f"{counters.total}", "bold")
    first.append(" sessions" if counters.total != 1 else " session")
    if shown != total:
        first.append(f" (of {total})", palette["muted"])
    failed = counters.failed
    first.append(" · ")
    first.append(f"{failed} failed", palette["bad"] if failed else palette["muted"])
    roles: tuple[tuple[str, Role], ...] = (("aborted", "warn"), ("negotiated", "ok"))
    for outcome, role in roles:
        n = counters.outcomes[outcome]
        if n:
            first.append(" · ")
            first.append(f"{n} {outcome}", palette[role])
    other = counters.outcomes["incomplete"] + counters.outcomes["not_ssh"]
    if other:
        first.append(f" · {other} other", palette["muted"])
    started = counters.outcomes["in_progress"]
    if started:
        first.append(f" · {started} in progress", palette["accent"])

    second = Text(no_wrap=True, overflow="ellipsis", end="")
    if failed:
        second.append("failing: ")
        second.append_text(_top(counters.lists, palette))
        first_at, last_at = _clock(counters.first_failure), _clock(counters.last_failure)
        same_day = first_at[:10] == last_at[:10]
        second.append(" · since ")
        second.append(first_at[11:] if same_day else first_at, "bold")
        second.append(", last ")
        second.append(last_at[11:] if same_day else last_at, "bold")
    else:
        second.append("no failures", palette["muted"])

    third = Text(no_wrap=True, overflow="ellipsis", end="")
    third.append("clients: ")
    third.append_text(_top(counters.software, palette))
    return [first, second, third]


def _top(counter: dict[str, int], palette: Palette) -> Text:
    items = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    out = Text(end="")
    for index, (name, n) in enumerate(items[:TOP]):
        if index:
            out.append(", ")
        out.append(printable(name))
        out.append(f" {n}", palette["accent"])
    if len(items) > TOP:
        out.append(f", +{len(items) - TOP} more", palette["muted"])
    if not items:
        out.append("-", palette["muted"])
    return out


class SummaryBar(Horizontal):
    """Counters on the left, a Sparkline of failures over the shown time span on the right."""

    def __init__(self, palette: Palette, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.palette = palette
        #: What `show` was last asked for while the parts were not there (not yet composed,
        #: or being taken down as the app quits): shown once they are.
        self._waiting: tuple[Counters, int, int] | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="counters", markup=False)
        with Vertical(id="chart"):
            yield Static(Text("failures over time", end=""), id="chart-label", markup=False)
            yield Sparkline([], id="failures", summary_function=max)

    def on_mount(self) -> None:
        if self._waiting is not None:
            self.show(*self._waiting)

    def show(self, counters: Counters, shown: int, total: int) -> None:
        try:
            counters_part = self.query_one("#counters", Static)
            failures_part = self.query_one("#failures", Sparkline)
            label_part = self.query_one("#chart-label", Static)
        except NoMatches:
            # The app's flush timer may fire before this bar is composed or while the app
            # is quitting: a header shown a moment later is right, a crash is not.
            self._waiting = (counters, shown, total)
            return
        self._waiting = None
        lines = counter_lines(counters, shown, total, self.palette)
        joined = Text("\n", end="").join(lines)
        joined.no_wrap = True
        joined.overflow = "ellipsis"
        counters_part.update(joined)
        failures_part.data = counters.failure_histogram(HISTOGRAM_BUCKETS)
        span = counters.span
        label = Text("failures over time", end="", no_wrap=True, overflow="ellipsis")
        if span is not None:
            first, last = _clock(span[0]), _clock(span[1])
            days = int(span[1] // 86400) - int(span[0] // 86400)
            text = (
                f"failures {first[11:16]}–{last[11:16]} UTC"
                if days == 0
                else f"failures over {days + 1} days"
            )
            label = Text(text, end="", no_wrap=True, overflow="ellipsis")
        label_part.update(label)
