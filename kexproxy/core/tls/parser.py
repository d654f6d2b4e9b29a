"""One direction of a TLS stream, parsed up to its first encrypted record, sans I/O.

Theory of operation: a `TlsDirectionParser` is fed the bytes one peer sent, in order, in
chunks of any size, and returns the events those bytes complete. Both directions use the
same class: a record says what it is. It walks these states:

* ``START``: the first byte decides. A TLS record type (RFC 8446 5.1) starts records; a
  byte with the high bit set is an SSLv2-compatible CLIENT-HELLO (RFC 5246 appendix E.2),
  decoded into a `ClientHello` with ``sslv2=True``; anything else is not TLS.
* ``RECORDS``: TLSPlaintext records. Handshake messages are reassembled over records (and
  several may share one record); alerts, ChangeCipherSpec and heartbeats are reported.
  After a ChangeCipherSpec the peer encrypts (TLS 1.2 and older), so the next record is the
  first encrypted one, except where TLS 1.3's compatibility mode (RFC 8446 D.4) sends a dummy
  ChangeCipherSpec before clear handshake messages: after a HelloRetryRequest, and before a
  client's second ClientHello.
* ``OPAQUE``: the first encrypted record was reported (or the stream ended): bytes are only
  counted by the caller.

Any segmentation of the same stream gives the same events: decisions are made only on whole
record headers, whole records and whole handshake messages. Nothing here raises on wire
input; malformed bytes end in one `ParseFailed` and the state ``FAILED``.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from kexproxy.core import limits
from kexproxy.core.codec import DecodeError
from kexproxy.core.events import Anomaly, ParseFailed, StreamEnded
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
    TlsEvent,
)
from kexproxy.core.tls.hello import (
    Reader,
    ServerHello,
    decode_client_hello,
    decode_server_hello,
    decode_sslv2_client_hello,
)
from kexproxy.core.tls.names import handshake_name, suite_name


class State(Enum):
    START = "start"
    RECORDS = "records"
    OPAQUE = "opaque"
    FAILED = "failed"


# Record content types (IANA TLS ContentType).
CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23
HEARTBEAT = 24
TLS12_CID = 25
_RECORD_TYPES = (CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT, TLS12_CID)
_CLEAR_TYPES = (CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE)
#: Every record version of SSL 3.0 and TLS has major version 3 (RFC 8446 5.1, RFC 6101 5.2.1).
_RECORD_MAJOR = 3
_RECORD_HEADER = 5
_HANDSHAKE_HEADER = 4

# Handshake types with a decoder of their own (IANA TLS HandshakeType).
CLIENT_HELLO = 1
SERVER_HELLO = 2
CERTIFICATE = 11
SERVER_KEY_EXCHANGE = 12

#: SSLv2 CLIENT-HELLO message type (RFC 5246 appendix E.2); other SSLv2 messages are named.
_SSL2_CLIENT_HELLO = 1
_SSL2_NAMES = {
    0: "ERROR",
    1: "CLIENT-HELLO",
    2: "CLIENT-MASTER-KEY",
    3: "CLIENT-FINISHED",
    4: "SERVER-HELLO",
    5: "SERVER-VERIFY",
    6: "SERVER-FINISHED",
    7: "REQUEST-CERTIFICATE",
    8: "CLIENT-CERTIFICATE",
}
#: An alert is two bytes (RFC 8446 section 6); any real cipher adds a MAC or tag, so a
#: two-byte alert record after ChangeCipherSpec is still clear.
_ALERT_LENGTH = 2
#: RFC 8422 5.4: ECCurveType named_curve; explicit curves carry no group code.
_NAMED_CURVE = 3
TLS12 = 0x0303
TLS13 = 0x0304


def _active(state: State) -> bool:
    return state is State.START or state is State.RECORDS


def _ssl2_name(msg_type: int) -> str:
    return _SSL2_NAMES.get(msg_type, f"message type {msg_type}")


class TlsDirectionParser:
    """Parses what one peer sends; `receive_data` returns the events the bytes complete."""

    __slots__ = (
        "_after_ccs",
        "_buf",
        "_consumed",
        "_ended",
        "_hs",
        "_offers_tls13",
        "_retry_sent",
        "_server_hello",
        "_sslv2_seen",
        "opaque_reason",
        "records",
        "state",
    )

    def __init__(self) -> None:
        self._buf = bytearray()
        self._consumed = 0  # stream offset of _buf[0]
        self._hs = bytearray()  # an incomplete handshake message, over records
        self._after_ccs = False
        self._offers_tls13 = False
        self._retry_sent = False
        self._server_hello: ServerHello | None = None
        self._ended = False
        self._sslv2_seen = False
        self.state = State.START
        self.records = 0
        #: Why the direction stopped being parsed (encrypted, failure, end), for notes.
        self.opaque_reason: str | None = None

    @property
    def offset(self) -> int:
        """Stream offset of the first byte not yet consumed into a record."""
        return self._consumed

    @property
    def parsing(self) -> bool:
        """False after ParseFailed or the first encrypted record: bytes need only be counted."""
        return _active(self.state)

    def receive_data(self, data: bytes) -> list[TlsEvent]:
        if not self.parsing:
            return []
        self._buf += data
        events: list[TlsEvent] = []
        progressed = True
        while progressed:
            if self.state is State.START:
                progressed = self._start_step(events)
            elif self.state is State.RECORDS:
                progressed = self._record_step(events)
            else:
                progressed = False
        if not _active(self.state):
            self._buf = bytearray()
            self._hs = bytearray()
        return events

    def receive_eof(self) -> list[TlsEvent]:
        """The peer's stream ended (FIN, end of capture, or a gap): report what was pending."""
        if self._ended:
            return []
        self._ended = True
        pending = len(self._buf) + len(self._hs)
        if self.parsing:
            self.state = State.OPAQUE
            self.opaque_reason = "end of stream"
        self._buf = bytearray()
        self._hs = bytearray()
        return [StreamEnded(pending=pending, offset=self._consumed)]

    # -- helpers ---------------------------------------------------------------------------

    def _consume(self, n: int) -> bytes:
        chunk = bytes(self._buf[:n])
        del self._buf[:n]
        self._consumed += n
        return chunk

    def _fail(self, events: list[TlsEvent], reason: str, offset: int | None = None) -> bool:
        events.append(
            ParseFailed(reason=reason, offset=self._consumed if offset is None else offset)
        )
        self.state = State.FAILED
        self.opaque_reason = reason
        return False

    def _stop(self, events: list[TlsEvent], event: TlsEvent, reason: str) -> bool:
        events.append(event)
        self.state = State.OPAQUE
        self.opaque_reason = reason
        return False

    # -- the first byte ----------------------------------------------------------------------

    def _start_step(self, events: list[TlsEvent]) -> bool:
        if not self._buf:
            return False
        first = self._buf[0]
        if first in _RECORD_TYPES:
            self.state = State.RECORDS
            return True
        if first & 0x80:
            return self._sslv2_hello(events)
        return self._fail(
            events,
            f"not TLS: first byte 0x{first:02x} is neither a TLS record type (20 to 25) "
            f"nor the start of an SSLv2-compatible ClientHello",
            0,
        )

    def _sslv2_hello(self, events: list[TlsEvent]) -> bool:
        if len(self._buf) < 3:
            return False
        length = ((self._buf[0] & 0x7F) << 8) | self._buf[1]
        msg_type = self._buf[2]
        if msg_type != _SSL2_CLIENT_HELLO:
            return self._ssl2_message(events, msg_type, length)
        if len(self._buf) < 2 + length:
            return False
        if length < 1:
            return self._fail(events, "SSLv2 record of length 0", 0)
        record = self._consume(2 + length)
        try:
            hello = decode_sslv2_client_hello(record[3:])
        except DecodeError as exc:
            return self._fail(events, f"malformed SSLv2-compatible ClientHello: {exc}", 0)
        events.append(ClientHelloReceived(hello=hello, offset=0))
        self._sslv2_seen = True
        self.state = State.RECORDS
        return True

    def _ssl2_message(self, events: list[TlsEvent], msg_type: int, length: int) -> bool:
        """An SSL 2.0 handshake (a server's SERVER-HELLO, a client's CLIENT-MASTER-KEY): stop."""
        event = Ssl2Message(msg_type=msg_type, length=length, offset=self._consumed)
        return self._stop(events, event, f"SSL 2.0 {_ssl2_name(msg_type)} (SSL 2.0 is not parsed)")

    # -- records (RFC 8446 section 5.1, RFC 5246 section 6.2) -------------------------------

    def _record_step(self, events: list[TlsEvent]) -> bool:
        buf = self._buf
        offset = self._consumed
        if not buf:
            return False
        if buf[0] & 0x80 and self._sslv2_seen and len(buf) >= 3:
            return self._ssl2_message(events, buf[2], ((buf[0] & 0x7F) << 8) | buf[1])
        if buf[0] & 0x80 and self._sslv2_seen:
            return False
        if buf[0] not in _RECORD_TYPES:
            return self._fail(events, f"unknown record type {buf[0]} at offset {offset}", offset)
        if len(buf) < 3:
            return False
        if buf[1] != _RECORD_MAJOR:
            version = int.from_bytes(buf[1:3], "big")
            return self._fail(
                events,
                f"record at offset {offset} has version 0x{version:04x}, not SSL 3.0 or TLS",
                offset + 1,
            )
        if len(buf) < _RECORD_HEADER:
            return False
        content_type = buf[0]
        length = int.from_bytes(buf[3:5], "big")
        if length > limits.TLS_MAX_RECORD:
            return self._fail(
                events,
                f"record at offset {offset} is {length} bytes long, over the "
                f"{limits.TLS_MAX_RECORD} RFC 5246 6.2.3 allows",
                offset + 3,
            )
        if len(buf) < _RECORD_HEADER + length:
            return False
        fragment = self._consume(_RECORD_HEADER + length)[_RECORD_HEADER:]
        self.records += 1
        if self._after_ccs:
            return self._protected_record(events, content_type, fragment, offset)
        return self._clear_record(events, content_type, fragment, offset)

    def _protected_record(
        self, events: list[TlsEvent], content_type: int, fragment: bytes, offset: int
    ) -> bool:
        """A record after ChangeCipherSpec: encrypted, unless it can only be clear."""
        length = len(fragment)
        if content_type == ALERT and length == _ALERT_LENGTH:
            return self._alert(events, fragment, offset)
        if content_type == CHANGE_CIPHER_SPEC and fragment == b"\x01":
            events.append(ChangeCipherSpecReceived(offset=offset))
            return True
        if content_type == HANDSHAKE and self._clear_after_ccs(fragment):
            return self._handshake_fragment(events, fragment, offset)
        if content_type == ALERT:
            event: TlsEvent = AlertReceived(
                level=None, description=None, encrypted=True, length=length, offset=offset
            )
            return self._stop(events, event, "encrypted alert after ChangeCipherSpec")
        return self._stop(
            events,
            EncryptedRecord(content_type=content_type, length=length, offset=offset),
            "encrypted after ChangeCipherSpec",
        )

    def _clear_after_ccs(self, fragment: bytes) -> bool:
        """TLS 1.3 middlebox compatibility (RFC 8446 D.4): clear handshakes after a dummy CCS.

        A server sends one after a HelloRetryRequest, then its ServerHello in clear; a client
        offering TLS 1.3 sends one before its second ClientHello. A TLS 1.2 Finished after a
        real ChangeCipherSpec is encrypted; it could pass the client check below only if its
        first four (random) bytes happened to read as a ClientHello header of the right length.
        """
        if self._hs:
            return self._retry_sent or self._offers_tls13
        if self._retry_sent:
            return True
        if not self._offers_tls13 or len(fragment) < _HANDSHAKE_HEADER:
            return False
        declared = int.from_bytes(fragment[1:4], "big") + _HANDSHAKE_HEADER
        whole = declared == len(fragment)
        first_of_many = len(fragment) == limits.TLS_MAX_PLAINTEXT and declared > len(fragment)
        return fragment[0] == CLIENT_HELLO and (whole or first_of_many)

    def _clear_record(
        self, events: list[TlsEvent], content_type: int, fragment: bytes, offset: int
    ) -> bool:
        length = len(fragment)
        if content_type in _CLEAR_TYPES and length > limits.TLS_MAX_PLAINTEXT:
            return self._fail(
                events,
                f"clear record at offset {offset} is {length} bytes long, over the "
                f"{limits.TLS_MAX_PLAINTEXT} RFC 8446 5.1 allows (record_overflow)",
                offset + 3,
            )
        if content_type == HANDSHAKE:
            return self._handshake_fragment(events, fragment, offset)
        if content_type == ALERT:
            return self._alerts(events, fragment, offset)
        if content_type == CHANGE_CIPHER_SPEC:
            if fragment != b"\x01":
                return self._fail(
                    events,
                    f"ChangeCipherSpec at offset {offset} is {fragment[:8].hex()!r}, "
                    f"not the single byte 01 (RFC 5246 7.1)",
                    offset + _RECORD_HEADER,
                )
            if self._hs:
                return self._fail(
                    events,
                    f"ChangeCipherSpec at offset {offset} inside a fragmented handshake message",
                    offset,
                )
            events.append(ChangeCipherSpecReceived(offset=offset))
            self._after_ccs = True
            return True
        if content_type == HEARTBEAT:
            events.append(
                Anomaly(text=f"heartbeat record (RFC 6520) of {length} bytes", offset=offset)
            )
            return True
        # application_data (TLS 1.3 encrypts every record after the hellos) or tls12_cid.
        return self._stop(
            events,
            EncryptedRecord(content_type=content_type, length=length, offset=offset),
            "encrypted record",
        )

    # -- alerts (RFC 8446 section 6) ---------------------------------------------------------

    def _alerts(self, events: list[TlsEvent], fragment: bytes, offset: int) -> bool:
        if not fragment or len(fragment) % _ALERT_LENGTH:
            return self._fail(
                events,
                f"alert record at offset {offset} is {len(fragment)} bytes long, "
                f"not a whole number of 2-byte alerts",
                offset + 3,
            )
        for start in range(0, len(fragment), _ALERT_LENGTH):
            self._alert(events, fragment[start : start + _ALERT_LENGTH], offset)
        return True

    def _alert(self, events: list[TlsEvent], alert: bytes, offset: int) -> bool:
        events.append(
            AlertReceived(
                level=alert[0],
                description=alert[1],
                encrypted=False,
                length=_ALERT_LENGTH,
                offset=offset,
            )
        )
        return True

    # -- handshake messages (RFC 8446 section 4) ---------------------------------------------

    def _handshake_fragment(self, events: list[TlsEvent], fragment: bytes, offset: int) -> bool:
        self._hs += fragment
        while len(self._hs) >= _HANDSHAKE_HEADER:
            msg_type = self._hs[0]
            length = int.from_bytes(self._hs[1:4], "big")
            if _HANDSHAKE_HEADER + length > limits.TLS_MAX_HANDSHAKE_MESSAGE:
                return self._fail(
                    events,
                    f"{handshake_name(msg_type)} completed by the record at offset {offset} "
                    f"declares {length} bytes, over the {limits.TLS_MAX_HANDSHAKE_MESSAGE} "
                    f"kept for one handshake message",
                    offset,
                )
            if len(self._hs) < _HANDSHAKE_HEADER + length:
                return True
            body = bytes(self._hs[_HANDSHAKE_HEADER : _HANDSHAKE_HEADER + length])
            del self._hs[: _HANDSHAKE_HEADER + length]
            try:
                events.append(self._message(msg_type, body, offset))
            except DecodeError as exc:
                return self._fail(
                    events,
                    f"malformed {handshake_name(msg_type)} in the record at offset {offset}: {exc}",
                    offset,
                )
        return True

    def _message(self, msg_type: int, body: bytes, offset: int) -> TlsEvent:
        if msg_type == CLIENT_HELLO:
            client = decode_client_hello(body)
            self._offers_tls13 = self._offers_tls13 or TLS13 in client.supported_versions
            return ClientHelloReceived(hello=client, offset=offset)
        if msg_type == SERVER_HELLO:
            server = decode_server_hello(body)
            self._server_hello = server
            self._retry_sent = self._retry_sent or server.retry
            return ServerHelloReceived(hello=server, offset=offset)
        if msg_type == CERTIFICATE:
            return CertificateReceived(certificates=_certificates(body), offset=offset)
        if msg_type == SERVER_KEY_EXCHANGE:
            return self._server_key_exchange(body, offset)
        return HandshakeReceived(msg_type=msg_type, offset=offset)

    def _server_key_exchange(self, body: bytes, offset: int) -> ServerKeyExchangeReceived:
        """RFC 8422 5.4 (ECDHE) and RFC 5246 7.4.3 (DHE); the kind comes from our ServerHello."""
        hello = self._server_hello
        name = "" if hello is None else suite_name(hello.cipher_suite)
        reader = Reader(body)
        group: int | None = None
        bits: int | None = None
        if "_ECDHE_" in name or "_ECDH_anon_" in name:
            kind: Literal["ecdhe", "dhe"] = "ecdhe"
            if reader.uint(1, "curve_type") == _NAMED_CURVE:
                group = reader.uint(2, "named_curve")
                reader.vector(1, "public point")
            else:
                reader.rest()  # explicit curve parameters: no group code, no scheme read
        elif "_DHE_" in name or "_DH_anon_" in name:
            kind = "dhe"
            prime = reader.vector(2, "dh_p").rest()
            bits = int.from_bytes(prime, "big").bit_length()
            reader.vector(2, "dh_g")
            reader.vector(2, "dh_Ys")
        else:
            return ServerKeyExchangeReceived(
                kind="other", group=None, dh_bits=None, signature_scheme=None, offset=offset
            )
        scheme: int | None = None
        # Anonymous suites send no signature; TLS 1.2 puts its scheme before it (7.4.1.4.1).
        if hello is not None and hello.version >= TLS12 and reader.remaining:
            scheme = reader.uint(2, "signature scheme")
            reader.vector(2, "signature")
            reader.end("ServerKeyExchange")
        return ServerKeyExchangeReceived(
            kind=kind, group=group, dh_bits=bits, signature_scheme=scheme, offset=offset
        )


def _certificates(body: bytes) -> tuple[bytes, ...]:
    """The TLS 1.2 Certificate message (RFC 5246 7.4.2): DER certificates, leaf first."""
    reader = Reader(body)
    chain = reader.vector(3, "certificate_list")
    reader.end("Certificate")
    out: list[bytes] = []
    while chain.remaining:
        der = chain.vector(3, "certificate").rest()
        if len(out) < limits.TLS_KEPT_CERTIFICATES:
            out.append(der)
    return tuple(out)
