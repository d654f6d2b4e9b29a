"""RFC 4251 readers: each read is bounds-checked and names the field when it does not fit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexproxy.core.codec import Cursor, DecodeError, decode_text, split_name_list
from tests.builders import mpint, name_list, string, uint32


def test_reads_advance_the_position() -> None:
    data = b"\x01" + uint32(0xDEADBEEF) + string(b"abc") + b"\x00" + b"tail"
    cursor = Cursor(data)
    assert cursor.byte("b") == 1
    assert cursor.uint32("u") == 0xDEADBEEF
    assert cursor.position == 5
    assert cursor.string("s") == b"abc"
    assert cursor.boolean("flag") is False
    assert cursor.remaining == 4
    assert cursor.rest() == b"tail"
    assert cursor.remaining == 0
    assert cursor.rest() == b""


def test_boolean_is_any_nonzero_byte() -> None:
    assert Cursor(b"\x02").boolean("x") is True
    assert Cursor(b"\xff").boolean("x") is True


def test_a_window_never_reads_past_its_end() -> None:
    data = b"XX" + uint32(3) + b"abcdef"
    cursor = Cursor(data, 2, 8)
    assert cursor.remaining == 6
    with pytest.raises(DecodeError, match=r"^name: length 3 exceeds the 2 bytes left$"):
        cursor.string("name")
    cursor = Cursor(data, 2, 8)
    cursor.uint32("len")
    assert cursor.take(2, "two") == b"ab"
    with pytest.raises(DecodeError, match=r"^more: needs 1 bytes, 0 left$"):
        cursor.take(1, "more")
    with pytest.raises(DecodeError, match=r"^b: needs 1 byte, 0 left$"):
        cursor.byte("b")
    assert cursor.rest() == b""


@pytest.mark.parametrize(
    ("data", "read", "message"),
    [
        (b"\x00\x00", "uint32", "u: needs 4 bytes, 2 left"),
        (b"", "byte", "u: needs 1 byte, 0 left"),
        (b"", "boolean", "u: needs 1 byte, 0 left"),
        (b"\x00\x00\x00", "string", "u length: needs 4 bytes, 3 left"),
        (uint32(5) + b"abcd", "string", "u: length 5 exceeds the 4 bytes left"),
        (uint32(0xFFFFFFFF), "mpint", "u: length 4294967295 exceeds the 0 bytes left"),
        (uint32(9) + b"x", "name_list", "u: length 9 exceeds the 1 bytes left"),
    ],
)
def test_short_reads_raise_decode_error_with_the_field(
    data: bytes, read: str, message: str
) -> None:
    cursor = Cursor(data)
    with pytest.raises(DecodeError) as info:
        getattr(cursor, read)("u")
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_take_refuses_a_negative_count() -> None:
    with pytest.raises(DecodeError, match="needs -1 bytes"):
        Cursor(b"abc").take(-1, "neg")


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (0, b""),
        (0x9A378F9B2E332A7, b"\x09\xa3\x78\xf9\xb2\xe3\x32\xa7"),
        (0x80, b"\x00\x80"),
        (-0x1234, b"\xed\xcc"),
        (-0xDEADBEEF, b"\xff\x21\x52\x41\x11"),
    ],
)
def test_mpint_follows_rfc_4251_examples(value: int, wire: bytes) -> None:
    # The examples of RFC 4251 section 5, read back; the builder writes the same bytes.
    assert mpint(value) == uint32(len(wire)) + wire
    assert Cursor(uint32(len(wire)) + wire).mpint("m") == value


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(2**600), max_value=2**600))
def test_mpint_round_trips(value: int) -> None:
    assert Cursor(mpint(value)).mpint("m") == value


def test_name_list_decodes_without_losing_bytes() -> None:
    assert Cursor(name_list(["aes128-ctr", "aes256-ctr"])).name_list("n") == "aes128-ctr,aes256-ctr"
    assert Cursor(string(b"caf\xc3\xa9,\xff")).name_list("n") == "caf\u00e9,\\xff"


def test_decode_text() -> None:
    assert decode_text(b"plain") == "plain"
    assert decode_text("é".encode()) == "é"
    assert decode_text(b"\x80\xfe") == "\\x80\\xfe"
    assert decode_text(b"\x1b[0m") == "\x1b[0m"  # control bytes are kept: textsafe shows them


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ("", ()),
        ("a", ("a",)),
        ("a,b", ("a", "b")),
        ("a,,b", ("a", "", "b")),
        (",", ("", "")),
    ],
)
def test_split_name_list(raw: str, names: tuple[str, ...]) -> None:
    assert split_name_list(raw) == names
