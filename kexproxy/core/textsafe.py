"""Untrusted text made safe to show: control characters become visible escapes.

Banners, name-lists and DISCONNECT descriptions come from strangers; an ESC byte in one
must never reach a terminal as an escape sequence. Markup escaping (Rich, Textual) is the
job of the display layer; this removes what no display should ever interpret.
"""

from __future__ import annotations

import re

#: C0 and C1 controls, and the invisible characters that reorder or hide text: the
#: Arabic letter mark, zero-width space and joiners, LRM/RLM, line and paragraph separators,
#: bidi embeddings, overrides and isolates, the word joiner family, and the BOM.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str | None) -> str:
    """`text` with controls and invisible reordering characters shown as ``\\xNN`` / ``\\uNNNN``."""
    if not text:
        return ""
    return _UNSAFE.sub(_escape, text)
