"""`kexproxy proxy` when things go wrong around it: killed with SIGKILL mid-traffic, a full disk.

Real clients through a real process: what must hold is what an operator finds afterwards,
a row for every connection, and no record missing from the store without being counted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

from kexproxy.schema import session_record_schema
from kexproxy.sinks.store import SessionStore, StoredSession
from tests.builders import ident
from tests.commands.test_proxy_cmd import ProxyProcess
from tests.peers import PeerResult, Sshd, run_ssh, skip_or_fail
from tests.sources.proxy_harness import recv_exactly

ROOT = Path(__file__).resolve().parents[2]

#: Sessions that stream output for longer than the test lasts: mid-traffic when it kills.
STREAMING = 3
#: Clients that fail to negotiate (sshd offers no group1): decided and ended before the kill.
FAILING = 2
#: Raw connections that send a banner and then nothing: no outcome known when killed.
STALLED = 3


def recorder_pid(proxy_pid: int) -> int:
    """The recording process `kexproxy proxy` forked (its only child)."""
    children = Path(f"/proc/{proxy_pid}/task/{proxy_pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def stored(path: Path) -> list[StoredSession]:
    store = SessionStore.open(path, readonly=True)
    try:
        rows = store.sessions(limit=None)
        assert store.damaged == 0
        return rows
    finally:
        store.close()


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("victims", ["relay", "relay and recorder"])
def test_sigkill_mid_traffic_leaves_a_row_for_every_connection(
    tmp_path: Path, victims: str
) -> None:
    """Killed at once, with sessions streaming, decided, and still in their handshake."""
    db = tmp_path / "p.db"
    results: list[PeerResult] = []
    with Sshd() as sshd:
        proxy = ProxyProcess(
            "--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{sshd.port}",
            "--store", str(db), "--quiet", cwd=tmp_path,
        )  # fmt: skip
        port = proxy.wait_ready()
        recorder = recorder_pid(proxy.proc.pid)
        streaming = [
            threading.Thread(
                target=lambda: results.append(
                    run_ssh(port, command="while :; do echo tick; sleep 0.05; done", timeout=60)
                )
            )
            for _ in range(STREAMING)
        ]
        for thread in streaming:
            thread.start()
        for _ in range(FAILING):
            failed = run_ssh(port, "-oKexAlgorithms=diffie-hellman-group1-sha1")
            assert failed.returncode == 255 and "no matching key exchange" in failed.stderr
        stalled: list[socket.socket] = []
        for _ in range(STALLED):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            recv_exactly(sock, 4)  # sshd's "SSH-": the upstream is connected
            sock.sendall(ident("OpenSSH_9.6"))
            stalled.append(sock)
        wait_until(
            lambda: len(sshd.log_lines("Accepted publickey")) >= STREAMING,
            30,
            "the streaming sessions logged in",
        )
        # The recording process runs at SCHED_IDLE: on a loaded machine its rows come late
        # (never lost), so the kill waits until each connection has one; what is tested is
        # that a SIGKILL loses none of them and leaves the live ones marked as such.
        expected = {"negotiated": STREAMING, "failed": FAILING, "in_progress": STALLED}
        wait_until(
            lambda: Counter(r.record.outcome for r in stored(db)) == expected,
            60,
            "every connection has its row as it stands",
        )
        time.sleep(0.5)  # the traffic goes on; whatever the proxy does now, it is killed
        if victims == "relay and recorder":
            os.kill(recorder, signal.SIGKILL)
        os.kill(proxy.proc.pid, signal.SIGKILL)
        proxy.proc.wait(10)
        assert proxy.proc.returncode == -signal.SIGKILL
        for thread in streaming:
            thread.join(30)
        ports = {sock.getsockname()[1] for sock in stalled}
        for sock in stalled:
            sock.close()
    if victims == "relay":
        # The recorder writes what it was handed, then ends: the relay's end closed its pipe.
        wait_until(lambda: not Path(f"/proc/{recorder}").exists(), 20, "the recorder ended")
    rows = stored(db)
    assert len(rows) == STREAMING + FAILING + STALLED, [r.record.outcome for r in rows]
    assert len({r.record.id for r in rows}) == len(rows)
    by_outcome: dict[str, list[StoredSession]] = {}
    for row in rows:
        by_outcome.setdefault(row.record.outcome, []).append(row)
        jsonschema.validate(row.record.to_dict(), session_record_schema())
    assert len(by_outcome.pop("failed")) == FAILING
    negotiated = by_outcome.pop("negotiated")
    assert len(negotiated) == STREAMING and not any(r.final for r in negotiated)
    in_progress = by_outcome.pop("in_progress")
    assert {r.record.client["port"] for r in in_progress} == ports
    for row in in_progress:
        assert not row.final and row.record.ended is None and row.record.started
        assert row.record.server["port"] == sshd.port
    assert by_outcome == {}
    assert all(r.returncode != 0 for r in results)  # their relay died under them
    listed = subprocess.run(
        [sys.executable, "-m", "kexproxy", "sessions", "--store", str(db),
         "--outcome", "in_progress", "--json"],
        capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert listed.returncode == 0 and listed.stderr == ""
    assert len(listed.stdout.splitlines()) == STALLED


#: Run in a private mount namespace with a 1 MiB tmpfs at argv[1]: the proxy's store there,
#: handshakes before, while and (unless "still full") after the disk is full; one JSON line.
_FULL_DISK = r"""
import errno, json, os, signal, sys, time
disk, root, work, mode = sys.argv[1:5]
sys.path[:0] = [root, root + "/tui"]
from pathlib import Path
from kexproxy.sinks.store import SessionStore
from tests.commands.test_proxy_cmd import ProxyProcess, failing_server, one_failed_handshake

def fill(path):
    with open(path, "wb", buffering=0) as filler:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    filler.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc

db = f"{disk}/p.db"
total = 0
with failing_server() as up:
    proxy = ProxyProcess("--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{up.port}",
                         "--store", db, "--quiet", cwd=Path(work))
    port = proxy.wait_ready()
    def handshakes(count):
        global total
        for _ in range(count):
            one_failed_handshake(port)
            total += 1
            time.sleep(0.02)
    handshakes(5)
    # The first five stored before the disk fills (a loaded machine once wrote them late,
    # and the test then saw the store fail to open, not to write).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            reader = SessionStore.open(db, readonly=True)
        except Exception:
            time.sleep(0.05)
            continue
        stored = sum(r.final for r in reader.sessions(limit=None))
        reader.close()
        if stored == 5:
            break
        time.sleep(0.05)
    fill(f"{disk}/filler")
    handshakes(30)
    time.sleep(1.0)
    if mode == "freed":
        os.unlink(f"{disk}/filler")
        time.sleep(1.0)
        handshakes(5)
        time.sleep(0.3)
    status, _out = proxy.stop(signal.SIGTERM)
store = SessionStore.open(db, readonly=True)
rows = store.sessions(limit=None)
store.close()
print(json.dumps({"status": status, "total": total, "stderr": proxy.stderr,
                  "stored": len(rows), "final": sum(r.final for r in rows)}))
"""


@pytest.mark.parametrize("mode", ["freed", "still full"])
def test_a_full_disk_under_the_proxy_loses_no_record_without_saying_so(
    tmp_path: Path, mode: str
) -> None:
    """A 1 MiB tmpfs filled mid-run: every record is stored once space is back, or each one
    that is not is counted, on stderr and in the last line."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        skip_or_fail("needs root and unshare for a private tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = 'mount -t tmpfs -o size=1m tmpfs "$1" && exec "$2" -c "$3" "$1" "$4" "$5" "$6"'
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
         str(disk), sys.executable, _FULL_DISK, str(ROOT), str(tmp_path), mode],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if "mount:" in result.stderr or "unshare:" in result.stderr:
        skip_or_fail(f"no private tmpfs here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    said = out["stderr"].splitlines()
    db = f"{disk}/p.db"
    assert out["status"] == 0
    assert out["total"] == (40 if mode == "freed" else 35)
    full = [line for line in said if "cannot write the session store" in line]
    assert len(full) == 1 and "database or disk is full" in full[0], said
    last = said[-1]
    assert last.startswith(f"kexproxy: stopped; {out['total']} sessions ended,"), said
    if mode == "freed":
        assert out["stored"] == out["final"] == out["total"], out
        assert any(line.endswith("writing the session store again") for line in said), said
        assert last.endswith(f"; records in {db}")
        assert not any("could not be stored" in line for line in said)
    else:
        lost = out["total"] - out["final"]
        assert lost > 0
        counted = f"{lost} record{'s' * (lost != 1)} could not be stored in {db}"
        assert last.endswith(f"; {counted}"), said
        assert f"kexproxy: {counted}" in said
        assert not any("records in" in line for line in said)
