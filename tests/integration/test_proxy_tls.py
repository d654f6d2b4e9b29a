"""Real TLS through the relay: OpenSSL's s_client to s_server via `kexproxy proxy`'s engine.

The relay forwards every byte unchanged whatever the protocol; the record it makes of a TLS
connection is the TLS record, the same one the capture reader makes of the same handshake.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import assert_valid_record
from tests.peers import tls_peers
from tests.sources.proxy_harness import RunningProxy, config

pytestmark = pytest.mark.peers


def test_a_tls_13_handshake_through_the_relay_is_recorded_and_works(tmp_path: Path) -> None:
    pki = tls_peers.make_pki(tmp_path / "pki", ("rsa",))
    with (
        tls_peers.OpensslServer(pki.leaf("rsa")) as server,
        RunningProxy(config(server.port)) as proxy,
    ):
        result = tls_peers.run_s_client(
            proxy.port, "-tls1_3", "-CAfile", str(pki.ca_cert), "-verify_return_error",
            "-servername", "localhost",
        )  # fmt: skip
        [record] = proxy.wait_finals(1, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "Verify return code: 0 (ok)" in result.stdout  # the bytes arrived unchanged
    assert_valid_record(record)
    assert record.protocol == "tls" and record.source == "proxy"
    assert record.outcome == "negotiated"
    assert record.negotiated is not None and record.negotiated["versions"] == "TLS 1.3"
    assert record.client_hello is not None and record.client_hello["server_name"] == "localhost"
    assert record.ja3 and record.ja4
    assert record.bytes["c2s"] > 0 and record.bytes["s2c"] > 0
    assert (record.diagnosis or {}).get("grade") in ("good", "strong")


def test_a_refused_tls_handshake_through_the_relay_names_the_side_and_list(
    tmp_path: Path,
) -> None:
    pki = tls_peers.make_pki(tmp_path / "pki", ("rsa",))
    with (
        tls_peers.OpensslServer(pki.leaf("rsa"), "-tls1_2") as server,
        RunningProxy(config(server.port)) as proxy,
    ):
        result = tls_peers.run_s_client(proxy.port, "-tls1_3")
        [record] = proxy.wait_finals(1, timeout=30)
        server.wait_output("unsupported protocol")
    assert result.returncode != 0
    assert "SSL alert number 70" in result.stderr  # the server's alert reached the client
    assert_valid_record(record)
    assert record.protocol == "tls" and record.outcome == "failed"
    rejection = record.rejections["server"]
    assert rejection is not None and rejection["certain"] is True
    assert rejection["list"] == "versions"
    assert rejection["message"].endswith("::unsupported protocol")
    assert record.evidence["first_close"] == "server" and record.evidence["how"] == "alert"
    assert (record.diagnosis or {}).get("recipes"), "a failure gets recipes"


def test_an_earlier_success_with_the_same_server_names_the_refused_group(tmp_path: Path) -> None:
    """TLS 1.3 with no common group is a bare handshake_failure before any ServerHello; the
    same server negotiated a moment before with a client that offered what this one offers,
    except the group: so the group is the list left standing (still inferred, and said why)."""
    pki = tls_peers.make_pki(tmp_path / "pki", ("rsa",))
    with (
        tls_peers.OpensslServer(pki.leaf("rsa"), "-groups", "secp384r1", "-naccept", "2") as server,
        RunningProxy(config(server.port)) as proxy,
    ):
        ok = tls_peers.run_s_client(proxy.port, "-tls1_3", "-groups", "secp384r1")
        proxy.wait_finals(1, timeout=30)
        refused = tls_peers.run_s_client(proxy.port, "-tls1_3", "-groups", "x25519")
        first, second = proxy.wait_finals(2, timeout=30)
        server.wait_output("no suitable key share")
    assert ok.returncode == 0 and refused.returncode != 0
    assert first.outcome == "negotiated" and second.outcome == "failed"
    rejection = second.rejections["server"]
    assert rejection["list"] == "supported_groups" and rejection["certain"] is False
    assert first.id in rejection["reason"]
    assert rejection["message"].endswith("::no suitable key share")
