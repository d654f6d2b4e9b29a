"""Capture files as a stream of link-layer records: pcap (micro/nanosecond), pcapng, gzip, pipes.

Why not scapy's readers: `RawPcapReader` and `RawPcapNgReader` cut every frame to 65,535
bytes (their `MTU` default) when iterated, which silently truncates loopback captures whose
frames reach 262,144 bytes, and they turn a truncated file or a corrupt gzip stream into a
quiet end of file. Reading records is a few dozen lines of `struct`, and doing it here also
lets the decoder work on offsets into one large read buffer instead of one copy per frame.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import mmap
import os
import stat
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final, cast

#: Bytes asked of the input per read: large enough that a read costs little per frame,
#: small enough to stay a rounding error in the memory budget.
READ_CHUNK: Final = 1 << 20
#: libpcap's largest snap length (MAXIMUM_SNAPLEN): what kexproxy asks of a packet socket
#: per frame and writes in a capture's header. scapy's default, 65,535, would cut loopback
#: frames (MTU 65,536 plus the Ethernet header).
SNAPLEN: Final = 262_144
#: Largest record accepted. libpcap's largest snaplen for the link types decoded here is
#: 262,144 bytes and Linux BIG TCP super-frames stay under 512 KiB; a larger caplen or
#: block length means a corrupt file, and reading it would allocate whatever it claims.
MAX_RECORD: Final = 16 << 20
#: Bytes of a mapped file read between two releases of its pages (`CaptureInput._release`).
_RELEASE_EVERY: Final = 32 << 20
#: 9999-12-31T23:59:59Z, the last second a date in a record can show.
_MAX_TIMESTAMP: Final = 253402300799.0
_PCAP_MAGICS: Final = {
    b"\xa1\xb2\xc3\xd4": (">", 1e-6, "pcap"),
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6, "pcap"),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9, "pcap (nanosecond)"),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9, "pcap (nanosecond)"),
}
_PCAPNG_SHB: Final = b"\x0a\x0d\x0d\x0a"
_GZIP_MAGIC: Final = b"\x1f\x8b"

Record = tuple[int, bytes, int, int, int, float]


class CaptureError(Exception):
    """The input could not be read (missing, not a capture, truncated, corrupt).

    The message is one line naming the input. It is raised only after every connection read
    so far has been handed to `on_finished`, so a caller can report them and this.
    `internal` marks the one raised for an unexpected exception inside the reader (a bug,
    reported like damage so the read still ends cleanly), which a fuzzer must flag.
    """

    def __init__(
        self, message: str, stats: CaptureStats | None = None, *, internal: bool = False
    ) -> None:
        super().__init__(message)
        self.stats = stats
        self.internal = internal


@dataclass(slots=True)
class CaptureStats:
    """What the reader saw, for a summary line: frames by kind and connections found."""

    format: str = ""
    link_types: set[int] = field(default_factory=set)
    frames: int = 0
    tcp_segments: int = 0
    non_tcp_frames: int = 0
    malformed_frames: int = 0
    fragments: int = 0
    truncated_frames: int = 0
    unsupported_link_frames: int = 0
    #: TCP segments that belong to no connection (pure ACKs before any data, packets after
    #: a connection ended).
    stray_segments: int = 0
    tcp_connections: int = 0
    #: pcapng timestamps outside years 1970-9999 (corrupt), replaced by the previous one.
    bad_timestamps: int = 0
    bytes_read: int = 0
    #: TCP segments whose source is their destination (a LAND packet, or a socket connected
    #: to itself): the two directions cannot be told apart, so they are skipped.
    self_addressed_segments: int = 0
    #: Connections ended while still in their handshake to bound memory: idle for
    #: `flowtable.HANDSHAKE_IDLE` capture seconds, or the least recently active beyond
    #: `flowtable.MAX_HANDSHAKING` (a port scan, a SYN flood).
    idle_handshakes: int = 0
    evicted_handshakes: int = 0
    #: Frames (or connection ends) whose handling raised: a bug in kexproxy. The frame was
    #: skipped and its connections ended with what they had heard.
    internal_errors: int = 0


class _Prefixed:
    """A stream with bytes already read put back in front, so magic bytes can be sniffed."""

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        if self._prefix:
            head, self._prefix = (
                (self._prefix, b"") if n < 0 else (self._prefix[:n], self._prefix[n:])
            )
            return head
        return self._stream.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        # gzip only seeks to rewind, which a pipe cannot do either.
        raise io.UnsupportedOperation("seek")


class CaptureInput:
    """The opened input: label, raw stream, optional gzip layer and the record reader."""

    def __init__(self, source: str | os.PathLike[str] | BinaryIO, stdin: BinaryIO | None):
        self._owned: BinaryIO | None = None
        self.total: int | None = None
        self.link_types: set[int] = set()
        self._decompressed = 0
        self._gzip = False
        self.format = ""
        #: Packet blocks naming an interface the file never described, or overrunning their block.
        self.bad_records = 0
        self.bad_timestamps = 0
        self._mapped: mmap.mmap | None = None
        self._mapped_pos = 0
        if isinstance(source, (str, os.PathLike)):
            name = os.fspath(source)
            if name == "-":
                self.label = "stdin"
                self._raw: BinaryIO = stdin if stdin is not None else sys.stdin.buffer
            else:
                self.label = name
                try:
                    self._owned = self._raw = open(name, "rb")  # noqa: SIM115 - closed in __exit__
                except OSError as exc:
                    reason = (exc.strerror or str(exc)).lower()
                    raise CaptureError(f"{name}: {reason}") from None
        else:
            self.label = getattr(source, "name", None) or "stream"
            self._raw = source
        self._stream: BinaryIO | gzip.GzipFile = self._raw
        try:
            st = os.fstat(self._raw.fileno())
        except (OSError, AttributeError, ValueError):
            st = None
        if st is not None and stat.S_ISREG(st.st_mode):
            self.total = st.st_size
            self._seekable = True
        else:
            self._seekable = False

    def __enter__(self) -> CaptureInput:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._mapped is not None:
            # A frame still referenced keeps the map until its last reference goes.
            with contextlib.suppress(BufferError):
                self._mapped.close()
        if self._owned is not None:
            self._owned.close()

    def consumed(self) -> int:
        """Bytes of the input read so far (compressed bytes for gzip), for progress."""
        if self._mapped is not None:
            return self._mapped_pos
        return self._raw.tell() if self._seekable else self._decompressed

    def _map(self) -> mmap.mmap | None:
        """The whole file mapped read-only, for a plain pcap file kexproxy opened itself.

        Frames are then read in place: no read calls and no copies of the file into a
        buffer, about a third of the reader's time on a large capture. Pipes, gzip and
        files handed in open (their position is theirs) are read as streams.
        """
        if self._owned is None or self._gzip or not self._seekable:
            return None
        try:
            mapped = mmap.mmap(self._owned.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None  # an empty or special file: the stream reader says what it is
        self._mapped = mapped
        return mapped

    def _fail(self, what: str) -> CaptureError:
        return CaptureError(f"{self.label}: {what}")

    def _read(self, n: int) -> bytes:
        """At most `n` bytes, whatever is available (a pipe is not waited on to fill `n`)."""
        read1 = getattr(self._stream, "read1", None)
        try:
            data: bytes = read1(n) if read1 is not None else self._stream.read(n)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise self._fail(f"corrupt or truncated gzip data ({exc})") from None
        except OSError as exc:
            raise self._fail(f"read error ({exc.strerror or exc})") from None
        self._decompressed += len(data)
        return data

    def _read_exact(self, n: int) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < n:
            data = self._read(n - got)
            if not data:
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def records(self) -> Iterator[Record]:
        """Every captured frame as (linktype, buf, start, end, wirelen, timestamp)."""
        head = self._read_exact(4)
        if head[:2] == _GZIP_MAGIC:
            self._gzip = True
            self._stream = gzip.GzipFile(fileobj=_Prefixed(head, self._raw), mode="rb")
            head = self._read_exact(4)
            if not head:
                raise self._fail("gzip file holds no capture")
        if not head:
            raise self._fail("empty file (not a pcap or pcapng file)")
        if head in _PCAP_MAGICS:
            return self._pcap(head)
        if head == _PCAPNG_SHB:
            return self._pcapng(head)
        shown = " ".join(f"{b:02x}" for b in head)
        inner = " inside gzip" if self._gzip else ""
        raise self._fail(f"not a pcap or pcapng file{inner} (starts with {shown})")

    def _refill(self, buf: bytes, pos: int, need: int) -> bytes:
        """`buf[pos:]` extended to at least `need` bytes when the input has them."""
        parts = [buf[pos:]]
        have = len(buf) - pos
        while have < need:
            data = self._read(max(READ_CHUNK, need - have))
            if not data:
                break
            parts.append(data)
            have += len(data)
        return b"".join(parts)

    def _pcap(self, magic: bytes) -> Iterator[Record]:
        endian, scale, fmt = _PCAP_MAGICS[magic]
        header = self._read_exact(20)
        if len(header) < 20:
            raise self._fail("truncated pcap file header")
        _major, _minor, _tz, _sigfigs, _snaplen, linkfield = struct.unpack(
            endian + "HHiIII", header
        )
        # The upper bits may carry FCS information (pcap spec, "LinkType and additional
        # information"); libpcap keeps the low 26 bits as the link type.
        linktype = linkfield & 0x03FFFFFF
        self.format = f"{fmt}+gzip" if self._gzip else fmt
        self.link_types.add(linktype)
        unpack = struct.Struct(endian + "IIII").unpack_from
        mapped = self._map()
        if mapped is not None:
            return self._pcap_mapped(mapped, linktype, unpack, scale)
        return self._pcap_stream(linktype, unpack, scale)

    def _pcap_stream(self, linktype: int, unpack: Any, scale: float) -> Iterator[Record]:
        """`_pcap`'s records read from a stream (a pipe, gzip, a file handed in open)."""
        buf = b""
        pos = 0
        index = 0
        try:
            while True:
                if len(buf) - pos < 16:
                    buf = self._refill(buf, pos, 16)
                    pos = 0
                    if not buf:
                        return
                    if len(buf) < 16:
                        raise self._truncated(index, "record header")
                sec, frac, caplen, wirelen = unpack(buf, pos)
                start = pos + 16
                end = start + caplen
                if end > len(buf):
                    if caplen > MAX_RECORD:
                        raise self._fail(
                            f"record {index + 1} claims {caplen} captured bytes (corrupt file)"
                        )
                    buf = self._refill(buf, pos, 16 + caplen)
                    pos = 0
                    start = 16
                    end = start + caplen
                    if end > len(buf):
                        raise self._truncated(index, "frame")
                yield linktype, buf, start, end, wirelen, sec + frac * scale
                pos = end
                index += 1
        except (CaptureError, MemoryError):
            raise
        except Exception as exc:
            raise self._bug(index, exc) from exc

    def _pcap_mapped(
        self, buf: mmap.mmap, linktype: int, unpack: Any, scale: float
    ) -> Iterator[Record]:
        """`_pcap`'s records from the mapped file: the same records, checks and errors."""
        size = len(buf)
        # Typed as bytes for the decoders: what they do with a frame's buffer (index it,
        # slice it into bytes, struct.unpack_from it) a map does the same.
        frames = cast(bytes, buf)
        pos = 24  # the magic and the file header
        released = 0
        index = 0
        try:
            while True:
                if size - pos < 16:
                    if size == pos:
                        return
                    raise self._truncated(index, "record header")
                sec, frac, caplen, wirelen = unpack(buf, pos)
                start = pos + 16
                end = start + caplen
                if end > size or caplen > MAX_RECORD:
                    if caplen > MAX_RECORD:
                        raise self._fail(
                            f"record {index + 1} claims {caplen} captured bytes (corrupt file)"
                        )
                    raise self._truncated(index, "frame")
                yield linktype, frames, start, end, wirelen, sec + frac * scale
                pos = end
                index += 1
                if not index & 0xFFF:
                    self._mapped_pos = pos
                    if pos - released >= _RELEASE_EVERY:
                        released = self._release(buf, released, pos)
        except (CaptureError, MemoryError):
            raise
        except Exception as exc:
            raise self._bug(index, exc) from exc
        finally:
            self._mapped_pos = pos

    @staticmethod
    def _release(buf: mmap.mmap, released: int, pos: int) -> int:
        """Drops the pages already read from this process (they stay in the page cache):
        frames are copied out as they are read, so none is referenced, and without this a
        mapped file's every page would count in the reader's resident memory."""
        upto = pos - pos % mmap.PAGESIZE
        if upto > released and hasattr(buf, "madvise"):
            with contextlib.suppress(OSError, ValueError):
                buf.madvise(mmap.MADV_DONTNEED, released, upto - released)
        return upto

    def _clock(self, ts: float, previous: float) -> float:
        """A pcapng timestamp, or the previous one when it is outside what a date can be.

        A 64-bit tick count with a corrupt resolution or offset can land far past year 9999
        or before 1970; the frame itself may still be whole, so it is kept.
        """
        if 0.0 <= ts <= _MAX_TIMESTAMP:
            return ts
        self.bad_timestamps += 1
        return previous

    def _bug(self, index: int, exc: Exception) -> CaptureError:
        """An exception no damage check foresaw: reported as the file's, flagged as ours."""
        what = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return CaptureError(
            f"{self.label}: unreadable record {index + 1} ({what}); "
            "this is a kexproxy bug, please report it with the file",
            internal=True,
        )

    def _truncated(self, index: int, what: str) -> CaptureError:
        return self._fail(
            f"truncated capture: the file ends inside the {what} of record {index + 1}"
        )

    def _pcapng(self, magic: bytes) -> Iterator[Record]:
        """pcapng (draft-ietf-opsawg-pcapng): sections, interfaces and packet blocks."""
        buf = magic
        pos = 0
        endian = "<"
        # Per interface: (linktype, seconds per tick, offset in seconds, snaplen).
        interfaces: list[tuple[int, float, int, int]] = []
        index = 0
        last_ts = 0.0
        self.format = "pcapng+gzip" if self._gzip else "pcapng"
        try:
            while True:
                if len(buf) - pos < 12:
                    buf = self._refill(buf, pos, 12)
                    pos = 0
                    if not buf:
                        return
                    if len(buf) < 12:
                        raise self._truncated(index, "block header")
                btype = buf[pos : pos + 4]
                if btype == _PCAPNG_SHB:
                    bom = buf[pos + 8 : pos + 12]
                    if bom == b"\x1a\x2b\x3c\x4d":
                        endian = ">"
                    elif bom == b"\x4d\x3c\x2b\x1a":
                        endian = "<"
                    else:
                        raise self._fail(
                            f"corrupt pcapng section header (byte order mark {bom.hex()})"
                        )
                    interfaces = []
                (blen,) = struct.unpack_from(endian + "I", buf, pos + 4)
                if blen < 12 or blen % 4 or blen > MAX_RECORD:
                    raise self._fail(f"corrupt pcapng block {index + 1} (length {blen})")
                if len(buf) - pos < blen:
                    buf = self._refill(buf, pos, blen)
                    pos = 0
                    if len(buf) < blen:
                        raise self._truncated(index, "block")
                (tail,) = struct.unpack_from(endian + "I", buf, pos + blen - 4)
                if tail != blen:
                    raise self._fail(
                        f"corrupt pcapng block {index + 1} (lengths {blen} and {tail})"
                    )
                (kind,) = struct.unpack_from(endian + "I", buf, pos)
                body = pos + 8
                body_end = pos + blen - 4
                if kind == 6 and body_end - body >= 20:  # enhanced packet block
                    ifid, hi, lo, caplen, wirelen = struct.unpack_from(endian + "IIIII", buf, body)
                    start = body + 20
                    if ifid < len(interfaces) and start + caplen <= body_end:
                        lt, tick, toff, _snap = interfaces[ifid]
                        last_ts = self._clock(((hi << 32) | lo) * tick + toff, last_ts)
                        yield lt, buf, start, start + caplen, wirelen, last_ts
                    else:
                        self.bad_records += 1
                elif kind == 3 and interfaces and body_end - body >= 4:  # simple packet block
                    (wirelen,) = struct.unpack_from(endian + "I", buf, body)
                    lt, tick, toff, snap = interfaces[0]
                    caplen = min(wirelen, body_end - body - 4, snap or wirelen)
                    # A simple packet block has no timestamp: the last one seen stands in.
                    yield lt, buf, body + 4, body + 4 + caplen, wirelen, last_ts
                elif kind == 2 and body_end - body >= 20:  # obsolete packet block
                    ifid, _drops, hi, lo, caplen, wirelen = struct.unpack_from(
                        endian + "HHIIII", buf, body
                    )
                    start = body + 20
                    if ifid < len(interfaces) and start + caplen <= body_end:
                        lt, tick, toff, _snap = interfaces[ifid]
                        last_ts = self._clock(((hi << 32) | lo) * tick + toff, last_ts)
                        yield lt, buf, start, start + caplen, wirelen, last_ts
                elif kind == 1 and body_end - body >= 8:  # interface description block
                    lt, _reserved, snap = struct.unpack_from(endian + "HHI", buf, body)
                    clock = _idb_time(buf, body + 8, body_end, endian)
                    if clock is None:
                        raise self._fail(
                            f"corrupt pcapng interface block {index + 1} "
                            "(an option runs past the end of the block)"
                        )
                    tick, toff = clock
                    interfaces.append((lt, tick, toff, snap))
                    self.link_types.add(lt)
                pos += blen
                index += 1
        except (CaptureError, MemoryError):
            raise
        except Exception as exc:
            raise self._bug(index, exc) from exc


def _idb_time(buf: bytes, pos: int, end: int, endian: str) -> tuple[float, int] | None:
    """An interface's clock: seconds per timestamp tick and the offset in seconds, or None
    when an option claims more bytes than the block holds (`buf` goes on past `end`, so
    reading it would take the next block's bytes, or fail at the end of the buffer)."""
    tick = 1e-6
    offset = 0
    while pos + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", buf, pos)
        if code == 0:
            break
        value = pos + 4
        if value + length > end:
            return None
        if code == 9 and length >= 1:  # if_tsresol
            res = buf[value]
            tick = 2.0 ** -(res & 0x7F) if res & 0x80 else 10.0**-res
        elif code == 14 and length >= 8:  # if_tsoffset
            (offset,) = struct.unpack_from(endian + "q", buf, value)
        pos = value + length + (-length % 4)
    return tick, offset
