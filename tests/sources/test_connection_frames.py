"""`connection_frames`: one connection's frames, unchanged, written back as a capture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kexproxy.core.netframes import FIN, RST, decode_frame, reverse_key
from kexproxy.pipeline import capture_records
from kexproxy.sources.captures import Collector
from kexproxy.sources.connection_frames import CaptureWriteError, connection_frames, write_frames

ROOT = Path(__file__).resolve().parents[2]
MANY = ROOT / "tests" / "data" / "public" / "zeek-ssh-ssh.pcap"


def test_each_connection_gets_its_own_frames_and_its_last_one(tmp_path: Path) -> None:
    collector = Collector("x", lambda _r: None, include_non_ssh=True)
    observers: list[Any] = []

    def factory(*args: Any) -> Any:
        observers.append(collector.factory(*args))
        return observers[-1]

    first = connection_frames(str(MANY), factory, lambda obs: obs is observers[0])
    assert first
    keys = set()
    for linktype, buf, start, end, wirelen, _ts in first:
        seg = decode_frame(linktype, buf, start, end, wirelen)
        assert isinstance(seg, tuple)
        keys.add(frozenset((seg[0], reverse_key(seg[0]))))
    assert len(keys) == 1  # one connection, both directions
    last = first[-1]
    seg = decode_frame(last[0], last[1], last[2], last[3], last[4])
    assert isinstance(seg, tuple)
    assert seg[3] & (FIN | RST)  # the frame that ended it is kept
    out = tmp_path / "first.pcap"
    write_frames(out, first)
    assert len(capture_records(str(out))) == 1


def test_frames_of_two_link_types_are_refused(tmp_path: Path) -> None:
    frames = [(1, b"\x00" * 60, 0, 60, 60, 1.0), (101, b"\x45" * 40, 0, 40, 40, 2.0)]
    with pytest.raises(CaptureWriteError, match="several link types"):
        write_frames(tmp_path / "x.pcap", frames)
