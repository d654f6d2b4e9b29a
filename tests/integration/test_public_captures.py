"""Every connection of every public capture, compared field by field with EXPECTED.json.

The oracle (tests/data/public/EXPECTED.json) was made by an independent parser over
tshark's TCP reassembly, cross-checked with tshark's dissector, Zeek, Arkime and nDPI.
Where kexproxy deliberately reports something else, the comparison says why.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from kexproxy.core.negotiation import openssh_logged
from kexproxy.core.record import SessionRecord
from kexproxy.pipeline import capture_records
from kexproxy.schema import session_record_schema

PUBLIC = Path(__file__).parents[1] / "data" / "public"
EXPECTED: list[dict[str, Any]] = json.loads((PUBLIC / "EXPECTED.json").read_text())
BY_FILE = {entry["file"]: entry for entry in EXPECTED}

NEGOTIATED = {
    "kex_algorithm": "kex",
    "server_host_key_algorithm": "host_key",
    "encryption_algorithm_client_to_server": "cipher_c2s",
    "encryption_algorithm_server_to_client": "cipher_s2c",
    "mac_algorithm_client_to_server": "mac_c2s",
    "mac_algorithm_server_to_client": "mac_s2c",
    "compression_algorithm_client_to_server": "compression_c2s",
    "compression_algorithm_server_to_client": "compression_s2c",
}

#: Host keys the oracle decoded from a message that is not a KEX reply. In the server-side
#: half-duplex capture the client's KEXINIT is missing, so the key exchange method is
#: unknown; the oracle read a group exchange's SSH_MSG_KEX_DH_GEX_GROUP (31) as an ECDH
#: reply and reported the prime p as a "truncated host key blob". The server went on to
#: send SSH_MSG_KEX_DH_GEX_REPLY (33), which exists only in group exchange; kexproxy reads
#: the host key from it, a well-formed RSA key.
ORACLE_MISREAD_HOST_KEYS = {
    "SHA256:1y0yKQh5cXScCtjtqQycfzha/vO0k9KwszWsGmzzNq4",
    "SHA256:4bYRvxL3rgxtgmpwWH6Z7EqvtiEGHTE2u1m3azeQJkY",
}


@cache
def records(name: str) -> tuple[SessionRecord, ...]:
    """The SSH records (the oracle's `connections`; its TLS sessions are held against the
    TLS records in test_tls_records.py)."""
    return tuple(r for r in capture_records(str(PUBLIC / name)) if r.protocol == "ssh")


def endpoint(ep: dict[str, Any]) -> str:
    ip = ep["ip"]
    return f"[{ip}]:{ep['port']}" if ":" in ip else f"{ip}:{ep['port']}"


def by_endpoints(name: str) -> dict[frozenset[str], SessionRecord]:
    """Records by their two endpoints: the oracle names TCP roles, the record SSH roles."""
    return {frozenset((endpoint(r.client), endpoint(r.server))): r for r in records(name)}


CAPTURES = sorted(BY_FILE)
CONNECTIONS = [
    pytest.param(name, index, id=f"{name}#{index}")
    for name in CAPTURES
    for index in range(len(BY_FILE[name]["connections"]))
]


@pytest.mark.parametrize("name", CAPTURES)
def test_finds_exactly_the_ssh_connections(name: str) -> None:
    entry = BY_FILE[name]
    expected = {frozenset((c["client"], c["server"])) for c in entry["connections"]}
    found = set(by_endpoints(name))
    assert found == expected
    assert len(records(name)) == entry["ssh_connections"]


@pytest.mark.parametrize("name", CAPTURES)
def test_records_validate_against_the_schema(name: str) -> None:
    schema = session_record_schema()
    for record in records(name):
        jsonschema.validate(record.to_dict(), schema)


@pytest.mark.parametrize("name", CAPTURES)
def test_ids_are_stable_across_runs(name: str) -> None:
    again = [r for r in capture_records(str(PUBLIC / name)) if r.protocol == "ssh"]
    assert [r.id for r in again] == [r.id for r in records(name)]
    assert len({r.id for r in again}) == len(again)


def _kexinit_lists(kexinit: dict[str, Any] | None) -> dict[str, Any] | None:
    if kexinit is None:
        return None
    out: dict[str, Any] = {}
    for key, value in kexinit.items():
        if isinstance(value, list):
            out[key] = ",".join(value)
    out["cookie"] = kexinit["cookie"]
    out["first_kex_packet_follows"] = kexinit["first_kex_packet_follows"]
    return out


def _swap_roles(want: dict[str, Any]) -> dict[str, Any]:
    """The oracle's per-side fields follow TCP roles; the record's follow SSH roles."""
    out = dict(want)
    for a, b in (("client_banner", "server_banner"), ("client_kexinit", "server_kexinit")):
        out[a], out[b] = want[b], want[a]
    return out


def _hassh_input(kexinit: dict[str, Any], direction: str) -> str:
    return ";".join(
        kexinit[name]
        for name in (
            "kex_algorithms",
            f"encryption_algorithms_{direction}",
            f"mac_algorithms_{direction}",
            f"compression_algorithms_{direction}",
        )
    )


@pytest.mark.parametrize(("name", "index"), CONNECTIONS)
def test_connection_matches_the_oracle(name: str, index: int) -> None:
    want = BY_FILE[name]["connections"][index]
    got = by_endpoints(name)[frozenset((want["client"], want["server"]))]
    # The oracle's client/server are the TCP roles; in reverse SSH the SSH client is the
    # TCP server, and the record names SSH roles.
    reversed_roles = want["ssh_roles_reversed"]
    assert endpoint(got.client) == want["server" if reversed_roles else "client"]
    if reversed_roles:
        want = _swap_roles(want)

    assert got.client_banner == want["client_banner"]
    assert got.server_banner == want["server_banner"]

    for side in ("client_kexinit", "server_kexinit"):
        expected_kexinit = want[side]
        mine = _kexinit_lists(getattr(got, side))
        if expected_kexinit is None:
            assert mine is None
            continue
        assert mine is not None
        for key, value in mine.items():
            assert value == expected_kexinit[key], f"{side}.{key}"

    neg = want["negotiated"]
    if neg is None:
        assert got.negotiated is None
    else:
        assert got.negotiated is not None
        aead = neg["mac_ignored_because_aead"]
        for theirs, ours in NEGOTIATED.items():
            direction = "client_to_server" if ours.endswith("c2s") else "server_to_client"
            if ours.startswith("mac") and aead[direction]:
                assert got.negotiated[ours] == "<implicit>"
            else:
                assert got.negotiated[ours] == neg[theirs], ours
        assert sorted(got.failing_lists) == sorted(neg["no_match_lists"])
        client_rejection = got.rejections["client"]
        server_rejection = got.rejections["server"]
        assert (client_rejection or {}).get("list") == neg["failed_list_openssh_order"]
        assert (server_rejection or {}).get("list") == neg["failed_list_openssh_server_order"]
        if neg.get("openssh_client_would_say"):
            assert client_rejection is not None
            # The oracle gives the whole line; OpenSSH writes at most 1021 characters of it
            # (log.c), as tests/test_openssh_log_lines.py shows with a real ssh: the record
            # says what ssh prints. Below that length, the two are the same.
            said = neg["openssh_client_would_say"]
            assert client_rejection["message"] == openssh_logged(said)
            assert len(said) > 1021 or client_rejection["message"] == said
        assert got.outcome == ("failed" if neg["no_match_lists"] else got.outcome)

    if reversed_roles:
        # The oracle (like tshark) hashes the TCP initiator's lists as "hassh"; HASSH
        # fingerprints the SSH client, which here is the TCP server: compute it from
        # the SSH client's KEXINIT as the oracle recorded it.
        assert got.hassh_algorithms == _hassh_input(want["client_kexinit"], "client_to_server")
        assert got.hassh_server_algorithms == _hassh_input(
            want["server_kexinit"], "server_to_client"
        )
    else:
        assert got.hassh == want["hassh"]
        assert got.hassh_server == want["hassh_server"]
        assert got.hassh_algorithms == want["hassh_algorithms"]
        assert got.hassh_server_algorithms == want["hassh_server_algorithms"]

    key = want["server_host_key"]
    if key is not None and key["fingerprint_sha256"] in ORACLE_MISREAD_HOST_KEYS:
        assert got.host_key is not None
        assert got.host_key["key_type"] == "rsa" and "error" not in got.host_key
        assert [e["event"] for e in got.timeline if e["from"] == "server"][2:4] == [
            "SSH_MSG_31",
            "SSH_MSG_33",
        ]
    elif key is None:
        assert got.host_key is None
    else:
        assert got.host_key is not None
        if key.get("certificate"):
            # ssh-keygen -l fingerprints a certificate's plain key; the oracle hashed the
            # whole certificate blob, which the record keeps as blob_sha256.
            assert got.host_key["blob_sha256"] == key["fingerprint_sha256"]
        else:
            assert got.host_key["sha256"] == key["fingerprint_sha256"]
        assert got.host_key["bits"] == key.get("bits")

    close = want["tcp_close"]
    if not want["disconnects"] and not close["rst_from"] and close["first_fin_from"]:
        assert got.evidence["first_close"] == close["first_fin_from"]
        assert got.evidence["how"] == "fin"
    if close["rst_from"] and not close["fin_from"] and not want["disconnects"]:
        assert got.evidence["how"] == "rst"
    assert [d["reason_code"] for d in got.evidence["disconnects"]] == [
        d["reason_code"] for d in want["disconnects"]
    ]
    if want["ssh_roles_reversed"]:
        assert got.roles["tcp_initiator"] == "server"
        assert any("reverse SSH" in note for note in got.notes)
