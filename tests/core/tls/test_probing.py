"""The probe's plan against a simulated server: the questions it asks and what it concludes from the answers."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from kexproxy.core.events import ParseFailed
from kexproxy.core.tls.events import ServerHelloReceived, ServerKeyExchangeReceived
from kexproxy.core.tls.hello import HRR_RANDOM, ServerHello
from kexproxy.core.tls.probing import (
    TLS12,
    TLS13,
    Answer,
    HelloSpec,
    TlsProbePlan,
    answer_complete,
    summarise,
)


@dataclass
class FakeServer:
    """Answers a HelloSpec as a server with these lists, in this preference order, would."""

    versions: tuple[int, ...] = (TLS13, TLS12)
    suites13: tuple[int, ...] = (0x1302, 0x1301)
    suites12: tuple[int, ...] = (0xC030, 0xC02F, 0x002F)
    groups: tuple[int, ...] = (24, 29)
    schemes: tuple[int, ...] = (0x0805, 0x0401)
    asked: int = 0

    def answer(self, spec: HelloSpec) -> Answer:
        self.asked += 1
        if spec.version not in self.versions:
            return Answer(alert=70)
        own = self.suites13 if spec.version == TLS13 else self.suites12
        suite = next((s for s in own if s in spec.cipher_suites), None)
        group = next((g for g in self.groups if g in spec.groups), None)
        scheme = next((s for s in self.schemes if s in spec.signature_algorithms), None)
        if suite is None or scheme is None or (spec.version == TLS13 and group is None):
            return Answer(alert=40)
        if spec.version == TLS13:
            retry = group not in spec.key_shares
            return Answer(server_hello=_hello(TLS13, suite, group, retry=retry))
        ecdhe = suite >> 8 == 0xC0
        if ecdhe and group is None:
            return Answer(alert=40)
        kx = ServerKeyExchangeReceived(
            kind="ecdhe" if ecdhe else "other",
            group=group if ecdhe else None,
            dh_bits=None,
            signature_scheme=scheme if ecdhe else None,
            offset=0,
        )
        return Answer(server_hello=_hello(TLS12, suite, None, retry=False), key_exchange=kx)


def _hello(version: int, suite: int, group: int | None, *, retry: bool) -> ServerHello:
    return ServerHello(
        legacy_version=TLS12,
        random=HRR_RANDOM if retry else b"\x01" * 32,
        session_id=b"",
        cipher_suite=suite,
        compression_method=0,
        extensions=(),
        selected_version=version if version == TLS13 else None,
        key_share_group=group,
        alpn=None,
        retry=retry,
    )


def run(server: FakeServer, server_name: str | None = "example.test") -> dict[str, object]:
    plan = TlsProbePlan(server_name)
    steps = plan.steps()
    spec = next(steps, None)
    while spec is not None:
        assert spec.server_name == server_name
        try:
            spec = steps.send(server.answer(spec))
        except StopIteration:
            spec = None
    return plan.result("example.test:443")


def test_the_plan_finds_exactly_the_servers_lists_in_its_order() -> None:
    server = FakeServer()
    report = run(server)
    assert report["versions"] == ["TLS 1.3", "TLS 1.2"]
    assert report["cipher_suites"] == {
        "TLS 1.3": ["TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256"],
        "TLS 1.2": [
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_RSA_WITH_AES_128_CBC_SHA",
        ],
    }
    assert report["supported_groups"] == ["secp384r1", "x25519"]
    assert sorted(report["signature_algorithms"]) == ["rsa_pkcs1_sha256", "rsa_pss_rsae_sha384"]
    assert report["handshakes"] == server.asked
    # The fake server has its own preference order, which the reversed offer reveals.
    assert not any("client's order" in str(n) for n in report["notes"])  # type: ignore[union-attr]


def test_only_tls13_notes_that_the_certificate_is_encrypted() -> None:
    report = run(FakeServer(versions=(TLS13,)))
    assert report["versions"] == ["TLS 1.3"]
    assert any("certificate is encrypted" in str(n) for n in report["notes"])  # type: ignore[union-attr]


def test_tls12_only_learns_groups_from_the_server_key_exchange() -> None:
    report = run(FakeServer(versions=(TLS12,)))
    assert report["supported_groups"] == ["secp384r1", "x25519"]


def test_an_answer_that_is_not_tls_ends_the_probe_with_a_note() -> None:
    plan = TlsProbePlan(None)
    steps = plan.steps()
    next(steps)
    bad = summarise([ParseFailed(reason="not a TLS record", offset=0)])
    with contextlib.suppress(StopIteration):
        steps.send(bad)
    report = plan.result("x:1")
    assert report["versions"] == []
    assert report["notes"] == [
        "probe ended early: the server's answer is not TLS (not a TLS record)"
    ]


def test_answer_complete_after_a_tls13_server_hello_or_an_hrr() -> None:
    hello = _hello(TLS13, 0x1301, 29, retry=False)
    assert answer_complete([ServerHelloReceived(hello=hello, offset=0)])
    tls12 = _hello(TLS12, 0xC02F, None, retry=False)
    assert not answer_complete([ServerHelloReceived(hello=tls12, offset=0)])
