"""Reading server logs from files: plain or gzip, bounded lines, the year syslog leaves out."""

from __future__ import annotations

import gzip
import os
from datetime import datetime
from pathlib import Path

import pytest

from kexproxy.core.record import SessionRecord
from kexproxy.sources import logfile
from kexproxy.sources.logfile import LogFileError, log_label, read_log

CONNECT = 'Dec 30 23:59:58 web1 sshd[7]: Connection from 10.0.0.5 port 4000 on 10.0.0.1 port 22 rdomain ""\n'
UNABLE = (
    "Dec 30 23:59:59 web1 sshd[7]: Unable to negotiate with 10.0.0.5 port 4000: "
    "no matching cipher found. Their offer: aes128-cbc,3des-cbc [preauth]\n"
)


def records(path: Path, **kw: object) -> tuple[list[SessionRecord], logfile.LogStats]:
    out: list[SessionRecord] = []
    stats = read_log(str(path), out.append, **kw)  # type: ignore[arg-type]
    return out, stats


def test_plain_file_gives_a_record_dated_by_the_files_year(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(CONNECT + UNABLE)
    changed = datetime(2025, 12, 31, 12, 0).timestamp()
    os.utime(log, (changed, changed))
    (record,), stats = records(log)
    assert (stats.lines, stats.server_lines, stats.records) == (2, 2, 1)
    assert record.started is not None and record.started.startswith("2025-12-3")
    assert record.capture == str(log)
    assert record.client == {"ip": "10.0.0.5", "port": 4000}
    assert record.failures[0]["client_offer"] == ["aes128-cbc", "3des-cbc"]


def test_a_december_line_in_a_file_changed_in_january_is_of_the_year_before(tmp_path: Path) -> None:
    log = tmp_path / "auth.log.1"
    log.write_text(UNABLE)
    changed = datetime(2026, 1, 2, 12, 0).timestamp()
    os.utime(log, (changed, changed))
    (record,), _stats = records(log)
    assert record.started is not None and record.started.startswith("2025-12-3")


def test_year_given_wins(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(UNABLE)
    (record,), _stats = records(log, year=2019)
    assert record.started is not None and record.started.startswith("2019-12-3")


def test_gzip_is_read_by_its_magic_bytes(tmp_path: Path) -> None:
    log = tmp_path / "auth.log.2"  # no .gz suffix: the content decides
    log.write_bytes(gzip.compress((CONNECT + UNABLE).encode()))
    found, stats = records(log)
    assert len(found) == 1 and stats.lines == 2


def test_a_damaged_gzip_keeps_what_was_read_and_says_so(tmp_path: Path) -> None:
    log = tmp_path / "auth.log.gz"
    whole = gzip.compress(((CONNECT + UNABLE) * 50).encode())
    log.write_bytes(whole[: len(whole) - 20])
    out: list[SessionRecord] = []
    with pytest.raises(LogFileError) as caught:
        read_log(str(log), out.append)
    assert str(log) in str(caught.value)
    assert caught.value.stats is not None and caught.value.stats.records == len(out)


def test_a_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LogFileError, match="No such file"):
        read_log(str(tmp_path / "nope"), lambda r: None)


def test_long_lines_are_cut_and_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logfile, "MAX_LINE_BYTES", 300)
    log = tmp_path / "auth.log"
    log.write_bytes(b"x" * 1000 + b"\n" + (CONNECT + UNABLE).encode() + b"y" * 301)
    found, stats = records(log, year=2026)
    assert stats.long_lines == 2
    assert len(found) == 1  # the lines after the long one are read whole


def test_bytes_that_are_not_utf8_are_kept_as_escapes(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(UNABLE.replace("3des-cbc", "3des-\xff").encode("latin-1"))
    (record,), _stats = records(log, year=2026)
    assert record.failures[0]["client_offer"][1] == "3des-\\xff"


def test_label() -> None:
    assert log_label("-") == "stdin"
    assert log_label("/var/log/auth.log") == "auth.log"
