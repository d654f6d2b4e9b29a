"""`kexproxy proxy` as a person or a service manager runs it: outputs, signals, exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jsonschema
import pytest

from kexproxy.schema import session_record_schema
from kexproxy.sinks.store import SessionStore
from tests.builders import client_offer, ident, kexinit, openssh_handshake_start, server_offer
from tests.sources.proxy_harness import Upstream, recv_exactly, recv_until_eof

ROOT = Path(__file__).resolve().parents[2]
CLIENT_FLIGHT, SERVER_FLIGHT = openssh_handshake_start(
    client_offer(kex=["diffie-hellman-group1-sha1"]), server_offer()
)


class ProxyProcess:
    """`python -m kexproxy proxy ...` in a subprocess; its port is read from its stderr."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.err_path = cwd / "proxy.stderr"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kexproxy", "proxy", *args],
            stdout=subprocess.PIPE,
            stderr=self.err_path.open("wb"),
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.port = 0

    def wait_ready(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.stderr)
            if match:
                self.port = int(match.group(1))
                return self.port
            if self.proc.poll() is not None:
                raise AssertionError(f"the proxy exited with {self.proc.returncode}: {self.stderr}")
            time.sleep(0.02)
        raise AssertionError(f"the proxy did not start: {self.stderr}")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=15)
        return self.proc.returncode, out.decode()


@contextmanager
def failing_server() -> Iterator[Upstream]:
    def handler(conn: socket.socket) -> None:
        conn.sendall(SERVER_FLIGHT)
        recv_exactly(conn, len(CLIENT_FLIGHT))
        conn.close()

    with Upstream(handler) as up:
        yield up


def one_failed_handshake(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(CLIENT_FLIGHT)
        recv_exactly(sock, len(SERVER_FLIGHT))
        recv_until_eof(sock)


def test_json_lines_on_stdout_and_the_store_written_and_sigterm_exits_zero(tmp_path: Path) -> None:
    store = tmp_path / "sessions.db"
    with failing_server() as up:
        proxy = ProxyProcess(
            "--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{up.port}",
            "--store", str(store), "--json", cwd=tmp_path,
        )  # fmt: skip
        port = proxy.wait_ready()
        one_failed_handshake(port)
        # A second session is still open when the proxy is told to stop.
        open_sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        open_sock.sendall(ident("OpenSSH_9.6"))
        time.sleep(0.3)
        status, out = proxy.stop(signal.SIGTERM)
        open_sock.close()
    assert status == 0, proxy.stderr
    lines = out.splitlines()
    assert len(lines) == 2
    schema = session_record_schema()
    records = [json.loads(line) for line in lines]
    for record in records:
        jsonschema.validate(record, schema)
        assert record["source"] == "proxy"
    assert records[0]["outcome"] == "failed"
    assert any("shut down (SIGTERM)" in note for note in records[1]["notes"])
    assert stat_mode(store) == 0o600
    stored = SessionStore.open(store, readonly=True)
    rows = stored.sessions()
    stored.close()
    assert {r.record.id for r in rows} == {r["id"] for r in records}
    assert all(r.final for r in rows)
    assert "listening on 127.0.0.1:" in proxy.stderr


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_sigint_also_ends_cleanly(tmp_path: Path) -> None:
    with failing_server() as up:
        proxy = ProxyProcess(
            "--listen", "0", "--upstream", f"127.0.0.1:{up.port}", "--no-store", "--json",
            cwd=tmp_path,
        )  # fmt: skip
        proxy.wait_ready()
        status, out = proxy.stop(signal.SIGINT)
    assert status == 0
    assert out == ""


def test_without_json_one_line_per_session_and_messages(tmp_path: Path) -> None:
    with failing_server() as up:
        proxy = ProxyProcess(
            "--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{up.port}", "--no-store",
            cwd=tmp_path,
        )  # fmt: skip
        port = proxy.wait_ready()
        one_failed_handshake(port)
        time.sleep(0.3)
        status, out = proxy.stop()
    assert status == 0
    lines = out.splitlines()
    assert "failed" in lines[0] and "no match: kex" in lines[0]
    assert lines[1].startswith(f"    client: Unable to negotiate with 127.0.0.1 port {port}:")
    assert lines[2].startswith("    server: Unable to negotiate with 127.0.0.1 port ")


@pytest.mark.parametrize("where", ["no/dir/s.db", "a-directory", "not-a-store.db"])
def test_a_store_that_cannot_be_used_at_start_is_refused(tmp_path: Path, where: str) -> None:
    """A proxy must not start relaying with a store it can never write (a store that fails
    later, a full disk, is reported once and the relay goes on: see tests/sinks)."""
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "not-a-store.db").write_bytes(b"not sqlite " * 100)
    proc = subprocess.run(
        [sys.executable, "-m", "kexproxy", "proxy", "--listen", "0", "--upstream",
         "127.0.0.1:9", "--store", str(tmp_path / where)],
        check=False, capture_output=True, text=True, timeout=30, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"kexproxy: {tmp_path / where}: ")
    assert proc.stderr.endswith("(--no-store to run without one)\n")
    assert len(proc.stderr.splitlines()) == 1
    assert "listening" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "2222"], "give --upstream"),
        (["--listen", "2222", "--upstream", "x:99999"], "from 0 to 65535"),
        (["--listen", "2222", "--transparent", "--upstream", "h"], "not used with --transparent"),
        (["--listen", "2222", "--tproxy", "--upstream", "h"], "not used with --tproxy"),
        (["--listen", "2222", "--tproxy", "--transparent"], "exclude each other"),
        (["--listen", "[::1", "--upstream", "h"], "missing ']'"),
        (["--listen", "2222", "--upstream", "no-such-host.invalid"], "cannot resolve"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kexproxy", "proxy", *args, "--no-store"],
        capture_output=True, text=True, timeout=30, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_a_listen_address_in_use_exits_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "kexproxy", "proxy", "--listen", str(port),
             "--upstream", "127.0.0.1:22", "--no-store"],
            capture_output=True, text=True, timeout=30, cwd=tmp_path, check=False,
        )  # fmt: skip
    assert result.returncode == 2
    assert f"cannot listen on {port}" in result.stderr


def test_tproxy_without_the_capability_exits_2_with_one_line(tmp_path: Path) -> None:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv (util-linux) to run without CAP_NET_ADMIN")
    result = subprocess.run(
        [setpriv, "--bounding-set=-net_admin,-net_raw", sys.executable, "-m", "kexproxy",
         "proxy", "--tproxy", "--listen", "127.0.0.1:0", "--no-store"],
        capture_output=True, text=True, timeout=30, cwd=tmp_path, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "kexproxy: cannot listen on 127.0.0.1:0: --tproxy needs root or CAP_NET_ADMIN "
        "(the kernel refused IP_TRANSPARENT)"
    ]


def test_the_default_store_is_kexproxy_db_in_the_working_directory(tmp_path: Path) -> None:
    with failing_server() as up:
        proxy = ProxyProcess(
            "--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{up.port}", "--quiet",
            cwd=tmp_path,
        )  # fmt: skip
        port = proxy.wait_ready()
        one_failed_handshake(port)
        time.sleep(0.3)
        status, out = proxy.stop()
    assert status == 0 and out == ""
    assert (tmp_path / "kexproxy.db").exists()
    assert stat_mode(tmp_path / "kexproxy.db") == 0o600


def test_kexinit_builders_make_the_failure_the_tests_expect() -> None:
    """The scripted handshake above fails on kex: the baseline the CLI tests rely on."""
    assert b"diffie-hellman-group1-sha1" in kexinit(
        client_offer(kex=["diffie-hellman-group1-sha1"])
    )


def test_a_decided_session_is_in_the_store_before_it_ends(tmp_path: Path) -> None:
    """Another process (the TUI, `kexproxy sessions`) sees a live session while it is open."""
    store = tmp_path / "live.db"
    release = threading.Event()

    def handler(conn: socket.socket) -> None:
        conn.sendall(SERVER_FLIGHT)
        recv_exactly(conn, len(CLIENT_FLIGHT))
        release.wait(10)  # decided (no common kex), but nobody closes yet

    with Upstream(handler) as up:
        proxy = ProxyProcess(
            "--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{up.port}",
            "--store", str(store), "--quiet", cwd=tmp_path,
        )  # fmt: skip
        port = proxy.wait_ready()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(CLIENT_FLIGHT)
            recv_exactly(sock, len(SERVER_FLIGHT))
            deadline = time.monotonic() + 5
            rows = []
            # The first row (in_progress, written when the connection is accepted) is
            # replaced by the decided one while the session is still open.
            while time.monotonic() < deadline and (
                not rows or rows[0].record.outcome == "in_progress"
            ):
                if store.exists():
                    reader = SessionStore.open(store, readonly=True)
                    rows = reader.sessions()
                    reader.close()
                time.sleep(0.05)
            listed = subprocess.run(
                [sys.executable, "-m", "kexproxy", "sessions", "--store", str(store)],
                capture_output=True, text=True, timeout=30, check=False,
                env={**os.environ, "COLUMNS": "200"},
            )  # fmt: skip
            release.set()
            recv_until_eof(sock)
        time.sleep(0.3)
        status, _out = proxy.stop()
    assert status == 0
    [live] = rows
    assert not live.final
    assert live.record.outcome == "failed"
    assert "failed (live)" in listed.stdout
    reader = SessionStore.open(store, readonly=True)
    [done] = reader.sessions()
    reader.close()
    assert done.final and done.record.id == live.record.id


def test_out_of_descriptors_pauses_accepting_and_recovers(tmp_path: Path) -> None:
    """EMFILE: no busy loop, every starved session recorded, connections work again after."""
    with failing_server() as up:
        # Soft and hard limit both: the proxy raises its soft limit to the hard one.
        proxy = subprocess.Popen(
            ["sh", "-c", 'ulimit -n 48 && exec "$@"', "sh",
             sys.executable, "-m", "kexproxy", "proxy", "--listen", "127.0.0.1:0",
             "--upstream", f"127.0.0.1:{up.port}", "--no-store", "--json"],
            stdout=subprocess.PIPE, stderr=(tmp_path / "err").open("wb"), cwd=tmp_path,
        )  # fmt: skip
        err = tmp_path / "err"
        deadline = time.monotonic() + 15
        while "listening on" not in err.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        port = int(re.search(r"127\.0\.0\.1:(\d+),", err.read_text()).group(1))  # type: ignore[union-attr]
        hogs = []
        for _ in range(40):  # each session holds two descriptors, more than the limit allows
            # A starved session is reset on purpose; the reset may come before connect()
            # has read back its own result (CI, once: the 31st of 40).
            with contextlib.suppress(ConnectionResetError):
                hogs.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.5)
        for hog in hogs:
            hog.close()
        time.sleep(0.5)
        one_failed_handshake(port)  # accepting again
        time.sleep(0.3)
        proxy.send_signal(signal.SIGTERM)
        out, _ = proxy.communicate(timeout=15)
    assert proxy.returncode == 0
    records = [json.loads(line) for line in out.decode().splitlines()]
    # Out of descriptors, either accept() fails (said once) or the upstream socket cannot
    # be opened (the client is reset and the record says why); either way no spin.
    assert err.read_text().count("cannot accept more connections now") <= 1
    starved = [r for r in records if any("Too many open files" in n for n in r["notes"])]
    assert starved and all(r["outcome"] == "aborted" for r in starved), [
        (r["outcome"], r["notes"], r["evidence"]) for r in starved if r["outcome"] != "aborted"
    ]
    assert any(r["outcome"] == "failed" for r in records)  # the handshake after the hogs left


def test_policy_verdicts_go_into_records_and_lines(tmp_path: Path) -> None:
    """A real ssh through the proxy with a classical kex violates the modern policy."""
    from tests.peers import Sshd, run_ssh

    policy = ROOT / "policies" / "modern.toml"
    with Sshd() as sshd:
        proxy = ProxyProcess(
            "--listen", "0", "--upstream", f"127.0.0.1:{sshd.port}", "--no-store",
            "--policy", str(policy), cwd=tmp_path,
        )  # fmt: skip
        port = proxy.wait_ready()
        weak = run_ssh(port, "-oKexAlgorithms=curve25519-sha256", command="true")
        strong = run_ssh(port, "-oKexAlgorithms=sntrup761x25519-sha512@openssh.com")
        time.sleep(0.3)
        status, out = proxy.stop()
    assert (weak.returncode, strong.returncode) == (0, 0), weak.stderr + strong.stderr
    assert status == 0, proxy.stderr
    violations = [line for line in out.splitlines() if line.startswith("    policy modern: ")]
    assert len(violations) >= 1
    assert any("curve25519-sha256" in line for line in violations), out
    sessions = [line for line in out.splitlines() if not line.startswith(" ")]
    assert len(sessions) == 2
    assert all("  negotiated  " in line for line in sessions), out
    # The violations are printed under the classical session's line, not the hybrid's.
    first_violation = out.splitlines().index(violations[0])
    assert "curve25519-sha256 / " in out.splitlines()[first_violation - 1], out


def test_policy_in_json_records(tmp_path: Path) -> None:
    from tests.peers import Sshd, run_ssh

    policy = ROOT / "policies" / "modern.toml"
    with Sshd() as sshd:
        proxy = ProxyProcess(
            "--listen", "0", "--upstream", f"127.0.0.1:{sshd.port}", "--no-store", "--json",
            "--policy", str(policy), cwd=tmp_path,
        )  # fmt: skip
        port = proxy.wait_ready()
        result = run_ssh(port, "-oKexAlgorithms=curve25519-sha256")
        time.sleep(0.3)
        status, out = proxy.stop()
    assert result.returncode == 0, result.stderr
    assert status == 0
    (record,) = [json.loads(line) for line in out.splitlines()]
    jsonschema.validate(record, session_record_schema())
    assert record["policy"]["name"] == "modern"
    assert record["policy"]["compliant"] is False
    assert record["policy"]["file"] == str(policy)
    kex_rules = [v for v in record["policy"]["violations"] if v.get("field") == "kex"]
    assert kex_rules, record["policy"]
    assert "curve25519-sha256" in kex_rules[0]["message"]


def test_an_unusable_policy_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[kex\n")
    proc = subprocess.run(
        [sys.executable, "-m", "kexproxy", "proxy", "--listen", "0", "--upstream", "127.0.0.1:1",
         "--no-store", "--policy", str(bad)],
        check=False, capture_output=True, text=True, timeout=30, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"kexproxy: policy {bad}: ")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_each_line_carries_the_verdict_and_the_end_says_what_was_seen(tmp_path: Path) -> None:
    """Real ssh through the proxy: the failure's line names the fix; stopping sums up."""
    from tests.peers import Sshd, run_ssh

    with Sshd(["KexAlgorithms curve25519-sha256"]) as sshd:
        proxy = ProxyProcess(
            "--listen", "0", "--upstream", f"127.0.0.1:{sshd.port}", "--no-store", cwd=tmp_path
        )  # fmt: skip
        port = proxy.wait_ready()
        failed = run_ssh(port, "-oKexAlgorithms=diffie-hellman-group14-sha1")
        ok = run_ssh(port)
        time.sleep(0.3)
        status, out = proxy.stop(signal.SIGINT)
    assert failed.returncode == 255 and ok.returncode == 0, failed.stderr + ok.stderr
    assert status == 0
    first = out.splitlines()[0]
    # Both sides can do a post-quantum method: stronger than the client adding X25519 alone.
    assert re.search(
        r"failed  no match: kex  fix both: add sntrup761x25519-sha512@openssh.com \(strong\)$",
        first,
    ), first
    assert "kexproxy: stopped; 2 sessions ended, 1 failed to negotiate" in proxy.stderr


def test_sigterm_with_nobody_reading_stdout_still_ends(tmp_path: Path) -> None:
    """`kexproxy proxy --json | stalled-reader`: records queue up to a bound, and SIGTERM
    still ends the proxy soon, with status 0 and a line saying what was not written."""
    with failing_server() as up:
        proxy = ProxyProcess(
            "--listen", "0", "--upstream", f"127.0.0.1:{up.port}", "--no-store", "--json",
            cwd=tmp_path,
        )  # fmt: skip
        port = proxy.wait_ready()
        for _ in range(40):  # about 10 KiB each: more than a pipe holds
            one_failed_handshake(port)
        time.sleep(0.5)
        started = time.monotonic()
        proxy.proc.send_signal(signal.SIGTERM)
        status = proxy.proc.wait(30)  # stdout is never read
        took = time.monotonic() - started
    assert status == 0
    assert took < 15, took
    assert "JSON output is not being read; " in proxy.stderr
    assert "kexproxy: stopped; 40 sessions ended, 40 failed to negotiate" in proxy.stderr
    assert proxy.proc.stdout is not None
    proxy.proc.stdout.close()


def test_pcap_writes_each_sessions_capture_from_the_recording_process(tmp_path: Path) -> None:
    """`--pcap DIR` (made if missing) with the forked recorder: the JSON record names a file
    that `read` turns back into the same outcome, lists and failures."""
    from kexproxy.pipeline import capture_records
    from tests.peers import Sshd, run_ssh

    captures = tmp_path / "new" / "captures"
    with Sshd(["KexAlgorithms curve25519-sha256"]) as sshd:
        proxy = ProxyProcess(
            "--listen", "0", "--upstream", f"127.0.0.1:{sshd.port}", "--no-store", "--json",
            "--pcap", str(captures), cwd=tmp_path,
        )  # fmt: skip
        port = proxy.wait_ready()
        run_ssh(port, "-oKexAlgorithms=diffie-hellman-group14-sha256")
        time.sleep(0.3)
        status, out = proxy.stop()
    assert status == 0, proxy.stderr
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert record["outcome"] == "failed"
    assert Path(record["capture"]).parent == captures
    (read_back,) = capture_records(record["capture"])
    assert read_back.outcome == "failed"
    assert read_back.failures == record["failures"]
    assert read_back.client_kexinit == record["client_kexinit"]
    assert read_back.server_kexinit == record["server_kexinit"]


def test_pcap_into_a_file_is_refused_at_start(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "kexproxy", "proxy", "--listen", "0", "--upstream", "127.0.0.1:1",
         "--no-store", "--pcap", str(tmp_path / "f")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "cannot use" in result.stderr and "capture files" in result.stderr
