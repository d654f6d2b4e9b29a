"""`kexproxy proxy` when things go wrong around it: killed with SIGKILL mid-traffic, a full disk.

Real clients through a real process: what must hold is what an operator finds afterwards,
a row for every connection, and no record missing from the store without being counted.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
import pytest

from kexproxy.schema import session_record_schema
from kexproxy.sinks.store import SessionStore, StoredSession
from tests.builders import ident
from tests.commands.test_proxy_cmd import ProxyProcess
from tests.peers import PeerResult, Sshd, run_ssh
from tests.sources.test_proxy_helpers import recv_exactly

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
