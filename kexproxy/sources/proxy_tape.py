"""A bounded copy of the bytes a relayed session showed its tracker, for `proxy --pcap`.

Why here and not in a sink: sinks see records, and a capture file needs the bytes the relay
saw. The relay's whole cost is an append per chunk it already holds (the same bytes object,
never a copy) up to `MAX_TAPE_BYTES`; the file itself is written by the recorder, away from
the relay's loop (`proxy_pcap`). Only plain picklable data, so a final record job can carry
it to the recording process.
"""

from __future__ import annotations

from dataclasses import dataclass

from kexproxy.core.observer import CloseKind, Endpoint, Leg

#: Handshake bytes kept per session, both directions together. OpenSSH accepts packets of
#: up to 256 KiB (PACKET_MAX_SIZE in packet.c), so this holds a KEXINIT of that size from
#: each side; past it the capture is cut and its record says so.
MAX_TAPE_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class TapeChunk:
    """`side` sent `data` at `ts` (as the relay read it, already forwarded)."""

    side: Leg
    ts: float
    data: bytes


@dataclass(frozen=True, slots=True)
class TapeClose:
    """`side` closed with a FIN or an RST after sending `sent` bytes in all."""

    side: Leg
    ts: float
    kind: CloseKind
    sent: int


TapeEvent = TapeChunk | TapeClose


@dataclass(frozen=True, slots=True, kw_only=True)
class Tape:
    """What a capture file of one relayed session is written from."""

    session_id: str
    #: The real client ("a") and the real server ("b").
    client: Endpoint
    server: Endpoint
    #: When the client's connection was accepted: the capture's TCP handshake.
    opened: float
    events: tuple[TapeEvent, ...]
    #: Bytes that were shown to the tracker but not kept (past `MAX_TAPE_BYTES`).
    dropped: int


class TapeRecorder:
    """Collects one session's chunks and closes while it is relayed."""

    __slots__ = ("_dropped", "_events", "_kept", "_limit", "_opened")

    def __init__(self, opened: float, *, limit: int = MAX_TAPE_BYTES) -> None:
        self._opened = opened
        self._limit = limit
        self._kept = 0
        self._dropped = 0
        self._events: list[TapeEvent] = []

    def data(self, side: Leg, data: bytes, ts: float) -> None:
        if self._dropped or self._kept + len(data) > self._limit:
            # Nothing after a cut is kept: a stream with a hole in its middle would be
            # read as something the peers never sent.
            self._dropped += len(data)
            return
        self._kept += len(data)
        self._events.append(TapeChunk(side, ts, data))

    def close(self, side: Leg, kind: CloseKind, ts: float, sent: int) -> None:
        self._events.append(TapeClose(side, ts, kind, sent))

    def tape(self, session_id: str, client: Endpoint, server: Endpoint) -> Tape:
        return Tape(
            session_id=session_id,
            client=client,
            server=server,
            opened=self._opened,
            events=tuple(self._events),
            dropped=self._dropped,
        )
