"""The dashboard app: one feed of sessions, batched into the screens a few times a second.

`create_app` is the one way to build it, used by ``kexproxy tui`` and by the tests, so
that both run the same app with a different feed.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import App
from textual.binding import Binding, BindingType
from textual.theme import Theme

from kexproxy.core.record import SessionRecord
from kexproxy_tui.feeds import Feed, RecordLoader, Relay
from kexproxy_tui.messages import (
    DetailWanted,
    ExportFinished,
    ExportWanted,
    FeedFinished,
    FeedProblem,
    FeedStatus,
    QuitReady,
    SessionsArrived,
    WhatIfWanted,
)
from kexproxy_tui.model import Pending, SessionIndex, collector_paused
from kexproxy_tui.palette import Palette
from kexproxy_tui.screens.detail import DetailScreen
from kexproxy_tui.screens.export import DEFAULT_EXPORT_PATH, ExportScreen
from kexproxy_tui.screens.help import HelpScreen
from kexproxy_tui.screens.quit import QuitChoice, QuitScreen, sessions
from kexproxy_tui.screens.sessions import SessionsScreen
from kexproxy_tui.screens.whatif import WhatIfScreen

#: Seconds between two batches applied to the screen: at most ten table updates a second,
#: however fast sessions arrive.
FLUSH_INTERVAL = 0.1

#: After a batch this large, the objects so far are frozen for the garbage collector.
GC_FREEZE_BATCH = 500

#: Seconds the app waits, when closing, for the feed to stop (the proxy to close its port).
FEED_STOP_TIMEOUT = 3.0

#: The file a relay without a store offers to save its sessions to on quit, in `save_dir`;
#: the time in its name keeps one run from replacing the last one's file.
SAVE_NAME = "kexproxy-sessions-{stamp}.jsonl"

DARK, LIGHT = "textual-dark", "textual-light"


class KexproxyApp(App[None]):
    """Sessions from one feed, with a sessions screen, a detail screen and help."""

    CSS_PATH = "app.tcss"
    TITLE = "kexproxy"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "q",
            "quit",
            "Quit",
            tooltip="quit (with the built-in proxy: asks first while sessions are open)",
        ),
        Binding("question_mark", "help", "Help", key_display="?", tooltip="this help"),
        Binding(
            "t",
            "toggle_theme",
            "Dark/light",
            show=False,
            tooltip="switch between the dark and the light theme",
        ),
    ]

    def __init__(
        self,
        feed: Feed,
        *,
        flush_interval: float = FLUSH_INTERVAL,
        save_dir: Path | None = None,
    ) -> None:
        """`save_dir`: where a relay without a store offers to save its sessions on quit
        (the working directory by default)."""
        super().__init__()
        self.feed = feed
        self.flush_interval = flush_interval
        self.index = SessionIndex()
        self.pending = Pending()
        self.palette = Palette()
        self.feed_done = False
        self.export_path = DEFAULT_EXPORT_PATH
        self.save_dir = Path.cwd() if save_dir is None else save_dir
        #: Ids of the sessions the feed's relay still forwards.
        self.live: set[str] = set()
        #: Set when the user chose to quit once the open sessions end.
        self.quit_after: QuitChoice | None = None
        self._quitting = False
        self._status = ""
        self._stop = threading.Event()
        self._feed_started = False
        self._feed_stopped = threading.Event()
        self.sessions_screen = SessionsScreen(self.index, self.palette)
        self.sub_title = feed.label

    # --- life cycle -------------------------------------------------------------------

    def on_mount(self) -> None:
        self.palette.update(self.theme_variables)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self.push_screen(self.sessions_screen)
        self.set_interval(self.flush_interval, self.flush)
        self._feed_started = True
        self.run_worker(self._run_feed, name="feed", thread=True, exit_on_error=False)

    def _run_feed(self) -> None:
        """The feed, in its thread; `_feed_stopped` tells the closing app when it is over."""
        try:
            self.feed.run(self.post_message, self._stop)
        finally:
            self._feed_stopped.set()

    async def on_unmount(self) -> None:
        await self.stop_feed()

    async def action_quit(self) -> None:
        """Quits; with the relay, asks first while sessions are open or held only here."""
        if self._quitting or isinstance(self.screen, QuitScreen):
            return
        feed = self.feed
        if isinstance(feed, Relay) and not self.feed_done:
            self.flush()
            unsaved = len(self.index) if feed.store is None else 0
            if self.live or unsaved:
                path = self.save_dir / SAVE_NAME.format(stamp=time.strftime("%Y%m%d-%H%M%S"))
                self.push_screen(QuitScreen(len(self.live), unsaved, str(path)), self._quit_chosen)
                return
        self._quitting = True
        await self.stop_feed()
        self.exit()

    def _quit_chosen(self, choice: QuitChoice | None) -> None:
        if choice is None:
            if self.quit_after is not None:
                self.quit_after = None
                self.sessions_screen.set_status(
                    f"{self._status} · takes no new connections since quit was asked"
                )
            return
        if choice.when == "after" and self.live:
            self.quit_after = choice
            if isinstance(self.feed, Relay):
                # Waiting for the open sessions must not let new ones keep it open.
                self.feed.stop_accepting()
            self.sessions_screen.set_status(self._waiting_status())
            return
        self._begin_quit(choice)

    def _waiting_status(self) -> str:
        count = len(self.live)
        verb = "ends" if count == 1 else "end"
        return f"quitting once {sessions(count)} {verb}; no new connections · q asks again"

    def _begin_quit(self, choice: QuitChoice) -> None:
        """Closes the relay in a worker, so that the final records it publishes while
        closing still reach the app; `QuitReady` follows them."""
        self._quitting = True
        self.quit_after = None
        self.sessions_screen.set_status("closing the relay")

        async def close() -> None:
            await self.stop_feed()
            self.post_message(QuitReady(choice.save_to))

        self.run_worker(close(), name="quit", exit_on_error=False)

    def on_quit_ready(self, message: QuitReady) -> None:
        self.flush()
        path = message.save_to
        if path is None:
            self.exit()
            return
        from kexproxy_tui.export import write_jsonl

        try:
            count = write_jsonl(list(self.index), path)
        except OSError as exc:
            # The relay is closed but the sessions are still here: the user can export them.
            self._quitting = False
            self.notify(
                f"could not save to {path}: {exc.strerror or exc}; e exports, q quits",
                severity="error",
                timeout=30,
                markup=False,
            )
            return
        self.exit(message=Text(f"kexproxy tui: wrote {sessions(count, 'session')} to {path}"))

    async def stop_feed(self) -> None:
        """Tells the feed to stop and gives it a moment to: the proxy then records the open
        sessions as ended by the shutdown and closes its port."""
        self._stop.set()
        if not self._feed_started:
            return
        # Textual marks thread workers cancelled at shutdown while their thread still runs,
        # so the feed's own flag is what is waited for.
        await asyncio.to_thread(self._feed_stopped.wait, FEED_STOP_TIMEOUT)

    def _theme_changed(self, theme: Theme) -> None:
        self.palette.update(self.theme_variables)
        # Rows render lazily from the shared palette: dropping the table's render cache is
        # enough there; the other texts are rebuilt.
        self.sessions_screen.table.notify_style_update()
        self.sessions_screen.refresh_header()
        for screen in self.screen_stack:
            if isinstance(screen, DetailScreen):
                screen.refresh(recompose=True)

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT if self.theme == DARK else DARK

    # --- sessions from the feed -------------------------------------------------------

    def on_sessions_arrived(self, message: SessionsArrived) -> None:
        for record in message.records:
            if message.live:
                self.live.add(record.id)
            else:
                self.live.discard(record.id)
        self.pending.add(message.records, partial=message.partial)
        if self.quit_after is not None:
            if self.live:
                self.sessions_screen.set_status(self._waiting_status())
            else:
                self._begin_quit(self.quit_after)

    def flush(self) -> None:
        """Applies everything that arrived since the last flush, as one batch."""
        if not self.pending:
            return
        records, partial = self.pending.drain()
        with collector_paused():
            self._apply(records, partial)

    def _apply(self, records: list[SessionRecord], partial: set[str]) -> None:
        changes = self.index.apply(records, partial=partial)
        if not changes:
            return
        for screen in self.screen_stack:
            if isinstance(screen, SessionsScreen):
                screen.sessions_changed(changes)
            elif isinstance(screen, DetailScreen):
                shown = screen.record.id
                newer = next((c.new for c in reversed(changes) if c.new.id == shown), None)
                if newer is not None:
                    screen.show(self.full_record(shown) or newer)
        if len(changes) >= GC_FREEZE_BATCH:
            # Sessions live as long as the app: moved out of the collector's sight, they no
            # longer make every full collection walk them (half a second at 10,000). They
            # hold no cycles, so a replaced one is still freed as soon as it is dropped.
            gc.freeze()

    def on_feed_status(self, message: FeedStatus) -> None:
        self._status = message.text
        if self.quit_after is None:
            self.sessions_screen.set_status(message.text)

    def on_feed_problem(self, message: FeedProblem) -> None:
        self.notify(message.text, severity="error", timeout=8, markup=False)

    def on_feed_finished(self, message: FeedFinished) -> None:
        self.feed_done = True
        self.sessions_screen.set_status(message.text)

    # --- navigation -------------------------------------------------------------------

    def full_record(self, session_id: str) -> SessionRecord | None:
        """The whole record of a session, read from the feed when only a summary is here."""
        record = self.index.get(session_id)
        if record is None or not self.index.is_partial(session_id):
            return record
        loaded = self.load_full([session_id])
        return loaded[0] if loaded else record

    def load_full(self, ids: Sequence[str]) -> list[SessionRecord]:
        """Whole records from a feed that sends summaries; [] (and a notification) on failure."""
        if not isinstance(self.feed, RecordLoader):
            return []
        try:
            loaded = self.feed.load(ids)
        except Exception as exc:  # the store's errors are not known here
            self.notify(f"cannot read the whole record: {exc}", severity="error", markup=False)
            return []
        return loaded

    def open_detail(self, session_id: str) -> None:
        record = self.full_record(session_id)
        if record is not None:
            self.push_screen(DetailScreen(record, self.palette))

    def on_detail_wanted(self, message: DetailWanted) -> None:
        self.open_detail(message.session_id)

    def on_what_if_wanted(self, message: WhatIfWanted) -> None:
        """Opens the what-if view over every held session, summaries read whole first."""
        if isinstance(self.screen, WhatIfScreen):
            return
        records = list(self.index)
        partial = [r.id for r in records if self.index.is_partial(r.id)]
        if partial:
            whole = {r.id: r for r in self.load_full(partial)}
            records = [whole.get(r.id, r) for r in records]
        self.push_screen(WhatIfScreen(records, message.session_id, self.palette))

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(
            HelpScreen(
                [
                    ("everywhere", self.BINDINGS),
                    ("sessions", SessionsScreen.BINDINGS),
                    ("detail", DetailScreen.BINDINGS),
                    ("what-if", WhatIfScreen.BINDINGS),
                ]
            )
        )

    # --- export -----------------------------------------------------------------------

    def on_export_wanted(self, message: ExportWanted) -> None:
        records, what = message.records, message.what
        if not records:
            self.notify("nothing to export: no session is shown", severity="warning")
            return

        def chosen(path: str | None) -> None:
            if path:
                self.export_path = path
                self.run_worker(
                    partial(self._export, records, path),
                    name="export",
                    thread=True,
                    exit_on_error=False,
                )

        self.push_screen(ExportScreen(len(records), what, self.export_path), chosen)

    def _export(self, records: list[SessionRecord], path: str) -> None:
        """In a thread: summaries are swapped for whole records, then written."""
        from kexproxy_tui.export import write_jsonl

        partial = [r.id for r in records if self.index.is_partial(r.id)]
        try:
            if partial and isinstance(self.feed, RecordLoader):
                whole = {r.id: r for r in self.feed.load(partial)}
                records = [whole.get(r.id, r) for r in records]
            count = write_jsonl(records, path)
        except OSError as exc:
            self.post_message(ExportFinished(path, 0, exc.strerror or str(exc)))
            return
        except Exception as exc:  # reading the store again can fail in its own ways
            self.post_message(ExportFinished(path, 0, str(exc)))
            return
        self.post_message(ExportFinished(path, count, None))

    def on_export_finished(self, message: ExportFinished) -> None:
        if message.error is not None:
            self.notify(
                f"export to {message.path} failed: {message.error}", severity="error", markup=False
            )
        else:
            self.notify(f"wrote {message.count} sessions to {message.path}", markup=False)


def create_app(
    feed: Feed, *, flush_interval: float = FLUSH_INTERVAL, save_dir: Path | None = None
) -> KexproxyApp:
    """The app factory shared by ``kexproxy tui`` and the tests."""
    return KexproxyApp(feed, flush_interval=flush_interval, save_dir=save_dir)
