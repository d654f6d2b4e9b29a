"""`FailureProber` with a fake upstream: which records wait, what they get, the cache, and that nothing is lost."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kexproxy.core.record import SessionRecord
from kexproxy.core.tls.hello import ServerHello
from kexproxy.core.tls.probing import Answer
from kexproxy.pipeline import capture_records
from kexproxy.sources.tls_failure_probe import FailureProber, needs_probe
from kexproxy.sources.tls_probe import ProbeLimits

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
FAST = ProbeLimits(rate=20, timeout=1)


def _failed() -> SessionRecord:
    """A real refused TLS 1.2 handshake: AES128-SHA offered, the server has only an ECDHE suite."""
    (record,) = capture_records(str(CAPTURES / "tls-tls12-no-shared-cipher.pcap"))
    assert needs_probe(record)
    return dataclasses.replace(record, diagnosis=None)


def _hello() -> ServerHello:
    return ServerHello(
        legacy_version=0x0303, random=b"\x01" * 32, session_id=b"", cipher_suite=0xC030,
        compression_method=0, extensions=(), selected_version=None, key_share_group=None,
        alpn=None, retry=False,
    )  # fmt: skip


class Upstream:
    """Accepts only a ClientHello that offers `wanted` (a suite code), else handshake_failure."""

    def __init__(self, wanted: int | None = 0xC030) -> None:
        self.wanted = wanted
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int, hello: bytes, timeout: float) -> Answer:
        self.calls.append((host, port))
        if self.wanted is not None and self.wanted.to_bytes(2, "big") in hello:
            return Answer(server_hello=_hello())
        return Answer(alert=40)


def _run(records: list[SessionRecord], upstream: Upstream) -> list[tuple[SessionRecord, bool]]:
    published: list[tuple[SessionRecord, bool]] = []
    prober = FailureProber(lambda r, f: published.append((r, f)), limits=FAST, handshake=upstream)
    for record in records:
        prober.publish(record, True)
    assert prober.close(timeout=30)
    return published


def test_the_refused_list_is_named_for_certain() -> None:
    record = _failed()
    upstream = Upstream()
    ((out, final),) = _run([record], upstream)
    assert final
    server = out.rejections["server"]
    assert server["list"] == "cipher_suites" and server["certain"] is True
    assert server["message"] == "error:0A0000C1:SSL routines::no shared cipher"
    assert out.failures[0]["list"] == "cipher_suites"
    ip, port = record.server["ip"], record.server["port"]
    assert set(upstream.calls) == {(ip, port)}  # only ever the upstream


def test_the_verdict_is_cached_per_upstream_and_offer() -> None:
    upstream = Upstream()
    published = _run([_failed(), _failed()], upstream)
    assert len(published) == 2
    assert all(r.rejections["server"]["certain"] for r, _ in published)
    first = len(upstream.calls)
    assert first <= 6  # one variant per list, asked once


def test_nothing_accepted_keeps_the_record_as_it_was() -> None:
    record = _failed()
    ((out, _),) = _run([record], Upstream(wanted=None))
    assert out.rejections == record.rejections


def test_a_probe_that_raises_still_publishes_the_record() -> None:
    def broken(host: str, port: int, hello: bytes, timeout: float) -> Answer:
        raise RuntimeError("boom")

    published: list[tuple[SessionRecord, bool]] = []
    warnings: list[str] = []
    prober = FailureProber(
        lambda r, f: published.append((r, f)), limits=FAST, handshake=broken,
        warn=warnings.append,
    )  # fmt: skip
    record = _failed()
    prober.publish(record, True)
    assert prober.close(timeout=30)
    assert published == [(record, True)]
    assert warnings and "boom" in warnings[0]


def test_other_records_pass_straight_through() -> None:
    record = _failed()
    live = dataclasses.replace(record)
    ok = dataclasses.replace(record, outcome="negotiated")
    upstream = Upstream()
    published = _run([ok], upstream)
    assert published == [(ok, True)] and upstream.calls == []
    out: list[tuple[SessionRecord, bool]] = []
    prober = FailureProber(lambda r, f: out.append((r, f)), limits=FAST, handshake=upstream)
    prober.publish(live, False)
    prober.close()
    assert out == [(live, False)] and upstream.calls == []
