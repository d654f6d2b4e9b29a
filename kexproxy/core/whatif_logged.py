"""What a server change does to clients known only from the server's own log.

A record from sshd's log (`source` "log") holds no KEXINIT: only the one list sshd named
("no matching cipher found") and the client's offer for it ("Their offer: ..."). So such a
client cannot be negotiated against a changed server, and is never said to negotiate: the
prediction is about that one list alone. The changed server's list either shares a name with
the logged list (it passes that list; the client's other lists are unknown, and may fail
next) or it does not (the client still fails on it); and a change that takes a name out of
the server's list may newly break a logged list that shared it before.

A shared name is OpenSSH's match (`negotiation.match_list`: the first name of the client's
that the server also offers, markers aside). The key exchange is matched on the kex list
alone: the log does not hold the host key list an RSA key exchange would also need.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, assert_never

from kexproxy.core.events import KexInit
from kexproxy.core.lists import MARKERS, RFC_NAMES
from kexproxy.core.negotiation import match_list
from kexproxy.core.record import SessionRecord

#: A change's effect on one logged list, worst first: the table's order.
LoggedEffect = Literal[
    "breaks_logged_list",
    "still_fails_logged_list",
    "passes_logged_list",
    "still_passes_logged_list",
]
LOGGED_EFFECTS: tuple[LoggedEffect, ...] = (
    "breaks_logged_list",
    "still_fails_logged_list",
    "passes_logged_list",
    "still_passes_logged_list",
)
#: Names kept of a logged offer (the log reader keeps at most 256; OpenSSH reads 40 of a list).
MAX_LOGGED_NAMES: Final = 256
#: Longest name kept, as the log reader keeps them.
MAX_NAME_CHARS: Final = 255


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedGroup:
    """Log records whose client offered the same names for the same failing list, counted."""

    list: str
    offer: tuple[str, ...]
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedPrediction:
    """One logged list against the server before and after the change.

    `before` and `after` are the name the two would agree on for that list (None: none);
    `removed` the logged names the change took out of the server's list.
    """

    effect: LoggedEffect
    before: str | None
    after: str | None
    removed: tuple[str, ...]
    server_after: tuple[str, ...]


def logged_offers(records: Iterable[SessionRecord]) -> list[tuple[str, tuple[str, ...]]]:
    """(failing list, the client's offer for it) of every log record that holds that offer.

    A record with a KEXINIT is the wire's and is counted with the others; a dropbear log
    names the list but not the offer, so its records give nothing here.
    """
    out = []
    for record in records:
        if record.protocol != "ssh" or record.source != "log" or record.client_kexinit:
            continue
        if not record.failures or not isinstance(record.failures[0], dict):
            continue
        first = record.failures[0]
        listname, offer = first.get("list"), first.get("client_offer")
        if listname not in RFC_NAMES or not isinstance(offer, list):
            continue
        names = tuple(
            n for n in offer[:MAX_LOGGED_NAMES] if isinstance(n, str) and len(n) <= MAX_NAME_CHARS
        )
        if names:
            out.append((str(listname), names))
    return out


def group_logged(offers: Iterable[tuple[str, tuple[str, ...]]]) -> list[LoggedGroup]:
    """(list, offer) per record -> groups, most records first."""
    counts: dict[tuple[str, tuple[str, ...]], int] = {}
    for key in offers:
        counts[key] = counts.get(key, 0) + 1
    groups = [LoggedGroup(list=k[0], offer=k[1], count=n) for k, n in counts.items()]
    return sorted(groups, key=lambda g: (-g.count, RFC_NAMES.index(g.list), g.offer))


def predict_logged(group: LoggedGroup, before: KexInit, after: KexInit) -> LoggedPrediction:
    """The logged list against the server's list before and after the change."""
    offer = ",".join(group.offer)
    shared_before = match_list(offer, before.raw(group.list))
    shared_after = match_list(offer, after.raw(group.list))
    kept = set(after.names(group.list))
    removed = tuple(
        n
        for n in before.names(group.list)
        if n not in kept and n in group.offer and n not in MARKERS
    )
    effect: LoggedEffect
    if shared_after is not None:
        effect = "still_passes_logged_list" if shared_before else "passes_logged_list"
    else:
        effect = "breaks_logged_list" if shared_before else "still_fails_logged_list"
    return LoggedPrediction(
        effect=effect,
        before=shared_before,
        after=shared_after,
        removed=removed,
        server_after=after.names(group.list),
    )


def predict_logged_groups(
    groups: Sequence[LoggedGroup], before: KexInit, after: KexInit
) -> list[tuple[LoggedGroup, LoggedPrediction]]:
    """Every logged group against one server's change, worst first, then most records."""
    order = {e: i for i, e in enumerate(LOGGED_EFFECTS)}
    rows = [(g, predict_logged(g, before, after)) for g in groups]
    rows.sort(key=lambda row: (order[row[1].effect], -row[0].count))
    return rows


def logged_words(p: LoggedPrediction) -> str:
    """The outcome for the logged list in a few words, never "negotiates": that list is all
    that is known of the client."""
    match p.effect:
        case "passes_logged_list" | "still_passes_logged_list":
            return f"shares {p.after}; its other lists are unknown"
        case "breaks_logged_list":
            return f"no longer shares a name ({', '.join(p.removed)} removed)"
        case "still_fails_logged_list":
            return "still no common name"
        case _:
            assert_never(p.effect)
