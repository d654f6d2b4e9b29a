"""`kexproxy sessions` and `kexproxy show`: listing the store safely, filters, exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from kexproxy.commands.sessions import since_time
from kexproxy.core.diagnosis import diagnosed
from kexproxy.core.record import SessionRecord, rfc3339
from kexproxy.schema import session_record_schema
from kexproxy.sinks.store import SessionStore
from tests.builders import Transcript, client_offer, ident, kexinit, newkeys, server_offer

ROOT = Path(__file__).resolve().parents[2]


def kexproxy(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kexproxy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "250", "PYTHONPATH": str(ROOT)},
        check=False,
    )


def record(session_id: str, *, ago: float, failed: bool = True) -> SessionRecord:
    t = Transcript(session_id=session_id, source="proxy")
    t.now = time.time() - ago
    kex = ["diffie-hellman-group1-sha1"] if failed else ["curve25519-sha256"]
    t.client(ident("OpenSSH_9.6") + kexinit(client_offer(kex=kex)))
    t.server(ident("OpenSSH_9.2p1") + kexinit(server_offer()))
    if not failed:
        t.client(newkeys()).server(newkeys())
    t.close("client")
    return diagnosed(t.tracker.finish())


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "kexproxy.db"
    db = SessionStore.open(path)
    db.put(record("aaaa0001", ago=3600 * 5), final=True)
    db.put(record("aaaa0002", ago=120, failed=False), final=True)
    db.put(record("bbbb0003", ago=30), final=False)
    db.close()
    return path


def test_the_table_lists_ids_newest_first_and_marks_live_sessions(store: Path) -> None:
    result = kexproxy("sessions", cwd=store.parent)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.index("bbbb0003") < out.index("aaaa0002") < out.index("aaaa0001")
    assert "failed (live)" in out
    assert "no match: kex" in out
    assert result.stderr == ""


def test_json_prints_one_valid_record_per_line(store: Path) -> None:
    result = kexproxy("sessions", "--store", str(store), "--json", cwd=store.parent)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["bbbb0003", "aaaa0002", "aaaa0001"]
    schema = session_record_schema()
    for line in lines:
        jsonschema.validate(json.loads(line), schema)


def test_filters_by_outcome_time_and_count(store: Path) -> None:
    def ids(*args: str) -> list[str]:
        result = kexproxy("sessions", "--json", *args, cwd=store.parent)
        assert result.returncode == 0, result.stderr
        return [json.loads(line)["id"] for line in result.stdout.splitlines()]

    assert ids("--outcome", "failed") == ["bbbb0003", "aaaa0001"]
    assert ids("--outcome", "negotiated") == ["aaaa0002"]
    assert ids("--since", "10m") == ["bbbb0003", "aaaa0002"]
    assert ids("--since", "1m") == ["bbbb0003"]
    assert ids("--limit", "1") == ["bbbb0003"]
    assert ids("--since", "1d", "--outcome", "failed", "--limit", "0") == ["bbbb0003", "aaaa0001"]


def test_outcome_takes_prefixes_and_commas_and_filter_the_dashboards_language(
    store: Path,
) -> None:
    def ids(*args: str) -> list[str]:
        result = kexproxy("sessions", "--json", *args, cwd=store.parent)
        assert result.returncode == 0, result.stderr
        return [json.loads(line)["id"] for line in result.stdout.splitlines()]

    assert ids("--outcome", "fail") == ["bbbb0003", "aaaa0001"]
    assert ids("--outcome", "failed,negotiated") == ["bbbb0003", "aaaa0002", "aaaa0001"]
    assert ids("--outcome", "neg,abort") == ["aaaa0002"]
    # The failures' client offered only diffie-hellman-group1-sha1: chosen by nobody.
    assert ids("--filter", "diffie-hellman-group1-sha1") == ["bbbb0003", "aaaa0001"]
    assert ids("--filter", "offers:group1-sha1 !id:bbbb") == ["aaaa0001"]
    assert ids("--filter", "outcome=failed csw:openssh_9.6 ssw:OpenSSH_9.2") == [
        "bbbb0003",
        "aaaa0001",
    ]
    assert ids("--filter", "csw:OpenSSH_9.2") == []
    # The limit counts what matches, not what was read.
    assert ids("--filter", "list:kex", "--limit", "1") == ["bbbb0003"]
    assert ids("--outcome", "failed,negotiated", "--limit", "2") == ["bbbb0003", "aaaa0002"]
    table = kexproxy("sessions", "--filter", "outcome:negotiated", cwd=store.parent)
    assert "aaaa0002" in table.stdout and "aaaa0001" not in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--filter", "outcom=failed"], "kexproxy: --filter: unknown key 'outcom'"),
        (["--filter", 'csw:"putty'], "kexproxy: --filter: a quote"),
        (["--outcome", "won"], "kexproxy: --outcome: outcome:won: use one of negotiated"),
        (["--outcome", "failed list:kex"], "kexproxy: --outcome:"),
    ],
)
def test_a_bad_filter_or_outcome_is_one_line_and_exit_2(
    store: Path, args: list[str], message: str
) -> None:
    result = kexproxy("sessions", *args, cwd=store.parent)
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_help_teaches_filter_and_outcome_with_examples() -> None:
    out = kexproxy("sessions", "--help", cwd=ROOT).stdout
    assert "--filter EXPR" in out and "--outcome OUTCOME[,OUTCOME]" in out
    assert "kexproxy sessions --filter 'csw:putty list:kex'" in out
    assert "kexproxy sessions --outcome fail,abort" in out


def test_show_prints_one_record_in_full_from_a_prefix(store: Path) -> None:
    result = kexproxy("show", "aaaa0002", cwd=store.parent)
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["id"] == "aaaa0002"
    assert data["outcome"] == "negotiated"
    assert result.stdout.startswith("{\n  ")  # pretty, for people
    assert json.loads(kexproxy("show", "bbbb", cwd=store.parent).stdout)["id"] == "bbbb0003"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "aaaa"], "'aaaa' matches more than one session (aaaa0001, aaaa0002)"),
        (["show", ""], "give a session id"),
        (["show", "zzzz"], "no session 'zzzz'"),
        (["sessions", "--store", "missing.db"], "no session store here"),
        (["show", "--store", "missing.db", "x"], "no session store here"),
    ],
)
def test_errors_are_one_line_and_exit_2(store: Path, args: list[str], message: str) -> None:
    result = kexproxy(*args, cwd=store.parent)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_an_unreadable_store_exits_2(tmp_path: Path) -> None:
    junk = tmp_path / "kexproxy.db"
    junk.write_bytes(b"\x00garbage" * 1000)
    result = kexproxy("sessions", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("kexproxy: ")


def test_strangers_text_cannot_style_or_control_the_terminal(tmp_path: Path) -> None:
    path = tmp_path / "kexproxy.db"
    # A banner the parser would refuse, as a store written by anything might still hold.
    hostile = dataclasses.replace(
        record("cccc0001", ago=10), client_banner="SSH-2.0-Evil[red]X[/red]\x1b[2J\x07"
    )
    db = SessionStore.open(path)
    db.put(hostile, final=True)
    db.close()
    result = kexproxy("sessions", cwd=tmp_path)
    assert result.returncode == 0
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "Evil[red]X[/red]\\x1b[2J\\x07" in result.stdout
    shown = kexproxy("show", "cccc", cwd=tmp_path)
    assert "\x1b" not in shown.stdout
    assert json.loads(shown.stdout)["client_banner"].endswith("\x1b[2J\x07")


def test_an_empty_store_says_so(tmp_path: Path) -> None:
    SessionStore.open(tmp_path / "kexproxy.db").close()
    result = kexproxy("sessions", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == "no sessions"


@pytest.mark.parametrize(
    ("text", "back"),
    [("30s", 30), ("10m", 600), ("2h", 7200), ("7d", 7 * 86400), ("1w", 604800), ("90", 90)],
)
def test_since_durations(text: str, back: float) -> None:
    now = 1_700_000_000.0
    assert since_time(text, now=now) == rfc3339(now - back)


def test_since_accepts_rfc3339_and_rejects_nonsense() -> None:
    assert since_time("2023-11-14T22:13:20Z") == "2023-11-14T22:13:20.000000Z"
    assert since_time("2023-11-14T23:13:20+01:00") == "2023-11-14T22:13:20.000000Z"
    with pytest.raises(argparse.ArgumentTypeError):
        since_time("yesterday")


def test_a_record_without_a_start_still_sorts(tmp_path: Path) -> None:
    path = tmp_path / "kexproxy.db"
    db = SessionStore.open(path)
    db.put(dataclasses.replace(record("dddd0001", ago=5), started=None), final=True)
    db.close()
    result = kexproxy("sessions", "--since", "1m", "--json", cwd=tmp_path)
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["dddd0001"]


def test_a_damaged_row_is_left_out_and_said_once(store: Path) -> None:
    """One bad row (written by anything: another tool, a disk error) hides nothing else."""
    import sqlite3

    db = sqlite3.connect(store)
    db.execute("UPDATE sessions SET record = '[]' WHERE id = 'aaaa0001'")
    db.execute(
        "UPDATE sessions SET record = json_set(record, '$.client', NULL) WHERE id = 'aaaa0002'"
    )
    db.commit()
    db.close()
    listed = kexproxy("sessions", cwd=store.parent)
    assert listed.returncode == 0
    assert "bbbb0003" in listed.stdout and "aaaa000" not in listed.stdout
    assert listed.stderr == (
        "kexproxy: kexproxy.db: 2 damaged records left out (field 'client' has the wrong type)\n"
    )
    assert len(listed.stderr.splitlines()) == 1
    as_json = kexproxy("sessions", "--json", cwd=store.parent)
    assert [json.loads(line)["id"] for line in as_json.stdout.splitlines()] == ["bbbb0003"]
    shown = kexproxy("show", "aaaa0001", cwd=store.parent)
    assert shown.returncode == 2
    assert "the stored record 'aaaa0001' is damaged" in shown.stderr
    assert "Traceback" not in listed.stderr + shown.stderr


def test_rows_that_are_not_utf8_or_not_text_are_left_out_not_fatal(store: Path) -> None:
    """SQLite's driver fails the whole fetch on one such row: the store reads bytes instead."""
    import sqlite3

    db = sqlite3.connect(store)
    (text,) = db.execute("SELECT record FROM sessions WHERE id = 'aaaa0001'").fetchone()
    broken = text.encode().replace(b"OpenSSH", b"Open\xfeSSH", 1)
    db.execute("UPDATE sessions SET record = CAST(? AS TEXT) WHERE id = 'aaaa0001'", (broken,))
    db.execute("UPDATE sessions SET record = CAST(record AS BLOB) WHERE id = 'aaaa0002'")
    db.commit()
    db.close()
    for args in (("sessions",), ("sessions", "--json"), ("sessions", "--since", "1d")):
        listed = kexproxy(*args, cwd=store.parent)
        assert listed.returncode == 0, listed.stderr
        assert "bbbb0003" in listed.stdout and "aaaa000" not in listed.stdout
        assert listed.stderr.startswith("kexproxy: kexproxy.db: 2 damaged records left out (")
        assert len(listed.stderr.splitlines()) == 1
    shown = kexproxy("show", "aaaa0001", cwd=store.parent)
    assert shown.returncode == 2
    assert "is damaged (the stored record is not UTF-8 (byte 0xfe at offset" in shown.stderr
    blob = kexproxy("show", "aaaa0002", cwd=store.parent)
    assert "is damaged (the stored record is a BLOB, not text)" in blob.stderr
    assert kexproxy("show", "bbbb0003", cwd=store.parent).returncode == 0
    explained = kexproxy("explain", "aaaa0001", "--store", str(store), cwd=store.parent)
    assert explained.returncode == 2 and "is damaged" in explained.stderr
    assert "Traceback" not in shown.stderr + blob.stderr + explained.stderr


def test_a_limit_sqlite_cannot_hold_is_a_usage_error(store: Path) -> None:
    result = kexproxy("sessions", "--limit", "99999999999999999999999", cwd=store.parent)
    assert result.returncode == 2
    assert "argument --limit: at most" in result.stderr and "Traceback" not in result.stderr


def test_a_fifo_is_not_a_store_and_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "kexproxy.db"
    os.mkfifo(fifo)
    result = kexproxy("sessions", cwd=tmp_path)
    assert result.returncode == 2
    assert "not a regular file, so not a session store" in result.stderr
