"""JA3 / JA3S held against tshark 4.0's own, JA4 against FoxIO's specification and published values."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kexproxy.core.tls.fingerprints import ja3, ja3s, ja4, ja4_parts
from kexproxy.core.tls.hello import ClientHello, ServerHello
from tests.core.tls.tshark_hellos import (
    client_hello,
    client_hello_record,
    decoded_hellos,
    server_hello,
    server_hello_record,
    write_pcap,
)

PUBLIC = Path("/work/shared/captures/public")
TLS_CAPTURES = [
    *sorted(PUBLIC.glob("zeek-tls-*.pcap")),
    PUBLIC / "zeek-ssl-and-ssh-using-sslh.pcap",
]
FOXIO = json.loads((Path(__file__).parent / "data" / "ja4_foxio.json").read_text())

GREASE = 0x0A0A


def _fingerprint(hello: ClientHello | ServerHello) -> tuple[str, str] | None:
    return ja3(hello) if isinstance(hello, ClientHello) else ja3s(hello)


# -- JA3 / JA3S: tshark is the reference --------------------------------------------------


@pytest.mark.parametrize("capture", TLS_CAPTURES, ids=lambda p: p.name)
def test_ja3_and_ja3s_equal_tsharks_on_every_hello_of_the_public_captures(capture: Path) -> None:
    if not capture.exists():
        pytest.skip(f"{capture} is not on this machine")
    hellos = decoded_hellos(capture)
    assert hellos, f"tshark found no hello in {capture.name}"
    for decoded in hellos:
        assert _fingerprint(decoded.hello) == decoded.tshark_ja3, f"frame {decoded.frame}"


def test_an_sslv2_client_hello_has_no_ja3_as_tshark_gives_it_none() -> None:
    capture = PUBLIC / "zeek-tls-ssl-v2.pcap"
    if not capture.exists():
        pytest.skip(f"{capture} is not on this machine")
    sslv2 = [d for d in decoded_hellos(capture) if isinstance(d.hello, ClientHello)]
    assert [(d.hello.sslv2, d.tshark_ja3) for d in sslv2] == [(True, None)]
    assert ja3(sslv2[0].hello) is None


#: Hellos no public capture holds, with the JA3 / JA3S string tshark 4.0.17 prints for each.
EDGE_CLIENT_HELLOS = {
    "grease first, middle and last everywhere": (
        client_hello(
            cipher_suites=(GREASE, 0x002F, 0xFAFA),
            extensions=(0x1A1A, 10, GREASE, 11, 0x2A2A),
            supported_groups=(GREASE, 29, 0x3A3A, 23, 0x4A4A),
            ec_point_formats=(0,),
        ),
        "771,47,10-11,29-23,0",
    ),
    "grease look-alikes are kept": (
        client_hello(
            cipher_suites=(0x1A2A, 0x1301, 0x0A1A),
            extensions=(0x1A2A, 10, 11, 0x3AFA),
            supported_groups=(0x1A2A, 29),
            ec_point_formats=(0,),
        ),
        "771,6698-4865-2586,6698-10-11-15098,6698-29,0",
    ),
    "nothing but grease": (
        client_hello(
            cipher_suites=(GREASE,), extensions=(GREASE, 10, 11), supported_groups=(GREASE,)
        ),
        "771,,10-11,,",
    ),
    "point formats are never grease": (
        client_hello(extensions=(11,), ec_point_formats=(0x0A, 0x1A, 0xAA)),
        "771,4865,11,,10-26-170",
    ),
    "no groups or formats extension": (
        client_hello(cipher_suites=(0x2F,), extensions=(0,)),
        "771,47,0,,",
    ),
    "empty extension block": (client_hello(cipher_suites=(0x2F, 0x35)), "771,47-53,,,"),
    "ssl 3.0": (
        client_hello(
            version=0x0300,
            cipher_suites=(0x2F,),
            extensions=(11, 10),
            supported_groups=(29,),
            ec_point_formats=(2, 1, 0),
        ),
        "768,47,11-10,29,2-1-0",
    ),
}

EDGE_SERVER_HELLOS = {
    "grease first": (server_hello(extensions=(GREASE, 23)), "771,49199,23"),
    "grease middle and last": (server_hello(extensions=(23, GREASE, 0xFAFA)), "771,49199,23"),
    "no extensions": (server_hello(), "771,49199,"),
    "tls 1.3 keeps the legacy version": (
        server_hello(cipher_suite=0x1301, extensions=(43, 51)),
        "771,4865,43-51",
    ),
}


@pytest.mark.parametrize("case", list(EDGE_CLIENT_HELLOS))
def test_ja3_edge_cases_read_as_wireshark_4_writes_them(case: str) -> None:
    hello, expected = EDGE_CLIENT_HELLOS[case]
    assert ja3(hello) == (expected, hashlib.md5(expected.encode()).hexdigest())


@pytest.mark.parametrize("case", list(EDGE_SERVER_HELLOS))
def test_ja3s_edge_cases_read_as_wireshark_4_writes_them(case: str) -> None:
    hello, expected = EDGE_SERVER_HELLOS[case]
    assert ja3s(hello) == (expected, hashlib.md5(expected.encode()).hexdigest())


def test_the_edge_cases_are_what_tshark_itself_prints(tmp_path: Path) -> None:
    """The literal strings above are tshark's: each hello is written to a pcap and read back."""
    clients = [h for h, _ in EDGE_CLIENT_HELLOS.values()]
    servers = [h for h, _ in EDGE_SERVER_HELLOS.values()]
    records = [client_hello_record(h) for h in clients]
    records.append(
        client_hello_record(client_hello(cipher_suites=(0x2F,)), with_extension_block=False)
    )
    records += [server_hello_record(h) for h in servers]
    records.append(server_hello_record(server_hello(), with_extension_block=False))
    capture = tmp_path / "edges.pcap"
    write_pcap(capture, records)
    seen = [d.tshark_ja3 for d in decoded_hellos(capture)]
    ours = [ja3(h) for h in clients] + [ja3(client_hello(cipher_suites=(0x2F,)))]
    ours += [ja3s(h) for h in servers] + [ja3s(server_hello())]
    assert seen == ours


# -- JA4: FoxIO's specification and published values ---------------------------------------

#: technical_details/JA4.md's example (FoxIO-LLC/ja4 at 0e54bc8371de34df94a35f2442c05bda2e8b2034).
SPEC_CIPHERS = (0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8)
SPEC_CIPHERS += (0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035)
SPEC_EXTENSIONS = (0x001B, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002D, 0x000D)
SPEC_EXTENSIONS += (0x0005, 0x0023, 0x0012, 0x002B, 0xFF01, 0x000B, 0x000A, 0x0015)
SPEC_SIGALGS = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)


def spec_hello(**changes: Any) -> ClientHello:
    """JA4.md's example hello, with Chrome's GREASE in every list (JA4 must not see it)."""
    fields: dict[str, Any] = {
        "cipher_suites": (GREASE, *SPEC_CIPHERS),
        "extensions": (0x2A2A, *SPEC_EXTENSIONS, 0x3A3A),
        "supported_versions": (0x4A4A, 0x0304, 0x0303),
        "signature_algorithms": SPEC_SIGALGS,
        "alpn": ("h2", "http/1.1"),
        "server_name": "example.com",
    }
    fields.update(changes)
    return client_hello(**fields)


def test_ja4_of_the_specifications_example() -> None:
    assert ja4(spec_hello()) == "t13d1516h2_8daaf6152771_e5627efa2ab1"
    assert ja4_parts(spec_hello()) == (
        "t13d1516h2",
        "002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9",
        "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01"
        "_0403,0804,0401,0503,0805,0501,0806,0601",
    )


def test_ja4_without_signature_algorithms_hashes_the_extensions_alone() -> None:
    assert ja4(spec_hello(signature_algorithms=())).endswith("_6d807ffa2a79")


def test_ja4_ignores_grease_in_signature_algorithms_too() -> None:
    assert ja4(spec_hello(signature_algorithms=(GREASE, *SPEC_SIGALGS))) == ja4(spec_hello())


@pytest.mark.parametrize("entry", FOXIO["hellos"], ids=lambda e: f"{e['source']}#{e['stream']}")
def test_ja4_equals_foxios_published_value(entry: dict[str, Any]) -> None:
    hello = client_hello(
        version=entry["legacy_version"],
        cipher_suites=tuple(entry["cipher_suites"]),
        extensions=tuple(entry["extensions"]),
        supported_versions=tuple(entry["supported_versions"]),
        signature_algorithms=tuple(entry["signature_algorithms"]),
        alpn=tuple(entry["alpn"]),
        server_name=entry["server_name"],
    )
    assert ja4(hello) == entry["ja4"]
    assert "_".join(ja4_parts(hello)) == entry["ja4_r"]


@pytest.mark.parametrize(
    ("alpn", "expected"),
    [
        (("h2",), "h2"),
        (("http/1.1",), "h1"),
        (("h",), "hh"),
        (("",), "00"),
        ((), "00"),
        (("\xab",), "ab"),
        (("\xab\xcd",), "ad"),
        (("0\xab",), "3b"),
        (("01\xab\xcd",), "3d"),
        (("0\xab\xcd1",), "01"),
        (("/h2", "h2"), "22"),  # hex 2f6832: its first and last digits
    ],
)
def test_ja4_alpn_characters_follow_the_specification(alpn: tuple[str, ...], expected: str) -> None:
    assert ja4_parts(spec_hello(alpn=alpn))[0][-2:] == expected


@pytest.mark.parametrize(
    ("legacy", "supported", "expected"),
    [
        (0x0303, (GREASE, 0x0304, 0x0303), "13"),
        (0x0303, (0x0303, 0x0304), "13"),
        (0x0303, (GREASE, 0x0303), "12"),
        (0x0303, (), "12"),
        (0x0302, (), "11"),
        (0x0301, (), "10"),
        (0x0300, (), "s3"),
        (0x0002, (), "s2"),
        (0xFEFD, (), "d2"),
        (0x0303, (GREASE,), "12"),
        (0x7F10, (), "00"),
    ],
)
def test_ja4_version_is_the_highest_supported_version_else_the_legacy_one(
    legacy: int, supported: tuple[int, ...], expected: str
) -> None:
    hello = spec_hello(version=legacy, supported_versions=supported)
    assert ja4(hello)[1:3] == expected


def test_ja4_marks_a_hello_without_sni_and_counts_it_with_alpn() -> None:
    no_sni = spec_hello(extensions=tuple(e for e in SPEC_EXTENSIONS if e != 0), server_name=None)
    assert ja4(no_sni).startswith("t13i1515h2_8daaf6152771_")
    # SNI and ALPN are counted but not hashed: leaving SNI out changes nothing after the prefix
    assert ja4(no_sni).split("_")[1:] == ja4(spec_hello()).split("_")[1:]


def test_ja4_empty_lists_hash_to_zeros_and_counts_stop_at_99() -> None:
    bare = client_hello(cipher_suites=(), extensions=(0,))
    assert ja4(bare) == "t12d000100_000000000000_000000000000"
    many = client_hello(cipher_suites=tuple(range(1, 120)), extensions=tuple(range(20, 140)))
    assert ja4(many)[4:8] == "9999"


def test_ja4_names_the_transport_and_refuses_an_unknown_one() -> None:
    assert ja4(spec_hello(), transport="q").startswith("q13d")
    assert ja4(spec_hello(), transport="d").startswith("d13d")
    with pytest.raises(ValueError, match="transport"):
        ja4(spec_hello(), transport="x")


_U16 = st.integers(0, 0xFFFF)


_HELLOS = st.builds(
    client_hello,
    cipher_suites=st.lists(_U16, max_size=40).map(tuple),
    extensions=st.lists(_U16, max_size=40).map(tuple),
    supported_groups=st.lists(_U16, max_size=20).map(tuple),
    ec_point_formats=st.lists(st.integers(0, 255), max_size=5).map(tuple),
    alpn=st.lists(st.binary(max_size=8).map(lambda b: b.decode("latin-1")), max_size=3).map(tuple),
    supported_versions=st.lists(_U16, max_size=10).map(tuple),
    signature_algorithms=st.lists(_U16, max_size=20).map(tuple),
    sslv2=st.booleans(),
)


@given(_HELLOS)
def test_fingerprints_of_any_hello_are_well_formed(hello: ClientHello) -> None:
    pair = ja3(hello)
    if hello.sslv2:
        assert pair is None
    else:
        assert pair is not None
        assert pair[0].count(",") == 4
        assert pair[1] == hashlib.md5(pair[0].encode()).hexdigest()
    assert re.fullmatch(
        r"t(1[0-3]|s[23]|d[1-3]|00)[di]\d{4}[0-9a-zA-Z]{2}_[0-9a-f]{12}_[0-9a-f]{12}", ja4(hello)
    )
