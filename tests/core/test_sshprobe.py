"""The SSH probe's bytes, read back by kexproxy's own parser, and the reading of a server's answers."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from kexproxy.core import sshprobe
from kexproxy.core.catalogue import catalogue
from kexproxy.core.events import Disconnect, Identification, KexInit, KexInitReceived, KexMessage
from kexproxy.core.hostkey import fingerprint
from kexproxy.core.lists import RFC_NAMES
from kexproxy.core.parser import DirectionParser
from kexproxy.core.sshprobe import PeerReader
from tests.builders import (
    Offer,
    disconnect,
    ecdh_reply,
    host_key,
    ident,
    kexinit,
    offer,
    server_offer,
)

COOKIE = bytes(range(16))


def _events(data: bytes, *, bytewise: bool = False) -> list[object]:
    parser = DirectionParser()
    if not bytewise:
        return list(parser.receive_data(data))
    out: list[object] = []
    for i in range(len(data)):
        out += parser.receive_data(data[i : i + 1])
    return out


@pytest.mark.parametrize("bytewise", [False, True])
def test_the_opening_reads_back_as_the_banner_and_the_full_offer(bytewise: bool) -> None:
    full = sshprobe.full_offer(catalogue())
    wire = sshprobe.banner_bytes() + sshprobe.packet(sshprobe.kexinit_payload(full, COOKIE))
    events = _events(wire, bytewise=bytewise)
    assert isinstance(events[0], Identification)
    assert events[0].line == sshprobe.PROBE_BANNER and events[0].line_ending == "CRLF"
    assert isinstance(events[1], KexInitReceived) and len(events) == 2  # no padding anomaly
    assert events[1].kexinit == sshprobe.kexinit_of(full, COOKIE)


def test_the_full_offer_holds_every_exact_catalogue_name_in_its_list() -> None:
    cat = catalogue()
    full = dict(zip(RFC_NAMES, sshprobe.full_offer(cat), strict=True))
    for algorithm in cat:
        if algorithm.prefix or algorithm.category == "marker":
            continue
        for rfc, names in full.items():
            if cat.lookup_in_list(algorithm.name, rfc) is algorithm:
                assert algorithm.name in names, (algorithm.name, rfc)
    assert full["kex_algorithms"][-2:] == ("ext-info-c", "kex-strict-c-v00@openssh.com")
    assert full["languages_client_to_server"] == () == full["languages_server_to_client"]
    # A modern client's order first: the newest OpenSSH default leads the kex list.
    latest = cat.history.releases[-1]
    first_kex = cat.history.defaults(latest, "client", "kex")[0]
    assert full["kex_algorithms"][0] == first_kex
    for names in full.values():
        assert len(names) == len(set(names))


def test_a_host_key_offer_names_one_kex_and_one_host_key_algorithm() -> None:
    full = sshprobe.full_offer(catalogue())
    lists = sshprobe.host_key_offer(full, "curve25519-sha256", "rsa-sha2-512")
    assert lists[0] == ("curve25519-sha256",) and lists[1] == ("rsa-sha2-512",)
    assert lists[2:] == full[2:]


def test_packets_follow_rfc4253_padding_for_every_payload_length() -> None:
    for n in range(1, 40):
        wire = sshprobe.packet(bytes([2]) + bytes(n - 1))
        assert len(wire) % 8 == 0
        padding = wire[4]
        assert padding >= 4 and int.from_bytes(wire[:4], "big") == len(wire) - 4


def test_disconnect_is_reason_11_by_application() -> None:
    events = _events(ident() + sshprobe.disconnect_bytes())
    assert events[-1] == Disconnect(
        reason_code=11, description=sshprobe.GOODBYE, offset=len(ident())
    )


def test_choose_kex_takes_the_probes_preference_among_the_servers_names() -> None:
    assert sshprobe.choose_kex(["ecdh-sha2-nistp384", "curve25519-sha256"]) == "curve25519-sha256"
    assert sshprobe.choose_kex(["diffie-hellman-group14-sha1"]) == "diffie-hellman-group14-sha1"
    assert (
        sshprobe.choose_kex(["diffie-hellman-group-exchange-sha256", "mlkem768x25519-sha256"])
        is None
    )


@pytest.mark.parametrize("kex", sshprobe.PROBE_KEX)
def test_each_kex_init_carries_a_valid_fresh_public_value(kex: str) -> None:
    first = sshprobe.kex_init_payload(kex)
    second = sshprobe.kex_init_payload(kex)
    assert first[0] == 30 and first != second  # a fresh ephemeral key each time
    length = int.from_bytes(first[1:5], "big")
    value = first[5 : 5 + length]
    assert len(first) == 5 + length
    if kex.startswith("curve25519"):
        assert length == 32
    elif kex == "curve448-sha512":
        assert length == 56
    elif kex.startswith("ecdh-sha2-"):
        curve = {"256": ec.SECP256R1(), "384": ec.SECP384R1(), "521": ec.SECP521R1()}[kex[-3:]]
        ec.EllipticCurvePublicKey.from_encoded_point(curve, value)  # raises if off the curve
    else:
        e = int.from_bytes(value, "big", signed=True)
        assert 1 < e < sshprobe.GROUP14_P - 1  # RFC 4253 8: 1 < e < p-1


def test_an_unknown_kex_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot start"):
        sshprobe.kex_init_payload("diffie-hellman-group-exchange-sha256")


def _server_answer(key_kind: str = "ed25519") -> tuple[bytes, bytes]:
    key = host_key(key_kind)  # type: ignore[arg-type]
    return ident("OpenSSH_9.6") + kexinit(server_offer()) + ecdh_reply(key.blob), key.blob


@pytest.mark.parametrize("bytewise", [False, True])
def test_the_reader_takes_banner_kexinit_and_reply_and_host_key_of_decodes_it(
    bytewise: bool,
) -> None:
    wire, blob = _server_answer("ecdsa")
    reader = PeerReader()
    chunks = [wire[i : i + 1] for i in range(len(wire))] if bytewise else [wire]
    for chunk in chunks:
        assert not reader.done(want_reply=True)
        reader.receive_data(chunk)
    assert reader.done(want_reply=True)
    assert reader.identification is not None and reader.identification.software == "OpenSSH_9.6"
    ours = sshprobe.kexinit_of(sshprobe.full_offer(catalogue()), COOKIE)
    key, notes = sshprobe.host_key_of("curve25519-sha256", ours, reader)
    assert key is not None and notes == ()
    assert key["sha256"] == fingerprint(blob) and key["key_type"] == "ecdsa" and key["bits"] == 256


def test_the_reader_is_done_without_a_reply_when_none_is_wanted() -> None:
    reader = PeerReader()
    reader.receive_data(ident() + kexinit(server_offer()))
    assert reader.done(want_reply=False) and not reader.done(want_reply=True)


@pytest.mark.parametrize(
    ("wire", "words"),
    [
        (b"\x00\x01\x02garbage", "binary data before any SSH identification"),
        (ident() + b"\x7f\xff\xff\xff\x00", "bad packet length"),
        (ident() + b"Protocol mismatch.\r\n", "text instead of packets"),
        (ident() + disconnect(3, "no way"), "disconnected (reason 3): no way"),
    ],
)
def test_hostile_or_refusing_answers_end_the_reader_with_one_reason(
    wire: bytes, words: str
) -> None:
    reader = PeerReader()
    reader.receive_data(wire)
    if not reader.done(want_reply=True):
        reader.receive_eof()
    assert reader.done(want_reply=True)
    assert words in reader.why_not()
    key, notes = sshprobe.host_key_of(
        "curve25519-sha256", sshprobe.kexinit_of([()] * 10, COOKIE), reader
    )
    assert key is None and words in notes[0]


def test_silence_is_no_identification() -> None:
    reader = PeerReader()
    reader.receive_eof()
    assert reader.why_not() == "the server sent no SSH identification line"


def test_a_reply_from_another_family_is_still_read_as_a_kex_message() -> None:
    reader = PeerReader()
    wire, _blob = _server_answer()
    reader.receive_data(wire)
    assert reader.reply is not None and reader.reply[0] == sshprobe.REPLY
    assert isinstance(DirectionParser().receive_data(wire)[-1], KexMessage)


def _kexinit_with(lists: Offer) -> KexInit:
    reader = PeerReader()
    reader.receive_data(ident() + kexinit(lists))
    assert reader.kexinit is not None
    return reader.kexinit


def test_terrapin_is_exposed_only_for_an_affected_mode_without_strict_kex() -> None:
    cat = catalogue()
    strict = sshprobe.terrapin(
        _kexinit_with(server_offer(ciphers=["chacha20-poly1305@openssh.com"])), cat
    )
    assert strict["exposed"] is False and strict["strict_kex"] is True
    assert strict["affected_modes"] == ["chacha20-poly1305@openssh.com"]
    cbc_etm = offer(
        kex=["curve25519-sha256"], ciphers=["aes128-cbc"], macs=["hmac-sha2-256-etm@openssh.com"]
    )
    exposed = sshprobe.terrapin(_kexinit_with(cbc_etm), cat)
    assert exposed["exposed"] is True and "aes128-cbc" in exposed["affected_modes"][0]
    cbc_plain = offer(kex=["curve25519-sha256"], ciphers=["aes128-cbc"], macs=["hmac-sha2-256"])
    assert sshprobe.terrapin(_kexinit_with(cbc_plain), cat)["exposed"] is False
    safe = sshprobe.terrapin(_kexinit_with(server_offer(ciphers=["aes128-ctr"])), cat)
    assert safe["exposed"] is False and safe["affected_modes"] == []


def test_the_report_grades_each_name_and_says_the_markers() -> None:
    cat = catalogue()
    reader = PeerReader()
    reader.receive_data(ident("OpenSSH_9.6") + kexinit(server_offer(macs=["hmac-sha1"])))
    out = sshprobe.report(
        target="127.0.0.1:22",
        first=reader,
        host_keys=[],
        handshakes=1,
        notes=["n"],
        cat=cat,
    )
    assert out["protocol"] == "ssh" and out["banner"] == "SSH-2.0-OpenSSH_9.6"
    assert list(out["kexinit"]) == list(RFC_NAMES)
    assert out["markers"]["strict_kex"] is True and out["markers"]["ext_info"] is True
    assert out["grades"]["lists"]["mac_algorithms_client_to_server"] == {"hmac-sha1": "weak"}
    assert out["grades"]["weakest_offered"] == "weak"
    assert out["version_hint"]["text"]
    empty = sshprobe.report(
        target="t", first=PeerReader(), host_keys=[], handshakes=1, notes=[], cat=cat
    )
    assert empty["kexinit"] is None and empty["grades"] is None and empty["banner"] is None


def test_the_listen_offer_is_an_ordinary_server_offer() -> None:
    cat = catalogue()
    lists = dict(zip(RFC_NAMES, sshprobe.listen_offer(cat), strict=True))
    assert lists["kex_algorithms"][-2:] == ("ext-info-s", "kex-strict-s-v00@openssh.com")
    assert all(len(names) < 50 for names in lists.values())  # under Dropbear's limit


def test_a_protocol_1_server_ends_the_conversation() -> None:
    reader = PeerReader()
    reader.receive_data(ident(proto="1.5"))
    assert reader.done(want_reply=False)
    assert reader.why_not() == "the server sent no SSH_MSG_KEXINIT"


def test_a_server_that_stops_after_its_kexinit_sent_no_reply() -> None:
    reader = PeerReader()
    reader.receive_data(ident() + kexinit(server_offer()))
    reader.receive_eof()
    assert reader.done(want_reply=True)
    assert reader.why_not() == "the server sent no key exchange reply"


def test_the_report_carries_what_a_client_offering_everything_would_get() -> None:
    reader = PeerReader()
    reader.receive_data(ident() + kexinit(server_offer()))
    diagnosis = {
        "grade": "good",
        "algorithms": [{"field": "kex", "name": "curve25519-sha256", "grade": "good", "x": 1}],
        "reasons": [],
        "post_quantum": {"post_quantum": False},
    }
    out = sshprobe.report(
        target="t",
        first=reader,
        host_keys=[],
        handshakes=1,
        notes=[],
        cat=catalogue(),
        diagnosis=diagnosis,
    )
    assert out["grades"]["best_client"] == {
        "grade": "good",
        "negotiated": [{"field": "kex", "name": "curve25519-sha256", "grade": "good"}],
        "reasons": [],
        "post_quantum": {"post_quantum": False},
    }


def test_a_kexinit_needs_ten_lists_and_a_16_byte_cookie() -> None:
    with pytest.raises(ValueError, match="ten name-lists"):
        sshprobe.kexinit_payload([()] * 9, COOKIE)
    with pytest.raises(ValueError, match="16-byte cookie"):
        sshprobe.kexinit_payload([()] * 10, bytes(15))
