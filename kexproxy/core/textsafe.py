"""Untrusted text made safe to show: control characters become visible escapes.

Banners, name-lists and DISCONNECT descriptions come from strangers; an ESC byte in one
must never reach a terminal as an escape sequence. Markup escaping (Rich, Textual) is the
job of the display layer; this removes what no display should ever interpret.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str | None) -> str:
    """`text` with C0/C1 controls and bidi overrides shown as ``\\xNN`` / ``\\uNNNN``."""
    if not text:
        return ""
    return _UNSAFE.sub(_escape, text)
