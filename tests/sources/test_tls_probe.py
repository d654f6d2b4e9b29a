"""The TLS probe's I/O: ClientHellos scapy builds are what the spec says (read back by kexproxy's parser), and the bounds."""

from __future__ import annotations

import socket

import pytest

from kexproxy.core.tls.events import ClientHelloReceived
from kexproxy.core.tls.parser import TlsDirectionParser
from kexproxy.core.tls.probing import TLS10, TLS12, TLS13, HelloSpec
from kexproxy.sources.tls_probe import Pacer, ProbeLimits, client_hello_bytes, handshake


def _parsed(spec: HelloSpec) -> ClientHelloReceived:
    events = TlsDirectionParser().receive_data(client_hello_bytes(spec))
    assert len(events) == 1 and isinstance(events[0], ClientHelloReceived)
    return events[0]


def test_a_tls13_hello_carries_the_specs_lists_and_an_empty_key_share() -> None:
    spec = HelloSpec(
        version=TLS13,
        cipher_suites=(0x1302, 0x1301),
        groups=(29, 0x11EC, 0xABCD),
        key_shares=(),
        signature_algorithms=(0x0804, 0x0403),
        server_name="example.test",
        purpose="test",
        alpn=("h2",),
    )
    hello = _parsed(spec).hello
    assert hello.supported_versions == (TLS13,)
    assert hello.cipher_suites == (0x1302, 0x1301)
    assert hello.supported_groups == (29, 0x11EC, 0xABCD)
    assert hello.key_share_groups == () and 51 in hello.extensions
    assert hello.signature_algorithms == (0x0804, 0x0403)
    assert hello.server_name == "example.test" and hello.alpn == ("h2",)


@pytest.mark.parametrize("group", [29, 23, 24, 25, 30])
def test_real_key_shares_are_sent_for_the_groups_kexproxy_computes(group: int) -> None:
    spec = HelloSpec(
        version=TLS13, cipher_suites=(0x1301,), groups=(group,), key_shares=(group,),
        signature_algorithms=(0x0804,), server_name=None, purpose="test",
    )  # fmt: skip
    assert _parsed(spec).hello.key_share_groups == (group,)


def test_a_tls10_hello_has_no_supported_versions_and_no_schemes() -> None:
    spec = HelloSpec(
        version=TLS10, cipher_suites=(0x002F,), groups=(), key_shares=(),
        signature_algorithms=(0x0401,), server_name=None, purpose="test",
    )  # fmt: skip
    hello = _parsed(spec).hello
    assert hello.legacy_version == TLS10 and hello.supported_versions == ()
    assert hello.signature_algorithms == () and hello.supported_groups == ()


def test_a_tls12_hello_with_several_versions_sends_them() -> None:
    spec = HelloSpec(
        version=TLS13, versions=(TLS13, TLS12), cipher_suites=(0x1301, 0xC02F), groups=(29,),
        key_shares=(29,), signature_algorithms=(0x0804,), server_name=None, purpose="test",
    )  # fmt: skip
    hello = _parsed(spec).hello
    assert hello.legacy_version == TLS12 and hello.supported_versions == (TLS13, TLS12)


def test_the_pacer_spaces_starts_by_one_over_the_rate() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(4, clock=lambda: now[0], sleep=sleep)
    pacer.wait()
    pacer.wait()
    now[0] += 0.1
    pacer.wait()
    assert slept == [pytest.approx(0.25), pytest.approx(0.15)]


@pytest.mark.parametrize(
    "limits", [{"rate": 0}, {"rate": 21}, {"max_handshakes": 0}, {"timeout": 0}]
)
def test_limits_out_of_bounds_are_refused(limits: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ProbeLimits(**limits)  # type: ignore[arg-type]


def test_a_closed_port_is_a_refused_connection_not_an_exception() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    assert handshake("127.0.0.1", port, b"\x16", 1.0).ending == "refused_connection"
