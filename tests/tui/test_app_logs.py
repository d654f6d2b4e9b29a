"""Records from server logs (`kexproxy logs --store`) in the dashboard, beside captured ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kexproxy_tui.adapters import store_feed
from kexproxy_tui.app import create_app
from kexproxy_tui.screens.detail import DetailScreen

from .conftest import ROOT, screen_lines, wait_for

#: Real lines of dropbear -E and of sshd -e (LogLevel VERBOSE), as tests/core/test_sshdlog.py.
LOG = b"""\
[32631] Dec 07 18:07:00 Child connection from 127.0.0.1:42782
[32631] Dec 07 18:07:00 Exit before auth from <127.0.0.1:42782>: No matching algo kex
Connection from 127.0.0.1 port 43526 on 127.0.0.1 port 33551 rdomain ""\r
Unable to negotiate with 127.0.0.1 port 43526: no matching key exchange method found. Their offer: diffie-hellman-group14-sha1,ext-info-c,kex-strict-c-v00@openssh.com [preauth]\r
"""


async def test_log_records_are_listed_and_open_in_the_detail_view(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    subprocess.run(
        [sys.executable, "-m", "kexproxy", "logs", "--store", str(db), "--year", "2026", "-"],
        input=LOG,
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    app = create_app(store_feed(str(db)))
    async with app.run_test(size=(120, 80)) as pilot:
        await wait_for(pilot, lambda: app.sessions_screen.table.row_count == 2)
        assert {r.source for r in app.index} == {"log"}
        text = "\n".join(screen_lines(app))
        assert "failing: kex 2" in text
        assert "server: add diffie-hellman-group14-sha1" in text  # from the client's offer
        dropbear = next(r for r in app.index if r.client["port"] == 42782)
        app.sessions_screen.table.move_to(dropbear.id)
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        flat = " ".join("\n".join(screen_lines(app)).split())
        assert "No matching algo kex" in flat
        assert "from dropbear's log: Child connection from 127.0.0.1:42782" in flat
