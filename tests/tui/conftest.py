"""Shared fixtures of the dashboard tests: real records from real captures, and app helpers."""

from __future__ import annotations

import asyncio
import inspect
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from kexproxy.core.record import SessionRecord
from kexproxy.pipeline import capture_records
from kexproxy_tui.app import KexproxyApp


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Runs ``async def`` tests (Pilot needs a loop) with asyncio, no plugin needed."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True


ROOT = Path(__file__).resolve().parents[2]
PUBLIC = ROOT / "tests" / "data" / "public"
DASHBOARD_PCAP = Path(__file__).parent / "data" / "openssh-dashboard.pcap"
CAPTURES = ROOT / "captures"


@pytest.fixture(scope="session")
def dashboard_records() -> list[SessionRecord]:
    """One success, one kex failure, one cipher failure: real OpenSSH 9.2 (record_capture.py)."""
    records = capture_records(str(DASHBOARD_PCAP))
    assert [r.outcome for r in records] == ["negotiated", "failed", "failed"]
    return records


@pytest.fixture(scope="session")
def sshguess_records() -> list[SessionRecord]:
    return capture_records(str(PUBLIC / "zeek-ssh-sshguess.pcap"))


@pytest.fixture(scope="session")
def quadratic_record() -> SessionRecord:
    (record,) = capture_records(str(PUBLIC / "zeek-ssh-kex-quadratic-1000.pcap"))
    return record


HOSTILE_BANNER = "SSH-2.0-[bold red]x[/]\x1b[2J"
HOSTILE_NAME = "[link=https://example.invalid]x[/link]"


@pytest.fixture(scope="session")
def hostile_record(dashboard_records: list[SessionRecord]) -> SessionRecord:
    """The real kex failure with a banner and name-lists full of markup and an escape."""
    base = dashboard_records[1]
    client_kexinit = dict(base.client_kexinit or {})
    client_kexinit["kex_algorithms"] = [HOSTILE_NAME, *client_kexinit["kex_algorithms"]]
    server_kexinit = dict(base.server_kexinit or {})
    server_kexinit["kex_algorithms"] = [HOSTILE_NAME + "s", *server_kexinit["kex_algorithms"]]
    failures = [
        {**f, "client_offer": client_kexinit[f["list"]], "server_offer": server_kexinit[f["list"]]}
        for f in base.failures
    ]
    return replace(
        base,
        id="hostile0000000000",
        diagnosis={**(base.diagnosis or {}), "recipes": hostile_recipes(base)},
        client_banner=HOSTILE_BANNER,
        server_banner=HOSTILE_BANNER + "[/]",
        client_kexinit=client_kexinit,
        server_kexinit=server_kexinit,
        failures=failures,
        timeline=[
            {**e, "detail": HOSTILE_BANNER} if e.get("event") == "banner" else e
            for e in base.timeline
        ],
    )


def hostile_recipes(base: SessionRecord) -> list[dict[str, Any]]:
    """The real recipes, the top one's every string carrying markup and an escape."""
    top, *rest = (base.diagnosis or {})["recipes"]
    hostile = HOSTILE_NAME + "\x1b[2J"
    return [
        {
            **top,
            "software": dict.fromkeys(top["software"], HOSTILE_BANNER),
            "steps": [
                *({**step, "text": f"{step['text']}{hostile}"} for step in top["steps"]),
                {
                    "side": f"[b]{HOSTILE_NAME}",
                    "software": "x",
                    "kind": "sshd_config",
                    "text": hostile,
                },
            ],
            "command": f"{top['command']} {hostile}",
            "warnings": [hostile],
            "scope": hostile,
            "notes": [hostile],
        },
        *rest,
    ]


async def settle(pilot: Pilot[None], app: KexproxyApp, *, timeout: float = 20.0) -> None:
    """Waits until the feed is done and everything it sent is on screen."""
    deadline = time.monotonic() + timeout
    while not (app.feed_done and not len(app.pending)):
        assert time.monotonic() < deadline, "the feed did not finish in time"
        await pilot.pause(0.05)
    app.flush()
    await pilot.pause()


async def wait_for(pilot: Pilot[None], condition: object, *, timeout: float = 20.0) -> None:
    """Waits until `condition()` is true, flushing the app's batch meanwhile."""
    deadline = time.monotonic() + timeout
    assert callable(condition)
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await pilot.pause(0.05)
    await pilot.pause()


async def type_text(pilot: Pilot[None], text: str) -> None:
    """Puts `text` into the focused Input at once (a key press per character is slow)."""
    from textual.widgets import Input

    field = pilot.app.focused
    assert isinstance(field, Input)
    field.value = text
    field.cursor_position = len(text)
    await pilot.pause()


def screen_lines(app: KexproxyApp) -> list[str]:
    """The plain text of every line on screen, as the terminal would show it.

    Uses the compositor directly (Textual has no public "screen text" call) so that tests
    see what was drawn, not what a widget was given.
    """
    return [strip.text for strip in app.screen._compositor.render_strips()]


def terminal_output(app: KexproxyApp) -> str:
    """Exactly what the app would write to the terminal for a full redraw of the screen."""
    return app.screen._compositor.render_full_update().render_segments(app.console)
