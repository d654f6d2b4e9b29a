"""The what-if screen: type an sshd_config change, see which held clients it breaks.

The change is applied to one server's offer: the server of the session under the cursor
when the screen opened. A config change is made on one server at a time, so one offer,
one table and one refusal read more clearly than a table per server; every client offer
the dashboard holds is then negotiated against it (as ``kexproxy whatif --store DB
--server-from ID`` does), and the header says how many servers the sessions hold and how
to pick another. The prediction itself is the core's (`kexproxy.core.whatif`). Clients known
only from a server's log get rows of their own below, about the one list sshd logged
(`kexproxy.core.whatif_logged`): never said to negotiate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from kexproxy.core.openssh_lists import ListError
from kexproxy.core.record import SessionRecord
from kexproxy.core.textsafe import printable
from kexproxy.core.whatif import (
    EFFECTS,
    ChangeRefused,
    Group,
    Prediction,
    apply_changes,
    group_offers,
    predict_groups,
    record_offers,
    tally,
)
from kexproxy.core.whatif_logged import (
    LOGGED_EFFECTS,
    LoggedGroup,
    LoggedPrediction,
    group_logged,
    logged_offers,
    logged_words,
    predict_logged_groups,
)
from kexproxy.present import endpoint, software
from kexproxy_tui.palette import Palette, Role

#: Characters of a HASSH shown: enough to tell groups apart, as the command's table does.
HASSH_CHARS = 12
#: Colour of each effect, worst first.
EFFECT_ROLE: dict[str, Role] = {
    "breaks": "bad",
    "still_fails": "warn",
    "fixed": "ok",
    "still_negotiates": "muted",
    "breaks_logged_list": "bad",
    "still_fails_logged_list": "warn",
    "passes_logged_list": "ok",
    "still_passes_logged_list": "muted",
}
COLUMNS = ("effect", "sessions", "client software", "HASSH", "after the change")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerChoice:
    """The server offer a change is applied to, and one line saying which it is and why."""

    group: Group | None
    line: str


def split_changes(text: str) -> list[str]:
    """``Ciphers -aes128-cbc; MACs -hmac-sha1`` (or one per line) as config lines."""
    return [part.strip() for part in text.replace("\n", ";").split(";") if part.strip()]


def choose_server(records: Sequence[SessionRecord], selected_id: str | None) -> ServerChoice:
    """The selected session's server offer, else the most common one held."""
    ssh = [r for r in records if r.protocol == "ssh"]
    servers = Counter(endpoint(r.server) for r in ssh if r.server_kexinit)
    others = (
        f"; the sessions hold {len(servers)} servers: select a session of another to change it"
        if len(servers) > 1
        else ""
    )
    selected = next((r for r in ssh if r.id == selected_id), None)
    if selected is not None and selected.server_kexinit:
        groups = group_offers(record_offers([selected], "server"))
        where = endpoint(selected.server)
        return ServerChoice(
            group=groups[0],
            line=f"server {where} ({software(selected.server_banner)}): the selected "
            f"session's offer{others}",
        )
    groups = group_offers(record_offers(ssh, "server"))
    if not groups:
        return ServerChoice(
            group=None, line="no session holds a server's KEXINIT: nothing to change"
        )
    first = groups[0]
    why = "the selected session has no server KEXINIT" if selected else "no session is selected"
    return ServerChoice(
        group=first,
        line=f"server {software(first.banner)}: the most common server offer ({first.count} "
        f"sessions), since {why}{others}",
    )


def after_words(p: Prediction) -> str:
    """The outcome in a few words: the choices, or the first failing list and its reason."""
    after = p.after
    if after.ok:
        chosen = after.chosen
        return f"{chosen.get('kex')}, {chosen.get('host_key')}, {chosen.get('cipher_c2s')}"
    first = after.failures[0]
    rejection = after.rejections.get("server") or after.rejections.get("client")
    reason = rejection.reason if rejection else "no match"
    return f"fails on {first.list}: {reason}"


def logged_summary(rows: Sequence[tuple[LoggedGroup, LoggedPrediction]]) -> str:
    """``; logged lists: 1 of 4 pass, 3 still fail, 0 broken`` (empty with no logged rows)."""
    if not rows:
        return ""
    _records, groups = tally(rows, LOGGED_EFFECTS)
    passing = groups["passes_logged_list"] + groups["still_passes_logged_list"]
    return (
        f"; logged lists (server's log): {passing} of {len(rows)} pass,"
        f" {groups['still_fails_logged_list']} still fail, {groups['breaks_logged_list']} broken"
    )


def summary_line(rows: Sequence[tuple[Group, Prediction]]) -> str:
    """``breaks 2 of 5 client groups (7 of 12 sessions); 1 already failing, 0 fixed``."""
    sessions, groups = tally(rows, EFFECTS)
    return (
        f"breaks {groups['breaks']} of {len(rows)} client groups"
        f" ({sessions['breaks']} of {sum(sessions.values())} sessions);"
        f" {groups['still_fails']} already failing, {groups['fixed']} fixed"
    )


class WhatIfScreen(Screen[None]):
    """A change typed in, and every held client group's fate under it, breaks first.

    It is given whole records (the app loads those a store sent as summaries), the id of
    the selected session and the palette, so that it needs nothing of the app's.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", tooltip="back to the sessions"),
    ]

    def __init__(
        self, records: Sequence[SessionRecord], selected_id: str | None, palette: Palette
    ) -> None:
        super().__init__()
        self.palette = palette
        self.server = choose_server(records, selected_id)
        self.clients = group_offers(record_offers(records, "client"))
        self.logged = group_logged(logged_offers(records))
        self.rows: list[tuple[Group, Prediction]] = []
        self.logged_rows: list[tuple[LoggedGroup, LoggedPrediction]] = []
        self.refusal: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text(printable(self.server.line), end=""), id="whatif-server", markup=False)
        yield Input(
            placeholder="sshd_config lines, ; between them: Ciphers -aes128-cbc; KexAlgorithms +…",
            id="whatif-change",
        )
        yield Static(
            Text(
                f"enter predicts for {len(self.clients)} client groups · escape goes back",
                end="",
            ),
            id="whatif-summary",
            markup=False,
        )
        table: DataTable[Text] = DataTable(id="whatif-table", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#whatif-change", Input).focus()

    @on(Input.Submitted, "#whatif-change")
    def _submitted(self, event: Input.Submitted) -> None:
        self.predict(event.value)

    def predict(self, text: str) -> None:
        """Applies the typed change to the server's offer and shows who breaks, or why not."""
        lines = split_changes(text)
        self.rows, self.logged_rows, self.refusal = [], [], None
        server = self.server.group
        if server is None:
            self.refusal = self.server.line
        elif not lines:
            self.refusal = "type a change, e.g. Ciphers -aes128-cbc"
        elif not self.clients and not self.logged:
            self.refusal = "no session holds a client's KEXINIT: nobody to predict for"
        else:
            try:
                self.rows = predict_groups(self.clients, [server], lines, [])
                changed = apply_changes(server.side, lines, "server")
                self.logged_rows = predict_logged_groups(
                    self.logged, server.kexinit, changed.kexinit
                )
            except (ChangeRefused, ListError) as exc:
                self.rows, self.refusal = [], str(exc)
        self._show(lines)

    def _show(self, lines: list[str]) -> None:
        palette = self.palette
        table: DataTable[Text] = self.query_one("#whatif-table", DataTable)
        table.clear()
        summary = self.query_one("#whatif-summary", Static)
        if self.refusal is not None:
            summary.update(Text(printable(self.refusal), palette["bad"], end=""))
            return
        line = Text(f"{printable('; '.join(lines))}: ", end="")
        broken = any(p.effect == "breaks" for _, p in self.rows)
        line.append(summary_line(self.rows), palette["bad" if broken else "ok"])
        line.append(logged_summary(self.logged_rows))
        summary.update(line)
        for group, p in self.rows:
            style = palette[EFFECT_ROLE[p.effect]]
            table.add_row(
                Text(p.effect.replace("_", " "), style),
                Text(str(group.count) if group.count else "-", justify="right"),
                Text(printable(group.software or "(no banner)")),
                Text(printable((group.hassh or "-")[:HASSH_CHARS])),
                Text(printable(after_words(p)), style if p.effect == "breaks" else ""),
            )
        for logged, lp in self.logged_rows:
            style = palette[EFFECT_ROLE[lp.effect]]
            table.add_row(
                Text(lp.effect.replace("_", " "), style),
                Text(str(logged.count), justify="right"),
                Text("(from the server's log)"),
                Text("-"),
                Text(printable(f"{logged.list}: {logged_words(lp)}")),
            )

    def action_back(self) -> None:
        self.dismiss()
