"""The dashboard over captures, driven like a user would: keys, mouse, screens, export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kexproxy.core.record import SessionRecord
from kexproxy_tui.app import create_app
from kexproxy_tui.feeds import CaptureFeed, RecordsFeed
from kexproxy_tui.messages import SessionsArrived
from kexproxy_tui.screens.detail import DetailScreen
from kexproxy_tui.screens.export import ExportScreen
from kexproxy_tui.screens.help import HelpScreen
from kexproxy_tui.screens.sessions import SessionsScreen
from kexproxy_tui.widgets.filter_bar import FilterInput

from .conftest import CAPTURES, DASHBOARD_PCAP, PUBLIC, screen_lines, settle, type_text, wait_for

CAPTURE_FILES = [
    str(PUBLIC / "zeek-ssh-sshguess.pcap"),
    str(PUBLIC / "zeek-ssh-kex-quadratic-1000.pcap"),
    str(DASHBOARD_PCAP),
]


def text_of(app: object) -> str:
    return "\n".join(screen_lines(app))  # type: ignore[arg-type]


async def test_captures_are_read_in_a_worker_and_shown() -> None:
    app = create_app(CaptureFeed(CAPTURE_FILES))
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot, app)
        screen = app.sessions_screen
        assert screen.table.row_count == 11 + 1 + 3
        text = text_of(app)
        assert "15 sessions · 3 failed · 12 negotiated" in text
        assert "failing: cipher 2, kex 2, MAC 1, compression 1, +1 more" in text
        assert "15 sessions from 3 captures" in text
        assert re.search(r" failed +kex +both: add ", text), text


async def test_recorded_failure_captures() -> None:
    files = sorted(str(p) for p in CAPTURES.glob("openssh-*fail*.pcap"))
    assert files, "captures/ holds the recorded failures"
    app = create_app(CaptureFeed(files))
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot, app)
        assert app.sessions_screen.counters.failed >= 1
        await pilot.press("slash")
        await type_text(pilot, "outcome:failed")
        await pilot.press("enter", "enter")
        assert isinstance(app.screen, DetailScreen)
        assert "Unable to negotiate with" in text_of(app)


async def test_a_broken_capture_is_reported_and_the_others_still_read(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-capture.pcap"
    bad.write_text("hello\n")
    app = create_app(CaptureFeed([str(bad), str(DASHBOARD_PCAP)]))
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        assert app.sessions_screen.table.row_count == 3
        (toast,) = app._notifications  # the error toast, literal text
        assert "not-a-capture.pcap" in toast.message
        assert toast.severity == "error"
        assert "1 unreadable" in text_of(app)


async def test_filter_detail_back_and_the_filter_is_remembered(
    dashboard_records: list[SessionRecord], sshguess_records: list[SessionRecord]
) -> None:
    app = create_app(RecordsFeed([*sshguess_records, *dashboard_records]))
    async with app.run_test(size=(120, 60)) as pilot:
        await settle(pilot, app)
        screen = app.sessions_screen
        await pilot.press("slash")
        await type_text(pilot, "outcome:failed list:kex")
        await pilot.press("enter")
        assert screen.table.row_count == 1
        assert "1 session (of 14)" in text_of(app)
        assert app.focused is screen.table
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        kex = dashboard_records[1]
        assert app.screen.record.id == kex.id
        text = text_of(app)
        client_message = kex.rejections["client"]["message"]
        assert client_message[:70] in text.replace("\n", " ")
        assert "kex_algorithms  no match" in text
        assert "✗ diffie-hellman-group14-sha1" in text  # the client's, lacking on the server
        assert "✗ curve25519-sha256" in text  # the server's
        await pilot.press("escape")
        assert app.screen is screen
        assert screen.query_one(FilterInput).value == "outcome:failed list:kex"
        assert screen.table.row_count == 1
        # The history brings the filter back after it was cleared.
        await pilot.press("slash", "ctrl+u", "enter")
        assert screen.table.row_count == 14
        await pilot.press("slash", "up")
        assert screen.query_one(FilterInput).value == "outcome:failed list:kex"
        await pilot.press("escape")


async def test_a_bad_filter_empties_the_table_and_says_why(
    dashboard_records: list[SessionRecord],
) -> None:
    app = create_app(RecordsFeed(dashboard_records))
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot, app)
        screen = app.sessions_screen
        await pilot.press("slash")
        await type_text(pilot, "list:kex")
        await pilot.press("enter")
        assert screen.table.row_count == 1
        await pilot.press("slash")
        await type_text(pilot, "outcome:won")
        await pilot.press("enter")
        # No row of the previous filter stays on screen as if it answered this one.
        assert screen.table.row_count == 0
        text = text_of(app)
        assert "outcome:won: use one of" in text
        assert "0 sessions (of 3)" in text
        assert app.focused is screen.query_one(FilterInput)
        await type_text(pilot, "outcome=failed")
        await pilot.press("enter")
        assert screen.table.row_count == 2
        assert "use one of" not in text_of(app)


async def test_the_filter_finds_what_a_client_offered_and_takes_equals(
    dashboard_records: list[SessionRecord],
) -> None:
    app = create_app(RecordsFeed(dashboard_records))
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot, app)
        screen = app.sessions_screen
        kex = dashboard_records[1]
        # Only offered (by the kex failure's client), never chosen nor in a failing list.
        for text in (
            "diffie-hellman-group14-sha1",
            "offers=group14-sha1",
            "outcome=fail offers:group14-sha1",
        ):
            await pilot.press("slash", "ctrl+u")
            await type_text(pilot, text)
            await pilot.press("enter")
            assert screen.table.shown_ids() == [kex.id], text
        await pilot.press("slash", "ctrl+u")
        await type_text(pilot, "offers:sntrup761")  # the other two clients offered it
        await pilot.press("enter")
        assert screen.table.row_count == 2
        assert kex.id not in screen.table.shown_ids()


async def test_every_key_after_slash_goes_to_the_filter_however_fast(
    dashboard_records: list[SessionRecord],
) -> None:
    """`tmux send-keys / C-u Enter`: the keys arrive together, before focus could move."""
    from textual import events

    app = create_app(RecordsFeed(dashboard_records))
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot, app)
        screen = app.sessions_screen
        assert app.focused is screen.table

        def burst(*keys: tuple[str, str | None]) -> None:
            driver = app._driver
            assert driver is not None
            for key, char in keys:
                event = events.Key(key, char)
                event.set_sender(app)
                driver.send_message(event)

        field = screen.query_one(FilterInput)
        await pilot.press("slash")
        await type_text(pilot, "list:kex")
        await pilot.press("enter")
        assert screen.table.row_count == 1 and app.focused is screen.table
        burst(("slash", "/"), ("ctrl+u", None), ("enter", "\r"))
        await wait_for(pilot, lambda: field.value == "" and app.focused is not field)
        assert app.screen is screen, "enter after / opened a detail screen"
        assert screen.table.row_count == 3
        burst(("slash", "/"), *((c, c) for c in "list"), ("colon", ":"), ("k", "k"))
        burst(("e", "e"), ("x", "x"), ("enter", "\r"))
        await wait_for(pilot, lambda: field.value == "list:kex" and app.focused is not field)
        assert app.screen is screen  # "e" (export) reached no table binding
        assert screen.table.row_count == 1
        # A / typed inside the filter is part of it (a network), not a new focus.
        burst(("slash", "/"), ("space", " "), *((c, c) for c in "client"), ("colon", ":"))
        burst(*((c, c) for c in "10.0.0.0"), ("slash", "/"), ("8", "8"), ("enter", "\r"))
        await wait_for(pilot, lambda: app.focused is not field and screen.table.row_count == 0)
        assert field.value == "list:kex client:10.0.0.0/8"
        assert app.screen is screen
        # `send-keys / C-u "text" Enter`: Ctrl-U clears what was there, in order, and the
        # text typed after it in the same burst is the new filter.
        burst(("slash", "/"), ("ctrl+u", None), *((c, c) for c in "list"), ("colon", ":"))
        burst(("k", "k"), ("e", "e"), ("x", "x"), ("enter", "\r"))
        await wait_for(pilot, lambda: app.focused is not field and screen.table.row_count == 1)
        assert field.value == "list:kex"


async def test_typing_applies_the_filter_after_a_pause(
    dashboard_records: list[SessionRecord],
) -> None:
    app = create_app(RecordsFeed(dashboard_records))
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("slash", *"!list:kex")
        await pilot.pause(0.4)
        assert app.sessions_screen.table.row_count == 2


async def test_mark_and_export_marked(
    dashboard_records: list[SessionRecord], tmp_path: Path
) -> None:
    app = create_app(RecordsFeed(dashboard_records))
    target = tmp_path / "out.jsonl"
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot, app)
        screen = app.sessions_screen
        await pilot.press("m", "down", "m")  # m moves down: marks the 1st and the 3rd
        assert screen.marked == {dashboard_records[0].id, dashboard_records[2].id}
        assert "2 marked" in text_of(app)
        await pilot.press("e")
        assert isinstance(app.screen, ExportScreen)
        assert "Export 2 marked sessions" in text_of(app)
        await type_text(pilot, str(target))
        await pilot.press("enter")
        await pilot.pause(0.3)
        lines = target.read_text().splitlines()
        assert [json.loads(line)["id"] for line in lines] == [
            dashboard_records[0].id,
            dashboard_records[2].id,
        ]
        assert any("wrote 2 sessions" in n.message for n in app._notifications)


async def test_export_shown_with_the_default_path(
    dashboard_records: list[SessionRecord], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = create_app(RecordsFeed(dashboard_records))
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("slash")
        await type_text(pilot, "outcome:failed")
        await pilot.press("enter", "e")
        assert "Export 2 shown sessions" in text_of(app)
        await pilot.press("enter")
        await pilot.pause(0.3)
        written = (tmp_path / "kexproxy-export.jsonl").read_text().splitlines()
        assert {json.loads(line)["outcome"] for line in written} == {"failed"}
        assert len(written) == 2
        # escape cancels without writing
        await pilot.press("e", "escape")
        assert isinstance(app.screen, SessionsScreen)


async def test_export_to_an_unwritable_path_says_so(
    dashboard_records: list[SessionRecord], tmp_path: Path
) -> None:
    app = create_app(RecordsFeed(dashboard_records))
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("e")
        await type_text(pilot, str(tmp_path / "missing" / "x.jsonl"))
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert any(n.severity == "error" and "export to" in n.message for n in app._notifications)


async def test_help_lists_every_key(dashboard_records: list[SessionRecord]) -> None:
    app = create_app(RecordsFeed(dashboard_records))
    async with app.run_test(size=(120, 64)) as pilot:
        await settle(pilot, app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = text_of(app)
        listed = set(re.findall(r"(?:everywhere|sessions|detail|filter) +(\S+)", text))
        for key in (
            "/",
            "enter",
            "esc",
            "f",
            "m",
            "e",
            "s",
            "S",
            "u",
            "c",
            "C",
            "y",
            "q",
            "?",
            "t",
        ):
            assert key in listed, key
        assert "outcome:failed" in text and "list:kex" in text
        await pilot.press("question_mark")
        assert isinstance(app.screen, SessionsScreen)


async def test_sorting_by_key_and_by_clicking_a_header(
    sshguess_records: list[SessionRecord],
) -> None:
    app = create_app(RecordsFeed(sshguess_records))
    async with app.run_test(size=(160, 24)) as pilot:
        await settle(pilot, app)
        table = app.sessions_screen.table
        by_time = [r.id for r in sorted(sshguess_records, key=lambda r: (r.started or "", r.id))]
        assert table.shown_ids() == by_time
        await pilot.press("S")
        assert table.shown_ids() == by_time[::-1]
        assert "sort time↓" in text_of(app)
        await pilot.press("s")
        assert table.sort_column == "outcome"
        assert "sort outcome↑" in text_of(app)
        # A click on the "client" header sorts by it; a second click reverses.
        keys = list(table.columns)
        before = keys[: keys.index("client")]  # type: ignore[arg-type]
        header_x = sum(table.columns[k].get_render_width(table) for k in before)
        await pilot.click(table, offset=(header_x + 2, 0))
        assert table.sort_column == "client"
        first = table.shown_ids()
        await pilot.click(table, offset=(header_x + 2, 0))
        assert table.shown_ids() == first[::-1]


async def test_clicking_a_row_opens_it(dashboard_records: list[SessionRecord]) -> None:
    app = create_app(RecordsFeed(dashboard_records))
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot, app)
        table = app.sessions_screen.table
        await pilot.click(table, offset=(5, 3))  # the header, then the 3rd row: chosen
        assert isinstance(app.screen, SessionsScreen)
        assert table.current_id == dashboard_records[2].id
        await pilot.click(table, offset=(5, 3))  # again: opened
        assert isinstance(app.screen, DetailScreen)
        assert app.screen.record.id == dashboard_records[2].id


async def test_the_detail_follows_a_newer_version_of_its_session(
    dashboard_records: list[SessionRecord],
) -> None:
    """The app hands the open detail screen the newer version; other sessions leave it be."""
    from dataclasses import replace

    app = create_app(RecordsFeed(dashboard_records))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        shown, other = dashboard_records[0], dashboard_records[1]
        app.open_detail(shown.id)
        await pilot.pause()
        detail = app.screen
        assert isinstance(detail, DetailScreen) and detail.record == shown
        elsewhere = replace(other, client_banner="SSH-2.0-Elsewhere_1.0")
        app.post_message(SessionsArrived((elsewhere,)))
        await wait_for(pilot, lambda: app.index.get(other.id) == elsewhere)
        assert detail.record == shown
        newer = replace(shown, client_banner="SSH-2.0-Newer_1.0")
        app.post_message(SessionsArrived((newer,)))
        await wait_for(pilot, lambda: detail.record == newer)
        assert app.screen is detail
        assert "SSH-2.0-Newer_1.0" in text_of(app)


async def test_copy_a_recipe(dashboard_records: list[SessionRecord]) -> None:
    app = create_app(RecordsFeed(dashboard_records))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        app.open_detail(dashboard_records[1].id)
        await pilot.pause()
        recipes = dashboard_records[1].diagnosis["recipes"]  # type: ignore[index]
        both, server = recipes[0], recipes[2]
        assert (both["side"], server["side"], server["command"]) == ("both", "server", None)
        await pilot.press("c")
        # A two-sided recipe: the client's command, then the server's sshd_config line.
        command, line = app.clipboard.split("\n")
        assert command == both["command"] and command.startswith("ssh -oKexAlgorithms=+")
        assert line.startswith("KexAlgorithms +")
        assert any(n.message.startswith(f"copied: {both['command']}") for n in app._notifications)
        await pilot.press("C")
        assert app.clipboard == both["persist"]["text"]
        assert app.clipboard.startswith("Host 127.0.0.1\n    KexAlgorithms +")
        await pilot.press("y")
        assert app.clipboard == dashboard_records[1].rejections["client"]["message"]
        # Down the list to the server's recipe: no command, so its sshd_config line, by c,
        # Enter and C alike.
        await pilot.click("#recipes")
        await pilot.press("down", "down", "enter")
        assert app.clipboard == "KexAlgorithms +diffie-hellman-group14-sha1"
        app.copy_to_clipboard("")
        await pilot.press("C")
        assert app.clipboard == "KexAlgorithms +diffie-hellman-group14-sha1"


async def test_copy_without_diagnosis(dashboard_records: list[SessionRecord]) -> None:
    from dataclasses import replace

    bare = replace(dashboard_records[0], diagnosis=None)
    app = create_app(RecordsFeed([bare]))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("enter", "c", "y")
        messages = [n.message for n in app._notifications]
        assert "no recipe in this record to copy" in messages
        assert "no rejection message in this record" in messages
        assert "Diagnosis" not in text_of(app)


async def test_follow_moves_to_the_newest_session(
    dashboard_records: list[SessionRecord], sshguess_records: list[SessionRecord]
) -> None:
    app = create_app(RecordsFeed(sshguess_records[:3]))
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot, app)
        screen = app.sessions_screen
        await pilot.press("f")
        assert screen.follow
        newest = dashboard_records[2]
        app.post_message(
            __import__("kexproxy_tui.messages", fromlist=["x"]).SessionsArrived((newest,))
        )
        await pilot.pause(0.3)
        assert screen.table.current_id == newest.id
        await pilot.press("f")
        assert not screen.follow


async def test_theme_toggle_keeps_rows(dashboard_records: list[SessionRecord]) -> None:
    app = create_app(RecordsFeed(dashboard_records))
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot, app)
        dark_error = app.palette["bad"].color
        await pilot.press("t")
        await pilot.pause()
        assert app.theme == "textual-light"
        assert app.palette["bad"].color != dark_error
        assert app.sessions_screen.table.row_count == 3
        await pilot.press("q")
    assert app.return_code in (0, None)


async def test_the_cursor_keeps_its_session_through_a_filter(
    dashboard_records: list[SessionRecord],
) -> None:
    ok, kex, cipher = dashboard_records
    app = create_app(RecordsFeed(dashboard_records))
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot, app)
        screen = app.sessions_screen
        screen.table.move_to(cipher.id)
        screen.apply_filter("outcome:failed")
        await pilot.pause()
        assert screen.table.current_id == cipher.id
        assert screen.table.cursor_row == 1
        screen.apply_filter("list:kex")  # the cipher failure is gone: to the top
        await pilot.pause()
        assert screen.table.current_id == kex.id
        screen.apply_filter("")
        await pilot.pause()
        assert screen.table.current_id == kex.id
        assert ok.id in screen.table.shown_ids()


async def test_a_policy_judges_each_session_and_the_detail_lists_violations() -> None:
    from kexproxy.pipeline import stages

    steps = stages(policy=str(Path(__file__).resolve().parents[2] / "policies" / "modern.toml"))
    weak = str(CAPTURES / "asyncssh-success.pcap")  # curve25519-sha256: classical kex
    app = create_app(CaptureFeed([weak], stages=steps))
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot, app)
        (record,) = app.index
        assert record.policy is not None and record.policy["compliant"] is False
        assert "policy: " in text_of(app) and "violation" in text_of(app)
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        flat = " ".join(text_of(app).split())
        assert "policy modern: violated" in flat
        first = record.policy["violations"][0]["message"]
        assert " ".join(first.split()) in flat


async def test_ctrl_u_clears_the_filter_in_key_order(
    dashboard_records: list[SessionRecord],
) -> None:
    """In a real terminal, Ctrl-U as a binding ran after printable keys queued behind it
    (tmux send-keys "/" C-u "text" Enter lost the text): the filter handles it with the
    key itself, so it takes effect before the next key is read."""
    from textual import events

    app = create_app(RecordsFeed(dashboard_records))
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot, app)
        field = app.sessions_screen.query_one(FilterInput)
        await pilot.press("slash")
        await type_text(pilot, "list:kex")
        field.cursor_position = len(field.value)
        key = events.Key("ctrl+u", None)
        await field._on_key(key)  # the handler alone, no message loop in between
        assert field.value == "" and key._stop_propagation and key._no_default_action
