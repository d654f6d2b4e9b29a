"""The what-if view: from the sessions screen, `w`, a change typed, who breaks (issue 13)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from rich.text import Text
from textual.widgets import DataTable, Input, Static

from kexproxy.core.record import SessionRecord
from kexproxy.pipeline import capture_records
from kexproxy_tui.app import create_app
from kexproxy_tui.feeds import RecordsFeed
from kexproxy_tui.screens.sessions import SessionsScreen
from kexproxy_tui.screens.whatif import WhatIfScreen, choose_server, split_changes
from tests.tui.conftest import CAPTURES, HOSTILE_BANNER, settle, type_text

#: Real sessions against one OpenSSH 9.2 server (one capture each, so one port each).
FILES = (
    "openssh-success",
    "plink-success",
    "paramiko-success",
    "dropbear-client-kex-fail",
    "asyncssh-success",
)


@pytest.fixture(scope="module")
def held() -> list[SessionRecord]:
    """The five sessions, and dropbear's a second time: two sessions of one client group."""
    records = [r for name in FILES for r in capture_records(str(CAPTURES / f"{name}.pcap"))]
    dropbear = next(r for r in records if r.client_banner == "SSH-2.0-dropbear_2022.83")
    return [*records, replace(dropbear, id="dropbear-again")]


def texts(table: DataTable[Text]) -> list[list[str]]:
    return [[cell.plain for cell in table.get_row_at(i)] for i in range(table.row_count)]


def summary(screen: WhatIfScreen) -> str:
    content = screen.query_one("#whatif-summary", Static).content
    assert isinstance(content, Text)
    return content.plain


def test_changes_split_on_semicolons_and_newlines() -> None:
    text = "Ciphers -aes128-cbc; MACs -hmac-sha1\nKexAlgorithms +x ;"
    assert split_changes(text) == ["Ciphers -aes128-cbc", "MACs -hmac-sha1", "KexAlgorithms +x"]


def test_the_selected_sessions_server_is_the_one_changed(held: list[SessionRecord]) -> None:
    paramiko = next(r for r in held if "paramiko" in (r.client_banner or ""))
    choice = choose_server(held, paramiko.id)
    assert choice.group is not None
    assert f"127.0.0.1:{paramiko.server['port']}" in choice.line
    assert "the selected session's offer" in choice.line
    assert f"the sessions hold {len(FILES)} servers" in choice.line
    fallback = choose_server(held, None)
    assert fallback.group is not None and "no session is selected" in fallback.line


async def test_w_then_a_change_shows_who_breaks_first(held: list[SessionRecord]) -> None:
    app = create_app(RecordsFeed(held))
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(pilot, app)
        sessions = app.screen
        assert isinstance(sessions, SessionsScreen)
        await pilot.press("w")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, WhatIfScreen)
        assert isinstance(app.focused, Input)
        await type_text(pilot, "Ciphers aes256-gcm@openssh.com")
        await pilot.press("enter")
        await pilot.pause()
        rows = texts(screen.query_one("#whatif-table", DataTable))
        effects = [row[0] for row in rows]
        assert effects[0] == "breaks"
        assert effects == sorted(
            effects, key=["breaks", "still fails", "fixed", "still negotiates"].index
        )
        # Only dropbear's client lacks AES-256-GCM: its two sessions break, on the cipher list.
        assert [row[:3] for row in rows if row[0] == "breaks"] == [
            ["breaks", "2", "dropbear_2022.83"]
        ]
        assert "fails on encryption_algorithms_server_to_client" in rows[0][4]
        assert rows[0][3] == (held[-1].hassh or "")[:12]
        assert summary(screen) == (
            "Ciphers aes256-gcm@openssh.com: breaks 1 of 5 client groups (2 of 6 sessions);"
            " 0 already failing, 0 fixed"
        )
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is sessions


async def test_a_refused_change_is_one_line_and_no_rows(held: list[SessionRecord]) -> None:
    app = create_app(RecordsFeed(held))
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("w")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, WhatIfScreen)
        await type_text(pilot, "Ciphers -aes128-ctr; KexAlgorithms mlkem768x25519-sha256")
        await pilot.press("enter")
        await pilot.pause()
        assert screen.query_one("#whatif-table", DataTable).row_count == 0
        line = summary(screen)
        assert "\n" not in line
        assert line == (
            "KexAlgorithms mlkem768x25519-sha256: refused: OpenSSH 9.2 cannot do "
            "mlkem768x25519-sha256 (OpenSSH has it from 9.9)"
        )
        await type_text(pilot, "Ciphers -aes128-ctr")
        await pilot.press("enter")
        await pilot.pause()
        assert "breaks 0 of" in summary(screen)


async def test_strangers_text_is_shown_as_text(held: list[SessionRecord]) -> None:
    hostile = [replace(r, client_banner=HOSTILE_BANNER) for r in held[:1]] + held[1:]
    app = create_app(RecordsFeed(hostile))
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("w")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, WhatIfScreen)
        await type_text(pilot, "Ciphers -aes128-ctr")
        await pilot.press("enter")
        await pilot.pause()
        cells = [row[2] for row in texts(screen.query_one("#whatif-table", DataTable))]
        assert any(c.startswith("[bold red]x[/]") for c in cells), cells
        assert not any("\x1b" in c for c in cells)


async def test_clients_from_a_servers_log_get_their_own_rows(held: list[SessionRecord]) -> None:
    from datetime import UTC

    from kexproxy.core.sshdlog import SshdLogReader
    from kexproxy.core.sshdlog_record import finding_record

    line = (
        "Unable to negotiate with 10.0.0.7 port 7: no matching key exchange method found. "
        "Their offer: diffie-hellman-group14-sha1,ext-info-c [preauth]"
    )
    (finding,) = SshdLogReader(year=2026, zone=UTC).receive_line(line)
    app = create_app(RecordsFeed([*held, finding_record(finding, capture=None)]))
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("w")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, WhatIfScreen)
        await type_text(pilot, "KexAlgorithms +diffie-hellman-group14-sha1")
        await pilot.press("enter")
        await pilot.pause()
        rows = texts(screen.query_one("#whatif-table", DataTable))
        assert rows[-1] == [
            "passes logged list",
            "1",
            "(from the server's log)",
            "-",
            "kex_algorithms: shares diffie-hellman-group14-sha1; its other lists are unknown",
        ]
        assert not any("negotiates" in row[0] for row in rows if row[2].startswith("(from"))
        assert summary(screen).endswith(
            "; logged lists (server's log): 1 of 1 pass, 0 still fail, 0 broken"
        )
