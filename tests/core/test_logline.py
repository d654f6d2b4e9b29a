"""One log line's prefix in every format sshd's and dropbear's lines come in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from kexproxy.core.logline import MAX_LINE_CHARS, split_line

MESSAGE = (
    "Unable to negotiate with 10.0.0.5 port 51726: no matching MAC found. "
    "Their offer: hmac-sha1 [preauth]"
)
WHEN = datetime(2026, 12, 7, 18, 1, 49, tzinfo=UTC).timestamp()


def test_bsd_syslog_has_host_program_pid_and_the_given_year() -> None:
    line = split_line(f"Dec  7 18:01:49 web1 sshd[4242]: {MESSAGE}", year=2026, zone=UTC)
    assert (line.form, line.host, line.program, line.pid) == ("syslog", "web1", "sshd", 4242)
    assert line.message == MESSAGE
    assert line.ts == WHEN


def test_bsd_syslog_time_is_in_the_zone_given() -> None:
    east = timezone(timedelta(hours=2))
    line = split_line(f"Dec  7 20:01:49 web1 sshd[1]: {MESSAGE}", year=2026, zone=east)
    assert line.ts == WHEN


def test_a_month_after_the_files_last_change_is_of_the_year_before() -> None:
    line = split_line(f"Dec 31 23:59:59 h sshd[1]: {MESSAGE}", year=2027, zone=UTC, last_month=1)
    assert line.ts == datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


def test_rsyslog_priority_prefix_and_sshd_session_program() -> None:
    line = split_line(f"<38>Dec  7 18:01:49 web1 sshd-session[9]: {MESSAGE}", year=2026, zone=UTC)
    assert (line.program, line.pid, line.message) == ("sshd-session", 9, MESSAGE)


def test_journalctl_short_iso_offset_without_colon() -> None:
    line = split_line(f"2026-12-07T20:01:49+0200 web1 sshd[4242]: {MESSAGE}", year=1999, zone=UTC)
    assert (line.form, line.host, line.pid, line.ts) == ("iso", "web1", 4242, WHEN)


def test_rsyslog_rfc3339_with_microseconds() -> None:
    line = split_line(
        f"2026-12-07T18:01:49.250000+00:00 web1 sshd[7]: {MESSAGE}", year=1999, zone=UTC
    )
    assert line.ts == WHEN + 0.25


def test_rfc5424_with_structured_data_and_nil_values() -> None:
    text = f'<38>1 2026-12-07T18:01:49.000Z web1 sshd 4242 - [meta x="a\\]b"][b y="1"] {MESSAGE}'
    line = split_line(text, year=1999, zone=UTC)
    assert (line.form, line.host, line.program, line.pid) == ("rfc5424", "web1", "sshd", 4242)
    assert (line.ts, line.message) == (WHEN, MESSAGE)
    nil = split_line(f"<38>1 - - sshd - - - {MESSAGE}", year=1999, zone=UTC)
    assert (nil.host, nil.pid, nil.ts, nil.message) == (None, None, None, MESSAGE)


def test_journal_json_entry() -> None:
    entry = {
        "__REALTIME_TIMESTAMP": str(int(WHEN * 1_000_000)),
        "_HOSTNAME": "web1",
        "_PID": "4242",
        "SYSLOG_IDENTIFIER": "sshd",
        "MESSAGE": MESSAGE,
    }
    line = split_line(json.dumps(entry), year=1999, zone=UTC)
    assert (line.form, line.host, line.program, line.pid) == ("json", "web1", "sshd", 4242)
    assert (line.ts, line.message) == (WHEN, MESSAGE)


def test_journal_json_message_that_is_not_utf8_is_an_array_of_bytes() -> None:
    entry = {"MESSAGE": [*b"Unable to negotiate \xff"], "SYSLOG_IDENTIFIER": "sshd"}
    line = split_line(json.dumps(entry), year=1999, zone=UTC)
    assert line.message == "Unable to negotiate \\xff"


def test_json_that_is_not_a_journal_entry_is_a_bare_line() -> None:
    assert split_line('{"a": 1}', year=1999, zone=UTC).form == "bare"
    assert split_line("{not json", year=1999, zone=UTC).form == "bare"
    assert split_line('{"MESSAGE": 3}', year=1999, zone=UTC).form == "bare"


def test_dropbear_stderr() -> None:
    text = "[32631] Dec 07 18:07:00 Exit before auth from <127.0.0.1:42782>: No matching algo kex"
    line = split_line(text, year=2026, zone=UTC)
    assert (line.form, line.program, line.pid, line.host) == ("dropbear", "dropbear", 32631, None)
    assert line.message.startswith("Exit before auth")
    assert line.ts == datetime(2026, 12, 7, 18, 7, tzinfo=UTC).timestamp()


def test_sshd_stderr_is_the_bare_message_without_its_cr() -> None:
    line = split_line(MESSAGE + "\r\n", year=2026, zone=UTC)
    assert (line.form, line.message, line.ts, line.pid, line.program) == (
        "bare",
        MESSAGE,
        None,
        None,
        None,
    )


def test_impossible_dates_are_no_time() -> None:
    assert split_line(f"Feb 30 25:61:61 h sshd[1]: {MESSAGE}", year=2026, zone=UTC).ts is None
    assert split_line("9999-99-99T00:00:00Z h sshd[1]: x", year=2026, zone=UTC).ts is None


def test_a_long_line_is_cut() -> None:
    line = split_line("x" * (MAX_LINE_CHARS * 3), year=2026, zone=UTC)
    assert len(line.message) == MAX_LINE_CHARS


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_splits_without_raising(text: str) -> None:
    line = split_line(text, year=2026, zone=UTC)
    assert isinstance(line.message, str)
