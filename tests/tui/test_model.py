"""The pure model: the pending batch, the session index, counters and the failures chart."""

from __future__ import annotations

from dataclasses import replace

from kexproxy.core.record import SessionRecord
from kexproxy.filtering import parse_filter
from kexproxy_tui.model import Counters, Pending, SessionIndex, started_ts


def test_pending_keeps_the_latest_version_of_each_session(
    dashboard_records: list[SessionRecord],
) -> None:
    ok, kex, _cipher = dashboard_records
    pending = Pending()
    newer = replace(ok, ended="2030-01-01T00:00:00.000000Z")
    pending.add([ok, kex], partial=True)
    pending.add([newer])
    assert len(pending) == 2
    assert pending.drain() == ([newer, kex], {kex.id})
    assert len(pending) == 0
    assert pending.drain() == ([], set())


def test_index_reports_new_changed_and_skips_unchanged(
    dashboard_records: list[SessionRecord],
) -> None:
    ok, kex, cipher = dashboard_records
    index = SessionIndex()
    changes = index.apply([ok, kex])
    assert [(c.old, c.new) for c in changes] == [(None, ok), (None, kex)]
    assert index.apply([ok]) == []
    later = replace(kex, ended="2030-01-01T00:00:00.000000Z")
    (change,) = index.apply(
        [
            later,
        ]
    )
    assert change.old == kex and change.new == later
    index.apply([cipher])
    assert [r.id for r in index] == [ok.id, kex.id, cipher.id]
    assert index.get(kex.id) == later
    assert index.get("nope") is None
    assert index.subject(ok.id).outcome == "negotiated"
    assert len(index) == 3
    index.apply([cipher], partial={cipher.id})
    assert index.is_partial(cipher.id) and not index.is_partial(ok.id)
    index.apply([cipher])
    assert not index.is_partial(cipher.id)


def test_counters_add_and_remove(dashboard_records: list[SessionRecord]) -> None:
    ok, kex, cipher = dashboard_records
    counters = Counters()
    for record in dashboard_records:
        counters.add(record)
    assert counters.total == 3
    assert counters.failed == 2
    assert counters.outcomes["negotiated"] == 1
    # The cipher failure failed both directions: one "cipher" failure of one session.
    assert cipher.failing_lists == [
        "encryption_algorithms_server_to_client",
        "encryption_algorithms_client_to_server",
    ]
    assert counters.lists == {"kex": 1, "cipher": 1}
    (software,) = counters.software
    assert software.startswith("OpenSSH_9.2p1")
    assert counters.first_failure == started_ts(kex)
    assert counters.last_failure == started_ts(cipher)
    counters.remove(kex)
    assert counters.total == 2
    assert "kex" not in counters.lists
    assert counters.first_failure == started_ts(cipher)
    counters.remove(cipher)
    counters.remove(ok)
    assert counters.total == 0
    assert not counters.software and not counters.outcomes
    assert counters.first_failure is None and counters.span is None
    assert counters.failure_histogram(10) == []


def test_failure_histogram_spreads_failures_over_the_span(
    dashboard_records: list[SessionRecord],
) -> None:
    ok, kex, _ = dashboard_records
    counters = Counters()
    base = started_ts(ok)
    assert base is not None

    def at(record: SessionRecord, offset: float, n: int) -> SessionRecord:
        from kexproxy.core.record import rfc3339

        return replace(record, id=f"{record.id}-{n}", started=rfc3339(base + offset))

    counters.add(at(ok, 0, 0))
    counters.add(at(ok, 100, 1))
    for n, offset in enumerate((1, 2, 55, 99, 100)):
        counters.add(at(kex, offset, n))
    histogram = counters.failure_histogram(4)
    assert histogram == [2, 0, 1, 2]
    assert sum(counters.failure_histogram(40)) == 5
    assert counters.failure_histogram(0) == []


def test_histogram_of_one_instant(dashboard_records: list[SessionRecord]) -> None:
    counters = Counters()
    counters.add(dashboard_records[1])
    assert counters.failure_histogram(3) == [0, 0, 1]


def test_records_without_time_are_counted_but_not_charted(
    dashboard_records: list[SessionRecord],
) -> None:
    counters = Counters()
    counters.add(replace(dashboard_records[1], started=None))
    counters.add(replace(dashboard_records[2], id="x", started="not a time"))
    assert counters.failed == 2
    assert counters.span is None
    assert counters.first_failure is None


def test_counters_of_many_equal_adding_one_by_one(dashboard_records: list[SessionRecord]) -> None:
    records = [
        replace(r, id=f"s{i}", started=f"2030-01-0{1 + i % 3}T10:00:0{i % 10}.000000Z")
        for i, r in enumerate(dashboard_records * 7)
    ]
    records.append(replace(dashboard_records[1], id="untimed", started=None))
    one_by_one = Counters()
    for record in records:
        one_by_one.add(record)
    index = SessionIndex()
    index.apply(records)
    at_once = Counters.of([index.facts(r) for r in records])
    for name in ("total", "outcomes", "lists", "software", "failed_software", "span"):
        assert getattr(at_once, name) == getattr(one_by_one, name), name
    assert at_once.first_failure == one_by_one.first_failure
    assert at_once.last_failure == one_by_one.last_failure
    assert at_once.failure_histogram(7) == one_by_one.failure_histogram(7)
    assert at_once.failed > 0 and at_once.lists


def test_index_keeps_subjects_and_facts_of_the_latest_version(
    dashboard_records: list[SessionRecord],
) -> None:
    ok, kex, _cipher = dashboard_records
    index = SessionIndex()
    index.apply([ok, kex])
    failed = parse_filter("outcome:failed")
    assert [r.id for r in index.matching(failed)] == [kex.id]
    index.apply([replace(ok, outcome="failed")])
    assert [r.id for r in index.matching(failed)] == [ok.id, kex.id]
    assert index.subject(ok.id).outcome == "failed"
    assert index.facts(index.get(ok.id) or ok).outcome == "failed"
    # A version the index does not hold is worked out anew, not taken from the cache.
    assert index.facts(ok).outcome == ok.outcome
    assert len(index.matching(parse_filter(""))) == 2
