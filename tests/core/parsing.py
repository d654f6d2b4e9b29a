"""Helpers for the parser tests: feed bytes whole, in chunks or one at a time, and pick events."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hypothesis import HealthCheck, settings

from kexproxy.core.events import (
    Event,
    ParseFailed,
)
from kexproxy.core.parser import DirectionParser
from tests.builders import (
    client_offer,
    ecdh_init,
    ident,
    kexinit,
    newkeys,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def feed(data: bytes, sizes: Iterable[int] | None = None, *, eof: bool = True) -> list[Event]:
    """Events for `data` fed in chunks of `sizes` (the rest in one chunk), then EOF."""
    parser = DirectionParser()
    events: list[Event] = []
    pos = 0
    for size in sizes or ():
        events += parser.receive_data(data[pos : pos + size])
        pos += size
    events += parser.receive_data(data[pos:])
    if eof:
        events += parser.receive_eof()
    return events


def bytewise(data: bytes, *, eof: bool = True) -> list[Event]:
    return feed(data, [1] * len(data), eof=eof)


def events_of(data: bytes, *, eof: bool = True) -> list[Event]:
    """The events of `data`, after checking that whole and byte-at-a-time feeding agree."""
    whole = feed(data, eof=eof)
    assert bytewise(data, eof=eof) == whole
    if len(data) <= 200:
        for cut in range(len(data) + 1):
            assert feed(data, [cut], eof=eof) == whole, f"split at {cut}"
    return whole


def kinds(events: Sequence[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def only(events: Sequence[Event], cls: type[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, cls)]


def failure(events: Sequence[Event]) -> ParseFailed:
    failed = only(events, ParseFailed)
    assert len(failed) == 1, events
    assert isinstance(failed[0], ParseFailed)
    return failed[0]


BANNER = ident()
LEN = len(BANNER)


def handshake(*, trailing: bytes = b"") -> bytes:
    """One direction of a plain client handshake: banner, KEXINIT, ECDH init, NEWKEYS."""
    return BANNER + kexinit(client_offer()) + ecdh_init() + newkeys() + trailing
