"""Helpers for the TLS parser tests: feed bytes whole, in chunks or one at a time, and pick events."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kexproxy.core.events import ParseFailed
from kexproxy.core.tls.events import ClientHelloReceived, ServerHelloReceived, TlsEvent
from kexproxy.core.tls.hello import ClientHello, ServerHello
from kexproxy.core.tls.parser import TlsDirectionParser


def feed(data: bytes, sizes: Iterable[int] | None = None, *, eof: bool = True) -> list[TlsEvent]:
    """Events for `data` fed in chunks of `sizes` (the rest in one chunk), then EOF."""
    parser = TlsDirectionParser()
    events: list[TlsEvent] = []
    pos = 0
    for size in sizes or ():
        events += parser.receive_data(data[pos : pos + size])
        pos += size
    events += parser.receive_data(data[pos:])
    if eof:
        events += parser.receive_eof()
    return events


def events_of(data: bytes, *, eof: bool = True) -> list[TlsEvent]:
    """The events of `data`, after checking that whole, bytewise and two-part feeding agree."""
    whole = feed(data, eof=eof)
    assert feed(data, [1] * len(data), eof=eof) == whole
    step = max(1, len(data) // 150)
    for cut in range(0, len(data) + 1, step):
        assert feed(data, [cut], eof=eof) == whole, f"split at {cut}"
    return whole


def kinds(events: Sequence[TlsEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def failure(data: bytes) -> ParseFailed:
    """The one ParseFailed `data` ends in, checked to be last but StreamEnded."""
    events = events_of(data)
    assert kinds(events)[-2:] == ["ParseFailed", "StreamEnded"], kinds(events)
    failed = events[-2]
    assert isinstance(failed, ParseFailed)
    return failed


def client_hellos(events: Sequence[TlsEvent]) -> list[ClientHello]:
    return [e.hello for e in events if isinstance(e, ClientHelloReceived)]


def server_hellos(events: Sequence[TlsEvent]) -> list[ServerHello]:
    return [e.hello for e in events if isinstance(e, ServerHelloReceived)]
