"""Text from strangers reaches no terminal as control sequences."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexproxy.core.textsafe import printable


@pytest.mark.parametrize(
    "text",
    [
        "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3",
        "curve25519-sha256,ext-info-c",
        "Ünïcödé 日本語 émoji 🙂",
        "a\\x1b stays a backslash sequence",
    ],
)
def test_normal_text_is_untouched(text: str) -> None:
    assert printable(text) == text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[2J\x1b]0;owned\x07", "\\x1b[2J\\x1b]0;owned\\x07"),
        ("a\x00b", "a\\x00b"),
        ("line\r\nnext\t", "line\\x0d\\x0anext\\x09"),
        ("del\x7f", "del\\x7f"),
        ("c1 \x85 \x9b31m \x9d", "c1 \\x85 \\x9b31m \\x9d"),
        ("\u202eevil\u202c", "\\u202eevil\\u202c"),
        ("\u202a\u202b\u202d", "\\u202a\\u202b\\u202d"),
        ("\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"),
        ("sep\u2028\u2029", "sep\\u2028\\u2029"),
    ],
)
def test_controls_and_bidi_overrides_are_escaped(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_nothing_gives_the_empty_string() -> None:
    assert printable(None) == ""
    assert printable("") == ""


def _dangerous(ch: str) -> bool:
    code = ord(ch)
    return (
        code < 0x20
        or 0x7F <= code <= 0x9F
        or code in (0x2028, 0x2029)
        or (0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069)
    )


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_no_dangerous_character_survives(text: str) -> None:
    shown = printable(text)
    assert not any(_dangerous(ch) for ch in shown)
    if not any(_dangerous(ch) for ch in text):
        assert shown == text
