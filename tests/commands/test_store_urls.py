"""`--store postgresql://...` on the command line: the reading commands list a real
database, and a store that cannot be reached is one line, exit 2, and never its password."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kexproxy import exitcodes
from kexproxy.sinks.store import SessionStore
from tests.peers.base import free_port
from tests.peers.postgres import PASSWORD, PASSWORD_ROLE
from tests.sinks.test_store import failed_record

ROOT = Path(__file__).resolve().parents[2]


def kexproxy(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kexproxy", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tui'}", **(env or {})},
        timeout=60,
        check=False,
    )


def test_sessions_show_and_explain_read_a_postgresql_store(
    postgres_url: str, tmp_path: Path
) -> None:
    store = SessionStore.open(postgres_url)
    for sid in ("pg-one", "pg-two"):
        store.put(failed_record(sid), final=True)
    store.close()
    listed = kexproxy("sessions", "--store", postgres_url, "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert sorted(json.loads(line)["id"] for line in listed.stdout.splitlines()) == [
        "pg-one",
        "pg-two",
    ]
    shown = kexproxy("show", "pg-t", "--store", postgres_url, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == "pg-two"
    explained = kexproxy("explain", "pg-one", "--store", postgres_url, cwd=tmp_path)
    assert explained.returncode == 0, explained.stderr
    assert "kex_algorithms" in explained.stdout or "key exchange" in explained.stdout.lower()
    missing = kexproxy("show", "nosuch", "--store", postgres_url, cwd=tmp_path)
    assert missing.returncode == exitcodes.BAD_INPUT
    assert "no session 'nosuch'" in missing.stderr


def _unreachable(cluster: Any) -> dict[str, tuple[str, str]]:
    """Stores that cannot be used, each with a word its one line must hold."""
    port = cluster.port
    return {
        "refused": (
            f"postgresql://{PASSWORD_ROLE}:{PASSWORD}@127.0.0.1:{free_port()}/db",
            "refused",
        ),
        "wrong password": (
            f"postgresql://{PASSWORD_ROLE}:{PASSWORD}x@127.0.0.1:{port}/postgres",
            "password authentication failed",
        ),
        "bad URL": (f"postgresql://{PASSWORD_ROLE}:{PASSWORD}@127.0.0.1:notaport/db", "port"),
        "empty database": (
            f"postgresql://{PASSWORD_ROLE}:{PASSWORD}@127.0.0.1:{port}/postgres",
            "no session store in this database",
        ),
    }


_CASES = ("refused", "wrong password", "bad URL", "empty database")
_COMMANDS = ("sessions", "show", "explain", "proxy", "sniff", "tui")


# A writer (proxy, sniff) makes the store in an empty database: that case is for readers.
@pytest.mark.parametrize(
    ("command", "case"),
    [(c, k) for c in _COMMANDS for k in _CASES if not (c in {"proxy", "sniff"} and k == _CASES[3])],
)
def test_a_store_that_cannot_be_used_is_one_line_without_the_password(
    postgres_cluster: Any, tmp_path: Path, case: str, command: str
) -> None:
    url, word = _unreachable(postgres_cluster)[case]
    argv = {
        "sessions": ["sessions", "--store", url],
        "show": ["show", "abc", "--store", url],
        "explain": ["explain", "abc", "--store", url],
        "proxy": ["proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--store", url],
        "sniff": ["sniff", "-i", "lo", "--store", url],
        "tui": ["tui", "--store", url],
    }[command]
    result = kexproxy(*argv, cwd=tmp_path)
    assert result.returncode == exitcodes.BAD_INPUT, result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert word in lines[0], lines[0]
    assert f"{PASSWORD_ROLE}:***@127.0.0.1" in lines[0]
    assert not list(tmp_path.iterdir())  # no SQLite file made of the URL


def test_a_missing_driver_is_said(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from kexproxy.cli import main\n"
        "sys.exit(main(['sessions', '--store', 'postgresql://u:pw@127.0.0.1/db']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tui'}"}, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == exitcodes.BAD_INPUT
    assert "needs psycopg 3" in result.stderr and "pw" not in result.stderr.replace("psycopg", "")
