"""Readers for the RFC 4251 section 5 data types over a bounded cursor.

Every read checks its bounds first and raises `DecodeError` with what was expected and
where, so a caller can turn garbage into one precise `ParseFailed` reason.
"""

from __future__ import annotations


class DecodeError(ValueError):
    """A field did not fit in the bytes that remain; the message says which and where."""


class Cursor:
    """A read position over an immutable buffer; reads advance it or raise `DecodeError`."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end

    @property
    def position(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self._pos + n > self._end:
            raise DecodeError(f"{what}: needs {n} bytes, {self.remaining} left")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def byte(self, what: str) -> int:
        if self._pos >= self._end:
            raise DecodeError(f"{what}: needs 1 byte, 0 left")
        value = self._data[self._pos]
        self._pos += 1
        return value

    def boolean(self, what: str) -> bool:
        return self.byte(what) != 0

    def uint32(self, what: str) -> int:
        if self._pos + 4 > self._end:
            raise DecodeError(f"{what}: needs 4 bytes, {self.remaining} left")
        value = int.from_bytes(self._data[self._pos : self._pos + 4], "big")
        self._pos += 4
        return value

    def string(self, what: str) -> bytes:
        length = self.uint32(f"{what} length")
        if length > self.remaining:
            raise DecodeError(f"{what}: length {length} exceeds the {self.remaining} bytes left")
        return self.take(length, what)

    def mpint(self, what: str) -> int:
        """RFC 4251 mpint: two's complement, big-endian; negative values are legal on the wire."""
        raw = self.string(what)
        return int.from_bytes(raw, "big", signed=True) if raw else 0

    def name_list(self, what: str) -> str:
        """The name-list as one string, decoded without losing bytes (invalid UTF-8 escaped)."""
        return decode_text(self.string(what))

    def rest(self) -> bytes:
        chunk = self._data[self._pos : self._end]
        self._pos = self._end
        return chunk


def decode_text(raw: bytes) -> str:
    """Text from the wire as a str that keeps every byte: invalid UTF-8 becomes ``\\xNN``."""
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


def split_name_list(raw: str) -> tuple[str, ...]:
    """RFC 4251 name-list into names; the empty string is the empty list, as on the wire."""
    return tuple(raw.split(",")) if raw else ()
