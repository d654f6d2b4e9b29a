"""The dashboard watching a PostgreSQL store that a real `kexproxy proxy` writes.

A `kexproxy proxy --store URL` process relays real OpenSSH clients to a real sshd and
writes into a throwaway cluster's database; the dashboard (Textual's pilot) watches it.
The fallback poll is 30 s, so rows that show within seconds came by the store's notice.
Then the database is restarted (pg_ctl restart -m fast) while the dashboard watches: it
says so once, and the sessions relayed after the restart still appear.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kexproxy import exitcodes
from kexproxy_tui.app import create_app
from kexproxy_tui.postgres_source import postgres_feed
from tests.commands.test_proxy_cmd import ProxyProcess
from tests.peers import Sshd, run_ssh, which_or_skip
from tests.peers.postgres import PASSWORD, PASSWORD_ROLE

from .conftest import ROOT, screen_lines, wait_for

pytestmark = pytest.mark.peers

#: The dashboard's fallback poll here: far longer than any row may take to show.
FALLBACK = 30.0
#: Seconds a relayed session may take to reach the screen (the proxy's batch, the notice).
SHOWS_WITHIN = 8.0
OLD_KEX = "-oKexAlgorithms=diffie-hellman-group1-sha1"


async def test_the_dashboard_watches_a_database_that_a_proxy_writes_through_a_restart(
    postgres_cluster: Any, tmp_path: Path
) -> None:
    which_or_skip("ssh")
    url = postgres_cluster.database().replace(
        "postgresql://postgres@", f"postgresql://{PASSWORD_ROLE}:{PASSWORD}@"
    )
    with Sshd() as sshd:
        proxy = ProxyProcess("--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{sshd.port}",
                             "--store", url, "--quiet", cwd=tmp_path)  # fmt: skip
        try:
            proxy.wait_ready()
            app = create_app(postgres_feed(url, fallback=FALLBACK))
            said: list[str] = []
            notify = app.notify

            def noted(message: str, **options: Any) -> None:
                # Every notice, kept: the toasts themselves go after a few seconds.
                said.append(message)
                notify(message, **options)

            app.notify = noted  # type: ignore[method-assign]
            async with app.run_test(size=(120, 40)) as pilot:
                await wait_for(pilot, lambda: "watching" in "\n".join(screen_lines(app)))

                async def relayed(*opts: str) -> None:
                    before = {r.id for r in app.index if r.ended}
                    result = await asyncio.to_thread(run_ssh, proxy.port, *opts)
                    assert result.returncode == 0 or result.negotiation_message, result.stderr
                    done = time.monotonic()
                    await wait_for(
                        pilot,
                        lambda: len({r.id for r in app.index if r.ended} - before) == 1,
                        timeout=SHOWS_WITHIN,
                    )
                    assert time.monotonic() - done < SHOWS_WITHIN

                await relayed()
                await relayed(OLD_KEX)
                assert sorted(r.outcome for r in app.index) == ["failed", "negotiated"]

                await asyncio.to_thread(postgres_cluster.restart)
                await wait_for(pilot, lambda: any("lost the connection" in m for m in said))
                await relayed(OLD_KEX)
                await relayed()
                assert len(app.index) == 4

                lost = [m for m in said if "lost the connection" in m]
                assert len(lost) == 1, said
                assert lost[0].startswith(f"postgresql://{PASSWORD_ROLE}:***@127.0.0.1")
                text = "\n".join(screen_lines(app))
                assert f"{PASSWORD_ROLE}:***@" in text
                assert PASSWORD not in text and not any(PASSWORD in m for m in said)
        finally:
            proxy.stop()


def test_the_built_in_proxy_refuses_a_database_it_cannot_write_in_one_line(
    postgres_cluster: Any, tmp_path: Path
) -> None:
    """`tui --listen --store URL` records through the store's writer: a wrong password is
    said before the screen, once, masked."""
    url = f"postgresql://{PASSWORD_ROLE}:not-{PASSWORD}@127.0.0.1:{postgres_cluster.port}/postgres"
    result = subprocess.run(
        [sys.executable, "-m", "kexproxy", "tui", "--listen", "127.0.0.1:0",
         "--upstream", "127.0.0.1:1", "--store", url],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tui")])},
    )  # fmt: skip
    assert result.returncode == exitcodes.BAD_INPUT
    [line] = result.stderr.splitlines()
    assert "password authentication failed" in line
    assert f"{PASSWORD_ROLE}:***@127.0.0.1" in line and PASSWORD not in line
    assert not list(tmp_path.iterdir())
