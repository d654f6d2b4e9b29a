"""TLS sessions on the dashboard: their rows, the detail with the offers beside the choices, copy."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from textual.widgets import OptionList

from kexproxy.core.record import SessionRecord
from kexproxy.pipeline import capture_records
from kexproxy.present import side_label
from kexproxy.present_tls import recipe_copy
from kexproxy_tui.app import create_app
from kexproxy_tui.feeds import CaptureFeed, RecordsFeed
from kexproxy_tui.rows import row_texts
from kexproxy_tui.screens.detail import DetailScreen

from .conftest import CAPTURES, screen_lines, settle, wait_for

TLS_CAPTURES = sorted(CAPTURES.glob("tls-*.pcap"))
#: Tall enough that the whole detail of a TLS session is on screen at once.
TALL = (160, 400)


@pytest.fixture(scope="module")
def tls_records() -> list[SessionRecord]:
    records = [r for path in TLS_CAPTURES for r in capture_records(str(path))]
    assert len(records) == len(TLS_CAPTURES) >= 20
    assert all(r.protocol == "tls" for r in records)
    return records


def _by_capture(records: list[SessionRecord], name: str) -> SessionRecord:
    return next(r for r in records if r.capture == name)


def text_of(app: object) -> str:
    return "\n".join(screen_lines(app))  # type: ignore[arg-type]


def test_row_texts_name_the_sides_and_the_refused_list(tls_records: list[SessionRecord]) -> None:
    for record in tls_records:
        texts = row_texts(record)
        assert texts["client_software"] == side_label(record, "client")
        assert texts["server_software"] == side_label(record, "server")
    failed = _by_capture(tls_records, "tls-tls12-no-shared-cipher.pcap")
    texts = row_texts(failed)
    assert texts["detail"] == "cipher suite"
    assert texts["client_software"] == "TLS 1.2"
    assert texts["verdict"] == "client: add 6 cipher suites"
    assert texts["command"].startswith("openssl s_client -connect 127.0.0.1:")
    good = _by_capture(tls_records, "tls-openssl-tls12-success.pcap")
    texts = row_texts(good)
    assert texts["server_software"] == "localhost"  # the SNI
    assert texts["detail"] == "TLS 1.2 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 x25519"
    assert texts["verdict"].startswith("good")


async def test_tls_captures_are_rows_of_the_same_list() -> None:
    files = [str(p) for p in TLS_CAPTURES] + [str(CAPTURES / "openssh-cipher-fail.pcap")]
    app = create_app(CaptureFeed(files))
    async with app.run_test(size=(200, 40)) as pilot:
        await settle(pilot, app)
        assert app.sessions_screen.table.row_count == len(TLS_CAPTURES) + 1
        text = text_of(app)
        assert "cipher suite" in text and "TLS 1.3" in text and "localhost" in text
        assert "OpenSSH" in text  # the SSH session beside them


async def test_the_detail_shows_the_clients_offer_and_the_servers_choice(
    tls_records: list[SessionRecord],
) -> None:
    good = _by_capture(tls_records, "tls-openssl-tls12-success.pcap")
    failed = _by_capture(tls_records, "tls-tls12-no-shared-cipher.pcap")
    app = create_app(RecordsFeed([good, failed]))
    async with app.run_test(size=TALL) as pilot:
        await settle(pilot, app)
        app.open_detail(good.id)
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        text = text_of(app)
        assert "client SNI localhost; offers TLS 1.2" in text
        assert "server chose TLS 1.2 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" in text
        assert "Offers (ClientHello, the server's choice)" in text
        assert "client offers (2)" in text and "server chose" in text
        assert "● TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" in text  # the choice, marked
        assert "◦ TLS_EMPTY_RENEGOTIATION_INFO_SCSV" in text  # a signalling value
        assert "rsa_pss_rsae_sha256" in text
        assert "cert subject" in text and "O=kexproxy rsa,CN=localhost" in text
        assert re.search(rf"JA3S +{good.ja3s}  {good.ja3s_string}", text)
        assert re.search(r"cipher suite +good: TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", text)
        assert "(no banner)" not in text and "Host key" not in text
        await pilot.press("escape")
        await pilot.pause()
        app.open_detail(failed.id)
        await pilot.pause()
        text = text_of(app)
        assert "cipher suites  refused" in text
        assert "TLS_RSA_WITH_AES_128_CBC_SHA" in text
        assert "alert: server sent fatal alert handshake_failure (40)" in text
        assert "the server refused the cipher suite: error:0A0000C1:SSL routines::no shared" in text
        assert "inferred: the server sent a handshake_failure alert" in text
        assert "1. Client (openssl s_client): add 6 cipher suites" in text


async def test_c_copies_a_tls_recipes_command_or_first_step(
    tls_records: list[SessionRecord],
) -> None:
    failed = [r for r in tls_records if (r.diagnosis or {}).get("recipes")]
    assert len(failed) >= 8
    app = create_app(RecordsFeed(failed))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        for record in failed:
            recipes = (record.diagnosis or {})["recipes"]
            # The top recipe (a command: s_client, curl, OPENSSL_CONF=...) and the first one
            # without a command (a server's configuration line: nginx, Apache, a note).
            picks = [0, next(i for i, r in enumerate(recipes) if not r["command"])]
            app.open_detail(record.id)
            await pilot.pause()
            assert isinstance(app.screen, DetailScreen) and app.screen.record == record
            for index in picks:
                app.screen.query_one("#recipes", OptionList).highlighted = index
                await pilot.press("c")
                recipe = recipes[index]
                expected = recipe["command"] or recipe["steps"][0]["text"]
                assert app.clipboard == expected == recipe_copy(recipe), record.capture
            await pilot.press("escape")
            await pilot.pause()


def test_recipe_copy_falls_back_to_the_first_steps_text() -> None:
    steps = [{"kind": "nginx_conf", "text": "ssl_protocols TLSv1.3;"}, {"text": "second"}]
    assert recipe_copy({"command": None, "steps": steps}) == "ssl_protocols TLSv1.3;"
    assert recipe_copy({"command": "curl --tlsv1.3 x", "steps": steps}) == "curl --tlsv1.3 x"
    assert recipe_copy({"steps": "damaged"}) == ""


async def test_strangers_strings_in_the_detail_are_literal(
    tls_records: list[SessionRecord], tmp_path: Path
) -> None:
    good = _by_capture(tls_records, "tls-openssl-tls12-success.pcap")
    sni = "[bold red]evil[/]\x1b[2J"
    hello = {**(good.client_hello or {}), "server_name": sni, "alpn": ["[link=x]h2[/link]"]}
    cert = {**(good.certificate or {}), "subject": "CN=[blink]x[/blink]\u202e"}
    record = replace(good, id="hostiletls0000000", client_hello=hello, certificate=cert)
    app = create_app(RecordsFeed([record]))
    async with app.run_test(size=TALL) as pilot:
        await settle(pilot, app)
        assert row_texts(record)["server_software"] == "[bold red]evil[/]\\x1b[2J"
        app.open_detail(record.id)
        await pilot.pause()
        text = text_of(app)
        assert "SNI [bold red]evil[/]\\x1b[2J" in text
        assert "[link=x]h2[/link]" in text
        assert "CN=[blink]x[/blink]\\u202e" in text
        assert "\x1b" not in text and "\u202e" not in text


async def test_tls_sessions_from_a_store(tls_records: list[SessionRecord], tmp_path: Path) -> None:
    """The table holds summaries (no rejections, no timeline); opening one loads it whole."""
    from kexproxy.sinks.store import SessionStore
    from kexproxy_tui.adapters import store_feed

    db = tmp_path / "tls.db"
    store = SessionStore.open(db)
    for record in tls_records:
        store.put(record, final=True)
    store.close()
    failed = _by_capture(tls_records, "tls-tls12-no-shared-cipher.pcap")
    app = create_app(store_feed(str(db)))
    async with app.run_test(size=TALL) as pilot:
        await wait_for(pilot, lambda: app.sessions_screen.table.row_count == len(tls_records))
        assert app.index.is_partial(failed.id)
        summary = next(r for r in app.index if r.id == failed.id)
        assert row_texts(summary)["client_software"] == "TLS 1.2"
        assert row_texts(summary)["detail"] == "cipher suite"
        app.sessions_screen.table.move_to(failed.id)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen) and app.screen.record.rejections
        text = text_of(app)
        assert "the server refused the cipher suite: error:0A0000C1" in text
        assert "TLS_RSA_WITH_AES_128_CBC_SHA" in text
