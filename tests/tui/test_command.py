"""``kexproxy tui``: its arguments, the feed each mode gets, and that nothing else loads Textual."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kexproxy import cli, exitcodes
from kexproxy_tui.adapters import ProxyFeed
from kexproxy_tui.feeds import CaptureFeed, StoreFeed

from .conftest import DASHBOARD_PCAP, ROOT


class Ran:
    def __init__(self) -> None:
        self.feed: Any = None

    def __call__(self, feed: Any) -> Any:
        self.feed = feed
        outer = self

        class FakeApp:
            def run(self) -> None:
                outer.ran = True

        return FakeApp()


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> Ran:
    fake = Ran()
    monkeypatch.setattr("kexproxy_tui.app.create_app", fake)
    # pytest's stdin is no terminal; these tests are about what comes before or after it.
    monkeypatch.setattr("kexproxy.commands.tui.terminal_problem", lambda: None)
    return fake


def test_captures_mode(ran: Ran) -> None:
    assert cli.main(["tui", str(DASHBOARD_PCAP)]) == exitcodes.OK
    assert isinstance(ran.feed, CaptureFeed)
    assert ran.feed.paths == (str(DASHBOARD_PCAP),)


def test_store_mode(ran: Ran, tmp_path: Path) -> None:
    from kexproxy.sinks.store import SessionStore

    db = tmp_path / "s.db"
    SessionStore.open(db).close()  # as kexproxy proxy leaves it
    assert cli.main(["tui", "--store", str(db)]) == exitcodes.OK
    assert isinstance(ran.feed, StoreFeed)
    assert ran.feed.label == "s.db"


def test_proxy_mode(ran: Ran, tmp_path: Path) -> None:
    code = cli.main(
        ["tui", "--listen", "2222", "--upstream", "127.0.0.1", "--store", str(tmp_path / "x.db")]
    )
    assert code == exitcodes.OK
    assert isinstance(ran.feed, ProxyFeed)
    assert ran.feed.listen == ("127.0.0.1", 2222)
    assert ran.feed.upstream == ("127.0.0.1", 22)
    assert ran.feed.store == str(tmp_path / "x.db")


def test_what_would_fail_inside_the_app_fails_before_it(
    ran: Ran, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database " * 100)
    assert cli.main(["tui", "--store", str(junk)]) == exitcodes.BAD_INPUT
    assert "cannot use the session store" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = cli.main(["tui", "--listen", str(port), "--upstream", "127.0.0.1:9"])
    assert code == exitcodes.BAD_INPUT
    assert f"cannot listen on {port}: address already in use" in capsys.readouterr().err
    code = cli.main(["tui", "--listen", "0", "--upstream", "127.0.0.1:9", "--store", str(tmp_path)])
    assert code == exitcodes.BAD_INPUT
    assert "is a directory, not a session store" in capsys.readouterr().err
    assert ran.feed is None


def test_policy_and_transparent_modes(ran: Ran, tmp_path: Path) -> None:
    policy = str(ROOT / "policies" / "modern.toml")
    assert cli.main(["tui", str(DASHBOARD_PCAP), "--policy", policy]) == exitcodes.OK
    # The TLS server memory, the diagnosis, then the policy (kexproxy.pipeline.stages).
    assert isinstance(ran.feed, CaptureFeed) and len(ran.feed.stages) == 3
    code = cli.main(["tui", "--listen", "0.0.0.0:2222", "--transparent", "--policy", policy])
    assert code == exitcodes.OK
    assert isinstance(ran.feed, ProxyFeed)
    assert ran.feed.upstream is None and len(ran.feed.stages) == 3
    assert ran.feed.label == "proxy 0.0.0.0:2222 → original destinations"
    assert not ran.feed.tproxy
    assert cli.main(["tui", "--listen", "0.0.0.0:2222", "--tproxy"]) == exitcodes.OK
    assert isinstance(ran.feed, ProxyFeed)
    assert ran.feed.upstream is None and ran.feed.tproxy
    assert cli.main(["tui", "--listen", "2222", "--tproxy"]) == exitcodes.OK
    assert isinstance(ran.feed, ProxyFeed) and ran.feed.listen == ("::", 2222)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tui", "--listen", "2222", "--upstream", "x", "--transparent"], "not used with"),
        (["tui", "--transparent"], "(or --transparent)"),
        (["tui", "--listen", "2222", "--tproxy", "--transparent"], "--tproxy takes neither"),
        (["tui", "--listen", "2222", "--tproxy", "--upstream", "x"], "--tproxy takes neither"),
        (
            [
                "tui",
                "--store",
                str(ROOT / "README.md"),
                "--policy",
                str(ROOT / "policies/modern.toml"),
            ],
            "give --policy to",
        ),
        (
            ["tui", str(DASHBOARD_PCAP), "--policy", "/nonexistent.toml"],
            "policy /nonexistent.toml: ",
        ),
        (["tui"], "give capture files, or --store FILE"),
        (["tui", "a.pcap", "--store", "x.db"], "give capture files, or --store FILE"),
        (["tui", "--listen", "2222"], "give capture files, or --store FILE"),
        (["tui", "--upstream", "x"], "give capture files, or --store FILE"),
        (["tui", "-"], "cannot read a capture from stdin"),
        (["tui", "/nonexistent.pcap"], "/nonexistent.pcap: no such file"),
        (["tui", "--store", "/nonexistent.db"], "/nonexistent.db: no such store"),
        (["tui", "--listen", "[::1", "--upstream", "x"], "missing ']'"),
    ],
)
def test_bad_arguments(
    ran: Ran, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli.main(argv) == exitcodes.BAD_INPUT
    assert message in capsys.readouterr().err
    assert ran.feed is None


def test_only_the_tui_command_loads_textual() -> None:
    code = (
        "import sys, kexproxy.cli as c; c.build_parser(); "
        "import kexproxy.sources.captures, kexproxy.sinks.console; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'kexproxy_tui')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_help_names_the_three_ways_in(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["tui", "--help"])
    out = capsys.readouterr().out
    assert "kexproxy tui captures/*.pcap" in out
    assert "--store sessions.db" in out
    assert "--listen 127.0.0.1:2222 --upstream server:22" in out


@pytest.mark.parametrize("mode", ["capture", "proxy"])
def test_without_a_terminal_it_exits_at_once_with_one_line(mode: str) -> None:
    """Textual without a terminal spins at full CPU; the command refuses before starting it."""
    argv = (
        [str(DASHBOARD_PCAP)]
        if mode == "capture"
        else ["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1"]
    )
    result = subprocess.run(
        [sys.executable, "-m", "kexproxy", "tui", *argv],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tui")])},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == exitcodes.BAD_INPUT
    lines = result.stderr.splitlines()
    assert lines == [
        "kexproxy tui: stdin and stdout are not a terminal: the dashboard needs one "
        "(kexproxy read FILE prints the same sessions as text)"
    ]


def test_the_terminal_problem_names_the_stream_that_is_not_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kexproxy.commands import tui

    class Stream:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    monkeypatch.setattr(sys, "stdin", Stream(True))
    monkeypatch.setattr(sys, "stdout", Stream(True))
    assert tui.terminal_problem() is None
    monkeypatch.setattr(sys, "stdout", Stream(False))
    problem = tui.terminal_problem()
    assert problem is not None and problem.startswith("stdout is not a terminal")
