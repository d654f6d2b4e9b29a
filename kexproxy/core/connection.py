"""One connection's tracker, whatever it speaks: SSH or TLS, recognised from its first bytes.

Theory of operation: every source makes a `ConnectionTracker` per TCP connection and drives it
through the observer interface (`kexproxy.core.observer`). The first bytes of the first side
that sends anything say the protocol, on any port: a TLS record header (handshake or alert,
major version 3) or an SSLv2-compatible ClientHello is TLS; anything else is handed to the SSH
tracker, which tells SSH from text that is neither. Until those few bytes are in, the tracker
holds what it was given (at most `RECOGNISE_HOLD` bytes; inspection only, the relay has
already forwarded them) and replays it into the tracker it then makes, so any segmentation
gives the same record.
"""

from __future__ import annotations

from typing import Literal

from kexproxy.core.observer import CloseKind, Endpoint, InitiatorEvidence, Leg
from kexproxy.core.record import SessionRecord
from kexproxy.core.tls.tracker import TlsTracker
from kexproxy.core.tracker import SessionTracker

#: Bytes held before the protocol is known: a TLS record header is 5 bytes, the handshake
#: type the sixth; a peer that sends more without deciding it is simply not TLS.
RECOGNISE_BYTES = 6
#: Bytes of both sides held at most while waiting for those six (the other side may talk).
RECOGNISE_HOLD = 64 * 1024

Kind = Literal["ssh", "tls"]
#: Zero-byte counts (the relay's "accepted at") kept until the protocol is known.
_HELD_COUNTS = 4


def recognise(data: bytes, *, final: bool) -> Kind | None:
    """TLS or SSH from a stream's first bytes; None while more are needed (and not `final`)."""
    if not data:
        return "ssh" if final else None
    first = data[0]
    if first in (0x16, 0x15):  # handshake, alert (RFC 8446 5.1)
        if len(data) < 3:
            return "ssh" if final else None
        return "tls" if data[1] == 0x03 and data[2] <= 0x04 else "ssh"
    if first & 0x80:  # SSLv2-compatible ClientHello (RFC 5246 E.2): 2-byte length, type 1
        if len(data) < 5:
            return "ssh" if final else None
        return "tls" if data[2] == 0x01 and data[3] in (0x00, 0x03) else "ssh"
    return "ssh"


class ConnectionTracker:
    """Implements `ConnectionObserver`: recognises the protocol, then delegates every call."""

    def __init__(
        self,
        *,
        a: Endpoint,
        b: Endpoint,
        initiator: InitiatorEvidence,
        session_id: str,
        source: str = "pcap",
        capture: str | None = None,
    ) -> None:
        self._a, self._b = a, b
        self._initiator: InitiatorEvidence = initiator
        self._id = session_id
        self._source = source
        self._capture = capture
        self._inner: SessionTracker | TlsTracker | None = None
        self._held: list[tuple[Leg, bytes, float]] = []
        self._held_bytes = 0
        self._counts: list[tuple[Leg, int, float]] = []

    @property
    def protocol(self) -> Kind | None:
        """The protocol recognised so far, None while the first bytes are awaited."""
        if self._inner is None:
            return None
        return "tls" if isinstance(self._inner, TlsTracker) else "ssh"

    # -- the observer interface, delegated ---------------------------------------------------

    @property
    def inspecting(self) -> bool:
        return True if self._inner is None else self._inner.inspecting

    @property
    def decided(self) -> bool:
        return False if self._inner is None else self._inner.decided

    @property
    def outcome_known(self) -> bool:
        return False if self._inner is None else self._inner.outcome_known

    def receive(self, leg: Leg, data: bytes, ts: float) -> None:
        if self._inner is not None:
            self._inner.receive(leg, data, ts)
            return
        if not data:
            return
        self._held.append((leg, data, ts))
        self._held_bytes += len(data)
        kind = self._recognise(final=self._held_bytes > RECOGNISE_HOLD)
        if kind is not None:
            self._start(kind)

    def count(self, leg: Leg, nbytes: int, ts: float) -> None:
        if self._inner is None and nbytes == 0 and len(self._counts) < _HELD_COUNTS:
            # The relay counts a connection when it is accepted, before any byte: deciding
            # the protocol then would make every relayed connection SSH.
            self._counts.append((leg, nbytes, ts))
            return
        self._ready().count(leg, nbytes, ts)

    def receive_gap(self, leg: Leg, nbytes: int, ts: float) -> None:
        self._ready().receive_gap(leg, nbytes, ts)

    def receive_close(self, leg: Leg, kind: CloseKind, ts: float) -> None:
        self._ready().receive_close(leg, kind, ts)

    def receive_timeout(self, ts: float, reason: str) -> None:
        self._ready().receive_timeout(ts, reason)

    def abort(self, reason: str, ts: float) -> None:
        self._ready().abort(reason, ts)

    def finish(self) -> SessionRecord:
        return self._ready().finish()

    def record(self) -> SessionRecord:
        return self._ready().record()

    # -- recognition -------------------------------------------------------------------------

    def _recognise(self, *, final: bool) -> Kind | None:
        if not self._held:
            return "ssh" if final else None
        first_leg = self._held[0][0]
        data = b"".join(d for leg, d, _ts in self._held if leg == first_leg)
        return recognise(data[:RECOGNISE_BYTES], final=final)

    def _ready(self) -> SessionTracker | TlsTracker:
        """The tracker, made now with what is held if the protocol was still open."""
        if self._inner is None:
            self._start(self._recognise(final=True) or "ssh")
        assert self._inner is not None
        return self._inner

    def _start(self, kind: Kind) -> None:
        cls = TlsTracker if kind == "tls" else SessionTracker
        self._inner = cls(
            a=self._a,
            b=self._b,
            initiator=self._initiator,
            session_id=self._id,
            source=self._source,
            capture=self._capture,
        )
        counts, self._counts = self._counts, []
        for leg, nbytes, ts in counts:
            self._inner.count(leg, nbytes, ts)
        held, self._held = self._held, []
        for leg, data, ts in held:
            self._inner.receive(leg, data, ts)
