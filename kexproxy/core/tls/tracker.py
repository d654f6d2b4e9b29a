"""The TLS session tracker: both directions of one TLS connection joined into one record.

Theory of operation: the same observer interface as the SSH tracker (`receive`, `count`,
`receive_gap`, `receive_close`, `receive_timeout`, `abort`), one `TlsDirectionParser` per TCP
leg. Each leg keeps what its events said (hellos, certificate, key exchange, alerts, the
first encrypted record); the roles are decided late, when the record is asked for: the leg
that sent a ClientHello is the client. `tls.recordbuild` names the outcome and who refused.
"""

from __future__ import annotations

from kexproxy.core import limits
from kexproxy.core.events import Anomaly, ParseFailed, StreamEnded
from kexproxy.core.observer import LEGS, Endpoint, InitiatorEvidence, Leg, other_leg
from kexproxy.core.record import SessionRecord
from kexproxy.core.tls.events import (
    AlertReceived,
    CertificateReceived,
    ChangeCipherSpecReceived,
    ClientHelloReceived,
    EncryptedRecord,
    HandshakeReceived,
    ServerHelloReceived,
    ServerKeyExchangeReceived,
    Ssl2Message,
)
from kexproxy.core.tls.legs import MAX_ALERTS, MAX_HELLOS, TlsLeg
from kexproxy.core.tls.names import alert_name, handshake_name
from kexproxy.core.tls.recordbuild import build_tls_record
from kexproxy.core.tracking import TrackerBase


class TlsTracker(TrackerBase):
    """Implements `ConnectionObserver` for TLS: bytes of both legs in, a record out."""

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
        super().__init__(
            a=a, b=b, initiator=initiator, session_id=session_id, source=source, capture=capture
        )
        self.legs: dict[Leg, TlsLeg] = {"a": TlsLeg(), "b": TlsLeg()}

    def _leg_state(self, leg: Leg) -> TlsLeg:
        return self.legs[leg]

    # -- the observer interface ----------------------------------------------------------

    @property
    def inspecting(self) -> bool:
        return self.legs["a"].parser.parsing or self.legs["b"].parser.parsing

    @property
    def outcome_known(self) -> bool:
        """A fatal alert was sent, or both sides went on to encrypted records."""
        for leg in self.legs.values():
            if any(alert.level == 2 or alert.encrypted for alert, _ts in leg.alerts):
                return True
        return all(leg.encrypted is not None for leg in self.legs.values())

    @property
    def decided(self) -> bool:
        if self.timeout is not None or self.outcome_known:
            return True
        a, b = self.legs["a"], self.legs["b"]
        return a.close is not None or b.close is not None

    def receive(self, leg: Leg, data: bytes, ts: float) -> None:
        d = self.legs[leg]
        self._touch(d, ts, len(data))
        if d.parser.parsing:
            for event in d.parser.receive_data(data):
                self._apply(leg, event, ts)

    # -- events ----------------------------------------------------------------------------

    def _apply(self, leg: Leg, event: object, ts: float) -> None:
        d = self.legs[leg]
        match event:
            case ClientHelloReceived(hello=hello):
                if len(d.client_hellos) < MAX_HELLOS:
                    d.client_hellos.append((hello, ts))
                self._event(ts, leg, "ClientHello", "SSLv2 format" if hello.sslv2 else None)
            case ServerHelloReceived(hello=hello):
                if len(d.server_hellos) < MAX_HELLOS:
                    d.server_hellos.append((hello, ts))
                self._event(ts, leg, "HelloRetryRequest" if hello.retry else "ServerHello", None)
            case CertificateReceived(certificates=certificates):
                if d.certificates is None:
                    d.certificates = certificates
                self._event(ts, leg, "Certificate", f"{len(certificates)} certificate(s)")
            case ServerKeyExchangeReceived():
                if d.key_exchange is None:
                    d.key_exchange = event
                self._event(ts, leg, "ServerKeyExchange", event.kind)
            case HandshakeReceived(msg_type=msg_type):
                if len(d.handshakes) < limits.MAX_TIMELINE:
                    d.handshakes.append(msg_type)
                self._event(ts, leg, handshake_name(msg_type), None)
            case AlertReceived():
                if len(d.alerts) < MAX_ALERTS:
                    d.alerts.append((event, ts))
                if event.encrypted:
                    detail = "encrypted"
                else:
                    level = {1: "warning", 2: "fatal"}.get(event.level or 0, str(event.level))
                    detail = f"{level} {alert_name(event.description or 0)}"
                self._event(ts, leg, "Alert", detail)
            case ChangeCipherSpecReceived():
                if d.ccs is None:
                    d.ccs = ts
                self._event(ts, leg, "ChangeCipherSpec", None)
            case EncryptedRecord():
                if d.encrypted is None:
                    d.encrypted = (event, ts)
                self._event(ts, leg, "encrypted", f"{event.length} bytes")
            case Ssl2Message(msg_type=msg_type):
                d.ssl2 = True
                self._note(
                    f"the {{{leg}}} went on in SSL 2.0 (message type {msg_type}); kexproxy reads "
                    "SSL 2.0 no further than the hello"
                )
                self._event(ts, leg, "SSL 2.0", f"message type {msg_type}")
            case Anomaly(text=text):
                self._note(f"{{{leg}}}: {text}")
            case ParseFailed(reason=reason):
                d.failed = reason
                self._note(f"inspection of the {{{leg}}}'s bytes stopped: {reason}")
            case StreamEnded():
                pass
            case _:
                raise AssertionError(f"unhandled event {event!r}")

    # -- the record ------------------------------------------------------------------------

    def client_leg(self) -> tuple[Leg, str]:
        """Which leg is the TLS client, and what showed it."""
        for leg in LEGS:
            if self.legs[leg].client_hellos:
                return leg, "hello"
        for leg in LEGS:
            if self.legs[leg].server_hellos:
                return other_leg(leg), "hello"
        return "a", "tcp" if self.initiator != "first-packet" else "port"

    def finish(self) -> SessionRecord:
        ts = self.last_ts if self.last_ts is not None else 0.0
        for leg in LEGS:
            parser = self.legs[leg].parser
            if parser.parsing:
                for event in parser.receive_eof():
                    self._apply(leg, event, ts)
        return self.record()

    def record(self) -> SessionRecord:
        return build_tls_record(self)
