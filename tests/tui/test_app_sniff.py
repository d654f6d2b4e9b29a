"""The live capture inside the app (`tui --interface`), with real OpenSSH peers on lo."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kexproxy import cli, exitcodes
from kexproxy.sinks.store import SessionStore
from kexproxy_tui.app import KexproxyApp, create_app
from kexproxy_tui.sniff_feed import SniffFeed
from tests.peers import Sshd, run_ssh, which_or_skip
from tests.peers.base import _skip_or_fail

from .conftest import ROOT, screen_lines, wait_for

pytestmark = pytest.mark.peers


def finals(app: KexproxyApp) -> list[str]:
    return sorted(r.outcome for r in app.index if r.ended)


async def test_a_real_handshake_on_lo_shows_as_a_row(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        _skip_or_fail("sniffing lo needs root")
    which_or_skip("ssh")
    db = tmp_path / "sniffed.db"
    with Sshd(["KexAlgorithms curve25519-sha256"]) as sshd:
        feed = SniffFeed("lo", bpf=f"tcp port {sshd.port}", store=str(db))
        app = create_app(feed)
        async with app.run_test(size=(120, 40)) as pilot:
            await asyncio.to_thread(feed.ready.wait, 20)
            assert feed.problem is None
            ok = await asyncio.to_thread(run_ssh, sshd.port, command="echo kexproxy-ok")
            failed = await asyncio.to_thread(
                run_ssh, sshd.port, "-oKexAlgorithms=diffie-hellman-group14-sha1"
            )
            assert ok.returncode == 0, ok.stderr
            assert failed.returncode == 255
            await wait_for(pilot, lambda: finals(app) == ["failed", "negotiated"])
            assert app.sessions_screen.table.row_count == 2
            text = "\n".join(screen_lines(app))
            assert f"capturing on lo (filter 'tcp port {sshd.port}')" in text
            failure = next(r for r in app.index if r.outcome == "failed")
            assert [f["list"] for f in failure.failures] == ["kex_algorithms"]
            assert failure.server["port"] == sshd.port
    # Recorded in the store too, as kexproxy sniff records.
    store = SessionStore.open(db, readonly=True)
    try:
        stored = sorted(s.record.outcome for s in store.sessions() if s.final)
    finally:
        store.close()
    assert stored == ["failed", "negotiated"]


async def test_an_interface_that_cannot_be_captured_is_said_in_the_app() -> None:
    feed = SniffFeed("nosuch0", store=None)
    app = create_app(feed)
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_for(pilot, lambda: app.feed_done)
        assert feed.problem is not None and "nosuch0" in feed.problem
        assert any("nosuch0" in n.message for n in app._notifications)


def _tui(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kexproxy", "tui", *argv],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tui'}", **(env or {})},
    )  # fmt: skip


def test_an_interface_that_cannot_be_captured_is_one_line_before_the_screen() -> None:
    missing = _tui("--interface", "nosuch0", "--no-store")
    assert missing.returncode == exitcodes.BAD_INPUT
    assert (
        missing.stderr.strip().splitlines() == [missing.stderr.strip()]
        and "no interface named nosuch0" in missing.stderr
    )
    bad_filter = _tui("--interface", "lo", "--bpf", "tcp port", "--no-store")
    assert bad_filter.returncode == exitcodes.BAD_INPUT
    assert len(bad_filter.stderr.strip().splitlines()) == 1 and "--bpf" in bad_filter.stderr


def test_no_privilege_to_capture_is_one_line() -> None:
    if os.geteuid() != 0:
        _skip_or_fail("dropping CAP_NET_RAW with setpriv needs root")
    # Root without CAP_NET_RAW in its bounding set: what an unprivileged user gets.
    argv = ["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw", sys.executable]
    result = subprocess.run(
        [*argv, "-m", "kexproxy", "tui", "--interface", "lo", "--no-store"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tui'}"},
    )  # fmt: skip
    assert result.returncode == exitcodes.BAD_INPUT
    (line,) = result.stderr.strip().splitlines()
    assert "needs root or CAP_NET_RAW" in line


@pytest.fixture
def feeds(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    made: list[Any] = []

    class FakeApp:
        def run(self) -> None:
            pass

    monkeypatch.setattr("kexproxy_tui.app.create_app", lambda feed: made.append(feed) or FakeApp())
    monkeypatch.setattr("kexproxy.commands.tui.terminal_problem", lambda: None)
    return made


def test_the_interface_mode_gets_a_sniff_feed_and_sniffs_store(
    feeds: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0:
        _skip_or_fail("opening a packet socket on lo needs root")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["tui", "--interface", "lo", "--bpf", "tcp port 22"]) == exitcodes.OK
    assert cli.main(["tui", "-i", "lo", "--no-store"]) == exitcodes.OK
    assert cli.main(["tui", "-i", "lo", "--store", "x.db"]) == exitcodes.OK
    assert [type(f) for f in feeds] == [SniffFeed] * 3
    assert [(f.interface, f.bpf, f.store) for f in feeds] == [
        ("lo", "tcp port 22", "kexproxy.db"),
        ("lo", None, None),
        ("lo", None, "x.db"),
    ]


def test_sniff_options_without_an_interface_are_refused(
    feeds: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["tui", "--bpf", "tcp", "x.pcap"]) == exitcodes.BAD_INPUT
    assert "go with --interface" in capsys.readouterr().err
    assert cli.main(["tui", "-i", "lo", "--listen", "2222"]) == exitcodes.BAD_INPUT
    assert "not used with" in capsys.readouterr().err
    assert cli.main(["tui", "-i", "lo", "--store", "a.db", "--no-store"]) == exitcodes.BAD_INPUT
    assert feeds == []
