"""`kexproxy read --jobs N`: the same bytes on stdout and stderr and the same exit status as
`--jobs 1`, over every bundled and public capture with bad files among them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = sorted(str(p) for p in (ROOT / "captures").glob("*.pcap*"))
PUBLIC = sorted(str(p) for p in (ROOT / "tests" / "data" / "public").glob("*.pcap*"))


def kexproxy(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "kexproxy", *args],
        input=stdin,
        capture_output=True,
        timeout=300,
        env=env,
        check=False,
    )


@pytest.fixture
def inputs(tmp_path: Path) -> list[str]:
    """Every capture, with a file that is not a capture, a missing one and a truncated one
    among them."""
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"\x19\xbb8J" + b"not a capture" * 20)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes((ROOT / "captures" / "openssh-success.pcap").read_bytes()[:5000])
    middle = len(BUNDLED) // 2
    return [
        *BUNDLED[:middle],
        str(garbage),
        *BUNDLED[middle:],
        str(tmp_path / "missing.pcap"),
        *PUBLIC,
        str(cut),
    ]


@pytest.mark.parametrize("mode", [["--json"], [], ["--one-table"]], ids=["json", "tables", "one"])
def test_more_jobs_print_exactly_what_one_job_prints(mode: list[str], inputs: list[str]) -> None:
    one = kexproxy("read", "--all", *mode, "--jobs", "1", *inputs)
    assert one.returncode == 2
    errors = one.stderr.decode().splitlines()
    assert sum("garbage.pcap: not a pcap or pcapng file" in e for e in errors) == 1
    assert sum("missing.pcap: no such file or directory" in e for e in errors) == 1
    assert sum("cut.pcap: truncated capture" in e for e in errors) == 1
    if mode == ["--json"]:
        ids = [json.loads(line)["id"] for line in one.stdout.splitlines()]
        assert len(ids) == len(set(ids)) > 100
    for jobs in ("2", "4"):
        many = kexproxy("read", "--all", *mode, "--jobs", jobs, *inputs)
        assert many.returncode == one.returncode
        assert many.stderr == one.stderr
        assert many.stdout == one.stdout


def test_policy_verdicts_and_tls_memory_follow_file_order() -> None:
    # ServerMemory learns from earlier TLS sessions in the order they are read: running the
    # stages in the workers would lose what an earlier file taught a later one.
    names = [*PUBLIC, *BUNDLED]
    args = ["read", "--json", "--policy", str(ROOT / "policies" / "modern.toml")]
    one = kexproxy(*args, "--jobs", "1", *names)
    two = kexproxy(*args, "--jobs", "2", *names)
    assert one.returncode == two.returncode == 1  # some session violates the policy
    assert one.stdout == two.stdout
    assert one.stderr == two.stderr


def test_standard_input_is_read_in_its_turn_among_the_files() -> None:
    stdin = (ROOT / "captures" / "openssh-kex-fail.pcap").read_bytes()
    names = [BUNDLED[0], "-", BUNDLED[1], BUNDLED[2]]
    one = kexproxy("read", "--jobs", "1", *names, stdin=stdin)
    two = kexproxy("read", "--jobs", "2", *names, stdin=stdin)
    assert one.returncode == two.returncode == 0
    assert one.stdout == two.stdout
    out = two.stdout.decode()
    # Its table comes between the first and second file's, as the files were named.
    assert out.index(Path(BUNDLED[0]).name) < out.index("stdin") < out.index(Path(BUNDLED[1]).name)


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_jobs_must_be_a_positive_number(bad: str) -> None:
    result = kexproxy("read", "--jobs", bad, BUNDLED[0])
    assert result.returncode == 2
    assert b"--jobs" in result.stderr and b"positive" in result.stderr


def test_help_says_jobs_keep_the_output() -> None:
    out = kexproxy("read", "--help").stdout.decode()
    assert "--jobs N" in out and "same as with --jobs 1" in out


def test_ctrl_c_ends_the_workers_and_says_interrupted(tmp_path: Path) -> None:
    # Two pipes nobody writes to keep both workers busy; Ctrl-C goes to the whole group,
    # as a terminal sends it.
    pipe = tmp_path / "silent.pcap"
    os.mkfifo(pipe)
    args = ["read", "--jobs", "2", str(pipe), str(pipe), BUNDLED[0]]
    # A runner started in the background ignores SIGINT, and so would its children: a
    # handler here becomes the default in the child.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kexproxy", *args],
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    finally:
        signal.signal(signal.SIGINT, before)
    try:
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130
    assert err.decode().strip().splitlines()[-1] == "kexproxy: interrupted"
    left = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, check=False)
    assert left.stdout == b""
