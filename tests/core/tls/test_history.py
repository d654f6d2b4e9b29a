"""An earlier handshake with the same server narrows a refusal the wire does not name."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from kexproxy.core.record import SessionRecord
from kexproxy.core.tls.history import ServerMemory
from kexproxy.sources.captures import analyse_capture

CAPTURES = Path(__file__).resolve().parents[3] / "captures"


def _record(name: str) -> SessionRecord:
    out: list[SessionRecord] = []
    analyse_capture(str(CAPTURES / f"tls-{name}.pcap"), out.append)
    (record,) = out
    return record


def test_another_server_a_success_or_a_stored_record_is_left_alone() -> None:
    failed = _record("tls13-no-common-group")
    memory = ServerMemory()
    success = _record("openssl-tls13-success")
    assert memory(success) == success  # a success is only learnt from
    assert success.server != failed.server
    assert memory(failed) == failed  # nothing known of this server
    stored = replace(failed, diagnosis={"grade": None, "reasons": [], "recipes": []})
    assert memory(stored) == stored


def test_a_server_whose_earlier_choice_this_client_shares_is_not_sharpened_wrongly() -> None:
    """The earlier success on this address chose x25519, which the failed client offers too:
    no list is left standing alone (groups are shared, signature schemes unknown in TLS 1.3
    but offered in full), so the inference stays as the wire gave it."""
    failed = _record("tls13-no-common-group")
    earlier = replace(_record("openssl-tls13-success"), server=dict(failed.server))
    memory = ServerMemory()
    memory(earlier)
    assert memory(failed).rejections == failed.rejections


def test_memory_is_bounded() -> None:
    memory = ServerMemory(max_servers=2)
    base = _record("openssl-tls13-success")
    for port in range(10):
        memory(replace(base, server={"ip": "127.0.0.1", "port": port}))
    assert len(memory._seen) == 2
