"""Rejection messages as OpenSSH really writes them, for offers it has to escape or cut.

OpenSSH's log.c makes every message visible with strnvis(VIS_SAFE | VIS_OCTAL) and writes
at most 1021 characters of it; sshd's pre-authentication child does so before handing the
line to the monitor, which does it again with " [preauth]". A real OpenSSH client and a real
sshd meet a peer whose offer has control bytes, UTF-8 and 45 names (made by hand: no real
implementation sends such lists), through the proxy; the record must say what they said.
"""

from __future__ import annotations

import contextlib
import socket

import pytest

from kexproxy.core.negotiation import openssh_logged
from kexproxy.sources.proxy import ProxyConfig
from tests.builders import client_offer, ident, kexinit, server_offer
from tests.peers import Sshd, one_shot_server, run_ssh, which_or_skip
from tests.sources.proxy_harness import RunningProxy, config

pytestmark = pytest.mark.peers

ODD = ["junk\x01ctr", "café-cipher", "tab\there", "back\\slash"]
MANY = [f"cipher{i:02d}-cbc@example.com" for i in range(45)]


@pytest.mark.parametrize(
    ("message", "preauth", "logged"),
    [
        ("plain", False, "plain"),
        ("a\x01b", False, "a\\001b"),
        ("a\x01b", True, "a\\\\001b"),
        ("caf\u00e9", False, "caf\\303\\251"),
        ("tab\there\r\x07\x08", False, "tab\there\r\x07\x08"),
        ("back\\slash", False, "back\\\\slash"),
        ("back\\slash", True, "back\\\\\\\\slash"),
        ("x" * 2000, False, "x" * 1021),
        ("x" * 1011, True, "x" * 1011),
        ("x" * 1015, True, "x" * 1015 + " [prea"),
        ("\x01" * 400, False, "\\001" * 255),
    ],
)
def test_openssh_logged(message: str, preauth: bool, logged: str) -> None:
    assert openssh_logged(message, preauth=preauth) == logged


def raw_server(offer_bytes: bytes) -> contextlib.AbstractContextManager[int]:
    """A server on 127.0.0.1 that sends a banner and `offer_bytes`, then waits for the end."""
    return one_shot_server(ident("Odd_1.0") + offer_bytes)


def short_port() -> int:
    """A free port of four digits: the client then quotes a shorter address than the
    upstream's five-digit one, so a cut line must be cut where ssh cuts it for that port."""
    for port in range(2200, 9999, 7):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free four-digit port")


@pytest.mark.parametrize("names", [ODD, MANY + ODD], ids=["escaped", "escaped-and-cut"])
def test_the_client_message_is_what_ssh_prints(names: list[str]) -> None:
    which_or_skip("ssh")
    with raw_server(kexinit(server_offer(ciphers=names))) as upstream:
        relay = ProxyConfig(listen=("127.0.0.1", short_port()), upstream=("127.0.0.1", upstream))
        with RunningProxy(relay) as proxy:
            result = run_ssh(proxy.port)
            [record] = proxy.wait_finals(1)
    printed = result.negotiation_message
    assert printed is not None and "no matching cipher found" in printed, result.stderr
    assert record.rejections["client"]["message"] == printed
    assert record.rejections["client"]["their_offer"] == names  # the whole offer, unescaped
    if len(names) > len(ODD):
        assert len(printed) == 1021


@pytest.mark.parametrize("names", [ODD, MANY + ODD], ids=["escaped", "escaped-and-cut"])
def test_the_server_message_is_what_sshd_logs(names: list[str]) -> None:
    with Sshd(["Ciphers aes128-ctr"]) as sshd, RunningProxy(config(sshd.port)) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(ident("Odd_1.0") + kexinit(client_offer(ciphers=names)))
            try:
                while sock.recv(65536):
                    pass
            except OSError:
                pass
        [record] = proxy.wait_finals(1)
        message = record.rejections["server"]["message"]
        logged = sshd.wait_log(r"^Unable to negotiate with .*no matching cipher found.*$").group(0)
    if len(names) > len(ODD):
        assert len(logged) == 1021 and not logged.endswith("[preauth]")
        assert message == logged
    else:
        assert logged == message + " [preauth]"
        assert "\\\\001" in message  # escaped by the child, then by the monitor
