"""The recipes on the detail screen: what `c` and `C` copy, and records whose recipes are damaged."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from rich.console import Console, RenderableType

from kexproxy.core.record import SessionRecord
from kexproxy.pipeline import capture_records
from kexproxy.present import recipe_action
from kexproxy_tui.app import create_app
from kexproxy_tui.feeds import RecordsFeed
from kexproxy_tui.palette import Palette
from kexproxy_tui.recipes import lasting, notes, recipe_options, shaped_record
from kexproxy_tui.render import recipe_prompts
from kexproxy_tui.rows import row_texts
from kexproxy_tui.screens.detail import DetailScreen

from .conftest import CAPTURES, screen_lines, settle


@pytest.fixture(scope="module")
def failed_records(dashboard_records: list[SessionRecord]) -> list[SessionRecord]:
    """Every failed SSH handshake of the bundled captures: OpenSSH, dropbear, PuTTY, paramiko...

    TLS recipes copy differently (their command or first step): test_detail_tls.py.
    """
    out = [r for r in dashboard_records if r.outcome == "failed"]
    for path in sorted(CAPTURES.glob("*.pcap")):
        out += [
            r for r in capture_records(str(path)) if r.outcome == "failed" and r.protocol == "ssh"
        ]
    return out


def _recipes(record: SessionRecord) -> list[dict[str, Any]]:
    return (record.diagnosis or {})["recipes"]  # type: ignore[no-any-return]


def render_plain(renderables: list[RenderableType], width: int) -> str:
    console = Console(width=width, no_color=True, file=None)
    with console.capture() as capture:
        console.print(*renderables)
    return capture.get()


async def test_the_copy_key_copies_exactly_the_top_recipes_action(
    failed_records: list[SessionRecord],
) -> None:
    tops = [_recipes(r)[0] for r in failed_records]
    # Both ways of copying are exercised: a client's whole command and a server's line.
    assert any(t["command"] for t in tops) and any(not t["command"] for t in tops)
    app = create_app(RecordsFeed(failed_records))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        for record, top in zip(failed_records, tops, strict=True):
            app.open_detail(record.id)
            await pilot.pause()
            assert isinstance(app.screen, DetailScreen) and app.screen.record == record
            await pilot.press("c")
            assert app.clipboard == recipe_action(top), record.capture
            if top["command"]:
                # the runnable command first, then what it does not carry (a server's lines)
                assert app.clipboard.split("\n")[0] == top["command"]
                server = [s["text"] for s in top["steps"] if s["side"] == "server"]
                assert app.clipboard.split("\n")[1:] == server
            await pilot.press("C")
            expected = top["persist"]["text"] if top["persist"] else recipe_action(top)
            assert app.clipboard == expected, record.capture
            await pilot.press("escape")
            await pilot.pause()


async def test_the_detail_screen_lists_every_recipe_numbered(
    dashboard_records: list[SessionRecord],
) -> None:
    record = dashboard_records[1]
    app = create_app(RecordsFeed([record]))
    async with app.run_test(size=(120, 60)) as pilot:
        await settle(pilot, app)
        await pilot.press("enter")
        text = "\n".join(screen_lines(app))
    for recipe in _recipes(record):
        assert f"{recipe['rank']}. " in text
    assert "1. Both sides (client OpenSSH 9.2, server OpenSSH 9.2): add" in text
    assert "client, run" in text and "server, sshd_config" in text
    assert "reach" in text and "⚠" in text
    # Each note once, though two recipes carry the client's and two the server's.
    assert text.count("ssh keeps the first value it reads") == 1
    assert text.count("sshd keeps the first value it reads") == 1


def test_a_step_the_command_carries_is_not_shown_twice(
    dashboard_records: list[SessionRecord],
) -> None:
    both = _recipes(dashboard_records[1])[0]
    option = next(s["text"] for s in both["steps"] if s["kind"] == "ssh_option")
    shown = render_plain(recipe_prompts([both], Palette()), width=200)
    assert shown.count(option) == 1  # inside the command only
    assert both["command"] in shown


def test_labels_share_one_column_and_long_values_wrap_under_themselves(
    dashboard_records: list[SessionRecord],
) -> None:
    recipes = _recipes(dashboard_records[1])
    shown = render_plain(recipe_prompts(recipes, Palette()), width=80).splitlines()
    starts = {line.index(v) for line in shown for v in ("ssh -o", "KexAlgorithms +") if v in line}
    assert len(starts) == 1, shown  # every value in the same column, in every recipe
    (column,) = starts
    wrapped = [line for line in shown if line.strip() and not line[:column].strip()]
    assert wrapped  # the reach is longer than a line: its rest starts under the value
    assert all(line[column] != " " for line in wrapped)


def test_lasting_is_the_host_block_else_every_step() -> None:
    block = {"kind": "ssh_config", "side": "client", "software": "x", "text": "Host h\n    A b"}
    steps = [
        {
            "side": "server",
            "software": "x",
            "kind": "host_key",
            "text": "ssh-keygen ...\nHostKey k",
        },
        {"side": "server", "software": "x", "kind": "sshd_config", "text": "HostKeyAlgorithms +y"},
    ]
    assert lasting({"steps": steps, "persist": block}) == "Host h\n    A b"
    assert lasting({"steps": steps, "persist": None}) == (
        "ssh-keygen ...\nHostKey k\nHostKeyAlgorithms +y"
    )


def test_notes_come_once_each_in_order() -> None:
    assert notes([{"notes": ["a", "b"]}, {"notes": ["b", "c"]}, {"notes": "not a list"}]) == [
        "a",
        "b",
        "c",
    ]


DAMAGED: list[object] = [
    "a string",
    {"steps": "abc"},
    {"steps": ["a"]},
    {"steps": [{"kind": ["not", "hashable"]}]},
    {"software": "not an object", "steps": []},
    {"adds": [1], "steps": []},
    {"persist": "not an object", "steps": []},
]


def test_recipes_of_another_shape_are_left_out(dashboard_records: list[SessionRecord]) -> None:
    record = dashboard_records[1]
    good = _recipes(record)
    assert recipe_options(record.diagnosis or {}) == good
    assert shaped_record(record) is record
    damaged = replace(record, diagnosis={**(record.diagnosis or {}), "recipes": [*DAMAGED, *good]})
    assert recipe_options(damaged.diagnosis or {}) == good
    assert _recipes(shaped_record(damaged)) == good
    assert row_texts(damaged)["verdict"] == row_texts(record)["verdict"]
    assert recipe_options({"recipes": "not a list"}) == []


async def test_a_record_with_damaged_recipes_still_shows(
    dashboard_records: list[SessionRecord],
) -> None:
    record = dashboard_records[1]
    damaged = replace(record, diagnosis={**(record.diagnosis or {}), "recipes": DAMAGED})
    app = create_app(RecordsFeed([damaged]))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert app.sessions_screen.table.row_count == 1
        await pilot.press("enter", "c")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        assert "no recipe in this record to copy" in [n.message for n in app._notifications]
