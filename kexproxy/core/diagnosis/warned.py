"""When PuTTY gives up before its own KEXINIT: what it would choose is below its warning line.

PuTTY reads the server's KEXINIT before sending its own, and when the first key exchange,
host key or cipher it would choose sits below the WARN line of its settings it asks the
user; plink -batch (or a user who says no) abandons the connection there ("Cannot confirm a
weak crypto primitive in batch mode"), so the wire shows the server's offer and no client
KEXINIT. With the release's default settings from its capability file the choice can be
replayed, and the fix is either side's: move the token above WARN in PuTTY's settings, or
have the server offer something PuTTY does not warn about. Pure: reads the record and the
catalogues only.
"""

from __future__ import annotations

from dataclasses import dataclass

from kexproxy.core.catalogue import Catalogue, Category
from kexproxy.core.diagnosis.software import offered
from kexproxy.core.implementations import Peer
from kexproxy.core.lists import BY_FIELD, BY_RFC, KEX_ALGORITHMS, SERVER_HOST_KEY_ALGORITHMS
from kexproxy.core.record import SessionRecord

#: The lists PuTTY checks against its warning line, in the order it checks them
#: (ssh/transport2.c: kex, then host key, then each direction's cipher).
CHECKED: tuple[tuple[Category, str], ...] = (
    ("kex", KEX_ALGORITHMS),
    ("host_key", SERVER_HOST_KEY_ALGORITHMS),
    ("cipher", BY_FIELD["cipher_c2s"].rfc),
    ("cipher", BY_FIELD["cipher_s2c"].rfc),
)


@dataclass(frozen=True, slots=True)
class Warned:
    """One list where PuTTY's default choice is below its warning line."""

    category: Category
    rfc: str
    name: str


def below_warn(record: SessionRecord, peer: Peer, cat: Catalogue) -> list[Warned]:
    """The lists where a PuTTY client chose a name below its warning line, when that
    explains a connection it left before the keys were in use; empty otherwise.

    PuTTY may have sent its KEXINIT before it judged the server's (the record then holds
    the choice) or not (the choice is replayed from the release's default settings).
    """
    impl = peer.implementation
    if impl is None or impl.key != "putty" or record.server_kexinit is None or record.failures:
        return []
    if record.outcome not in ("aborted", "incomplete"):
        return []
    negotiated = record.negotiated or {}
    out: list[Warned] = []
    for category, rfc in CHECKED:
        if record.client_kexinit is not None:
            chosen = negotiated.get(BY_RFC[rfc].field or "")
        else:
            mine = peer.defaults("client", category, cat) or ()
            theirs = set(offered(record.server_kexinit, rfc))
            chosen = next((name for name in mine if name in theirs), None)
        if isinstance(chosen, str) and chosen in _below(peer, category):
            out.append(Warned(category, rfc, chosen))
    return out


def above_warn(peer: Peer, category: Category, cat: Catalogue) -> list[str]:
    """What PuTTY offers untouched for `category` without asking first, in its order."""
    below = _below(peer, category)
    return [n for n in peer.defaults("client", category, cat) or () if n not in below]


def _below(peer: Peer, category: Category) -> frozenset[str]:
    """The names PuTTY's release keeps below its WARN line for `category` by default."""
    impl = peer.implementation
    release = impl.release(peer.version) if impl is not None else None
    warn = release.extra.get("below_warn", {}) if release is not None else {}
    names = warn.get(category, ()) if isinstance(warn, dict) else ()
    return frozenset(n for n in names if isinstance(n, str))


def explanation(record: SessionRecord, peer: Peer, warned: list[Warned]) -> str:
    """Why the client left, in words: its choice and PuTTY's warning line."""
    names = ", ".join(dict.fromkeys(w.name for w in warned))
    if record.client_kexinit is None:
        what = (
            f"left before sending its KEXINIT. With its default settings, what it would "
            f"choose from the server's offer ({names})"
        )
    else:
        what = f"left before the new keys were in use. What it chose ({names})"
    return (
        f"The client ({peer.label}) {what} is below its warning line: PuTTY asks before "
        "using it, and plink -batch, or a user who says no, abandons the connection "
        '("Cannot confirm a weak crypto primitive in batch mode").'
    )
