"""Rows answer "who and what" without scrolling: software, outcome, failing lists and fix.

Issue 11: at 120 columns both sides' software, the outcome, the failing lists (once per
kind), the side to fix and its recipe are on screen; at 80 the outcome, lists and fix;
addresses and HASSH give way; the right arrow moves a column at a time.
"""

from __future__ import annotations

from dataclasses import replace

from kexproxy.core.record import SessionRecord
from kexproxy.present import recipe_action
from kexproxy_tui.app import KexproxyApp, create_app
from kexproxy_tui.feeds import RecordsFeed
from kexproxy_tui.palette import Palette
from kexproxy_tui.rows import COLUMN_KEYS, LEAD, CellCache, fit_widths, row_cells, row_texts
from tests.tui.conftest import screen_lines, settle

DEBIAN = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10"
LONG_BANNER = "SSH-2.0-" + "Z" * 200


def rows_with_long_names(dashboard_records: list[SessionRecord]) -> list[SessionRecord]:
    """The dashboard's success, kex and cipher failures (both sides `DEBIAN`), and the
    cipher failure again from a client whose banner is 200 characters long."""
    assert all(r.client_banner == DEBIAN for r in dashboard_records)
    cipher_fail = dashboard_records[2]
    return [*dashboard_records, replace(cipher_fail, id="long", client_banner=LONG_BANNER)]


def row_line(app: KexproxyApp, record: SessionRecord) -> str:
    """The screen line of `record`'s row: the line at its row's place in the table."""
    table = app.sessions_screen.table
    top = table.region.y + table.header_height - int(table.scroll_y)
    return screen_lines(app)[top + table.get_row_index(record.id)]


def test_the_row_texts_are_short_forms(dashboard_records: list[SessionRecord]) -> None:
    _ok, kex_fail, cipher_fail = dashboard_records
    texts = row_texts(cipher_fail)
    assert texts["client_software"] == texts["server_software"] == "OpenSSH 9.2"
    assert texts["detail"] == "cipher"  # once, though both directions failed
    assert set(cipher_fail.failing_lists) == {
        "encryption_algorithms_client_to_server",
        "encryption_algorithms_server_to_client",
    }
    assert texts["verdict"] == "client: add chacha20-poly1305@openssh.com"
    top = (cipher_fail.diagnosis or {})["recipes"][0]
    assert texts["command"] == recipe_action(top).splitlines()[0]
    assert texts["command"].startswith("ssh -oCiphers=+chacha20-poly1305@openssh.com")
    assert row_texts(kex_fail)["verdict"] == "both: add sntrup761x25519-sha512@openssh.com"


async def test_at_120_columns_a_row_shows_who_and_what(
    dashboard_records: list[SessionRecord],
) -> None:
    records = rows_with_long_names(dashboard_records)
    app = create_app(RecordsFeed(records))
    async with app.run_test(size=(120, 35)) as pilot:
        await settle(pilot, app)
        header = next(line for line in screen_lines(app) if "fix / verdict" in line)
        for label in ("outcome", "why", "fix / verdict", "client", "server"):
            assert label in header
        assert "HASSH" not in header and "address" not in header
        for record in records[1:]:
            line = row_line(app, record)
            texts = row_texts(record)
            for key in ("outcome", "detail", "verdict", "server_software"):
                assert f" {texts[key]} " in f"{line} ", (key, line)
            if record.id == "long":
                assert "ZZZZ…" in line  # the stranger's long name gives way, nothing else
            else:
                assert line.count(" OpenSSH 9.2 ") == 2, line
            assert record.client["ip"] + ":" not in line  # addresses gave way


async def test_at_80_columns_outcome_lists_and_fix_come_first(
    dashboard_records: list[SessionRecord],
) -> None:
    records = rows_with_long_names(dashboard_records)
    app = create_app(RecordsFeed(records))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        for record in records[1:]:
            line = row_line(app, record)
            texts = row_texts(record)
            for key in ("outcome", "detail", "verdict"):
                assert f" {texts[key]} " in f"{line} ", (key, line)


async def test_the_right_arrow_scrolls_one_column(dashboard_records: list[SessionRecord]) -> None:
    app = create_app(RecordsFeed(dashboard_records))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        table = app.sessions_screen.table
        starts = table.column_starts()
        assert len(starts) == len(COLUMN_KEYS) and table.max_scroll_x > starts[3]
        await pilot.press("right")
        assert table.scroll_x == starts[1]  # past the mark column, not one cell
        await pilot.press("right", "right")
        assert table.scroll_x == starts[3]
        header = next(line for line in screen_lines(app) if "fix / verdict" in line)
        assert header.lstrip().startswith("why")
        await pilot.press("left")
        assert table.scroll_x == starts[2]
        await pilot.press("end")
        for _ in COLUMN_KEYS:
            await pilot.press("right")
        assert table.scroll_x == table.max_scroll_x
        assert "HASSH" in "\n".join(screen_lines(app))


def test_fit_squeezes_the_chosen_algorithms_and_long_software_before_the_fix() -> None:
    wanted = {
        "time": 8,
        "outcome": 10,
        "detail": 30,
        "verdict": 44,
        "client_software": 20,
        "server_software": 11,
    }
    fitted = fit_widths(wanted, 120, 2)
    assert sum(fitted[key] + 2 for key in LEAD if key != "mark") + 3 <= 120
    assert fitted["verdict"] == 44 and fitted["server_software"] == 11
    assert 11 <= fitted["detail"] < 30  # "compression", the longest failing kind, still fits
    # Where the lead cannot fit, the fix keeps its width and the software runs off.
    narrow = fit_widths(wanted, 78, 2)
    assert narrow["verdict"] == 44 and narrow["outcome"] == 7 and narrow["detail"] == 8
    assert fit_widths(wanted, 400, 2) == wanted


def test_cells_that_repeat_are_shared_and_sort_as_before(
    dashboard_records: list[SessionRecord],
) -> None:
    palette = Palette()
    cache = CellCache(palette)
    first, second = (
        replace(dashboard_records[1], id=name, client={"ip": ip, "port": 2222})
        for name, ip in (("a", "10.0.0.9"), ("b", "10.0.0.10"))
    )
    row_a = row_cells(first, palette, marked=False, cache=cache)
    row_b = row_cells(second, palette, marked=True, cache=cache)
    by_key = {key: (a, b) for key, a, b in zip(COLUMN_KEYS, row_a, row_b, strict=True)}
    # The same outcome, fix and server: one cell each. Time and client differ.
    for key in ("outcome", "verdict", "server", "server_software", "command"):
        assert by_key[key][0] is by_key[key][1], key
    assert by_key["time"][0] is not by_key["time"][1]
    assert (str(by_key["mark"][0]), str(by_key["mark"][1])) == (" ", "●")
    # Sort keys as they were: the address numerically, text in lower case, time with the id.
    assert by_key["client"][0].sort_key < by_key["client"][1].sort_key
    assert by_key["verdict"][0].sort_key == str(by_key["verdict"][0]).lower()
    assert by_key["time"][1].sort_key == (second.started or "", "b")
    assert by_key["outcome"][0].width == len("failed")
    # Without a cache the cells are the same, only not shared.
    assert [str(c) for c in row_cells(first, palette, marked=False)] == [str(c) for c in row_a]
