"""The bundled TLS captures are a trustworthy oracle, and the TLS peer helpers work end to end.

For every ``captures/tls-*.json``: the pcap is the one recorded (same SHA-256), tshark's decode
of it today equals what the JSON recorded, and the scenario's ``expected`` agrees with that
decode and with the peers' own output kept in the JSON. Then one success and one failure are
run live through tests/peers/tls_peers.py (and recorded whole, as the script does, when
tcpdump can run), so the helpers the captures came from are proven to work here and now.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.peers import tls_peers

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"
TLS_NAMES = sorted(p.stem for p in CAPTURES.glob("tls-*.json"))
LISTS = {
    "versions",
    "cipher_suites",
    "supported_groups",
    "signature_algorithms",
    "server_name",
    "alpn",
    "certificate",
}


def tls_recorder() -> ModuleType:
    """scripts/record_tls_captures.py, imported as a module (it is a script, not a package)."""
    name = "kexproxy_record_tls_captures"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "record_tls_captures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def metadata(name: str) -> dict[str, Any]:
    """The JSON recorded beside ``captures/NAME.pcap``."""
    loaded: dict[str, Any] = json.loads((CAPTURES / f"{name}.json").read_text())
    return loaded


def test_there_are_tls_captures_for_every_kind_of_failure() -> None:
    """Every list the issue names a failure for has a capture, and there are successes."""
    wanted = {
        "versions",
        "cipher_suites",
        "supported_groups",
        "signature_algorithms",
        "server_name",
        "certificate",
    }
    seen = {metadata(name)["expected"]["list"] for name in TLS_NAMES}
    assert wanted <= seen
    assert sum(metadata(name)["expected"]["outcome"] == "negotiated" for name in TLS_NAMES) >= 6


@pytest.mark.parametrize("name", TLS_NAMES)
def test_tshark_decodes_today_what_was_recorded(name: str) -> None:
    """The pcap is the recorded one and tshark's decode of it equals the JSON's, so the JSON can stand in for tshark."""
    meta = metadata(name)
    pcap = CAPTURES / meta["pcap"]
    assert hashlib.sha256(pcap.read_bytes()).hexdigest() == meta["pcap_sha256"]
    assert tls_peers.tshark_tls_decode(pcap, meta["server"]["port"]) == meta["tshark"]


@pytest.mark.parametrize("name", TLS_NAMES)
def test_expected_agrees_with_the_wire_and_the_peers(name: str) -> None:
    """``expected`` names the alert tshark decodes (from the side that refused), the close, the retry, and words the peers really printed."""
    meta = metadata(name)
    want, wire = meta["expected"], meta["tshark"]
    codes = tls_recorder().ALERT_CODES
    fatal = [a for a in wire["alerts"] if a["level"] == "fatal"]
    assert want["outcome"] in ("negotiated", "failed", "aborted")
    assert wire["client_hellos"], "no ClientHello decoded"
    if want["outcome"] == "negotiated":
        assert want["refused_by"] is None and want["list"] is None and want["alert"] is None
        assert fatal == []
        assert wire["server_hellos"]
        assert meta["client"]["returncode"] == 0
    else:
        assert want["refused_by"] in ("client", "server")
        assert want["list"] in LISTS
        assert meta["client"]["returncode"] != 0
        from_refuser = [a for a in fatal if a["from"] == want["refused_by"]]
        if want["alert_encrypted"]:
            assert from_refuser == []
            assert any(
                r["from"] == want["refused_by"] and r["opaque_types"] for r in wire["records"]
            )
        else:
            assert [a["description"] for a in from_refuser] == [codes[want["alert"]]]
    if want["hello_retry_request"]:
        assert len(wire["server_hellos"]) == 2 and len(wire["client_hellos"]) == 2
        assert wire["server_hellos"][0]["selected_group"], "the HelloRetryRequest names no group"
    if wire["closes"]:
        assert want["first_close"] == wire["closes"][0]["from"]
    server_text = meta["server"]["stderr"] + meta["server"]["stdout"]
    client_text = meta["client"]["stderr"] + meta["client"]["stdout"]
    if want["server_says"] is not None:
        assert want["server_says"] in server_text
    if want["client_says"] is not None:
        assert want["client_says"] in client_text


@pytest.mark.peers
def test_live_success_and_failure_through_the_helpers(tmp_path: Path) -> None:
    """s_client to s_server negotiates TLS 1.3; with no common TLS 1.2 cipher s_server prints "no shared cipher" and the client gets alert 40."""
    pki = tls_peers.make_pki(tmp_path / "pki")
    with tls_peers.OpensslServer(pki.leaf("rsa")) as server:
        ok = tls_peers.run_s_client(
            server.port, "-tls1_3", "-CAfile", str(pki.ca_cert), "-verify_return_error"
        )
        server.wait_exit()
    assert ok.returncode == 0, ok.stderr
    assert "New, TLSv1.3, Cipher is " in ok.stdout
    assert tls_peers.openssl_reason(server.stderr) is None
    tls12 = ("-tls1_2", "-cipher")
    with tls_peers.OpensslServer(pki.leaf("rsa"), *tls12, "ECDHE-RSA-AES256-GCM-SHA384") as server:
        refused = tls_peers.run_s_client(server.port, *tls12, "AES128-SHA")
        server.wait_output("no shared cipher")
    assert refused.returncode != 0
    assert tls_peers.openssl_reason(server.stderr) == "no shared cipher"
    assert tls_peers.openssl_reason(refused.stderr) == "sslv3 alert handshake failure"
    assert "SSL alert number 40" in refused.stderr


@pytest.mark.peers
@pytest.mark.parametrize("scenario", ["gnutls-success", "tls13-no-common-group"])
def test_live_recording_end_to_end(scenario: str, tmp_path: Path) -> None:
    """The recording script's own checks pass on a fresh recording (tcpdump: needs root), and its JSON agrees with tshark."""
    recorder = tls_recorder()
    chosen = next(s for s in recorder.SCENARIOS if s.name == scenario)
    meta = recorder.record(chosen, tmp_path, {})
    pcap = tmp_path / meta["pcap"]
    assert tls_peers.tshark_tls_decode(pcap, meta["server"]["port"]) == meta["tshark"]
    assert meta["expected"]["outcome"] == chosen.outcome
