"""Events the per-direction parser emits; frozen data, so the tracker and tests can compare them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kexproxy.core.codec import split_name_list
from kexproxy.core.limits import KEPT_NAMES
from kexproxy.core.lists import RFC_NAMES

#: Position of each list in `KexInit.raw_lists` (wire order).
_POSITION: dict[str, int] = {name: i for i, name in enumerate(RFC_NAMES)}


@dataclass(frozen=True, slots=True, kw_only=True)
class KexInit:
    """An SSH_MSG_KEXINIT (RFC 4253 section 7.1); name-lists kept as the exact wire strings."""

    cookie: bytes
    raw_lists: tuple[str, ...]
    first_kex_packet_follows: bool
    reserved: int

    def raw(self, name: str) -> str:
        return self.raw_lists[_POSITION[name]]

    def names(self, name: str) -> tuple[str, ...]:
        return split_name_list(self.raw(name))

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"cookie": self.cookie.hex()}
        for name, raw in zip(RFC_NAMES, self.raw_lists, strict=True):
            out[name] = list(split_name_list(raw)[:KEPT_NAMES])
        out["first_kex_packet_follows"] = self.first_kex_packet_follows
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class PreBannerLine:
    """A line sent before the identification string (RFC 4253 4.2 allows them from servers)."""

    text: str
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Identification:
    """The ``SSH-protoversion-softwareversion [comments]`` line, without its line ending."""

    line: str
    proto_version: str
    software: str
    comments: str | None
    line_ending: Literal["CRLF", "LF"]
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Protocol1:
    """The peer speaks SSH protocol 1 (``SSH-1.x``, not 1.99); the rest is not parsed."""

    version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaintextLine:
    """A text line where a binary packet belonged, such as "Invalid SSH identification string."."""

    text: str
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class KexInitReceived:
    kexinit: KexInit
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class KexMessage:
    """A key exchange method message (30 to 49); its meaning depends on the negotiated method."""

    number: int
    payload: bytes
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NewKeys:
    """SSH_MSG_NEWKEYS: everything after it in this direction is encrypted."""

    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnect:
    reason_code: int
    description: str
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OtherMessage:
    """IGNORE, DEBUG, UNIMPLEMENTED or any other plaintext message, with a short summary."""

    number: int
    summary: str
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Anomaly:
    """Odd but recoverable input; it becomes a note on the session."""

    text: str
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ParseFailed:
    """Terminal: the direction is malformed and inspection of it stops, with the precise reason."""

    reason: str
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEnded:
    """`receive_eof` was called; `pending` bytes were buffered but never formed a whole unit."""

    pending: int
    offset: int


Event = (
    PreBannerLine
    | Identification
    | Protocol1
    | PlaintextLine
    | KexInitReceived
    | KexMessage
    | NewKeys
    | Disconnect
    | OtherMessage
    | Anomaly
    | ParseFailed
    | StreamEnded
)
