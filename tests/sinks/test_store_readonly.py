"""A session store on a read-only mount: `sessions`, `show`, `explain` and the dashboard read it.

A WAL store's reader needs the -shm file, and creates it when it is missing; on a real
read-only mount (a private mount namespace, as root) it cannot, which is what is tested.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from kexproxy.sinks.store import SessionStore
from tests.sinks.test_store import failed_record

ROOT = Path(__file__).resolve().parents[2]

#: Run inside the namespace, on the read-only directory: every reader, one JSON line of results.
_READ_ALL = r"""
import json, os, subprocess, sys
store, root = sys.argv[1], sys.argv[2]
sys.path[:0] = [root, root + "/tui"]
env = {**os.environ, "PYTHONPATH": f"{root}:{root}/tui", "COLUMNS": "200"}
def run(*args):
    done = subprocess.run([sys.executable, "-m", "kexproxy", *args], capture_output=True,
                          text=True, env=env, timeout=60)
    return {"code": done.returncode, "out": done.stdout, "err": done.stderr}
out = {
    "writable": os.access(os.path.dirname(store), os.W_OK),
    "sessions": run("sessions", "--json", "--store", store),
    "table": run("sessions", "--store", store),
    "show": run("show", "ro-2", "--store", store),
    "explain": run("explain", "ro-1", "--store", store),
}
from kexproxy_tui.adapters import StoreSource, load_records
source = StoreSource(store)
out["tui"] = sorted(r.id for r in source.changes())
out["tui_note"] = source.note
source.close()
out["tui_loaded"] = [r.id for r in load_records(store, ["ro-1", "ro-2"])]
out["left"] = sorted(os.listdir(os.path.dirname(store)))
print(json.dumps(out))
"""

_WRITE_AND_DIE = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[2])
from tests.sinks.test_store import failed_record
from kexproxy.sinks.store import SessionStore
store = SessionStore.open(sys.argv[1])
for sid in ("ro-1", "ro-2"):
    store.put(failed_record(sid), final=True)
os.kill(os.getpid(), signal.SIGKILL)  # a writer killed: its -wal and -shm stay behind
"""


def read_on_readonly_mount(directory: Path, store: Path) -> dict[str, object]:
    from tests.peers import skip_or_fail

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        skip_or_fail("needs root and unshare for a read-only mount")
    script = (
        'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec "$2" -c "$3" "$4" "$5"'
    )
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
         str(directory), sys.executable, _READ_ALL, str(store), str(ROOT)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if "mount:" in result.stderr or "unshare:" in result.stderr:
        skip_or_fail(f"no read-only mount here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    out: dict[str, object] = json.loads(result.stdout)
    assert out["writable"] is False  # the mount really is read-only
    return out


def assert_every_reader_worked(out: dict[str, object]) -> None:
    for name in ("sessions", "table", "show", "explain"):
        run = out[name]
        assert isinstance(run, dict)
        assert run["code"] == 0, (name, run["err"])
        assert "unable to open" not in run["err"] and "Traceback" not in run["err"]
    listed = out["sessions"]
    assert isinstance(listed, dict)
    assert sorted(json.loads(line)["id"] for line in listed["out"].splitlines()) == ["ro-1", "ro-2"]
    show = out["show"]
    assert isinstance(show, dict) and json.loads(show["out"])["id"] == "ro-2"
    explain = out["explain"]
    assert isinstance(explain, dict) and "ro-1" in explain["out"]
    assert out["tui"] == ["ro-1", "ro-2"]
    assert out["tui_loaded"] == ["ro-1", "ro-2"]


def test_a_cleanly_closed_store_reads_on_a_readonly_mount(tmp_path: Path) -> None:
    """No -shm left and none can be made: opened immutable, and nothing to say about it."""
    directory = tmp_path / "ro"
    directory.mkdir()
    store = SessionStore.open(directory / "kexproxy.db")
    for sid in ("ro-1", "ro-2"):
        store.put(failed_record(sid), final=True)
    store.close()
    assert sorted(os.listdir(directory)) == ["kexproxy.db"]
    out = read_on_readonly_mount(directory, directory / "kexproxy.db")
    assert_every_reader_worked(out)
    for name in ("sessions", "table", "show", "explain"):
        run = out[name]
        assert isinstance(run, dict) and run["err"] == ""
    assert out["tui_note"] is None
    assert out["left"] == ["kexproxy.db"]


def test_a_store_whose_writer_was_killed_reads_its_log_on_a_readonly_mount(tmp_path: Path) -> None:
    """The -wal and -shm a killed writer left are read (mode=ro): no record is missed."""
    directory = tmp_path / "ro"
    directory.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _WRITE_AND_DIE, str(directory / "kexproxy.db"), str(ROOT)],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL
    assert (directory / "kexproxy.db-wal").stat().st_size > 0
    out = read_on_readonly_mount(directory, directory / "kexproxy.db")
    assert_every_reader_worked(out)
    assert out["tui_note"] is None


def test_a_log_that_cannot_be_read_is_said_once(tmp_path: Path) -> None:
    """A -wal without its -shm cannot be read from a read-only mount: the reader says so."""
    directory = tmp_path / "ro"
    directory.mkdir()
    store = SessionStore.open(directory / "kexproxy.db")
    for sid in ("ro-1", "ro-2"):
        store.put(failed_record(sid), final=True)
    store.close()
    (directory / "kexproxy.db-wal").write_bytes(b"\0" * 4096)  # a log, but no -shm
    out = read_on_readonly_mount(directory, directory / "kexproxy.db")
    assert_every_reader_worked(out)
    for name in ("sessions", "table", "show", "explain"):
        run = out[name]
        assert isinstance(run, dict)
        assert run["err"].count("kexproxy: ") == 1, (name, run["err"])
        assert "its write-ahead log (4096 bytes" in run["err"]
    assert isinstance(out["tui_note"], str) and "write-ahead log" in out["tui_note"]


_WRITE_AND_FILL = r"""
import errno, sys
sys.path.insert(0, sys.argv[2])
from tests.sinks.test_store import failed_record
from kexproxy.sinks.store import SessionStore
store = SessionStore.open(sys.argv[1])
for sid in ("ro-1", "ro-2"):
    store.put(failed_record(sid), final=True)
store.close()
with open(sys.argv[1] + ".filler", "wb", buffering=0) as filler:
    for size in (65536, 4096, 512, 1):
        try:
            while True:
                filler.write(b"\0" * size)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
"""


def on_a_full_disk(tmp_path: Path, then: str) -> tuple[Path, str]:
    """Writes a store (two sessions, closed cleanly) on a private 1 MiB tmpfs, fills it, and
    runs the script `then` there (argv: the store, the repository); its standard output."""
    from tests.peers import skip_or_fail

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        skip_or_fail("needs root and unshare for a private tmpfs")
    directory = tmp_path / "full"
    directory.mkdir()
    store = directory / "kexproxy.db"
    script = (
        'mount -t tmpfs -o size=1m tmpfs "$1" && "$2" -c "$3" "$4" "$5" '
        '&& exec "$2" -c "$6" "$4" "$5"'
    )
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
         str(directory), sys.executable, _WRITE_AND_FILL, str(store), str(ROOT), then],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if "mount:" in result.stderr or "unshare:" in result.stderr:
        skip_or_fail(f"no private tmpfs here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    return store, result.stdout


def test_a_store_on_a_full_disk_reads(tmp_path: Path) -> None:
    """A cleanly closed store on a full disk: the -shm a reader needs cannot be sized
    ("disk I/O error", SQLITE_IOERR_SHMSIZE; a CI run of the full-disk proxy test met it),
    so it is opened immutable, as on a read-only mount."""
    _store, printed = on_a_full_disk(tmp_path, _READ_ALL)
    out = json.loads(printed)
    assert_every_reader_worked(out)
    # SQLite made an empty -shm (and -wal) before it found it could not size it: harmless.
    assert set(out["left"]) - {"kexproxy.db-shm", "kexproxy.db-wal"} == {
        "kexproxy.db",
        "kexproxy.db.filler",
    }


_OPEN_FOR_WRITING = r"""
import sys
sys.path.insert(0, sys.argv[2])
from kexproxy.sinks.store import SessionStore, StoreError
try:
    SessionStore.open(sys.argv[1]).close()
    print("opened")
except StoreError as exc:
    print(exc)
"""


def test_a_writer_on_a_full_disk_is_told_the_disk_is_full(tmp_path: Path) -> None:
    """SQLite says "disk I/O error" when the -shm cannot grow on a full disk: kexproxy adds
    what the disk says."""
    store, printed = on_a_full_disk(tmp_path, _OPEN_FOR_WRITING)
    said = printed.strip()
    assert said.startswith(f"{store}: cannot use the session store: "), said
    assert said.endswith("full)") or "database or disk is full" in said, said
