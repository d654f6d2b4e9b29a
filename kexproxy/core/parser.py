"""One direction of an SSH transport stream, parsed up to NEWKEYS, sans I/O.

Theory of operation: a `DirectionParser` is fed the bytes one peer sent, in order, in
chunks of any size, and returns the events those bytes complete. It walks three states:

* ``BANNER``: lines up to the ``SSH-`` identification line (RFC 4253 section 4.2); other
  lines may come first. Binary bytes before any identification mean "not SSH".
* ``PACKETS``: binary packets with the "none" cipher and no MAC (RFC 4253 section 6),
  checked against OpenSSH's limits, until SSH_MSG_NEWKEYS.
* ``OPAQUE``: encrypted, protocol 1, or given up: bytes are only counted.

Any segmentation of the same stream gives the same events: decisions are made only on
whole lines and whole packets, never on chunk boundaries. Nothing here raises on wire
input; malformed bytes end in one `ParseFailed` and the state ``FAILED``.
"""

from __future__ import annotations

import re
from enum import Enum

from kexproxy.core import limits
from kexproxy.core.codec import Cursor, DecodeError, decode_text
from kexproxy.core.events import (
    Anomaly,
    Disconnect,
    Event,
    Identification,
    KexInit,
    KexInitReceived,
    KexMessage,
    NewKeys,
    OtherMessage,
    ParseFailed,
    PlaintextLine,
    PreBannerLine,
    Protocol1,
    StreamEnded,
)
from kexproxy.core.lists import RFC_NAMES
from kexproxy.core.messages import KEX_METHOD_FIRST, KEX_METHOD_LAST, Msg, message_name


class State(Enum):
    BANNER = "banner"
    PACKETS = "packets"
    OPAQUE = "opaque"
    FAILED = "failed"


#: Bytes that may not appear in text lines; one before the identification means "not SSH".
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


_SSH_PREFIX = b"SSH-"


def _first_control(chunk: bytes | bytearray, end: int | None = None) -> int:
    """Index of the first control byte (not TAB, CR or LF) in ``chunk[:end]``, or -1."""
    found = _CONTROL.search(chunk, 0, len(chunk) if end is None else end)
    return -1 if found is None else found.start()


def _is_printable_ascii(byte: int) -> bool:
    return 0x20 <= byte < 0x7F


def _active(state: State) -> bool:
    return state is State.BANNER or state is State.PACKETS


class DirectionParser:
    """Parses what one peer sends; `receive_data` returns the events the bytes complete."""

    __slots__ = (
        "_buf",
        "_consumed",
        "_kexinits",
        "_odd_padding_noted",
        "_pre_banner_lines",
        "opaque_reason",
        "packets",
        "state",
    )

    def __init__(self) -> None:
        self._buf = bytearray()
        self._consumed = 0  # stream offset of _buf[0]
        self._pre_banner_lines = 0
        self._kexinits = 0
        self._odd_padding_noted = False
        self.state = State.BANNER
        self.packets = 0
        #: Why the direction stopped being parsed (NEWKEYS, protocol 1, failure), for notes.
        self.opaque_reason: str | None = None

    @property
    def offset(self) -> int:
        """Stream offset of the first byte not yet consumed into an event."""
        return self._consumed

    @property
    def banner_started(self) -> bool:
        """An identification line is under way ("SSH-" and more, no line end yet)."""
        return self.state is State.BANNER and self._buf.startswith(_SSH_PREFIX)

    @property
    def parsing(self) -> bool:
        """False once the direction is opaque or failed: its bytes need only be counted."""
        return _active(self.state)

    def receive_data(self, data: bytes) -> list[Event]:
        if not self.parsing:
            return []
        self._buf += data
        events: list[Event] = []
        progressed = True
        while progressed:
            if self.state is State.BANNER:
                progressed = self._banner_step(events)
            elif self.state is State.PACKETS:
                progressed = self._packet_step(events)
            else:
                progressed = False
        if not _active(self.state):
            self._buf = bytearray()
        return events

    def receive_eof(self) -> list[Event]:
        """The peer's stream ended (FIN, end of capture, or a gap): report what was pending."""
        if not self.parsing:
            return [StreamEnded(pending=0, offset=self._consumed)]
        pending = len(self._buf)
        events: list[Event] = []
        if self.state is State.BANNER and pending:
            events.append(
                Anomaly(
                    text=f"stream ended inside a line before the identification ({pending} bytes)",
                    offset=self._consumed,
                )
            )
        elif self.state is State.PACKETS and pending:
            events.append(
                Anomaly(
                    text=f"stream ended inside a packet ({pending} bytes of it seen)",
                    offset=self._consumed,
                )
            )
        self._buf = bytearray()
        self.state = State.OPAQUE
        self.opaque_reason = "end of stream"
        events.append(StreamEnded(pending=pending, offset=self._consumed))
        return events

    # -- helpers ---------------------------------------------------------------------------

    def _consume(self, n: int) -> bytes:
        chunk = bytes(self._buf[:n])
        del self._buf[:n]
        self._consumed += n
        return chunk

    def _fail(self, events: list[Event], reason: str, offset: int | None = None) -> bool:
        events.append(
            ParseFailed(reason=reason, offset=self._consumed if offset is None else offset)
        )
        self.state = State.FAILED
        self.opaque_reason = reason
        return False

    # -- identification (RFC 4253 section 4.2) ----------------------------------------------

    def _banner_step(self, events: list[Event]) -> bool:
        window = limits.MAX_LINE + 1
        newline = self._buf.find(b"\n", 0, window)
        end = window if newline < 0 else newline
        if self._buf.startswith(_SSH_PREFIX[: len(self._buf)]):
            # The identification line itself: OpenSSH refuses only a NUL in it (and a CR not
            # before the LF); other control bytes, an ESC among them, pass and are an anomaly.
            control = self._buf.find(b"\0", 0, end)
        else:
            control = _first_control(self._buf, end)
        if control >= 0:
            return self._fail(events, self._not_ssh_reason(control), self._consumed + control)
        if newline < 0:
            if len(self._buf) > limits.MAX_LINE:
                return self._fail(
                    events, f"no line end within {limits.MAX_LINE} bytes before the identification"
                )
            return False
        offset = self._consumed
        raw = self._consume(newline + 1)
        crlf = raw.endswith(b"\r\n")
        body = raw[:-2] if crlf else raw[:-1]
        if not body.startswith(b"SSH-"):
            self._pre_banner_lines += 1
            if self._pre_banner_lines > limits.MAX_PRE_BANNER_LINES:
                return self._fail(
                    events,
                    f"more than {limits.MAX_PRE_BANNER_LINES} lines before the identification",
                    offset,
                )
            events.append(PreBannerLine(text=decode_text(body), offset=offset))
            return True
        return self._identification(events, body, crlf, len(raw), offset)

    def _not_ssh_reason(self, index: int) -> str:
        byte = self._buf[index]
        if self._buf.startswith(_SSH_PREFIX):
            return (
                f"identification line contains a NUL byte (at offset {self._consumed + index}); "
                f"OpenSSH refuses it: banner line contains invalid characters"
            )
        return (
            f"binary data before any SSH identification line "
            f"(byte 0x{byte:02x} at offset {self._consumed + index})"
        )

    def _identification(
        self, events: list[Event], body: bytes, crlf: bool, length: int, offset: int
    ) -> bool:
        line = decode_text(body)
        rest = line[4:]
        proto, dash, software_and_comments = rest.partition("-")
        software, space, comments = software_and_comments.partition(" ")
        events.append(
            Identification(
                line=line,
                proto_version=proto,
                software=software,
                comments=comments if space else None,
                line_ending="CRLF" if crlf else "LF",
                offset=offset,
            )
        )
        if length > limits.RFC_MAX_IDENTIFICATION:
            events.append(
                Anomaly(
                    text=f"identification line is {length} bytes, over RFC 4253's "
                    f"{limits.RFC_MAX_IDENTIFICATION}",
                    offset=offset,
                )
            )
        if _first_control(body) >= 0 or b"\r" in body:
            events.append(
                Anomaly(text="identification line contains control characters", offset=offset)
            )
        if not dash:
            return self._fail(events, "identification line has no software version", offset)
        if proto in ("2.0", "1.99"):
            self.state = State.PACKETS
            return True
        if proto.startswith("1."):
            events.append(Protocol1(version=proto))
            self.state = State.OPAQUE
            self.opaque_reason = f"SSH protocol {proto} (not parsed)"
            return False
        return self._fail(events, f"unsupported protocol version {proto!r}", offset)

    # -- binary packets (RFC 4253 section 6) -------------------------------------------------

    def _packet_step(self, events: list[Event]) -> bool:
        buf = self._buf
        if len(buf) < 5:
            # No valid packet length starts with a printable byte, so even a short line
            # ("ab\n") is text; waiting for more bytes would misreport it at EOF.
            if buf and _is_printable_ascii(buf[0]):
                return self._plaintext_line(events)
            return False
        packet_length = int.from_bytes(buf[0:4], "big")
        if packet_length > limits.MAX_PACKET_LENGTH or packet_length < 5:
            if _is_printable_ascii(buf[0]):
                return self._plaintext_line(events)
            return self._fail(
                events,
                f"bad packet length {packet_length} (OpenSSH accepts 5 to "
                f"{limits.MAX_PACKET_LENGTH})",
            )
        if len(buf) < 4 + packet_length:
            return False
        offset = self._consumed
        packet = self._consume(4 + packet_length)
        padding = packet[4]
        payload_length = packet_length - padding - 1
        if payload_length < 1:
            return self._fail(
                events,
                f"padding length {padding} leaves no payload in a packet of length {packet_length}",
                offset,
            )
        if not self._odd_padding_noted and (
            padding < limits.MIN_PADDING or (packet_length + 4) % limits.CLEAR_BLOCK_SIZE
        ):
            self._odd_padding_noted = True
            events.append(
                Anomaly(
                    text=f"packet at offset {offset} breaks RFC 4253's padding rules "
                    f"(length {packet_length}, padding {padding})",
                    offset=offset,
                )
            )
        self.packets += 1
        return self._message(events, packet, 5, 5 + payload_length, offset)

    def _plaintext_line(self, events: list[Event]) -> bool:
        """A peer that prints a refusal ("Protocol mismatch.") instead of sending packets."""
        newline = self._buf.find(b"\n", 0, limits.MAX_TEXT)
        control = _first_control(self._buf, limits.MAX_TEXT if newline < 0 else newline)
        if control >= 0:
            byte = self._buf[control]
            return self._fail(
                events,
                f"garbage where a binary packet belongs (byte 0x{byte:02x} at offset "
                f"{self._consumed + control})",
                self._consumed + control,
            )
        if newline < 0:
            if len(self._buf) >= limits.MAX_TEXT:
                return self._fail(events, "text where a binary packet belongs, with no line end")
            return False
        offset = self._consumed
        raw = self._consume(newline + 1)
        events.append(PlaintextLine(text=decode_text(raw.rstrip(b"\r\n")), offset=offset))
        return True

    def _message(
        self, events: list[Event], packet: bytes, start: int, end: int, offset: int
    ) -> bool:
        number = packet[start]
        cursor = Cursor(packet, start + 1, end)
        try:
            if number == Msg.KEXINIT:
                return self._kexinit(events, cursor, offset)
            if number == Msg.NEWKEYS:
                events.append(NewKeys(offset=offset))
                self.state = State.OPAQUE
                self.opaque_reason = "SSH_MSG_NEWKEYS (the rest is encrypted)"
                return False
            if number == Msg.DISCONNECT:
                code = cursor.uint32("reason code")
                description = cursor.string("description")[: limits.MAX_TEXT]
                events.append(
                    Disconnect(
                        reason_code=code, description=decode_text(description), offset=offset
                    )
                )
                return True
            if KEX_METHOD_FIRST <= number <= KEX_METHOD_LAST:
                events.append(KexMessage(number=number, payload=cursor.rest(), offset=offset))
                return True
            events.append(
                OtherMessage(number=number, summary=_summary(number, cursor), offset=offset)
            )
            return True
        except DecodeError as exc:
            return self._fail(
                events, f"malformed {message_name(number)} at offset {offset}: {exc}", offset
            )

    def _kexinit(self, events: list[Event], cursor: Cursor, offset: int) -> bool:
        cookie = cursor.take(16, "cookie")
        lists = tuple(cursor.name_list(name) for name in RFC_NAMES)
        follows = cursor.boolean("first_kex_packet_follows")
        reserved = cursor.uint32("reserved")
        self._kexinits += 1
        events.append(
            KexInitReceived(
                kexinit=KexInit(
                    cookie=cookie,
                    raw_lists=lists,
                    first_kex_packet_follows=follows,
                    reserved=reserved,
                ),
                offset=offset,
            )
        )
        if cursor.remaining:
            events.append(
                Anomaly(
                    text=f"SSH_MSG_KEXINIT has {cursor.remaining} bytes after its reserved field",
                    offset=offset,
                )
            )
        if self._kexinits > 1:
            events.append(Anomaly(text="a second SSH_MSG_KEXINIT before NEWKEYS", offset=offset))
        return True


def _summary(number: int, cursor: Cursor) -> str:
    """A short, bounded description of a plaintext message that has no event of its own."""
    if number == Msg.DEBUG:
        cursor.boolean("always_display")
        text = decode_text(cursor.string("message")[: limits.MAX_TEXT])
        return f"SSH_MSG_DEBUG: {text}"
    if number == Msg.UNIMPLEMENTED:
        return f"SSH_MSG_UNIMPLEMENTED for packet {cursor.uint32('sequence number')}"
    return message_name(number)
