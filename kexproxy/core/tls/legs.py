"""What one TCP leg of a TLS connection sent, as far as the TLS parser understood it.

Kept apart from the tracker so that the record builder reads it without importing the
tracker (which calls the builder).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kexproxy.core.observer import CloseKind
from kexproxy.core.tls.events import AlertReceived, EncryptedRecord, ServerKeyExchangeReceived
from kexproxy.core.tls.hello import ClientHello, ServerHello
from kexproxy.core.tls.parser import TlsDirectionParser

#: Hellos kept per leg: a ClientHello and its retry after a HelloRetryRequest; more is a
#: peer repeating itself (renegotiation is encrypted), and only the first two matter.
MAX_HELLOS = 2
#: Alerts kept per leg: the first fatal one ends the handshake; a peer may send many warnings.
MAX_ALERTS = 8


@dataclass(slots=True)
class TlsLeg:
    """What one TCP leg sent, as far as the TLS parser understood it."""

    parser: TlsDirectionParser = field(default_factory=TlsDirectionParser)
    client_hellos: list[tuple[ClientHello, float]] = field(default_factory=list)
    server_hellos: list[tuple[ServerHello, float]] = field(default_factory=list)
    certificates: tuple[bytes, ...] | None = None
    key_exchange: ServerKeyExchangeReceived | None = None
    alerts: list[tuple[AlertReceived, float]] = field(default_factory=list)
    ccs: float | None = None
    encrypted: tuple[EncryptedRecord, float] | None = None
    handshakes: list[int] = field(default_factory=list)
    failed: str | None = None
    ssl2: bool = False
    gap: bool = False
    close: tuple[CloseKind, float] | None = None
    bytes: int = 0
