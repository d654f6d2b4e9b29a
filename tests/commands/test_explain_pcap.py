"""`explain --pcap OUT`: one session's capture, from its source capture or the store, read
back to the same record."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kexproxy.cli import main
from kexproxy.core.record import SessionRecord
from kexproxy.pipeline import capture_records

ROOT = Path(__file__).resolve().parents[2]
MANY = ROOT / "tests" / "data" / "public" / "zeek-ssh-ssh.pcap"
FAILED = ROOT / "captures" / "openssh-kex-fail.pcap"


def _explain(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = main(["explain", *args])
    return status, capsys.readouterr().err


def _view(record: SessionRecord) -> dict[str, Any]:
    """The record but for what names the file it was read from (its id and `capture`)."""
    data = record.to_dict()
    return {key: value for key, value in data.items() if key not in ("id", "capture")}


def test_connection_n_of_a_capture_reads_back_to_its_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = capture_records(str(MANY))
    assert len(records) >= 3
    out = tmp_path / "two.pcap"
    status, err = _explain(capsys, str(MANY), "--connection", "2", "--pcap", str(out))
    assert (status, err) == (0, "")
    [back] = capture_records(str(out))
    assert _view(back) == _view(records[1])
    assert _view(back) != _view(records[0])


def test_a_failed_handshake_reads_back_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [record] = capture_records(str(FAILED))
    out = tmp_path / "fail.pcap"
    status, err = _explain(capsys, str(FAILED), "--pcap", str(out))
    assert (status, err) == (0, "")
    [back] = capture_records(str(out))
    assert back.outcome == "failed"
    assert _view(back) == _view(record)


def test_several_connections_need_one_picked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, err = _explain(capsys, str(MANY), "--pcap", str(tmp_path / "x.pcap"))
    assert status == 2
    assert "--pcap writes one session" in err and "--connection N" in err
    assert not (tmp_path / "x.pcap").exists()


def _store(tmp_path: Path, record: SessionRecord) -> Path:
    from kexproxy.sinks.store import SessionStore

    path = tmp_path / "kexproxy.db"
    store = SessionStore.open(path)
    try:
        store.put(record, final=True)
    finally:
        store.close()
    return path


def test_a_stored_session_with_its_own_capture_is_copied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [record] = capture_records(str(FAILED))
    own = tmp_path / "own.pcap"
    own.write_bytes(FAILED.read_bytes())
    db = _store(tmp_path, replace(record, capture=str(own), source="proxy"))
    out = tmp_path / "out.pcap"
    status, err = _explain(capsys, record.id[:8], "--store", str(db), "--pcap", str(out))
    assert (status, err) == (0, "")
    assert out.read_bytes() == FAILED.read_bytes()


def test_a_stored_session_without_bytes_says_why_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [record] = capture_records(str(FAILED))
    db = _store(tmp_path, record)
    out = tmp_path / "out.pcap"
    status, err = _explain(capsys, record.id[:8], "--store", str(db), "--pcap", str(out))
    assert status == 2
    assert err.count("\n") == 1
    assert "run explain on that file with --connection" in err
    assert not out.exists()
