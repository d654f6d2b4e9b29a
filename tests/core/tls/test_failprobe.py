"""The variants `proxy --probe-failures` sends: one list widened, the rest of the client's offer kept."""

from __future__ import annotations

from kexproxy.core.tls.failprobe import PROBED_LISTS, client_offer, rejection, variant
from kexproxy.core.tls.probing import ALL_GROUPS, ALL_SCHEMES, TLS12, TLS13, HelloSpec

HELLO = {
    "versions": ["TLS 1.3"],
    "cipher_suites": ["TLS_AES_128_GCM_SHA256", "TLS_EMPTY_RENEGOTIATION_INFO_SCSV"],
    "supported_groups": ["x25519", "0x9999"],
    "key_share_groups": ["x25519"],
    "signature_algorithms": ["ecdsa_secp256r1_sha256"],
    "alpn": ["h2"],
    "server_name": "example.test",
    "sslv2": False,
}


def _offer() -> HelloSpec:
    offer = client_offer(HELLO)
    assert offer is not None
    return offer


def test_the_record_is_read_back_into_codes() -> None:
    offer = _offer()
    assert offer.version == TLS13 and offer.versions == (TLS13,)
    assert offer.cipher_suites == (0x1301, 0x00FF)
    assert offer.groups == (29, 0x9999) and offer.key_shares == (29,)
    assert offer.signature_algorithms == (0x0403,)


def test_each_variant_changes_only_its_list() -> None:
    offer = _offer()
    for name in PROBED_LISTS:
        v = variant(offer, name)
        assert v is not None
        assert v.key_shares == offer.key_shares
        if name != "server_name":
            assert v.server_name == offer.server_name
        if name != "alpn":
            assert v.alpn == offer.alpn
        if name not in ("cipher_suites", "versions"):
            assert v.cipher_suites == offer.cipher_suites
    groups = variant(offer, "supported_groups")
    assert groups is not None and groups.groups[:2] == (29, 0x9999)
    assert set(ALL_GROUPS) <= set(groups.groups)
    schemes = variant(offer, "signature_algorithms")
    assert schemes is not None and set(ALL_SCHEMES) <= set(schemes.signature_algorithms)
    sni = variant(offer, "server_name")
    assert sni is not None and sni.server_name is None


def test_versions_are_widened_only_as_far_as_the_suites_reach() -> None:
    v = variant(_offer(), "versions")
    assert v is not None and v.versions[0] == TLS13 and TLS12 in v.versions
    # A TLS 1.3-only client gets legacy suites along, or 1.2 could never be chosen.
    assert any(c >> 8 != 0x13 and c != 0x00FF for c in v.cipher_suites)


def test_signature_widening_adds_the_suites_signature_twins() -> None:
    hello = {
        **HELLO,
        "versions": ["TLS 1.2"],
        "cipher_suites": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"],
    }
    offer = client_offer(hello)
    assert offer is not None
    v = variant(offer, "signature_algorithms")
    assert v is not None and v.cipher_suites == (0xC02B, 0xC02F)


def test_one_list_found_is_certain_two_are_not() -> None:
    one = rejection(["supported_groups"], HELLO, None)
    assert one is not None and one["certain"] is True
    assert one["message"] == "error:0A000065:SSL routines::no suitable key share"
    two = rejection(["versions", "cipher_suites"], HELLO, None)
    assert two is not None and two["certain"] is False and two["list"] == "versions"
    assert rejection([], HELLO, None) is None
