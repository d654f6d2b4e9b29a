"""Server log files (sshd's, dropbear's) read line by line into session records with source "log".

The lines are parsed and joined by the core (`kexproxy.core.sshdlog`); this module does the
I/O: a file, gzip or not (by its magic bytes), or standard input, read in bounded lines, and
the date the year-less syslog format needs. A syslog line has no year: it is taken from the
file's last change (`--year` overrides it; standard input uses the current year), and a
month after that change's month is of the year before. Times without a zone are the local
time of the machine that reads them, as syslog writes them on the machine that logs.
"""

from __future__ import annotations

import gzip
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Final

from kexproxy.core.record import SessionRecord
from kexproxy.core.sshdlog import SshdLogReader
from kexproxy.core.sshdlog_record import finding_record

#: Longest line read whole, in bytes; the rest of a longer one is skipped (and counted).
#: sshd's stderr line is at most 1,024 bytes, a journal JSON entry a few kilobytes.
MAX_LINE_BYTES: Final = 65_536
_GZIP_MAGIC: Final = b"\x1f\x8b"


class LogFileError(Exception):
    """A log that cannot be read (missing, unreadable, a damaged gzip); one line for people."""

    def __init__(self, message: str, stats: LogStats | None = None) -> None:
        super().__init__(message)
        self.stats = stats


@dataclass(slots=True)
class LogStats:
    """What one log gave: lines read, lines of sshd or dropbear, records, and what was cut."""

    lines: int = 0
    server_lines: int = 0
    records: int = 0
    long_lines: int = 0
    forgotten: int = 0
    unaddressed: int = 0


def log_label(path: str) -> str:
    return "stdin" if path == "-" else Path(path).name


def read_log(
    path: str,
    emit: Callable[[SessionRecord], None],
    *,
    year: int | None = None,
) -> LogStats:
    """Emits a record per verdict line of the log at `path` ("-" for standard input).

    Raises `LogFileError` for a log that cannot be opened or is cut short (after emitting
    every record read before the damage).
    """
    now = datetime.now().astimezone()
    zone = now.tzinfo
    assert zone is not None  # astimezone() always sets one
    last_month = 12
    if year is None:
        year, last_month = now.year, now.month
        if path != "-":
            try:
                changed = datetime.fromtimestamp(os.stat(path).st_mtime).astimezone()
                year, last_month = changed.year, changed.month
            except (OSError, ValueError, OverflowError):
                pass  # open() below says what is wrong with the file
    reader = SshdLogReader(year=year, zone=zone, last_month=last_month)
    stats = LogStats()
    capture = None if path == "-" else path
    try:
        opened = _Opened(path)
    except OSError as exc:
        raise LogFileError(f"{path}: {exc.strerror or exc}") from exc
    try:
        with opened as handle:
            for line in _lines(handle, stats):
                for finding in reader.receive_line(line):
                    emit(finding_record(finding, capture=capture))
                    stats.records += 1
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise LogFileError(f"{path}: {why or type(exc).__name__}", _done(stats, reader)) from exc
    return _done(stats, reader)


def _done(stats: LogStats, reader: SshdLogReader) -> LogStats:
    stats.lines = reader.lines
    stats.server_lines = reader.server_lines
    stats.forgotten = reader.forgotten
    stats.unaddressed = reader.unaddressed
    return stats


class _Opened:
    """A binary stream of the log, gunzipped where it starts with gzip's magic bytes."""

    def __init__(self, path: str) -> None:
        self.raw: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
        self.owned = path != "-"
        self.stream: BinaryIO = self.raw
        try:
            head = self.raw.peek(2)[:2] if hasattr(self.raw, "peek") else b""
        except OSError:
            if self.owned:
                self.raw.close()
            raise
        if head == _GZIP_MAGIC:
            self.stream = gzip.GzipFile(fileobj=self.raw, mode="rb")  # type: ignore[assignment]

    def __enter__(self) -> BinaryIO:
        return self.stream

    def __exit__(self, *exc: object) -> None:
        if self.stream is not self.raw:
            self.stream.close()
        if self.owned:
            self.raw.close()


def _lines(handle: BinaryIO, stats: LogStats) -> Iterator[str]:
    """Each line as text (bytes that are not UTF-8 kept as \\xNN escapes), at most
    `MAX_LINE_BYTES` of it; the rest of a longer line is read past and counted."""
    while True:
        chunk = handle.readline(MAX_LINE_BYTES)
        if not chunk:
            return
        if len(chunk) == MAX_LINE_BYTES and not chunk.endswith(b"\n"):
            stats.long_lines += 1
            while True:
                rest = handle.readline(MAX_LINE_BYTES)
                if not rest or rest.endswith(b"\n"):
                    break
        yield chunk.decode("utf-8", "backslashreplace")
