"""Messages up to the app: the only way a feed, an export or a screen asks for anything.

Workers run in threads and never touch widgets; they post these, and the app's handlers
update the screen on the event loop. Screens post theirs too, so that a screen never needs
the app itself, only the collaborators its constructor was given.
"""

from __future__ import annotations

from textual.message import Message

from kexproxy.core.record import SessionRecord


class SessionsArrived(Message):
    """New sessions, or newer versions of sessions already shown.

    `partial` records are summaries (a store sends what the table needs, not every list);
    the feed's `load` gives the whole record when the detail screen or an export needs it.
    `live` records are of sessions a relay in this process still forwards (not final).
    """

    def __init__(
        self, records: tuple[SessionRecord, ...], *, partial: bool = False, live: bool = False
    ) -> None:
        super().__init__()
        self.records = records
        self.partial = partial
        self.live = live


class FeedStatus(Message):
    """What the feed is doing, for the status line (``reading x.pcap 40%``)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class FeedProblem(Message):
    """Something the user should know about the input (a missing file, a broken capture)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class FeedFinished(Message):
    """The feed has nothing more to send (every capture read, the proxy stopped)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ExportFinished(Message):
    """An export worker is done: `error` is None when `count` sessions were written to `path`."""

    def __init__(self, path: str, count: int, error: str | None) -> None:
        super().__init__()
        self.path = path
        self.count = count
        self.error = error


class DetailWanted(Message):
    """The user chose a session: the app opens its detail, with the whole record."""

    def __init__(self, session_id: str) -> None:
        super().__init__()
        self.session_id = session_id


class WhatIfWanted(Message):
    """The user asked what a config change would break; `session_id` is the one selected."""

    def __init__(self, session_id: str | None) -> None:
        super().__init__()
        self.session_id = session_id


class ExportWanted(Message):
    """The user asked to export `records` (`what` says which: ``marked`` or ``shown``)."""

    def __init__(self, records: list[SessionRecord], what: str) -> None:
        super().__init__()
        self.records = records
        self.what = what


class QuitReady(Message):
    """The relay has closed and every final record before this message has arrived: the
    app may save (`save_to`, or None) and exit."""

    def __init__(self, save_to: str | None) -> None:
        super().__init__()
        self.save_to = save_to
