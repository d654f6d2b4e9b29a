"""``kexproxy explain`` on TLS handshakes: every recorded capture, and a hostile record."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from kexproxy.cli import main
from kexproxy.core.record import SessionRecord
from kexproxy.pipeline import capture_records
from kexproxy.present import list_label
from kexproxy.present_report import report

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"
TLS_CAPTURES = sorted(CAPTURES.glob("tls-*.pcap"))


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


def explain(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["explain", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_the_tls_captures_are_there() -> None:
    assert len(TLS_CAPTURES) >= 20


@pytest.mark.parametrize("capture", TLS_CAPTURES, ids=lambda p: p.stem)
def test_every_tls_capture_is_explained(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = explain(capsys, str(capture))
    assert (status, err) == (0, "")
    [record] = capture_records(str(capture))
    assert "client banner" not in out  # TLS has none: the hellos stand in
    assert "client offers" in out and "server chose" in out
    hello = record.client_hello or {}
    for suite in hello.get("cipher_suites") or []:
        assert suite in out
    for role, rejection in record.rejections.items():
        if rejection:
            refused = f"the {role} refused the {list_label(rejection['list'])}: "
            assert refused + rejection["message"] in out
            sure = "certain" if rejection["certain"] else "inferred"
            assert f"  {sure}: " in out
    for alert in record.alerts:
        if not alert["encrypted"]:
            assert f"{alert['from']} sent {alert['level']} alert {alert['description']}" in out
            assert f"OpenSSL on receiving it prints: {alert['message']}" in out
        else:
            assert f"{alert['from']} sent an encrypted alert" in out
    if record.outcome == "failed":
        assert " refused " in out  # the refused list is marked in the offers table
    if record.ja3:
        assert f"JA3: {record.ja3}  {record.ja3_string}" in out.replace("\n", "")
    if record.ja4:
        assert f"JA4: {record.ja4}" in out


def test_a_refused_cipher_suite(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _err = explain(capsys, str(CAPTURES / "tls-tls12-no-shared-cipher.pcap"))
    assert status == 0
    assert "alert: server sent fatal alert handshake_failure (40)" in out
    assert "error:0A000410:SSL routines::sslv3 alert handshake failure" in out
    assert (
        "the server refused the cipher suite: error:0A0000C1:SSL routines::no shared cipher"
    ) in out
    assert "  inferred: the server sent a handshake_failure alert before choosing" in out
    assert "closed first by the server (alert)" in out
    # The recipes come first, numbered, as for SSH.
    assert out.index("1. Client (openssl s_client): add 6 cipher suites") < out.index(
        "client offers"
    )
    assert "openssl s_client options:" in out


def test_versions_refused_for_certain(capsys: pytest.CaptureFixture[str]) -> None:
    _status, out, _err = explain(capsys, str(CAPTURES / "tls-curl-tls13-vs-tls12-max.pcap"))
    assert "client: SNI localhost; offers TLS 1.3 (record version TLS 1.2)" in out
    assert "server: sent no ServerHello" in out
    assert "alert: server sent fatal alert protocol_version (70)" in out
    assert "the server refused the version: " in out
    assert "  certain: " in out


def test_a_success_shows_the_choice_the_certificate_and_the_grades(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _status, out, _err = explain(capsys, str(CAPTURES / "tls-openssl-tls12-success.pcap"))
    assert "server: chose TLS 1.2 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" in out
    assert "[TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]" in out  # the chosen name, marked
    assert "[x25519]" in out
    assert "subject: O=kexproxy rsa,CN=localhost" in out
    assert "issuer: CN=kexproxy test CA" in out
    assert "key: rsa 2048 bits" in out
    assert "sha256: 99f120e73bc6a33e221c701822fc722514dd1ff0a76177f3b153e083ba9021aa" in out
    assert "negotiated set: good" in out
    assert "cipher suite: good: TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" in out
    assert "JA3S: 1af33e1657631357c73119488045302c" in out
    assert "post-quantum key exchange: no" in out
    assert "what to change" not in out


def test_a_hello_retry_request(capsys: pytest.CaptureFixture[str]) -> None:
    _status, out, _err = explain(capsys, str(CAPTURES / "tls-tls13-hello-retry-success.pcap"))
    assert "HelloRetryRequest: the server asked the client to send a key share for secp384r1" in out


def _rendered(record: SessionRecord, **options: object) -> str:
    console = Console(file=io.StringIO(), width=250, **options)  # type: ignore[arg-type]
    for part in report(record, 1):
        console.print(part)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_strangers_strings_are_escaped() -> None:
    """SNI, ALPN and the certificate's names come from strangers: controls shown as
    escapes, markup shown as text, in colour and in plain output alike."""
    [record] = capture_records(str(CAPTURES / "tls-openssl-tls12-success.pcap"))
    sni = "evil\x1b]0;pwned\x07[bold red]x[/bold red]\u202e"
    alpn = "[link=http://x]y[/link]\x1b[2J"
    hello = {**(record.client_hello or {}), "server_name": sni, "alpn": [alpn, "h2"]}
    cert = {
        **(record.certificate or {}),
        "subject": "CN=\x1b[31mred\u2028forged line",
        "issuer": "CN=[blink]ca[/blink]\x00",
    }
    record = replace(record, client_hello=hello, certificate=cert)
    coloured = _rendered(record, force_terminal=True, color_system="truecolor")
    for raw in ("\x1b]0;", "\x07", "\u202e", "\x1b[2J", "\x1b[31m", "\u2028", "\x00"):
        assert raw not in coloured
    assert "\\x1b]0;pwned\\x07" in coloured and "\\u202e" in coloured
    plain = _rendered(record, no_color=True)
    assert "SNI evil\\x1b]0;pwned\\x07[bold red]x[/bold red]\\u202e" in plain
    assert "[link=http://x]y[/link]\\x1b[2J" in plain
    assert "subject: CN=\\x1b[31mred\\u2028forged line" in plain
    assert "issuer: CN=[blink]ca[/blink]\\x00" in plain
