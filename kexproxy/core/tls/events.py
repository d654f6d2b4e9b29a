"""Events the TLS direction parser emits; frozen data, so the tracker and tests can compare them.

Each carries `offset`, the stream offset of the record that completed it. `ParseFailed` and
`StreamEnded` are the SSH parser's own (kexproxy.core.events), so both protocols end alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kexproxy.core.events import Anomaly, ParseFailed, StreamEnded
from kexproxy.core.tls.hello import ClientHello, ServerHello

__all__ = [
    "AlertReceived",
    "CertificateReceived",
    "ChangeCipherSpecReceived",
    "ClientHelloReceived",
    "EncryptedRecord",
    "HandshakeReceived",
    "ServerHelloReceived",
    "ServerKeyExchangeReceived",
    "Ssl2Message",
    "TlsEvent",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientHelloReceived:
    """A ClientHello (RFC 8446 4.1.2), or an SSLv2-compatible one (RFC 5246 appendix E.2)."""

    hello: ClientHello
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerHelloReceived:
    """A ServerHello, or a HelloRetryRequest when ``hello.retry`` (RFC 8446 4.1.3)."""

    hello: ServerHello
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateReceived:
    """The server's (or client's) chain in clear, TLS 1.2 and older: DER, leaf first."""

    certificates: tuple[bytes, ...]
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerKeyExchangeReceived:
    """What a TLS 1.2 ServerKeyExchange says about the key exchange (RFC 8422 5.4, RFC 5246 7.4.3).

    `group` is the named curve of an ECDHE exchange, `dh_bits` the size of a DHE prime, and
    `signature_scheme` the two bytes before the signature (TLS 1.2 only; None before it).
    """

    kind: Literal["ecdhe", "dhe", "other"]
    group: int | None
    dh_bits: int | None
    signature_scheme: int | None
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeReceived:
    """Any other clear handshake message (ServerHelloDone, CertificateRequest, ...)."""

    msg_type: int
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertReceived:
    """An alert record; an encrypted one has no readable level or description."""

    level: int | None
    description: int | None
    encrypted: bool
    length: int
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeCipherSpecReceived:
    """ChangeCipherSpec (RFC 5246 7.1); in TLS 1.3 a compatibility no-op (RFC 8446 D.4)."""

    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EncryptedRecord:
    """The first encrypted record of the direction: inspection of it stops here."""

    content_type: int
    length: int
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Ssl2Message:
    """An SSL 2.0 message other than the SSLv2-compatible ClientHello; inspection stops.

    A server that answers in SSL 2.0 (SERVER-HELLO), or a client that goes on in it
    (CLIENT-MASTER-KEY), speaks a protocol kexproxy names but does not parse, as SSH's
    `Protocol1`; `msg_type` is the SSL 2.0 message type, `length` the record's.
    """

    msg_type: int
    length: int
    offset: int


TlsEvent = (
    ClientHelloReceived
    | ServerHelloReceived
    | CertificateReceived
    | ServerKeyExchangeReceived
    | HandshakeReceived
    | AlertReceived
    | ChangeCipherSpecReceived
    | EncryptedRecord
    | Ssl2Message
    | Anomaly
    | ParseFailed
    | StreamEnded
)
