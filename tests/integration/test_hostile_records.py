"""Records of hostile peers validate against the record's JSON Schema, whatever they sent.

A peer controls every name in its KEXINIT, its banner and its DISCONNECT text; the record
keeps them (the rejection message as OpenSSH prints it, raw CR and LF included) and must
still be a valid `kexproxy/session/1` record. `Transcript` checks every record it returns
against the schema, so each test here fails on the first record that does not validate.
"""

from __future__ import annotations

from typing import Any, Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.builders import (
    Offer,
    Transcript,
    boolean,
    client_offer,
    disconnect,
    ident,
    kexinit,
    packet,
    server_offer,
    string,
    uint32,
)

#: One name-list per KEXINIT field; index 2 is the client-to-server ciphers.
LISTS = 10


def raw_kexinit(lists: list[bytes]) -> bytes:
    """A KEXINIT whose lists are arbitrary bytes: invalid UTF-8 and controls included."""
    return packet(
        bytes([20]) + bytes(16) + b"".join(map(string, lists)) + boolean(False) + uint32(0)
    )


def offer_lists(offer: Offer) -> list[bytes]:
    return [raw.encode() for raw in offer.lists()]


def run_handshake(hostile: Literal["client", "server"], which: int, names: bytes) -> dict[str, Any]:
    """Both first flights, one list of the `hostile` side replaced by `names`; the record."""
    mine = offer_lists(client_offer() if hostile == "client" else server_offer())
    mine[which] = names
    theirs = kexinit(server_offer() if hostile == "client" else client_offer())
    t = Transcript()
    if hostile == "client":
        t.client(ident("OpenSSH_9.6") + raw_kexinit(mine)).server(ident("OpenSSH_9.6") + theirs)
    else:
        t.server(ident("OpenSSH_9.6") + raw_kexinit(mine)).client(ident("OpenSSH_9.6") + theirs)
    t.record()
    t.server(disconnect(3, "bye\r\nnow\x1b[2J")).close("server")
    return t.finish()


def test_a_name_with_cr_and_lf_stays_raw_in_the_message_and_validates() -> None:
    """Issue 9 defect 4: ssh prints CR and LF of a peer's name as they are (VIS_SAFE)."""
    record = run_handshake("server", 3, b"evil\r\nname,x\x1b[31m")
    message = record["rejections"]["client"]["message"]
    assert message.endswith("Their offer: evil\r\nname,x\\033[31m")
    assert record["rejections"]["client"]["their_offer"] == ["evil\r\nname", "x\x1b[31m"]


def test_names_that_fill_the_largest_packet_validate() -> None:
    """Issue 9's 20,000-name KEXINIT: the largest packet OpenSSH accepts (256 KiB) full of
    names, each of which the rejection message quotes until its 1021 characters run out."""
    names = b",".join(b"cipher%05d@example.com\r\n" % i for i in range(10_000))
    record = run_handshake("client", 2, names)
    message = record["rejections"]["server"]["message"]
    assert len(message) == 1021
    assert "cipher00000@example.com\r\n,cipher00001" in message


def test_hostile_banners_validate() -> None:
    t = Transcript()
    rlo = "\u202e".encode()
    t.client(b"SSH-2.0-\x1b]0;owned\x07\xff\xfe\x00" + rlo + b"\r\n")
    t.server(b"\xef\xbb\xbfSSH-2.0-" + b"x" * 7000 + b"\r\n")
    t.record()
    t.close("client", "rst")
    t.finish()


@settings(max_examples=300, deadline=None)
@given(
    hostile=st.sampled_from(["client", "server"]),
    which=st.integers(0, LISTS - 1),
    names=st.lists(
        st.one_of(
            st.binary(min_size=1, max_size=30),
            st.text(min_size=1, max_size=30).map(str.encode),
            st.sampled_from([b"\r", b"\n", b"\r\n", b"\\", b"\x00", b"\x7f", b"\xe2\x80\xae"]),
        ),
        max_size=8,
    ).map(b",".join),
)
def test_any_offer_gives_a_valid_record(
    hostile: Literal["client", "server"], which: int, names: bytes
) -> None:
    run_handshake(hostile, which, names)


@settings(max_examples=100, deadline=None)
@given(code=st.integers(0, (1 << 32) - 1), text=st.binary(max_size=300))
def test_any_disconnect_gives_a_valid_record(code: int, text: bytes) -> None:
    t = Transcript().client(ident("OpenSSH_9.6")).server(ident("OpenSSH_9.6"))
    t.server(packet(bytes([1]) + uint32(code) + string(text) + string(b"\xff")))
    t.close("server")
    t.finish()
