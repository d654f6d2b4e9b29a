"""Hostile captures through the commands: what a person or a script sees, end to end.

The capture reader's own tests check the counters; these check that `read`, `read -`,
`read --json` and `explain` keep going, exit as documented and say what was skipped.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from kexproxy.cli import main
from kexproxy.core.netframes import ACK, SYN
from kexproxy.sources import flowtable
from tests.sources.captures import (
    C_BANNER,
    Conversation,
    Frame,
    pcap_bytes,
    pcapng_block,
    pcapng_bytes,
    ssh_conversation,
)

ROOT = Path(__file__).resolve().parents[2]
LAND_NOTE = "1 TCP segments from an address and port to themselves skipped"


def land_capture(tmp_path: Path) -> Path:
    """Issue 9's LAND SYN (10.0.0.1:22 -> 10.0.0.1:22) before an SSH connection."""
    frames = Conversation(("10.0.0.1", 22), ("10.0.0.1", 22)).packet("c", flags=SYN).frames
    frames += ssh_conversation(t0=1_700_000_001.0).close().frames
    path = tmp_path / "land.pcap"
    path.write_bytes(pcap_bytes(frames))
    return path


def test_read_goes_on_past_a_land_segment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = land_capture(tmp_path)
    assert main(["read", "--no-progress", str(path), str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.count("OpenSSH_9.6") == 2  # the later file on the command line is read too
    assert err.count(LAND_NOTE) == 2
    assert "Traceback" not in err
    assert main(["read", "--json", str(path)]) == 0
    out, err = capsys.readouterr()
    (line,) = out.splitlines()
    assert json.loads(line)["client_banner"] == C_BANNER.decode().strip()


def test_explain_goes_on_past_a_land_segment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", str(land_capture(tmp_path))]) == 0
    out, _ = capsys.readouterr()
    assert "#1 10.0.0.1:40000 -> 10.0.0.2:22" in out


def test_a_live_pipe_goes_on_past_a_land_segment(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kexproxy", "read", "--json", "-"],
        input=land_capture(tmp_path).read_bytes(),
        capture_output=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    assert LAND_NOTE in result.stderr.decode()


def test_an_interface_option_past_its_block_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = pcapng_bytes(ssh_conversation().close().frames)
    bad_idb = pcapng_block(1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 14, 8))
    path = tmp_path / "tsoffset.pcapng"
    path.write_bytes(good + bad_idb)
    assert main(["read", "--no-progress", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "OpenSSH_9.6" in out  # what came before the damage is still reported
    (line,) = err.splitlines()
    assert line.startswith(f"kexproxy: {path}: corrupt pcapng interface block")


def test_a_syn_flood_is_read_in_bounded_memory_and_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flowtable, "MAX_HANDSHAKING", 10)
    frames: list[Frame] = []
    for port in range(1, 101):
        frames += (
            Conversation(("10.0.0.7", port), t0=1_700_000_000 + port / 100)
            .packet("c", flags=SYN)
            .frames
        )
    frames += ssh_conversation(t0=1_700_000_002.0).packet("c", b"x", ACK).frames
    path = tmp_path / "flood.pcap"
    path.write_bytes(pcap_bytes(frames))
    assert main(["read", "--json", str(path)]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1  # the SSH connection, the newest, is never the one ended
    assert err == (  # 101 connections, 10 held at once
        "kexproxy: flood.pcap: 91 connections still in their handshake were ended early to "
        "bound memory (91 least recently active beyond 10 open at once): a port scan or SYN "
        "flood looks like this\n"
    )
