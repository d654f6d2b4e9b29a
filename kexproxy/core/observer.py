"""The interface between a byte source (pcap reassembly, live relay) and the session tracker.

A source sees one TCP connection as two byte streams. It names the two TCP endpoints, the
legs, ``"a"`` and ``"b"``: ``a`` is the TCP initiator when the source knows it (SYN seen, or the
proxy's accepted socket), else the side of the first packet seen. Every call carries the
timestamp of the packet or read that caused it (POSIX seconds, float); the core never reads
a clock, so a capture and a live session give identical records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

#: One TCP end of a connection, as a source names it; the SSH role is decided later.
Leg = Literal["a", "b"]
LEGS: tuple[Leg, Leg] = ("a", "b")
CloseKind = Literal["fin", "rst"]
#: How the source knows which side opened the TCP connection.
InitiatorEvidence = Literal["syn", "syn-ack", "accept", "first-packet"]


class ConnectionObserver(Protocol):
    """What a source drives for each TCP connection; `SessionTracker` implements it."""

    @property
    def inspecting(self) -> bool:
        """False once both directions are past NEWKEYS (or the stream is not SSH).

        A source may then skip reassembly and call `count` with payload sizes only.
        """
        ...

    @property
    def decided(self) -> bool:
        """True once the handshake's outcome is known (a streaming source may emit then)."""
        ...

    def receive(self, side: Leg, data: bytes, ts: float) -> None:
        """In-order stream bytes sent by `side`."""
        ...

    def count(self, side: Leg, nbytes: int, ts: float) -> None:
        """Bytes sent by `side` that the source did not reassemble (inspection is over)."""
        ...

    def receive_gap(self, side: Leg, nbytes: int, ts: float) -> None:
        """Bytes sent by `side` are missing from the capture; inspection of that side stops."""
        ...

    def receive_close(self, side: Leg, kind: CloseKind, ts: float) -> None:
        """`side` sent a FIN or an RST."""
        ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One end of a TCP connection; IPv6 addresses without brackets, as OpenSSH prints them."""

    ip: str
    port: int


def other_leg(leg: Leg) -> Leg:
    """The TCP end that is not `leg`."""
    return "b" if leg == "a" else "a"
