"""What an ending means (`present.ending`), from captures and from transcripts through the
real tracker, and that a record that does not prove it keeps its plain summary."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from kexproxy.core.record import SessionRecord
from kexproxy.present import (
    HOST_KEY_NOT_ACCEPTED,
    NO_CLIENT_KEXINIT,
    UPSTREAM_NOT_SSH_HTTP,
    ending,
    summary,
)
from kexproxy.sources.captures import analyse_capture
from tests.builders import (
    Transcript,
    client_offer,
    ecdh_init,
    ecdh_reply,
    host_key,
    ident,
    kexinit,
    newkeys,
    server_offer,
)
from tests.core.handshakes import CLIENT_BANNER, SERVER_BANNER, negotiated_ecdh
from tests.peers import Sshd, run_ssh, which_or_skip
from tests.sources.proxy_harness import RunningProxy, config

CAPTURES = Path(__file__).resolve().parents[1] / "captures"

#: What nginx answers a client that speaks SSH to it, cut short.
HTTP_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Server: nginx\r\n"
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<html>\r\n"
    b"<head><title>400 Bad Request</title></head>\r\n"
    b"</html>\r\n"
)


def capture(name: str) -> SessionRecord:
    records: list[SessionRecord] = []
    analyse_capture(str(CAPTURES / name), records.append)
    assert len(records) == 1
    return records[0]


def as_stored_summary(record: SessionRecord) -> SessionRecord:
    """The record as the dashboard gets it from a store: without timeline, notes, host key,
    offers or early lines (see kexproxy_tui.adapters.SUMMARY_DROPS)."""
    return replace(
        record,
        timeline=[],
        notes=[],
        host_key=None,
        client_kexinit=None,
        server_kexinit=None,
        pre_banner_lines={},
    )


def refused_host_key() -> Transcript:
    """Every list agrees, the server sends its host key and NEWKEYS, the client hangs up."""
    t = Transcript()
    t.server(SERVER_BANNER + kexinit(server_offer())).client(
        CLIENT_BANNER + kexinit(client_offer())
    )
    t.client(ecdh_init()).server(ecdh_reply(host_key("ed25519").blob) + newkeys())
    return t.close("client")


def test_a_client_that_hangs_up_after_the_host_key_did_not_accept_it() -> None:
    record = SessionRecord.from_dict(refused_host_key().close("server").finish())
    assert record.outcome == "aborted"
    assert summary(record) == HOST_KEY_NOT_ACCEPTED
    assert summary(record) == "client closed after the server's host key: host key not accepted"


def test_a_hang_up_with_a_gap_in_the_client_bytes_is_not_called_a_refusal() -> None:
    """The builder cannot know the client sent no NEWKEYS, and neither does the summary."""
    t = refused_host_key()
    t.gap("client").close("server")
    record = SessionRecord.from_dict(t.finish())
    assert ending(record) is None
    assert "host key" not in summary(record)


def test_a_whole_handshake_keeps_its_chosen_pair() -> None:
    record = SessionRecord.from_dict(negotiated_ecdh(Transcript()).close("client").finish())
    assert record.outcome == "negotiated"
    assert ending(record) is None
    assert summary(record).startswith(str(record.negotiated and record.negotiated["kex"]))
    assert ending(capture("openssh-success.pcap")) is None


def test_a_stored_summary_of_a_refusal_makes_no_claim_it_cannot_prove() -> None:
    record = as_stored_summary(SessionRecord.from_dict(refused_host_key().finish()))
    assert ending(record) is None
    assert summary(record) == "curve25519-sha256 / aes128-ctr"


def test_an_upstream_that_answers_http_is_not_ssh() -> None:
    t = Transcript()
    t.client(ident("OpenSSH_9.6")).server(HTTP_ANSWER).close("server").close("client")
    record = SessionRecord.from_dict(t.finish())
    assert record.server_banner is None
    # Without the inference the table said "refused: </html>".
    assert record.evidence["banner_error"] == "</html>"
    assert summary(record) == UPSTREAM_NOT_SSH_HTTP
    assert summary(record) == "the upstream is not SSH (it answered HTTP)"
    # A store's summary keeps the banner error only: "</html>" is enough.
    assert summary(as_stored_summary(record)) == UPSTREAM_NOT_SSH_HTTP


def test_an_upstream_status_line_alone_is_http() -> None:
    t = Transcript()
    t.client(ident("OpenSSH_9.6")).server(b"HTTP/1.0 200 OK\r\n").close("server")
    assert summary(SessionRecord.from_dict(t.finish())) == UPSTREAM_NOT_SSH_HTTP


def test_other_text_before_a_refusal_keeps_its_own_words() -> None:
    t = Transcript()
    t.client(ident("OpenSSH_9.6")).server(b"Exceeded MaxStartups\r\n").close("server")
    record = SessionRecord.from_dict(t.finish())
    assert ending(record) is None
    assert summary(record) == "refused: Exceeded MaxStartups"


def test_an_http_client_at_an_ssh_server_is_not_an_http_upstream() -> None:
    """captures/banner-refused.pcap: the client sent ``GET / HTTP/1.0``, sshd answered."""
    record = capture("banner-refused.pcap")
    assert record.pre_banner_lines["client"][0].startswith("GET /")
    assert ending(record) is None
    assert summary(record) == "refused: Invalid SSH identification string."


def test_plink_that_never_sent_its_kexinit_gave_up_before_its_offer() -> None:
    record = capture("plink-kex-fail-no-client-kexinit.pcap")
    assert record.outcome == "incomplete"
    assert summary(record) == NO_CLIENT_KEXINIT
    assert summary(record) == "no client KEXINIT: the client gave up before sending its offer"


def test_no_client_kexinit_needs_the_server_kexinit() -> None:
    t = Transcript()
    t.client(CLIENT_BANNER).server(SERVER_BANNER).close("client").close("server")
    record = SessionRecord.from_dict(t.finish())
    assert record.outcome == "incomplete" and record.server_kexinit is None
    assert ending(record) is None
    assert summary(record) == ""
    t = Transcript()
    t.client(CLIENT_BANNER).server(SERVER_BANNER + kexinit(server_offer())).close("client")
    assert summary(SessionRecord.from_dict(t.finish())) == NO_CLIENT_KEXINIT


@contextmanager
def http_upstream() -> Iterator[int]:
    """A real HTTP server (the standard library's) on 127.0.0.1, where SSH was expected."""

    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.peers
def test_real_ssh_through_the_relay_to_an_http_server_is_told_so() -> None:
    which_or_skip("ssh")
    with http_upstream() as port, RunningProxy(config(port)) as proxy:
        result = run_ssh(proxy.port, timeout=10)
        assert result.returncode != 0
        (record,) = proxy.wait_finals(1)
    assert record.server_banner is None
    assert summary(record) == UPSTREAM_NOT_SSH_HTTP


@pytest.mark.peers
def test_real_ssh_that_refuses_the_host_key_through_the_relay() -> None:
    """OpenSSH with strict checking and no known host: the issue's PuTTY case, by ssh."""
    which_or_skip("ssh")
    with Sshd() as sshd, RunningProxy(config(sshd.port)) as proxy:
        result = run_ssh(proxy.port, "-oStrictHostKeyChecking=yes")
        assert "Host key verification failed" in result.stderr
        (record,) = proxy.wait_finals(1)
    assert summary(record) == HOST_KEY_NOT_ACCEPTED
