"""OpenSSH's arithmetic on algorithm lists: what ``Ciphers +aes128-cbc`` makes of a default list.

sshd_config and ``ssh -o`` values for ``KexAlgorithms``, ``Ciphers``, ``MACs`` and
``HostKeyAlgorithms`` are not lists but edits of the built-in one, and users (and what-if
predictions) get them wrong in the same places: ``-`` takes patterns but ``+`` and a plain
list of ciphers do not, a plain list is filtered through what the binary can do, and
duplicates vanish. This module follows openssh-portable (commit 0ef0f5a8) line by line:

- kex-names.c ``kex_assemble_names``: an empty value keeps the default; ``+`` appends
  (``kex_names_cat``, no duplicates), ``^`` prepends, ``-`` filters the default with
  ``match_filter_denylist`` and is done; otherwise each comma-separated pattern of the
  result is expanded against every name the binary knows (``match_filter_allowlist``), in
  that table's order, and an empty result is an error.
- match.c ``match_pattern`` (``*`` any run, ``?`` one character), ``match_pattern_list``
  (``!`` negates; a negative match wins), ``filter_list``.
- servconf.c / readconf.c: before assembling, a value not starting with ``-`` is checked
  name by name: ciphers_valid, mac_valid and kex_names_valid take exact names only ("Bad
  SSH2 cipher spec 'aes*'."), sshkey_names_valid2 accepts a pattern that matches some key
  type ("Bad key types '...'.").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

Keyword = Literal["KexAlgorithms", "Ciphers", "MACs", "HostKeyAlgorithms"]
KEYWORDS: tuple[Keyword, ...] = ("KexAlgorithms", "Ciphers", "MACs", "HostKeyAlgorithms")

#: servconf.c and readconf.c: the line each keyword's validity check prints (``%s`` = value).
BAD_VALUE: dict[Keyword, dict[str, str]] = {
    "KexAlgorithms": {
        "server": "Bad SSH2 KexAlgorithms '{}'.",
        "client": "Bad SSH2 KexAlgorithms '{}'.",
    },
    "Ciphers": {"server": "Bad SSH2 cipher spec '{}'.", "client": "Bad SSH2 cipher spec '{}'."},
    "MACs": {"server": "Bad SSH2 mac spec '{}'.", "client": "Bad SSH2 MAC spec '{}'."},
    "HostKeyAlgorithms": {"server": "Bad key types '{}'.", "client": "Bad key types '{}'."},
}
#: match.c match_pattern_list copies each sub-pattern into char sub[1024]: longer never matches.
MAX_SUBPATTERN = 1023


class ListError(ValueError):
    """A value OpenSSH refuses; the message is one line, in OpenSSH's words where it has some."""


@lru_cache(maxsize=512)
def _pattern(pattern: str) -> re.Pattern[str]:
    """A match.c pattern as a regex: ``*`` and ``?`` are wild, everything else is literal."""
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(body, re.DOTALL)


def match_pattern(name: str, pattern: str) -> bool:
    """match.c ``match_pattern``: the whole of `name` against `pattern` (``*``, ``?``)."""
    return _pattern(pattern).fullmatch(name) is not None


def match_pattern_list(name: str, patterns: str) -> int:
    """match.c ``match_pattern_list``: 1 a positive match, -1 a negated one (it wins), 0 none."""
    positive = 0
    for item in patterns.split(","):
        negated = item.startswith("!")
        sub = item[1:] if negated else item
        if len(sub) > MAX_SUBPATTERN:
            return 0
        if match_pattern(name, sub):
            if negated:
                return -1
            positive = 1
    return positive


def filter_list(proposal: Sequence[str], patterns: str, *, denylist: bool) -> tuple[str, ...]:
    """match.c ``filter_list``: keep the names the pattern list matches (allow) or does not (deny)."""
    kept = []
    for name in proposal:
        found = match_pattern_list(name, patterns)
        if (denylist and found != 1) or (not denylist and found == 1):
            kept.append(name)
    return tuple(kept)


def names_cat(first: Sequence[str], second: Iterable[str]) -> tuple[str, ...]:
    """kex-names.c ``kex_names_cat``: `first` then each name of `second` not already there.

    kex_names_cat stops `second` at its first empty element, as strsep's loop does.
    """
    out = list(first)
    for name in second:
        if not name:
            break
        if name not in out:
            out.append(name)
    return tuple(out)


def _split(text: str) -> list[str]:
    return text.split(",")


def assemble_names(value: str, default: Sequence[str], known: Sequence[str]) -> tuple[str, ...]:
    """kex-names.c ``kex_assemble_names``: the list `value` makes of `default`.

    `known` is every name the binary has, in its own table's order (``all`` in OpenSSH):
    patterns expand in that order, and a plain name it lacks is dropped. Raises ListError
    when nothing is left or a pattern is negated, as OpenSSH then refuses to start.
    """
    if not value:
        return tuple(default)
    if value[0] == "-":
        return filter_list(default, value[1:], denylist=True)
    if value[0] == "+":
        listed: tuple[str, ...] = names_cat(default, _split(value[1:]))
    elif value[0] == "^":
        listed = names_cat(_split(value[1:]), default)
    else:
        listed = tuple(_split(value))
    out: tuple[str, ...] = ()
    for pattern in listed:
        if pattern.startswith("!"):
            raise ListError(f"negated names are not allowed here: {pattern!r}")
        out = names_cat(out, filter_list(known, pattern, denylist=False))
    if not out:
        raise ListError(f"{value!r} leaves no algorithm")
    return out


def bad_names(keyword: Keyword, value: str, known: Sequence[str]) -> tuple[str, ...]:
    """The names of `value` OpenSSH's validity check refuses for `keyword` (empty: it passes).

    A ``-`` value is never checked. Kex, cipher and MAC names must be exact names the binary
    has; host key names may be patterns that match one of its key types.
    """
    if not value or value[0] == "-":
        return ()
    body = value[1:] if value[0] in "+^" else value
    known_set = frozenset(known)
    bad = []
    for name in body.split(","):
        if not name:
            break
        if name in known_set:
            continue
        if keyword == "HostKeyAlgorithms" and any(match_pattern_list(k, name) != 0 for k in known):
            continue
        bad.append(name)
    return tuple(bad)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigLine:
    """One ``Keyword value`` line (sshd_config) or ``-oKeyword=value`` option (ssh)."""

    keyword: Keyword
    value: str

    def __str__(self) -> str:
        return f"{self.keyword} {self.value}"


_LINE = re.compile(r"^\s*(?:-o\s*)?([A-Za-z]+)\s*(?:=\s*|\s+)(\S+)\s*$")


def parse_line(text: str) -> ConfigLine:
    """``KexAlgorithms -ssh-rsa``, ``MACs=hmac-sha2-256`` or ``-oCiphers=aes128-ctr``.

    Keywords are case-insensitive as in sshd_config; other keywords do not change a KEXINIT
    list kexproxy predicts and are refused.
    """
    found = _LINE.match(text)
    if found is None:
        raise ListError(f"{text!r}: expected 'Keyword value', e.g. 'Ciphers -aes128-cbc'")
    word = found.group(1).lower()
    for keyword in KEYWORDS:
        if keyword.lower() == word:
            return ConfigLine(keyword=keyword, value=found.group(2))
    raise ListError(
        f"{found.group(1)!r} is not one of {', '.join(KEYWORDS)} (the keywords a what-if changes)"
    )
