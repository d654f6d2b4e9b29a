"""`kexproxy explain`: a capture's or a stored session's handshake, explained and escaped."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from kexproxy.cli import main
from kexproxy.core.diagnosis import diagnose
from kexproxy.pipeline import capture_records
from kexproxy.present_report import MAX_RUN, report

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = ROOT / "tests" / "data" / "public"
CLEAN = PUBLIC / "zeek-ssh-ssh_kex_mlkem.pcap"
WEAK = PUBLIC / "zeek-ssh-ssh_kex_curve25519.pcap"
FAILED = PUBLIC / "zeek-ssh-kex-quadratic-1000.pcap"
MANY = PUBLIC / "zeek-ssh-ssh.pcap"


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


def explain(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["explain", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_a_negotiated_handshake(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = explain(capsys, str(CLEAN))
    assert (status, err) == (0, "")
    assert "#1 10.211.55.16:49046 -> 10.211.55.15:2299  negotiated" in out
    assert "client banner: SSH-2.0-OpenSSH_10.2" in out
    assert "[mlkem768x25519-sha256]" in out  # the chosen entry, marked
    assert "security verdicts" in out
    assert "negotiated set: strong" in out
    assert "post-quantum kex: yes: mlkem768x25519-sha256 is a post-quantum hybrid" in out
    assert (
        "OpenSSH 10.1+ client: no warning: OpenSSH counts mlkem768x25519-sha256 as post-quantum"
        in out
    )
    assert "** WARNING" not in out
    assert "Terrapin: not exposed" in out
    assert "client lists: client lists match OpenSSH 9.9 to 10.2 defaults" in out
    assert "never the banner" in out
    assert "fixes" not in out


def test_a_weak_handshake_names_its_weakest_parts(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _err = explain(capsys, str(WEAK))
    assert status == 0
    assert "negotiated set: weak" in out
    # Weak for Terrapin, not for the classical key exchange: that is the post-quantum verdict.
    assert "key exchange curve25519-sha256" not in out.split("security verdicts")[1]
    assert "Terrapin: exposed: chacha20-poly1305@openssh.com without strict KEX" in out
    assert "OpenSSH 10.1+ client: would warn: OpenSSH does not count curve25519-sha256" in out
    assert "    ** WARNING: connection is not using a post-quantum key exchange algorithm." in out
    assert "    ** The server may need to be upgraded. See https://openssh.com/pq.html" in out


def test_a_failed_handshake_shows_rejections_and_fixes(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _err = explain(capsys, str(FAILED))
    assert status == 0
    assert (
        "client rejects: Unable to negotiate with 10.0.1.2 port 22: no matching key exchange" in out
    )
    assert "server rejects: Unable to negotiate with 10.0.1.1 port 12345" in out
    assert "no match" in out
    assert "what to change: each recipe alone fixes it, strongest first" in out
    # Made-up names from made-up software: offered, unknown, in words, never an ssh option.
    assert "1. Client (CodexClient): add bk0, bh0," in out
    assert "Add bk0 to the client's key exchange algorithms in its own settings." in out
    assert "-oKexAlgorithms" not in out
    assert "Not in kexproxy's catalogue: bk0, bh0," in out
    assert "... 460 more" in out  # a fuzzer's 500 names do not bury the report
    assert "unknown to the catalogue (client): ak0, ak1" in out


def test_a_recorded_openssh_failure(capsys: pytest.CaptureFixture[str]) -> None:
    capture = ROOT / "captures" / "openssh-kex-fail.pcap"
    status, out, _err = explain(capsys, str(capture))
    assert status == 0
    assert "no matching key exchange method found" in out
    assert "KexAlgorithms +" in out


def test_fix_lines_are_whole_on_an_80_column_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lines to paste are the point of the report: never folded or cut in a narrow column."""
    monkeypatch.setenv("COLUMNS", "80")
    capture = ROOT / "captures" / "openssh-kex-fail.pcap"
    (record,) = capture_records(str(capture))
    fixes = (record.diagnosis or {})["fixes"]
    assert fixes, "a kex failure has fixes"
    status, out, _err = explain(capsys, str(capture))
    assert status == 0
    lines = [line.strip() for line in out.splitlines()]
    for fix in fixes:
        if fix.get("ssh_option"):
            assert f"ssh {fix['ssh_option']} ..." in lines
        for key in ("ssh_config", "sshd_config"):
            for paste_line in (fix.get(key) or "").splitlines():
                assert paste_line.strip() in lines, (key, paste_line)


def test_one_connection_of_many(capsys: pytest.CaptureFixture[str]) -> None:
    count = len(capture_records(str(MANY)))
    status, out, _err = explain(capsys, str(MANY), "--connection", "2")
    assert status == 0
    assert "#2 " in out and "#1 " not in out and "#3 " not in out
    status, _out, err = explain(capsys, str(MANY), "--connection", str(count + 1))
    assert status == 2
    assert f"has {count} connection(s); no connection {count + 1}" in err


def test_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _err = explain(capsys, str(MANY), "--json")
    assert status == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == len(capture_records(str(MANY)))
    assert all("diagnosis" in r for r in records)


def test_policy(capsys: pytest.CaptureFixture[str]) -> None:
    policy = str(ROOT / "policies" / "modern.toml")
    status, out, _err = explain(capsys, str(WEAK), "--policy", policy)
    assert status == 1
    assert "policy modern: violated" in out
    status, out, _err = explain(capsys, str(CLEAN), "--policy", policy)
    assert status == 0 and "policy modern: compliant" in out
    status, _out, err = explain(capsys, str(CLEAN), "--policy", str(ROOT / "nope.toml"))
    assert status == 2 and "policy" in err


def test_an_id_from_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kexproxy.sinks.store import SessionStore

    [record] = capture_records(str(WEAK))
    path = tmp_path / "kexproxy.db"
    store = SessionStore.open(path)
    try:
        # A record stored before diagnoses existed gets one when explained.
        store.put(replace(record, diagnosis=None), final=True)
    finally:
        store.close()
    status, out, err = explain(capsys, record.id[:8], "--store", str(path))
    assert (status, err) == (0, "")
    assert f"id {record.id}" in out and "negotiated set: weak" in out
    status, _out, err = explain(capsys, "ffffffff", "--store", str(path))
    assert status == 2
    assert err == f"kexproxy: no file 'ffffffff', and no session 'ffffffff' in {path}\n"
    status, _out, err = explain(capsys, record.id[:8], "--store", str(path), "--connection", "2")
    assert status == 2 and "--connection N picks a connection of a capture file" in err


def test_a_truncated_capture_is_explained_as_far_as_it_goes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = (ROOT / "captures" / "openssh-kex-fail.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:-1])
    status, out, err = explain(capsys, str(cut))
    assert status == 2
    assert "no matching key exchange method found" in out  # what was read is explained
    assert err.startswith("kexproxy: ") and "cut.pcap" in err and len(err.splitlines()) == 1
    status, out, err = explain(capsys, str(cut), "--json")
    assert status == 2 and len(out.splitlines()) == 1


def test_a_pipe_is_a_capture_and_a_directory_is_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data = (ROOT / "captures" / "openssh-kex-fail.pcap").read_bytes()

    def feed() -> None:
        with open(fifo, "wb") as pipe:
            pipe.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    status, out, _err = explain(capsys, str(fifo))
    writer.join(10)
    assert status == 0 and "no matching key exchange method found" in out
    status, _out, err = explain(capsys, str(tmp_path))
    assert status == 2 and err == f"kexproxy: {tmp_path}: is a directory, not a capture\n"


def test_neither_a_file_nor_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = explain(capsys, "4de92dfa", "--store", str(tmp_path / "none.db"))
    assert (status, out) == (2, "")
    assert "no file '4de92dfa', and no session store" in err
    status, _out, err = explain(capsys, str(tmp_path))  # a directory is no capture either
    assert status == 2


def test_every_untrusted_string_is_escaped() -> None:
    """Banners and names from the wire: controls shown as escapes, markup shown as text."""
    [record] = capture_records(str(WEAK))
    hostile = "SSH-2.0-Evil\x1b]0;pwned\x07[bold red]x[/bold red]\u202e"
    kexinit = dict(record.client_kexinit or {})
    kexinit["kex_algorithms"] = ["[link=http://x]y[/link]\x1b[2J", *kexinit["kex_algorithms"]]
    record = replace(record, client_banner=hostile, client_kexinit=kexinit)
    record = replace(record, diagnosis=diagnose(record))
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, force_terminal=True, color_system="truecolor")
    for part in report(record, 1):
        console.print(part)
    text = buffer.getvalue()
    assert "\x1b]0;" not in text and "\x07" not in text and "\u202e" not in text
    assert "\x1b[2J" not in text
    assert "\\x1b]0;pwned\\x07" in text and "\\u202e" in text
    plain = Console(file=io.StringIO(), width=200, no_color=True)
    for part in report(record, 1):
        plain.print(part)
    rendered = plain.file.getvalue()  # type: ignore[attr-defined]
    assert "[bold red]x[/bold red]" in rendered
    assert "[link=http://x]y[/link]\\x1b[2J" in rendered


def test_runs_as_a_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kexproxy", "explain", str(CLEAN)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "160"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "security verdicts" in result.stdout


def test_a_strangers_names_never_become_fix_lines_or_report_lines() -> None:
    """A name with a newline could forge sshd_config lines (PermitRootLogin yes) in the fix or
    lines of the report; one with spaces and quotes, shell words in `ssh -o...`."""
    [record] = capture_records(str(ROOT / "captures" / "openssh-kex-fail.pcap"))
    forged = "x\nPermitRootLogin yes\nPasswordAuthentication yes"
    shell = "curve25519-sha256 -oProxyCommand='touch${IFS}/tmp/pwned'"
    client = dict(record.client_kexinit or {})
    server = dict(record.server_kexinit or {})
    client["kex_algorithms"] = [forged, *client["kex_algorithms"]]
    server["kex_algorithms"] = [shell, *server["kex_algorithms"]]
    record = replace(record, client_kexinit=client, server_kexinit=server)
    diagnosis = diagnose(record)
    pasted = "\n".join(
        str(fix.get(key) or "")
        for fix in diagnosis["fixes"]
        for key in ("ssh_option", "ssh_config", "sshd_config")
    )
    assert diagnosis["fixes"], "the honest names still give fixes"
    assert "PermitRootLogin" not in pasted and "ProxyCommand" not in pasted
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, no_color=True)
    for part in report(replace(record, diagnosis=diagnosis), 1):
        console.print(part)
    lines = buffer.getvalue().splitlines()
    assert not any(line.strip().startswith("PermitRootLogin") for line in lines)
    assert any("x\\x0aPermitRootLogin yes\\x0aPasswordAuthentication yes" in line for line in lines)


def test_long_strings_are_cut_in_the_report_and_whole_in_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 9 defect 10: a 7,000-character banner was printed whole, three times."""
    [plain] = capture_records(str(ROOT / "captures" / "openssh-cipher-fail.pcap"))
    banner = "SSH-2.0-" + "B" * 7000
    record = replace(plain, server_banner=banner)
    record = replace(record, diagnosis=diagnose(record))
    texts = []
    for shown in (plain, record):
        console = Console(file=io.StringIO(), width=200, no_color=True)
        for part in report(shown, 1):
            console.print(part)
        texts.append(console.file.getvalue())  # type: ignore[attr-defined]
    text = texts[1]
    flat = text.replace("\n", "")
    assert "B" * 301 not in flat
    assert f"server banner: {banner[:300]}... (7,008 characters; the full value is in --json)" in (
        flat
    )
    assert flat.count("characters; the full value is in --json)") == 1
    assert f"Server ({'B' * 255}): add" in flat  # a recipe names the software, bounded
    assert len(text) < len(texts[0]) + 1_500  # whole, the banner alone added 14,000
    assert json.loads(json.dumps(record.to_dict()))["server_banner"] == banner


def test_openssh_rejection_lines_are_never_cut() -> None:
    [record] = capture_records(str(FAILED))
    console = Console(file=io.StringIO(), width=3000, no_color=True)
    for part in report(record, 1):
        console.print(part)
    flat = console.file.getvalue().replace("\n", "")  # type: ignore[attr-defined]
    rejections = [r["message"] for r in record.rejections.values() if r]
    assert max(len(message) for message in rejections) > MAX_RUN
    assert all(message in flat for message in rejections)


def test_one_line_over_the_limit_is_cut_whole(capsys: pytest.CaptureFixture[str]) -> None:
    [record] = capture_records(str(WEAK))
    spaced = "SSH-2.0-X " + "ab " * 1000
    record = replace(record, client_banner=spaced)
    console = Console(file=io.StringIO(), width=5000, no_color=True)
    for part in report(record, 1):
        console.print(part)
    (line,) = [ln for ln in console.file.getvalue().splitlines() if "client banner" in ln]  # type: ignore[attr-defined]
    assert line.rstrip().endswith("(3,010 characters in all; the full value is in --json)")
