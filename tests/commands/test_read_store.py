"""`kexproxy read --store`: captures into a session store (SQLite and a real PostgreSQL), the
same records `read --json` prints, idempotent per capture, and one line when it cannot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CAPTURES = [
    "captures/openssh-kex-fail.pcap",
    "captures/openssh-success.pcap",
    "captures/tls-curl-success.pcap",
    "captures/dropbear-client-cipher-fail.pcap",
]


def _kexproxy(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kexproxy", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.split("\n") if line]


def _stored(store: str) -> dict[str, dict[str, Any]]:
    listed = _kexproxy("sessions", "--store", store, "--json", "--limit", "0")
    assert listed.returncode == 0, listed.stderr
    return {r["id"]: r for r in _lines(listed.stdout)}


def _check_store(store: str) -> None:
    printed = _kexproxy("read", "--json", "--store", store, *CAPTURES)
    assert printed.returncode == 0, printed.stderr
    records = _lines(printed.stdout)
    assert len(records) == 4
    assert _stored(store) == {r["id"]: r for r in records}
    again = _kexproxy("read", "--store", store, "--no-progress", CAPTURES[0])
    assert again.returncode == 0, again.stderr
    assert len(_stored(store)) == 4  # the same capture's ids: its rows updated, not added


def test_a_sqlite_store_holds_what_read_prints(tmp_path: Path) -> None:
    _check_store(str(tmp_path / "fleet.db"))


@pytest.mark.peers
def test_a_postgresql_store_holds_what_read_prints(postgres_url: str) -> None:
    _check_store(postgres_url)


def test_the_filter_decides_what_is_stored_too(tmp_path: Path) -> None:
    store = str(tmp_path / "failed.db")
    result = _kexproxy("read", "--json", "--filter", "outcome:failed", "--store", store, *CAPTURES)
    assert result.returncode == 0, result.stderr
    stored = _stored(store)
    assert {r["outcome"] for r in stored.values()} == {"failed"}
    assert set(stored) == {r["id"] for r in _lines(result.stdout)} and len(stored) == 2


def test_a_store_that_cannot_be_used_is_one_line_and_status_2(tmp_path: Path) -> None:
    not_a_store = tmp_path / "notes.db"
    not_a_store.write_text("not a database, just text\n" * 100)
    result = _kexproxy("read", "--store", str(not_a_store), "--no-progress", CAPTURES[0])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kexproxy: "), lines
    assert result.stdout == ""


@pytest.mark.peers
def test_an_unreachable_postgresql_store_never_prints_its_password(
    postgres_cluster: Any,
) -> None:
    url = f"postgresql://kx:s3cret-pw@127.0.0.1:{postgres_cluster.port}/no_such_database"
    result = _kexproxy("read", "--store", url, "--no-progress", CAPTURES[0])
    assert result.returncode == 2
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("command", ["read", "logs"])
def test_records_a_store_refuses_are_counted_once_and_status_2(
    tmp_path: Path, command: str
) -> None:
    """A store usable at start that then refuses every row (here a trigger): the store's own
    line says how many, once, and the status is 2."""
    import sqlite3

    from kexproxy.sinks.store import SessionStore

    db = tmp_path / "s.db"
    SessionStore.open(db).close()
    with sqlite3.connect(db) as raw:
        raw.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON sessions BEGIN SELECT RAISE(ABORT, 'no'); END"
        )
    if command == "read":
        source = CAPTURES[0]
    else:
        source = str(tmp_path / "auth.log")
        Path(source).write_text(
            "Dec  7 18:01:49 h sshd[5]: Unable to negotiate with 10.0.0.5 port 7: "
            "no matching host key type found. Their offer: ssh-rsa [preauth]\n"
        )
    done = _kexproxy(command, "--json", "--store", str(db), source)
    assert done.returncode == 2, done.stderr
    said = [line for line in done.stderr.splitlines() if "could not be stored" in line]
    assert len(said) == 1 and said[0].endswith(f"could not be stored in {db}"), done.stderr
    assert _lines(done.stdout)  # the printed output is whole
