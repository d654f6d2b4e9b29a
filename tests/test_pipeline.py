"""The spine: stages once per record, in order, then every sink; counts for the last line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kexproxy.core.record import SessionRecord
from kexproxy.pipeline import CollectSink, Pipeline, PolicyFileError, policy_stage, stages
from kexproxy.sources.captures import analyse_capture

ROOT = Path(__file__).resolve().parents[1]


class Recording:
    def __init__(self) -> None:
        self.seen: list[tuple[str, bool, list[str]]] = []
        self.closed = False

    def update(self, record: SessionRecord, *, final: bool) -> None:
        self.seen.append((record.id, final, list(record.notes)))

    def close(self) -> bool:
        self.closed = True
        return False


def _records() -> list[SessionRecord]:
    out: list[SessionRecord] = []
    analyse_capture(str(ROOT / "captures" / "openssh-kex-fail.pcap"), out.append)
    analyse_capture(str(ROOT / "captures" / "openssh-success.pcap"), out.append)
    return out


def test_stages_run_once_in_order_before_every_sink() -> None:
    calls: list[str] = []

    def stage(name: str):  # type: ignore[no-untyped-def]
        def run(record: SessionRecord) -> SessionRecord:
            calls.append(name)
            return dataclasses.replace(record, notes=[*record.notes, name])

        return run

    first, second = Recording(), Recording()
    collected = CollectSink()
    pipeline = Pipeline([first, second, collected], stages=[stage("a"), stage("b")])
    records = _records()
    pipeline.publish(records[0], final=False)
    pipeline.publish(records[0], final=True)
    pipeline.publish(records[1])
    assert calls == ["a", "b"] * 3
    assert first.seen == second.seen
    assert [(i, f) for i, f, _n in first.seen] == [
        (records[0].id, False),
        (records[0].id, True),
        (records[1].id, True),
    ]
    assert all(notes[-2:] == ["a", "b"] for _i, _f, notes in first.seen)
    assert [r.id for r in collected.records] == [records[0].id, records[1].id]
    assert pipeline.finished == 2 and pipeline.failed == 1
    assert pipeline.close() is False and first.closed and second.closed


def test_the_policy_stage_judges_and_counts_violations() -> None:
    pipeline = Pipeline([], stages=stages(policy=str(ROOT / "policies" / "modern.toml")))
    for record in _records():
        pipeline.publish(record)
    judged = [pipeline.process(r).policy for r in _records()]
    assert all(p is not None and p["file"].endswith("modern.toml") for p in judged)
    assert pipeline.violations == sum(p["compliant"] is False for p in judged if p)


def test_a_bad_policy_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match=r"^policy .*nope\.toml: no such file"):
        policy_stage(str(tmp_path / "nope.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(PolicyFileError, match="not UTF-8 text"):
        stages(policy=str(bad))


def test_a_record_that_breaks_the_schema_fails_the_test_that_made_it() -> None:
    """The suite-wide check of tests/conftest.py, shown failing once."""
    from tests.conftest import schema_errors

    record = _records()[0]
    assert schema_errors(record) == []
    bad = dataclasses.replace(record, bytes={"c2s": "many"})
    assert any(line.startswith("bytes/c2s:") for line in schema_errors(bad))
    pipeline = Pipeline([], stages=[lambda r: bad])
    with pytest.raises(AssertionError, match="does not match the schema"):
        pipeline.publish(record)
