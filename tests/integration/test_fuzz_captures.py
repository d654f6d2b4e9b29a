"""A short seeded pass of the capture fuzzer (``scripts/fuzz`` runs the long one).

Every case breaks no invariant of issue 9; the fuzzer itself is checked to find the two
crashes that issue reported, so a pass means something.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from kexproxy.sources import flowtable
from tests.integration.capture_fuzz import Fuzzer
from tests.integration.capture_mutations import (
    MUTATIONS,
    interface_options,
    ip_tcp_corruption,
    split,
)
from tests.sources.captures import pcapng_bytes, ssh_conversation

SEED = 20_260_609
#: Cases of the pass, and a bound on its time (the suite's budget for it is 30 s).
CASES = 300


def test_a_seeded_pass_breaks_no_invariant(tmp_path: Path) -> None:
    fuzzer = Fuzzer(SEED, workdir=tmp_path, process_every=100)
    summary = fuzzer.run(CASES, seconds=18)
    assert summary.count >= 100
    assert summary.processes >= 1
    assert set(summary.mutations) == set(MUTATIONS)
    assert summary.records > 0
    assert summary.findings == [], "\n".join(summary.lines())


def test_the_same_seed_and_case_make_the_same_input(tmp_path: Path) -> None:
    one = Fuzzer(SEED, workdir=tmp_path)
    two = Fuzzer(SEED, workdir=tmp_path)
    assert [one.case(i) for i in (0, 7, 99)] == [two.case(i) for i in (0, 7, 99)]
    assert one.case(1) != one.case(2)


def test_the_fuzzer_finds_a_contained_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug the reader contains is still a finding: the fuzzer must not be blind to it."""

    def broken(self: object, d: object, seg: object, buf: bytes, ts: float) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(flowtable.FlowTable, "segment", broken)
    summary = Fuzzer(SEED, workdir=tmp_path, process_every=0).run(20)
    assert {f.kind for f in summary.findings} == {"contained"}


def test_land_segments_and_interface_blocks_last_in_the_file_are_made() -> None:
    """The mutations behind issue 9's two crashes make such inputs (the fuzzer found both
    on the code before the fix: 57 crashes in 1,500 cases of seed 7)."""
    blob = pcapng_bytes(ssh_conversation().close().frames)
    lands = 0
    overruns = 0
    for i in range(200):
        rng = random.Random(i)
        units = split(ip_tcp_corruption(rng, blob, [blob]))
        assert units is not None
        for unit, where in zip(units.units, units.frames, strict=True):
            if where is not None:
                ip = unit[where[0] + 14 :]
                lands += ip[12:16] == ip[16:20] and ip[20:22] == ip[22:24]
        options = split(interface_options(random.Random(i), blob, [blob]))
        assert options is not None
        last = options.units[-1]
        overruns += last[:4] == b"\x01\0\0\0" and len(last) > 24
    assert lands > 0
    assert overruns > 0
