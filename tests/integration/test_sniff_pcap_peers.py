"""`kexproxy sniff --pcap DIR` on loopback against a real sshd: one capture file per session,
which `kexproxy read` turns back into the same record and tshark dissects; a success and a
key exchange failure."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests import peers
from tests.integration.sniff_compare import read_capture, start_sniff
from tests.peers import tshark_kexinit_rows
from tests.peers.base import _skip_or_fail

pytestmark = pytest.mark.peers

#: What a capture file read back must give as the sniffed record did.
SAME = (
    "outcome",
    "client_banner",
    "server_banner",
    "client_kexinit",
    "server_kexinit",
    "negotiated",
    "failures",
    "host_key",
    "roles",
    "client",
    "server",
)


def _sniffed(port: int, directory: Path, *runs: tuple[str, ...]) -> tuple[list[Any], str]:
    sniff = start_sniff(f"tcp port {port}", "--pcap", str(directory))
    try:
        for options in runs:
            peers.run_ssh(port, *options, command="echo kexproxy-ok")
        time.sleep(0.5)  # the last FIN/ACKs
    finally:
        sniff.send_signal(signal.SIGINT)
        out, err = sniff.communicate(timeout=30)
    assert sniff.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()], err


def test_each_sniffed_session_has_a_capture_that_reads_back_the_same(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        _skip_or_fail("sniffing lo needs root")
    captures = tmp_path / "captures"
    with peers.Sshd(["KexAlgorithms curve25519-sha256"]) as sshd:
        records, err = _sniffed(
            sshd.port, captures, (), ("-oKexAlgorithms=diffie-hellman-group14-sha1",)
        )
    assert [r["outcome"] for r in records] == ["negotiated", "failed"]
    last = err.strip().splitlines()[-1]
    assert f"2 capture files in {captures}" in last, err
    assert "could not be written" not in last
    assert sorted(p.name for p in captures.iterdir()) == sorted(
        f"kexproxy-{r['id']}.pcap" for r in records
    )
    for record in records:
        path = Path(record["capture"])
        assert path == captures / f"kexproxy-{record['id']}.pcap"
        (back,) = read_capture(path)
        for field in SAME:
            assert back[field] == record[field], field
    assert records[0]["host_key"] is not None
    assert records[1]["failures"][0]["list"] == "kex_algorithms"
    # Wireshark's dissector reads each file: both KEXINITs, the lists as recorded.
    for record in records:
        rows = tshark_kexinit_rows(record["capture"], sshd.port)
        offers = [record["client_kexinit"], record["server_kexinit"]]
        assert [row["ssh.kex_algorithms"] for row in rows] == [
            ",".join(offer["kex_algorithms"]) for offer in offers
        ]
        assert [row["tcp.dstport"] for row in rows] == [
            str(sshd.port),
            str(record["client"]["port"]),
        ]


def test_a_capture_file_that_cannot_be_written_is_counted_and_the_record_kept(
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0:
        _skip_or_fail("sniffing lo needs root")
    captures = tmp_path / "captures"
    captures.mkdir()
    with peers.Sshd() as sshd:
        sniff = start_sniff(f"tcp port {sshd.port}", "--pcap", str(captures))
        try:
            # The directory goes away under the running sniff: the file cannot be made.
            captures.rmdir()
            captures.write_text("not a directory")
            peers.run_ssh(sshd.port, command="echo kexproxy-ok")
            time.sleep(0.5)
        finally:
            sniff.send_signal(signal.SIGINT)
            out, err = sniff.communicate(timeout=30)
    assert sniff.returncode == 0, err
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert record["outcome"] == "negotiated"
    assert record["capture"] == "live:lo"
    assert any("could not be written" in note for note in record["notes"])
    last = err.strip().splitlines()[-1]
    assert "0 capture files in" in last and "1 could not be written" in last, err
    assert f"could not write {captures}/kexproxy-{record['id']}.pcap" in err


def test_a_directory_that_cannot_be_made_is_one_line_and_status_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = subprocess.run(
        [*_argv(), "--pcap", str(blocker / "sub")],
        capture_output=True, text=True, timeout=60, check=False, env=_env(),
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot use" in lines[0] and "capture files" in lines[0], lines


def _argv() -> list[str]:
    import sys

    return [sys.executable, "-m", "kexproxy", "sniff", "-i", "lo", "--no-store"]


def _env() -> dict[str, str]:
    from tests.integration.sniff_compare import env

    return env()
