"""The TLS parser on real traffic: each direction of the public captures, as kexproxy's own reader hands
it over, parses to the same values tshark decodes from the same file.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache

import pytest

from kexproxy.core.events import ParseFailed
from kexproxy.core.tls.events import (
    AlertReceived,
    ClientHelloReceived,
    ServerHelloReceived,
    ServerKeyExchangeReceived,
    TlsEvent,
)
from kexproxy.core.tls.parser import TlsDirectionParser
from tests.peers.base import which_or_skip
from tests.sources.captures import PUBLIC, public, text

#: tshark fields compared, in the order of `_ours`.
FIELDS = (
    "tls.handshake.ciphersuite",
    "tls.handshake.cipherspec",
    "tls.handshake.extension.type",
    "tls.handshake.extensions_supported_group",
    "tls.handshake.sig_hash_alg",
    "tls.handshake.extensions.supported_version",
    "tls.alert_message.desc",
    "tls.handshake.extensions_server_name",
    "tls.handshake.extensions_alpn_str",
)
CAPTURES = (
    "zeek-tls-tls1.2.pcap",
    "zeek-tls-tls1_1.pcap",
    "zeek-tls-hrr.pcap",
    "zeek-tls-ssl-v2.pcap",
    "zeek-tls-chrome-1250-tls-x25519-kyber.pcap",
    "zeek-tls-tls-1.2-handshake-failure.pcap",
    "zeek-tls-tls-early-alert.pcap",
    "zeek-tls-tls13draft16-ff52.a01-aborted.pcap",
    "zeek-ssl-and-ssh-using-sslh.pcap",
)
Direction = tuple[str, str]  # sender "ip:port", receiver "ip:port"


@dataclass
class Values:
    """What one direction says, field by field, in wire order."""

    by_field: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


@cache
def _tshark(name: str) -> dict[Direction, dict[str, list[str]]]:
    tshark = which_or_skip("tshark")
    argv = [tshark, "-r", str(PUBLIC / name), "-Y", "tls", "-T", "fields"]
    # kexproxy reassembles out-of-order segments (zeek-tls-hrr.pcap has one); so must tshark.
    argv += ["-o", "tcp.reassemble_out_of_order:TRUE", "-E", "aggregator=|"]
    argv += ["-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport"]
    for name_ in FIELDS:
        argv += ["-e", name_]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout
    result: dict[Direction, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for line in out.splitlines():
        cols = line.split("\t")
        key = (f"{cols[0]}:{cols[1]}", f"{cols[2]}:{cols[3]}")
        for name_, value in zip(FIELDS, cols[4:], strict=True):
            result[key][name_] += [v for v in value.split("|") if v]
    return result


def _hex(code: int) -> str:
    return f"0x{code:06x}" if code > 0xFFFF else f"0x{code:04x}"


def _ours(events: list[TlsEvent]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for event in events:
        if isinstance(event, ClientHelloReceived):
            hello = event.hello
            suites = "tls.handshake.cipherspec" if hello.sslv2 else "tls.handshake.ciphersuite"
            out[suites] += [_hex(c) for c in hello.cipher_suites]
            out["tls.handshake.extension.type"] += [str(c) for c in hello.extensions]
            out["tls.handshake.extensions_supported_group"] += [
                _hex(c) for c in hello.supported_groups
            ]
            out["tls.handshake.sig_hash_alg"] += [_hex(c) for c in hello.signature_algorithms]
            out["tls.handshake.extensions.supported_version"] += [
                _hex(c) for c in hello.supported_versions
            ]
            if hello.server_name is not None:
                out["tls.handshake.extensions_server_name"].append(hello.server_name)
            out["tls.handshake.extensions_alpn_str"] += list(hello.alpn)
        elif isinstance(event, ServerHelloReceived):
            server = event.hello
            out["tls.handshake.ciphersuite"].append(_hex(server.cipher_suite))
            out["tls.handshake.extension.type"] += [str(c) for c in server.extensions]
            if server.selected_version is not None:
                out["tls.handshake.extensions.supported_version"].append(
                    _hex(server.selected_version)
                )
            if server.alpn is not None:
                out["tls.handshake.extensions_alpn_str"].append(server.alpn)
        elif isinstance(event, ServerKeyExchangeReceived) and event.signature_scheme:
            out["tls.handshake.sig_hash_alg"].append(_hex(event.signature_scheme))
        elif isinstance(event, AlertReceived) and event.description is not None:
            out["tls.alert_message.desc"].append(str(event.description))
    return out


def _parse(data: bytes) -> list[TlsEvent]:
    parser = TlsDirectionParser()
    return parser.receive_data(data) + parser.receive_eof()


@cache
def _directions(name: str) -> dict[Direction, list[TlsEvent]]:
    out: dict[Direction, list[TlsEvent]] = {}
    for rec in public(name).made:
        out[(text(rec.a), text(rec.b))] = _parse(bytes(rec.data["a"]))
        out[(text(rec.b), text(rec.a))] = _parse(bytes(rec.data["b"]))
    return out


#: What tshark decodes and kexproxy deliberately does not: SSL 2.0 beyond the CLIENT-HELLO
#: (the server's SERVER-HELLO lists its cipher specs, the client's CLIENT-MASTER-KEY names
#: the one it chose); kexproxy reports an `Ssl2Message` and stops there.
NOT_PARSED: dict[tuple[str, Direction, str], list[str]] = {
    (
        "zeek-tls-ssl-v2.pcap",
        ("192.168.4.149:59062", "91.227.4.92:443"),
        "tls.handshake.cipherspec",
    ): ["0x0700c0"],
    (
        "zeek-tls-ssl-v2.pcap",
        ("91.227.4.92:443", "192.168.4.149:59062"),
        "tls.handshake.cipherspec",
    ): ["0x0700c0", "0x030080", "0x010080", "0x060040", "0x040080", "0x020080"],
}


@pytest.mark.parametrize("name", CAPTURES)
def test_parsed_values_equal_tsharks(name: str) -> None:
    oracle = _tshark(name)
    ours = _directions(name)
    assert any(any(values.values()) for values in oracle.values()), "tshark decoded no TLS"
    for key, want in oracle.items():
        got = _ours(ours[key])
        for field_ in FIELDS:
            extra = NOT_PARSED.get((name, key, field_), [])
            wanted = want.get(field_, [])
            assert wanted[len(wanted) - len(extra) :] == extra
            assert got.get(field_, []) == wanted[: len(wanted) - len(extra)], (key, field_)


@pytest.mark.parametrize("name", CAPTURES)
def test_no_tls_direction_fails(name: str) -> None:
    """Every direction in which tshark decodes a TLS field parses without a ParseFailed.

    (tshark calls the SSH connection on port 443 of the sslh capture TLS by its port, and
    decodes nothing in it; kexproxy says "not TLS" there.)
    """
    ours = _directions(name)
    for key, values in _tshark(name).items():
        if any(values.values()):
            assert not [e for e in ours[key] if isinstance(e, ParseFailed)], key
    if name == "zeek-ssl-and-ssh-using-sslh.pcap":
        ssh = ours[("192.168.2.144:49641", "192.168.2.230:443")]
        assert isinstance(ssh[0], ParseFailed) and ssh[0].reason.startswith("not TLS")


def test_what_each_capture_shows() -> None:
    """The stories of the captures, as events: who said what before encryption began."""
    hrr = _directions("zeek-tls-hrr.pcap")[("64.233.185.139:443", "10.192.48.168:63564")]
    hellos = [e.hello for e in hrr if isinstance(e, ServerHelloReceived)]
    assert [h.retry for h in hellos] == [True, False]
    assert hellos[0].to_dict() == {
        "cipher_suite": "TLS_AES_256_GCM_SHA384",
        "selected_group": "secp256r1",
    }
    chrome = _directions("zeek-tls-chrome-1250-tls-x25519-kyber.pcap")
    client = next(e.hello for e in chrome[next(iter(chrome))] if isinstance(e, ClientHelloReceived))
    shares = client.to_dict()["key_share_groups"]
    assert isinstance(shares, list) and "X25519Kyber768Draft00" in shares
    assert client.grease() > 0
    failure = _directions("zeek-tls-tls-1.2-handshake-failure.pcap")
    alerts = [e for events in failure.values() for e in events if isinstance(e, AlertReceived)]
    assert [(a.level, a.description, a.encrypted) for a in alerts] == [(2, 40, False)]
