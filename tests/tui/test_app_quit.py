"""Quitting with the built-in relay: open sessions are not cut without asking, and sessions
held only in memory are offered to be saved."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from textual.widgets import Static

from kexproxy_tui.adapters import ProxyFeed
from kexproxy_tui.app import KexproxyApp, create_app
from kexproxy_tui.screens.quit import QuitScreen
from tests.peers import PeerResult, Sshd, run_ssh, which_or_skip

from .conftest import screen_lines, wait_for


@contextmanager
def echo_server() -> Iterator[int]:
    """An upstream on 127.0.0.1 that sends back every byte of each connection until it closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    stopped = threading.Event()

    def echo(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                while data := conn.recv(4096):
                    conn.sendall(data)
            except OSError:
                pass

    def serve() -> None:
        while not stopped.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stopped.set()
        listener.close()


def round_trip(client: socket.socket, data: bytes) -> bytes:
    """Sends `data` through the relay and reads as many bytes back from the echo."""
    client.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = client.recv(len(data) - len(got))
        if not chunk:
            break
        got += chunk
    return got


async def relayed_client(app: KexproxyApp, feed: ProxyFeed) -> socket.socket:
    """A connection through the relay, once the app counts it as open."""
    await asyncio.to_thread(feed.ready.wait, 10)
    assert feed.address is not None
    client = socket.create_connection(("127.0.0.1", feed.address.port), timeout=10)
    assert await asyncio.to_thread(round_trip, client, b"SSH-2.0-echo\r\n") == b"SSH-2.0-echo\r\n"
    return client


def refused(port: int) -> bool:
    """Whether a new connection to the relay's port is refused."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def asking(app: KexproxyApp) -> bool:
    """Whether the quit question is up (a call, so that no earlier narrowing sticks)."""
    return isinstance(app.screen, QuitScreen)


def waiting(app: KexproxyApp) -> bool:
    """Whether the app waits for the open sessions to end before it quits."""
    return app.quit_after is not None


def text_of(app: KexproxyApp) -> str:
    return " ".join(" ".join(screen_lines(app)).split())


async def test_keep_relaying_lets_an_open_session_finish_then_quits_by_itself(
    tmp_path: Path,
) -> None:
    with echo_server() as upstream:
        feed = ProxyFeed(("127.0.0.1", 0), ("127.0.0.1", upstream))
        app = create_app(feed, save_dir=tmp_path)
        async with app.run_test(size=(120, 40)) as pilot:
            client = await relayed_client(app, feed)
            with client:
                await wait_for(pilot, lambda: len(app.live) == 1)
                await pilot.press("q")
                assert asking(app)
                # Drawn a moment after the key: waited for, not read at once.
                await wait_for(pilot, lambda: "Keep relaying" in text_of(app))
                shown = text_of(app)
                assert "1 relayed session still open: quitting now cuts it" in shown
                assert "save the 1 session seen (no --store)" in shown
                # The path it names (on screen wrapped between the dialog's borders).
                path = app.screen.query_one("#quit-path", Static)
                assert str(path.content).startswith(str(tmp_path / "kexproxy-sessions-"))
                assert "Keep relaying, quit when they end (k)" in shown
                # The question holds nothing up: the session's bytes keep flowing.
                assert await asyncio.to_thread(round_trip, client, b"ping" * 100) == b"ping" * 100
                await pilot.press("k")
                assert not asking(app)
                assert waiting(app) and app.is_running
                await wait_for(
                    pilot, lambda: "quitting once 1 relayed session ends" in text_of(app)
                )
                await pilot.pause(0.3)
                assert await asyncio.to_thread(round_trip, client, b"more") == b"more"
                assert app.is_running
                # While it waits, no new connection can keep it open.
                assert feed.address is not None
                port = feed.address.port
                await wait_for(pilot, lambda: refused(port))
            # The client ends its session: the app saves and quits on its own.
            await wait_for(pilot, lambda: app.return_code is not None)
        saved = list(tmp_path.glob("kexproxy-sessions-*.jsonl"))
        assert len(saved) == 1
        (line,) = saved[0].read_text().splitlines()
        record = json.loads(line)
        # Ended by the client, not by the dashboard's shutdown.
        assert record["evidence"]["first_close"] == "client"
        assert "dashboard was closed" not in json.dumps(record)
        assert record["bytes"]["c2s"] == len(b"SSH-2.0-echo\r\n" + b"ping" * 100 + b"more")


async def test_quit_now_cuts_the_session_and_saves_it_when_asked(tmp_path: Path) -> None:
    with echo_server() as upstream:
        feed = ProxyFeed(("127.0.0.1", 0), ("127.0.0.1", upstream))
        app = create_app(feed, save_dir=tmp_path)
        async with app.run_test(size=(120, 40)) as pilot:
            client = await relayed_client(app, feed)
            with client:
                await wait_for(pilot, lambda: len(app.live) == 1)
                await pilot.press("q")
                assert asking(app)
                await pilot.press("y")
                await wait_for(pilot, lambda: app.return_code is not None)
                client.settimeout(5)
                assert await asyncio.to_thread(client.recv, 10) == b""  # the relay closed it
        (saved,) = tmp_path.glob("kexproxy-sessions-*.jsonl")
        (record,) = [json.loads(line) for line in saved.read_text().splitlines()]
        assert "the dashboard was closed while the session was open" in json.dumps(record)


async def test_cancel_stays_and_s_declines_saving(tmp_path: Path) -> None:
    with echo_server() as upstream:
        feed = ProxyFeed(("127.0.0.1", 0), ("127.0.0.1", upstream))
        app = create_app(feed, save_dir=tmp_path)
        async with app.run_test(size=(120, 40)) as pilot:
            client = await relayed_client(app, feed)
            with client:
                await wait_for(pilot, lambda: len(app.live) == 1)
                await pilot.press("q")
                await pilot.press("escape")
                assert not asking(app)
                assert app.is_running and not waiting(app)
                assert await asyncio.to_thread(round_trip, client, b"still") == b"still"
                # Enter answers with the harmless choice: keep relaying.
                await pilot.press("q", "enter")
                assert waiting(app)
                # Asked again while waiting, the dialog can still quit at once, unsaved.
                await pilot.press("q")
                assert asking(app)
                await pilot.press("s", "y")
                await wait_for(pilot, lambda: app.return_code is not None)
        assert not list(tmp_path.iterdir())


async def test_with_a_store_and_nothing_open_q_quits_at_once(tmp_path: Path) -> None:
    with echo_server() as upstream:
        feed = ProxyFeed(("127.0.0.1", 0), ("127.0.0.1", upstream), store=str(tmp_path / "s.db"))
        app = create_app(feed, save_dir=tmp_path)
        async with app.run_test(size=(120, 40)) as pilot:
            client = await relayed_client(app, feed)
            client.close()
            await wait_for(pilot, lambda: len(app.index) == 1 and not app.live)
            await pilot.press("q")
            await wait_for(pilot, lambda: app.return_code is not None)
        assert [p.name for p in tmp_path.iterdir() if p.suffix == ".jsonl"] == []


async def test_a_save_that_fails_keeps_the_sessions_and_says_so(tmp_path: Path) -> None:
    with echo_server() as upstream:
        feed = ProxyFeed(("127.0.0.1", 0), ("127.0.0.1", upstream))
        app = create_app(feed, save_dir=tmp_path / "missing")
        async with app.run_test(size=(120, 40)) as pilot:
            client = await relayed_client(app, feed)
            client.close()
            await wait_for(pilot, lambda: len(app.index) == 1 and not app.live)
            # Nothing is open, but the session is only in memory: the question is the save.
            await pilot.press("q")
            assert asking(app)
            await wait_for(pilot, lambda: "Quit now" in text_of(app))
            assert "still open" not in text_of(app)
            await pilot.press("enter")  # "Quit now" has the focus; saving is on
            await wait_for(
                pilot, lambda: any("could not save" in n.message for n in app._notifications)
            )
            assert app.return_code is None and len(app.index) == 1
            await pilot.press("q")  # the relay is closed: nothing left to ask
            await wait_for(pilot, lambda: app.return_code is not None)


@pytest.mark.peers
async def test_a_real_ssh_session_survives_the_question(tmp_path: Path) -> None:
    """The issue's case: ``ssh ... 'sleep'`` through the dashboard's relay, then ``q``."""
    which_or_skip("ssh")
    with Sshd() as sshd:
        feed = ProxyFeed(("127.0.0.1", 0), ("127.0.0.1", sshd.port))
        app = create_app(feed, save_dir=tmp_path)
        async with app.run_test(size=(120, 40)) as pilot:
            await asyncio.to_thread(feed.ready.wait, 10)
            assert feed.address is not None
            port = feed.address.port
            result: list[PeerResult] = []
            ssh = threading.Thread(
                target=lambda: result.append(
                    run_ssh(port, command="sleep 2; echo survived", timeout=30)
                ),
                daemon=True,
            )
            ssh.start()
            await wait_for(
                pilot,
                lambda: any(r.outcome == "negotiated" for r in app.index) and len(app.live) == 1,
            )
            await pilot.press("q")
            assert asking(app)
            await pilot.press("k")
            await wait_for(pilot, lambda: app.return_code is not None, timeout=30)
            await asyncio.to_thread(ssh.join, 30)
        (done,) = result
        assert done.returncode == 0, done.stderr
        assert "survived" in done.stdout
        assert "closed by remote host" not in done.stderr
        (saved,) = tmp_path.glob("kexproxy-sessions-*.jsonl")
        assert json.loads(saved.read_text())["outcome"] == "negotiated"
