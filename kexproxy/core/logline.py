"""One line of a system log split into time, host, program, pid and message, whatever its format.

Theory of operation: sshd and dropbear write the same message text wherever it ends up; only
the prefix differs. `split_line` tries each prefix in turn, most specific first, and returns a
`LogLine` (the message is never altered beyond a trailing CR). The formats:

- ``journalctl -o json``: one JSON object per line (MESSAGE, _HOSTNAME, __REALTIME_TIMESTAMP in
  microseconds, _PID or SYSLOG_PID, SYSLOG_IDENTIFIER); journald gives a MESSAGE that is not
  UTF-8 as an array of byte values.
- RFC 5424 (``<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG``).
- ISO timestamps, as ``journalctl -o short-iso`` and rsyslog's RFC 3339 file format write them
  (``2026-12-07T18:01:49+0000 host sshd[42]: ...``).
- BSD syslog (RFC 3164, ``Dec  7 18:01:49 host sshd[42]: ...``), which has no year and no
  zone: the caller says which year and zone the file is in.
- dropbear ``-E`` (svr-session.c:svr_dropbear_log: ``[pid] Dec 07 18:01:49 message``, local
  time, no year).
- ``sshd -e``: the bare message (log.c:do_log writes no prefix to stderr), no time, no pid.

The core never reads a clock: a line without a time has none (`LogLine.ts` is None).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Final

#: Longest line looked at; the rest is cut. sshd's syslog line is at most 500 characters
#: (log.c:do_log "%.500s") and its stderr line 1,024 (MSGBUFSIZ); a journal JSON line carries
#: some thirty fields around the message.
MAX_LINE_CHARS: Final = 16_384
#: Longest host, program or field name kept from a line.
MAX_FIELD_CHARS: Final = 255

_MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_TAG = r"(?P<prog>[^\s\[\]:]{1,255})(?:\[(?P<pid>\d{1,10})\])?:"
_BSD = re.compile(
    r"(?:<\d{1,3}>)?(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) "
    r"(?P<hms>\d\d:\d\d:\d\d)(?:\.\d{1,9})? (?P<host>\S{1,255}) " + _TAG + r" ?(?P<msg>.*)",
    re.DOTALL,
)
_ISO = re.compile(
    r"(?:<\d{1,3}>)?(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d{1,9})?"
    r"(?:Z|[+-]\d\d:?\d\d)?) (?P<host>\S{1,255}) " + _TAG + r" ?(?P<msg>.*)",
    re.DOTALL,
)
_RFC5424 = re.compile(
    r"<\d{1,3}>1 (?P<ts>\S{1,64}) (?P<host>\S{1,255}) (?P<prog>\S{1,48}) (?P<pid>\S{1,128}) "
    r"\S{1,32} (?:-|(?:\[(?:[^\]\\]|\\.)*\])+) ?(?:\ufeff)?(?P<msg>.*)",
    re.DOTALL,
)
_DROPBEAR = re.compile(
    r"\[(?P<pid>\d{1,10})\] (?P<mon>[A-Z][a-z]{2}) (?P<day>\d\d) (?P<hms>\d\d:\d\d:\d\d) "
    r"(?P<msg>.*)",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogLine:
    """A log line's parts; `host`, `program`, `pid` and `ts` are None where the format has none."""

    message: str
    ts: float | None = None
    host: str | None = None
    program: str | None = None
    pid: int | None = None
    #: The format recognised: "json", "rfc5424", "iso", "syslog", "dropbear", "bare".
    form: str = "bare"


def split_line(line: str, *, year: int, zone: tzinfo, last_month: int = 12) -> LogLine:
    """The line's parts; never raises. `year` and `zone` date the formats that have neither;
    a month after `last_month` is of the year before (a log that began before New Year,
    dated by its file's last change)."""
    text = line[:MAX_LINE_CHARS].rstrip("\r\n")
    if text.endswith("\r"):
        text = text[:-1]
    if text.startswith("{"):
        parsed = _json_line(text)
        if parsed is not None:
            return parsed
    if text.startswith("<") and (m := _RFC5424.fullmatch(text)):
        return LogLine(
            message=m["msg"],
            ts=_iso_time(m["ts"], zone),
            host=_field(m["host"]),
            program=_field(m["prog"]),
            pid=_int(m["pid"]),
            form="rfc5424",
        )
    if m := _ISO.fullmatch(text):
        return LogLine(
            message=m["msg"],
            ts=_iso_time(m["ts"], zone),
            host=m["host"],
            program=m["prog"],
            pid=_int(m["pid"]),
            form="iso",
        )
    if m := _BSD.fullmatch(text):
        return LogLine(
            message=m["msg"],
            ts=_bsd_time(m["mon"], m["day"], m["hms"], year=year, zone=zone, last_month=last_month),
            host=m["host"],
            program=m["prog"],
            pid=_int(m["pid"]),
            form="syslog",
        )
    if m := _DROPBEAR.fullmatch(text):
        return LogLine(
            message=m["msg"],
            ts=_bsd_time(m["mon"], m["day"], m["hms"], year=year, zone=zone, last_month=last_month),
            program="dropbear",
            pid=_int(m["pid"]),
            form="dropbear",
        )
    return LogLine(message=text)


def _field(value: str) -> str | None:
    """An RFC 5424 header field: "-" is its NILVALUE."""
    return None if value == "-" else value


def _int(value: str | None) -> int | None:
    if value is None or not value.isdigit() or len(value) > 10:
        return None
    return int(value)


def _bsd_time(
    mon: str, day: str, hms: str, *, year: int, zone: tzinfo, last_month: int
) -> float | None:
    month = _MONTHS.get(mon)
    if month is None:
        return None
    if month > last_month:
        year -= 1
    try:
        hour, minute, second = (int(part) for part in hms.split(":"))
        return datetime(year, month, int(day), hour, minute, second, tzinfo=zone).timestamp()
    except (ValueError, OverflowError):
        return None  # "Feb 30 25:61:61" is a stranger's text, not a time


def _iso_time(text: str, zone: tzinfo) -> float | None:
    """An RFC 3339 / ISO 8601 time; journalctl writes the offset without a colon (+0000)."""
    text = text.replace(",", ".")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = f"{text[:-2]}:{text[-2:]}"
    if "." in text:
        # fromisoformat takes at most microseconds: a nanosecond stamp keeps six digits.
        head, _dot, tail = text.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        text = f"{head}.{tail[:digits][:6]}{tail[digits:]}"
    try:
        stamp = datetime.fromisoformat(text)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=zone)
        return stamp.timestamp()
    except (ValueError, OverflowError):
        return None


def _json_line(text: str) -> LogLine | None:
    """A ``journalctl -o json`` entry; None for JSON that is not one (read as a bare line)."""
    try:
        entry = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(entry, dict) or "MESSAGE" not in entry:
        return None
    message = entry.get("MESSAGE")
    if isinstance(message, list):
        # journald's form of a message that is not UTF-8: its bytes as numbers.
        raw = bytes(b for b in message[:MAX_LINE_CHARS] if isinstance(b, int) and 0 <= b < 256)
        message = raw.decode("utf-8", "backslashreplace")
    if not isinstance(message, str):
        return None
    ts: float | None = None
    stamp = entry.get("__REALTIME_TIMESTAMP")
    if isinstance(stamp, str) and stamp.isdigit() and len(stamp) <= 20:
        ts = int(stamp) / 1_000_000
    pid = entry.get("_PID", entry.get("SYSLOG_PID"))
    return LogLine(
        message=message[:MAX_LINE_CHARS].rstrip("\r\n"),
        ts=ts,
        host=_text(entry.get("_HOSTNAME")),
        program=_text(entry.get("SYSLOG_IDENTIFIER")),
        pid=_int(pid) if isinstance(pid, str) else None,
        form="json",
    )


def _text(value: object) -> str | None:
    return value[:MAX_FIELD_CHARS] if isinstance(value, str) and value else None
