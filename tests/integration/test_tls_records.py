"""kexproxy's TLS records of real peers' captures, held against what the peers did and tshark.

The captures in captures/tls-*.pcap were recorded by scripts/record_tls_captures.py from real
OpenSSL, GnuTLS, curl and Python ssl peers; each JSON beside one says what the peers really
did (`expected`: outcome, who refused, which list, the alert, each side's own error line) and
what tshark decoded (tests/integration/test_tls_captures.py keeps that decode true).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from kexproxy.core.record import SessionRecord
from kexproxy.core.tls.names import (
    extension_name,
    group_name,
    is_grease,
    scheme_name,
    suite_name,
    version_name,
)
from kexproxy.pipeline import capture_records
from kexproxy.schema import session_record_schema

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "captures").glob("tls-*.json"))


def _manifest(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


#: Server refusals whose list the wire cannot show: the server's handshake_failure before
#: any ServerHello is the same alert for every list, and these clients offer only lists an
#: OpenSSL 3 server accepts by default, so kexproxy can only infer (certain: false) and its
#: guess is the commonest cause. `kexproxy proxy --probe-failures` names them for certain.
NOT_ON_THE_WIRE = {
    "tls-tls12-ecdhe-no-common-curve",  # no shared curve: OpenSSL says "no shared cipher" too
    "tls-tls13-no-common-group",  # no suitable key share
}


@cache
def _records(name: str) -> tuple[SessionRecord, ...]:
    return tuple(capture_records(str(ROOT / "captures" / f"{name}.pcap")))


def _one(name: str) -> SessionRecord:
    (record,) = _records(name)
    assert record.protocol == "tls"
    return record


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_outcome_side_and_alert_are_what_the_peers_did(path: Path) -> None:
    expected = _manifest(path)["expected"]
    record = _one(path.stem)
    assert record.outcome == expected["outcome"]
    refused = [role for role, r in record.rejections.items() if r]
    if expected["refused_by"] is None:
        assert refused == [] and record.failures == []
        return
    assert refused == [expected["refused_by"]]
    rejection = record.rejections[expected["refused_by"]]
    if rejection["certain"] or path.stem not in NOT_ON_THE_WIRE:
        assert rejection["list"] == expected["list"], rejection["reason"]
    else:
        assert "not on the wire" in rejection["reason"]
    fatal = [a for a in record.alerts if a["level"] == "fatal" or a["encrypted"]]
    assert fatal[0]["from"] == expected["refused_by"]
    assert fatal[0]["encrypted"] == expected["alert_encrypted"]
    if not expected["alert_encrypted"]:
        assert fatal[0]["description"] == expected["alert"]
    assert record.evidence["how"] == "alert"
    assert record.evidence["first_close"] == expected["refused_by"]


#: The failures an OpenSSL server (s_server) refused: its own error line is in the manifest.
S_SERVER_REFUSALS = [
    p
    for p in MANIFESTS
    if _manifest(p)["server"].get("software") == "s_server"
    and _manifest(p)["expected"]["refused_by"] == "server"
    and p.stem not in NOT_ON_THE_WIRE  # the words follow the list, which is only guessed
]


@pytest.mark.parametrize("path", S_SERVER_REFUSALS, ids=lambda p: p.stem)
def test_an_openssl_server_refusal_is_worded_as_s_server_printed_it(path: Path) -> None:
    expected = _manifest(path)["expected"]
    message = _one(path.stem).rejections["server"]["message"]
    assert message.endswith(f"::{expected['server_says']}"), message


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_the_receivers_words_are_openssls_for_the_alert(path: Path) -> None:
    expected = _manifest(path)["expected"]
    if expected["alert"] is None or expected["alert_encrypted"]:
        return
    client = json.dumps(_manifest(path)["client"])
    receiver_says = expected["client_says"] if expected["refused_by"] == "server" else None
    (alert,) = [a for a in _one(path.stem).alerts if a["level"] == "fatal"]
    assert alert["message"].startswith("error:0A000")
    if receiver_says and "s_client" in client:
        assert alert["message"].endswith(f"::{receiver_says}"), alert["message"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_hellos_and_fingerprints_equal_tsharks(path: Path) -> None:
    """Every list of the record is tshark's field, named; JA3 and JA3S are tshark's."""
    tshark = _manifest(path)["tshark"]
    record = _one(path.stem)
    first = tshark["client_hellos"][0]
    hello = record.client_hello
    assert hello is not None
    assert record.ja3 == first["ja3"] and record.ja3_string == first["ja3_full"]

    def named(codes: list[int], name: Any) -> list[str]:
        return [name(c) for c in codes if not is_grease(c)]

    assert hello["cipher_suites"] == named(first["cipher_suites"], suite_name)
    assert hello["extensions"] == named(first["extensions"], extension_name)
    assert hello["supported_groups"] == named(first["supported_groups"], group_name)
    assert hello["key_share_groups"] == named(first["key_share_groups"], group_name)
    assert hello["signature_algorithms"] == named(first["signature_algorithms"], scheme_name)
    versions = first["versions"] or [first["legacy_version"]]
    assert hello["versions"] == named(versions, version_name)
    assert hello["server_name"] == (first["server_name"] or None)
    assert hello["alpn"] == first["alpn"]
    real = [h for h in tshark["server_hellos"] if not h.get("selected_group")]
    if real:
        assert record.ja3s == real[-1]["ja3s"] and record.ja3s_string == real[-1]["ja3s_full"]
        assert record.server_hello is not None
        assert record.server_hello["cipher_suite"] == suite_name(real[-1]["cipher_suite"])
    else:
        assert record.server_hello is None and record.ja3s is None
    retried = [h for h in tshark["server_hellos"] if h.get("selected_group")]
    if retried:
        assert record.hello_retry_request == {
            "cipher_suite": suite_name(retried[0]["cipher_suite"]),
            "selected_group": group_name(retried[0]["selected_group"][0]),
        }


def test_every_tls_record_fits_the_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(session_record_schema())
    for path in MANIFESTS:
        for record in _records(path.stem):
            errors = [e.message for e in validator.iter_errors(record.to_dict())]
            assert errors == [], (path.stem, errors[:3])


def test_the_certificate_is_read_only_where_it_was_in_clear() -> None:
    tls12 = _one("tls-openssl-tls12-success")
    assert tls12.certificate is not None
    assert tls12.certificate["key_type"] in ("rsa", "ec", "ed25519")
    assert len(tls12.certificate["sha256"]) == 64
    assert _one("tls-openssl-tls13-success").certificate is None  # encrypted in TLS 1.3


def test_a_tls_record_survives_the_json_round_trip() -> None:
    for path in MANIFESTS:
        record = _one(path.stem)
        again = SessionRecord.from_dict(json.loads(json.dumps(record.to_dict())))
        assert again == record


PUBLIC = ROOT / "tests" / "data" / "public"
#: The third-party oracle's TLS sessions (EXPECTED.json, `tls_sessions`), with their capture.
PUBLIC_TLS = [
    (entry["file"], session)
    for entry in json.loads((PUBLIC / "EXPECTED.json").read_text())
    for session in entry.get("tls_sessions", [])
    if session.get("client_hello")
]


@pytest.mark.parametrize(
    ("capture", "session"), PUBLIC_TLS, ids=[f"{c}:{s['client']}" for c, s in PUBLIC_TLS]
)
def test_public_tls_captures_agree_with_the_oracle(capture: str, session: dict[str, Any]) -> None:
    """JA3 and the client's lists equal the oracle's (tshark's) for third-party captures.

    The oracle's one known gap: in zeek-tls-hrr.pcap tshark, without
    tcp.reassemble_out_of_order, misses the real ServerHello after the HelloRetryRequest
    (frame 11 arrives before frame 9's gap is filled); kexproxy's reassembly has it, so the
    record's server_hello is there where the oracle says null.
    """
    records = capture_records(str(PUBLIC / capture))
    [record] = [r for r in records if f"{r.client['ip']}:{r.client['port']}" == session["client"]]
    assert record.protocol == "tls"
    oracle = session["client_hello"]
    hello = record.client_hello
    assert hello is not None
    assert record.ja3 == oracle["ja3"]
    codes = [int(c, 16) for c in oracle["cipher_suites"]]
    if not hello["sslv2"]:
        assert hello["cipher_suites"] == [suite_name(c) for c in codes if not is_grease(c)]
        groups = [int(g, 16) for g in oracle["supported_groups"]]
        assert hello["supported_groups"] == [group_name(g) for g in groups if not is_grease(g)]
    assert hello["server_name"] == oracle["server_name"]
    assert hello["alpn"] == oracle["alpn"]
    server = session.get("server_hello")
    if server:
        assert record.ja3s == server["ja3s"]
    elif session.get("hello_retry_request"):
        assert record.hello_retry_request is not None
        assert record.server_hello is not None  # the oracle's gap, see above
    ours = [
        (a["from"], a["level"], a["code"], a["description"])
        for a in record.alerts
        if not a["encrypted"]
    ]
    theirs = [(a["from"], a["level"], a["code"], a["description"]) for a in session["alerts"]]
    assert ours == theirs
