"""The proxy inside the app, with real OpenSSH peers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from kexproxy.core.record import SessionRecord
from kexproxy_tui.adapters import ProxyFeed
from kexproxy_tui.app import KexproxyApp, create_app
from kexproxy_tui.rows import COLUMN_KEYS
from kexproxy_tui.screens.detail import DetailScreen
from tests.builders import kexinit, server_offer
from tests.peers import Sshd, free_port, one_shot_server, run_ssh, which_or_skip

from .conftest import HOSTILE_NAME, screen_lines, terminal_output, wait_for
from .test_injection import assert_only_harmless_escapes

pytestmark = pytest.mark.peers


def text_of(app: KexproxyApp) -> str:
    return "\n".join(screen_lines(app))


def finals(app: KexproxyApp) -> list[str]:
    return [r.outcome for r in app.index if r.ended]


async def test_success_and_kex_failure_through_the_proxy_in_the_app() -> None:
    which_or_skip("ssh")
    with Sshd(["KexAlgorithms curve25519-sha256"]) as sshd:
        port = free_port()
        feed = ProxyFeed(("127.0.0.1", port), ("127.0.0.1", sshd.port))
        app = create_app(feed)
        async with app.run_test(size=(120, 80)) as pilot:
            await asyncio.to_thread(feed.ready.wait, 10)
            assert feed.address is not None and feed.address.port == port
            ok = await asyncio.to_thread(run_ssh, port)
            failed = await asyncio.to_thread(
                run_ssh, port, "-oKexAlgorithms=diffie-hellman-group14-sha1"
            )
            assert failed.negotiation_message is not None
            await wait_for(pilot, lambda: sorted(finals(app)) == ["failed", "negotiated"])
            assert ok.returncode == 0, ok.stderr
            table = app.sessions_screen.table
            assert table.row_count == 2
            assert f"proxy 127.0.0.1:{port} → 127.0.0.1:{sshd.port}" in text_of(app)

            failure = next(r for r in app.index if r.outcome == "failed")
            table.move_to(failure.id)
            await pilot.press("enter")
            assert isinstance(app.screen, DetailScreen)
            text = text_of(app)
            flat = " ".join(text.split())
            # The client's message, exactly as the real ssh printed it.
            assert failed.negotiation_message in flat
            assert "✗ diffie-hellman-group14-sha1" in text  # the client's offer
            assert "✗ curve25519-sha256" in text  # the server's
            assert "◦ kex-strict-s-v00@openssh.com" in text
        # Leaving the app stops the proxy: nothing listens on its port any more.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


async def test_a_busy_port_is_reported() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = create_app(ProxyFeed(("127.0.0.1", port), ("127.0.0.1", 9)))
        async with app.run_test(size=(100, 24)) as pilot:
            await wait_for(pilot, lambda: app.feed_done)
            assert any("cannot listen on" in n.message for n in app._notifications)


MARKUP_BANNER = b"SSH-2.0-[bold red]x[/] [link=https://example.invalid]y[/link]\r\n"
ESCAPE_BANNER = b"SSH-2.0-[bold red]x[/]\x1b[2J\r\n"


def hostile_server(banner: bytes) -> contextlib.AbstractContextManager[int]:
    """A raw SSH server on 127.0.0.1: `banner`, then a KEXINIT whose kex list is markup,
    then it waits for the client to give up."""
    return one_shot_server(banner + kexinit(server_offer(kex=[HOSTILE_NAME])))


async def test_a_real_client_against_a_server_sending_markup() -> None:
    which_or_skip("ssh")
    with hostile_server(MARKUP_BANNER) as upstream:
        port = free_port()
        feed = ProxyFeed(("127.0.0.1", port), ("127.0.0.1", upstream))
        app = create_app(feed)
        async with app.run_test(size=(200, 70)) as pilot:
            await asyncio.to_thread(feed.ready.wait, 10)
            result = await asyncio.to_thread(run_ssh, port)
            # OpenSSH itself prints the name literally: so must we.
            assert f"Their offer: {HOSTILE_NAME}," in (result.negotiation_message or "")
            await wait_for(pilot, lambda: finals(app) == ["failed"])
            (record,) = app.index
            shown_banner = MARKUP_BANNER.decode().strip()
            assert record.server_banner == shown_banner
            table = app.sessions_screen.table
            software = table.get_row(record.id)[COLUMN_KEYS.index("server_software")]
            assert str(software) == shown_banner[len("SSH-2.0-") :]
            assert "[bold red]x[/] [link=" in text_of(app)
            assert_only_harmless_escapes(terminal_output(app))
            await pilot.press("enter")
            text = text_of(app)
            assert f"server {shown_banner}" in text
            assert f"✗ {HOSTILE_NAME}" in text
            assert result.negotiation_message in " ".join(text.split())
            assert_only_harmless_escapes(terminal_output(app))


async def test_a_real_client_against_a_server_sending_an_escape_in_its_banner() -> None:
    """OpenSSH accepts an ESC in a banner (it refuses only NUL and a lone CR), and so does
    kexproxy: the session is a kex failure like any other, its banner shown literally."""
    which_or_skip("ssh")
    with hostile_server(ESCAPE_BANNER) as upstream:
        port = free_port()
        feed = ProxyFeed(("127.0.0.1", port), ("127.0.0.1", upstream))
        app = create_app(feed)
        async with app.run_test(size=(200, 70)) as pilot:
            await asyncio.to_thread(feed.ready.wait, 10)
            result = await asyncio.to_thread(run_ssh, port)
            assert f"Their offer: {HOSTILE_NAME}," in (result.negotiation_message or "")
            await wait_for(pilot, lambda: finals(app) == ["failed"])
            (record,) = app.index
            assert record.server_banner == ESCAPE_BANNER.decode().strip()
            assert record.rejections["client"]["message"] == result.negotiation_message
            assert any("control characters" in note for note in record.notes), record.notes
            table = app.sessions_screen.table
            software = table.get_row(record.id)[COLUMN_KEYS.index("server_software")]
            assert str(software) == "[bold red]x[/]\\x1b[2J"
            assert_only_harmless_escapes(terminal_output(app))
            await pilot.press("enter")
            text = text_of(app)
            assert "server SSH-2.0-[bold red]x[/]\\x1b[2J" in text
            assert f"✗ {HOSTILE_NAME}" in text
            assert result.negotiation_message in " ".join(text.split())
            assert_only_harmless_escapes(terminal_output(app))


@contextmanager
def echo_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that sends back whatever it receives."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    running = True

    def serve() -> None:
        while running:
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        running = False
        thread.join(2)
        listener.close()


def round_trips(port: int, seconds: float) -> list[float]:
    """Connects through the proxy and times small echoes for `seconds`, checking every byte."""
    import time

    times: list[float] = []
    deadline = time.perf_counter() + seconds
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        i = 0
        while time.perf_counter() < deadline:
            message = f"ping {i:05d} ".encode() * 8
            start = time.perf_counter()
            sock.sendall(message)
            received = b""
            while len(received) < len(message):
                received += sock.recv(65536)
            times.append(time.perf_counter() - start)
            assert received == message
            i += 1
    return times


async def test_the_relay_is_not_held_up_by_a_busy_screen(
    sshguess_records: list[SessionRecord],
) -> None:
    """The relay runs on its own loop in its own thread: round trips through the proxy in the
    app go on while the app's own loop is held up outright, and while the screen takes in
    1,000 sessions a second. Their times are printed, not asserted (speed is measured by
    scripts/bench_proxy; here a loaded machine would fail a time limit, not the code)."""
    from dataclasses import replace

    from kexproxy_tui.messages import SessionsArrived

    with echo_server() as upstream:
        port = free_port()
        feed = ProxyFeed(("127.0.0.1", port), ("127.0.0.1", upstream))
        app = create_app(feed)
        async with app.run_test(size=(160, 50)) as pilot:
            await asyncio.to_thread(feed.ready.wait, 10)
            quiet = await asyncio.to_thread(round_trips, port, 0.5)
            # Called here, not in a thread: the app's loop (this test's) runs nothing else
            # meanwhile. A relay on that loop would leave every echo unanswered (5 s timeout).
            held = round_trips(port, 0.5)
            assert held, "no round trip through the proxy while the app's loop was held"
            # Built before the clock starts, so that the pace is the screen's to keep up with
            # and not the cost of copying records; all of them are posted, however busy the
            # machine (a loaded CI worker once posted only 9 batches in the window).
            batches = [
                tuple(
                    replace(r, id=f"busy-{i}-{j}-{r.id}")
                    for j in range(9)
                    for r in sshguess_records
                )
                for i in range(10)
            ]
            posted = sum(len(batch) for batch in batches)

            def flood() -> None:
                import time

                for batch in batches:
                    app.post_message(SessionsArrived(batch))
                    time.sleep(0.1)

            flooder = threading.Thread(target=flood, daemon=True)
            flooder.start()
            busy = await asyncio.to_thread(round_trips, port, 1.5)
            await asyncio.to_thread(flooder.join)
            for _ in range(100):  # the screen takes in what was posted
                if app.sessions_screen.table.row_count >= posted:
                    break
                await pilot.pause(0.05)
            shown = app.sessions_screen.table.row_count
        quiet.sort()
        busy.sort()
        print(
            f"\nround trips through the app's proxy: median {quiet[len(quiet) // 2] * 1000:.2f} ms "
            f"quiet, {busy[len(busy) // 2] * 1000:.2f} ms while {shown} sessions arrived; "
            f"99% under {busy[int(len(busy) * 0.99)] * 1000:.1f} ms"
        )
        assert shown >= posted > 900  # and the round trips' own sessions
        assert busy and quiet


async def test_transparent_mode_in_the_app_records_a_connection_not_redirected() -> None:
    """Without an iptables REDIRECT, a connection straight to the port has no other original
    destination: the proxy resets it, and the dashboard shows why."""
    port = free_port()
    feed = ProxyFeed(("127.0.0.1", port), None)
    app = create_app(feed)
    async with app.run_test(size=(160, 50)) as pilot:
        await asyncio.to_thread(feed.ready.wait, 10)
        await wait_for(
            pilot, lambda: f"proxy 127.0.0.1:{port} → original destinations" in text_of(app)
        )
        reset = False
        try:  # the reset may come before the banner is sent, or even before connect returns
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
                while sock.recv(100):
                    pass
        except ConnectionResetError:
            reset = True
        assert reset
        await wait_for(pilot, lambda: finals(app) == ["aborted"])
        (record,) = app.index
        assert any("transparent mode" in note for note in record.notes), record.notes
        await pilot.press("enter")
        assert "transparent mode" in " ".join(text_of(app).split())
