"""The capability files as written (with the keys the loader does not keep) and their step arithmetic.

The loader keeps what recipes need today; the files also hold facts a reviewer must be able
to check (PuTTY's whole setting strings and WARN split, the markers each release sends), so
tests read those straight from the TOML. The two fill functions state, in code, what a step
template's placeholders mean, so a test can apply a step exactly as a user would.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from kexproxy.core.catalogue import version_key

#: PuTTY's pseudo-token: everything after it in a setting makes PuTTY ask before using it.
PUTTY_WARN = "WARN"


def raw_file(key: str) -> dict[str, Any]:
    """The parsed TOML of ``implementations/<key>.toml``, every key kept."""
    folder = resources.files("kexproxy.core.data").joinpath("implementations")
    data: dict[str, Any] = tomllib.loads(folder.joinpath(f"{key}.toml").read_text("utf-8"))
    return data


def raw_release(key: str, version: str) -> dict[str, Any]:
    """The ``[[release]]`` block that describes `version`: the newest not after it."""
    blocks = sorted(raw_file(key)["release"], key=lambda r: version_key(r["since"]))
    chosen: list[dict[str, Any]] = [
        r for r in blocks if version_key(r["since"]) <= version_key(version)
    ]
    if not chosen:
        raise LookupError(f"{key}.toml has no release block for {version}")
    return chosen[-1]


def markers_due(key: str, role: str, version: str) -> set[str]:
    """The markers a release sends as `role`, by the ``[markers.<role>]`` table's releases."""
    table: Mapping[str, str] = raw_file(key).get("markers", {}).get(role, {})
    return {m for m, since in table.items() if version_key(since) <= version_key(version)}


def putty_setting(setting: str, tokens: Mapping[str, str], add: Sequence[str]) -> str:
    """``{tokens}``: `setting` with the token of each added name moved just above WARN.

    A token already above WARN stays where it is, so PuTTY's preference order and the
    warnings it gave before are otherwise unchanged.
    """
    order = setting.split(",")
    for name in add:
        token = tokens[name]
        if order.index(token) > order.index(PUTTY_WARN):
            order.remove(token)
            order.insert(order.index(PUTTY_WARN), token)
    return ",".join(order)


def fill(template: str, *, names: Sequence[str], add: Sequence[str], tokens: str = "") -> str:
    """A step template with its list placeholders filled as the recipe writer fills them."""
    return (
        template.replace("{names}", ",".join(dict.fromkeys([*names, *add])))
        .replace("{add}", ",".join(add))
        .replace("{tokens}", tokens)
    )
