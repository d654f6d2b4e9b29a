"""`kexproxy read` as a script or a person uses it: output channels, exit codes, bad input."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kexproxy.schema import session_record_schema

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = ROOT / "tests" / "data" / "public"
ONE = PUBLIC / "zeek-ssh-reverse-ssh.pcap"


def kexproxy(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "kexproxy", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_json_prints_only_valid_records_on_stdout() -> None:
    result = kexproxy("read", "--json", str(ONE), str(PUBLIC / "zeek-ssh-ssh.pcap"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 1 + 22
    schema = session_record_schema()
    for line in lines:
        record = json.loads(line)
        jsonschema.validate(record, schema)
    assert result.stderr == b""


def test_table_names_the_connection_and_outcome() -> None:
    result = kexproxy("read", str(ONE))
    assert result.returncode == 0
    out = result.stdout.decode()
    assert "13.13.13.37:22" in out  # the SSH client: reverse SSH
    assert "negotiated" in out
    assert "AsyncSSH_2.8.1" in out


def test_failure_messages_are_printed_under_the_table() -> None:
    result = kexproxy("read", str(PUBLIC / "zeek-ssh-kex-quadratic-1000.pcap"))
    out = result.stdout.decode()
    assert "failed" in out
    assert "client: Unable to negotiate with 10.0.1.2 port 22: no matching key exchange" in out


def test_stdin_gives_the_same_records_as_the_file() -> None:
    from_file = kexproxy("read", "--json", str(PUBLIC / "zeek-ssh-sshguess.pcap"))
    from_stdin = kexproxy(
        "read", "--json", "-", stdin=(PUBLIC / "zeek-ssh-sshguess.pcap").read_bytes()
    )
    assert from_stdin.returncode == 0, from_stdin.stderr

    def essentials(out: bytes) -> list[tuple[object, ...]]:
        rows = [json.loads(line) for line in out.decode().splitlines()]
        return sorted(
            (r["client"]["port"], r["outcome"], r["negotiated"]["kex"], r["hassh"]) for r in rows
        )

    assert essentials(from_stdin.stdout) == essentials(from_file.stdout)
    assert len(from_stdin.stdout.splitlines()) == 11


def test_gzip_capture_reads_like_the_plain_one(tmp_path: Path) -> None:
    packed = tmp_path / "one.pcap.gz"
    packed.write_bytes(gzip.compress(ONE.read_bytes()))
    plain = kexproxy("read", "--json", str(ONE))
    zipped = kexproxy("read", "--json", str(packed))
    assert zipped.returncode == 0, zipped.stderr
    a, b = json.loads(plain.stdout), json.loads(zipped.stdout)
    assert a["hassh"] == b["hassh"] and a["negotiated"] == b["negotiated"]


def test_missing_file_is_one_line_and_exit_2_and_others_still_read(tmp_path: Path) -> None:
    result = kexproxy("read", "--json", str(tmp_path / "nope.pcap"), str(ONE))
    assert result.returncode == 2
    err = result.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "nope.pcap" in err[0]
    assert "Traceback" not in result.stderr.decode()
    assert len(result.stdout.decode().splitlines()) == 1


def test_not_a_capture_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("<!DOCTYPE html>\n<html>not a capture</html>\n")
    result = kexproxy("read", str(bogus))
    assert result.returncode == 2
    err = result.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "notes.txt" in err[0]


def test_truncated_capture_reports_what_was_read_then_fails(tmp_path: Path) -> None:
    data = (PUBLIC / "zeek-ssh-sshguess.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) * 2 // 3 + 7])
    result = kexproxy("read", "--json", str(cut))
    assert result.returncode == 2
    assert len(result.stderr.decode().strip().splitlines()) == 1
    assert "Traceback" not in result.stderr.decode()
    assert len(result.stdout.decode().splitlines()) >= 5


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(min_value=0, max_value=40_000), junk=st.binary(max_size=64))
def test_any_truncation_or_garbage_is_a_clean_error(tmp_path: Path, cut: int, junk: bytes) -> None:
    from kexproxy.pipeline import capture_records
    from kexproxy.sources.pcap import CaptureError

    path = tmp_path / "fuzz.pcap"
    path.write_bytes(ONE.read_bytes()[:cut] + junk)
    try:
        capture_records(str(path))
    except CaptureError as exc:
        assert "\n" not in str(exc)


def test_help_teaches_with_examples() -> None:
    result = kexproxy("read", "--help")
    assert result.returncode == 0
    text = result.stdout.decode()
    assert "examples:" in text and "--json" in text and "exit status" in text


@pytest.mark.parametrize("args", [[], ["read"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    assert kexproxy(*args).returncode == 2


def test_several_captures_end_with_totals() -> None:
    """An analyst with a folder of captures gets the run at a glance, counted from the records."""
    from collections import Counter

    captures = sorted(str(p) for p in (ROOT / "captures").glob("*.pcap"))
    table = kexproxy("read", *captures)
    assert table.returncode == 0, table.stderr
    records = [
        json.loads(line) for line in kexproxy("read", "--json", *captures).stdout.splitlines()
    ]
    out = table.stdout.decode()
    tail = out[out.index(f"{len(records)} SSH and TLS connections in {len(captures)} captures") :]
    outcomes = Counter(r["outcome"] for r in records)
    assert f"{outcomes['failed']} failed" in tail and f"{outcomes['negotiated']} negotiated" in tail
    kex_failures = sum(any(f["list"] == "kex_algorithms" for f in r["failures"]) for r in records)
    assert f"failing lists: kex {kex_failures}" in tail
    putty = sum(
        "PuTTY" in (r["client_banner"] or "") and r["outcome"] in ("failed", "aborted")
        for r in records
    )
    assert putty and f"PuTTY_Release_0.78 {putty}" in tail
    assert "(no banner) 1" in tail  # the raw client refused before it sent a banner
    one = kexproxy("read", captures[0]).stdout.decode()
    assert "SSH connections in" not in one  # one capture: its table says it all


def test_json_goes_to_stdout_even_with_a_progress_bar_on_a_terminal() -> None:
    """stderr on a terminal shows a progress bar; it must not swallow the JSON on stdout."""
    import pty

    captures = [str(ROOT / "captures" / "openssh-success.pcap"), str(ONE)]
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "kexproxy", "read", "--json", *captures],
            stdout=subprocess.PIPE,
            stderr=follower,
            env={k: v for k, v in os.environ.items() if k != "CI"},
            timeout=60,
            check=False,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 0
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 2
    assert all(json.loads(line)["schema"] == "kexproxy/session/1" for line in lines)


def test_a_closed_pipe_is_not_an_error() -> None:
    """`kexproxy read ... | head -1` ends quietly, with the status the run had."""
    # Four times the captures: more output than a pipe holds, so the writer does hit the
    # closed pipe (27 KB of tables, 200 KB of JSON for one pass).
    captures = sorted(str(p) for p in (ROOT / "captures").glob("*.pcap")) * 4
    for args in (["read", *captures], ["read", "--json", *captures]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "kexproxy", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "COLUMNS": "100"},
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.readline()
        proc.stdout.close()  # as head does
        err = proc.stderr.read()
        assert proc.wait(60) == 0, err
        assert b"Traceback" not in err and b"Exception ignored" not in err


def test_stdin_only_once() -> None:
    result = kexproxy("read", "-", "-", stdin=b"")
    assert result.returncode == 2
    assert result.stderr == b"kexproxy: standard input (-) can be read only once\n"


def test_skipped_frames_are_said_not_silent(tmp_path: Path) -> None:
    """A capture of a link layer kexproxy does not read is not a quiet capture."""
    import struct

    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 147)  # LINKTYPE_USER0
    packet = struct.pack("<IIII", 1, 0, 20, 20) + b"\x45" + b"\x00" * 19
    path = tmp_path / "user0.pcap"
    path.write_bytes(header + packet * 3)
    result = kexproxy("read", str(path))
    assert result.returncode == 0
    err = result.stderr.decode()
    assert err == (
        "kexproxy: user0.pcap: 3 frames of an unsupported link layer skipped (link type 147); "
        "kexproxy reads Ethernet, Linux cooked (SLL, SLL2), raw IP and BSD loopback\n"
    )


def test_a_file_name_cannot_drive_the_terminal(tmp_path: Path) -> None:
    name = "g\x1b]0;pwned\x07ood.pcap"
    (tmp_path / name).write_bytes((ROOT / "captures" / "openssh-success.pcap").read_bytes())
    (tmp_path / ("bad\x1b[2J" + ".pcap")).write_bytes(b"garbage!")
    result = kexproxy("read", str(tmp_path / name), str(tmp_path / "bad\x1b[2J.pcap"))
    assert result.returncode == 2
    assert b"\x1b" not in result.stdout and b"\x07" not in result.stdout
    assert b"\x1b" not in result.stderr
    assert b"g\\x1b]0;pwned\\x07ood.pcap" in result.stdout


CAPTURES = ROOT / "captures"


def test_filter_keeps_the_matching_sessions_in_json_and_tables() -> None:
    everything = kexproxy("read", "--json", str(CAPTURES / "paramiko-kex-fail.pcap"))
    (record,) = [json.loads(line) for line in everything.stdout.decode().splitlines()]
    # The client offered diffie-hellman-group14-sha1 and nothing chose it: free text and
    # offers: still find it.
    assert "diffie-hellman-group14-sha1" not in json.dumps(record["negotiated"])
    files = [str(CAPTURES / n) for n in ("paramiko-kex-fail.pcap", "openssh-success.pcap")]
    for expr in ("diffie-hellman-group14-sha1", "offers=group14-sha1", "csw:paramiko"):
        result = kexproxy("read", "--json", "--filter", expr, *files)
        assert result.returncode == 0, result.stderr
        ids = [json.loads(line)["id"] for line in result.stdout.decode().splitlines()]
        assert ids == [record["id"]], expr
    table = kexproxy("read", "--filter", "outcome=negotiated", *files).stdout.decode()
    assert "paramiko-kex-fail.pcap: no SSH or TLS connections match the filter" in table
    assert "negotiated" in table and "paramiko_" not in table


def test_a_bad_filter_is_one_line_and_exit_2() -> None:
    result = kexproxy("read", "--filter", "outcome:won", str(CAPTURES / "openssh-success.pcap"))
    assert result.returncode == 2
    assert result.stderr.decode().startswith("kexproxy: --filter: outcome:won: use one of")
    assert len(result.stderr.decode().strip().splitlines()) == 1
    assert result.stdout == b""


def test_one_table_reads_a_folder_with_a_capture_column(tmp_path: Path) -> None:
    import shutil

    names = ["openssh-mac-fail.pcap", "plink-success.pcap", "paramiko-kex-fail.pcap"]
    for name in names:
        shutil.copy(CAPTURES / name, tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a capture\n")
    result = kexproxy("read", "--one-table", str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert out.count("capture") >= 1
    header = next(line for line in out.splitlines() if "capture" in line)
    assert header.split()[:2] == ["#", "capture"]
    # One table: each capture's name in a row, numbered on across captures.
    rows = [r for r in map(str.split, out.splitlines()) if len(r) > 1 and r[1].endswith(".pcap")]
    assert [row[:2] for row in rows] == [[str(i), n] for i, n in enumerate(sorted(names), 1)]
    assert "no SSH or TLS connections" not in out
    assert "#1 " in out and "Unable to negotiate" in out  # the messages, under the table
    filtered = kexproxy("read", "--one-table", "--filter", "csw:putty", str(tmp_path))
    lines = filtered.stdout.decode().splitlines()
    rows = [r for r in map(str.split, lines) if len(r) > 1 and r[1].endswith(".pcap")]
    assert [row[:2] for row in rows] == [["1", "plink-success.pcap"]]
    both = kexproxy("read", "--one-table", "--json", str(tmp_path))
    assert both.returncode == 2 and both.stdout == b""


def test_help_teaches_filter_and_one_table_with_examples() -> None:
    out = kexproxy("read", "--help").stdout.decode()
    assert "--filter EXPR" in out and "--one-table" in out
    assert "kexproxy read --filter 'outcome=failed offers:hmac-md5'" in out
    assert "kexproxy read --one-table captures/" in out
