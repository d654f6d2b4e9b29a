"""What the dashboard knows, without Textual: every session by id, the pending batch, counters.

Records arrive one by one from a worker (up to hundreds a second); the app gathers them in
a `Pending` batch and applies the batch a few times a second, so that the table and the
counters change in steps the terminal can draw. Kept pure so that tests and the scale
test can drive it without an app.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from kexproxy.core.record import SessionRecord
from kexproxy.filtering import Filter, Subject
from kexproxy.present import kind_label, software


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Keeps the cyclic garbage collector out of a bulk build (the rows of 100,000 sessions).

    Each build makes hundreds of thousands of small objects and no cycles; with the
    collector on, the generations fill up and it walks them again and again, doubling
    the time a filter takes. It is switched back on (if it was on) afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def started_ts(record: SessionRecord) -> float | None:
    """The record's start as POSIX seconds, or None when it has no usable time."""
    return rfc3339_ts(record.started)


def rfc3339_ts(text: str | None) -> float | None:
    """``2015-03-30T14:44:49.214476Z`` as POSIX seconds, None if it is no such time.

    `datetime.fromisoformat` (C) rather than `parse_rfc3339` (strptime): ten times faster,
    which counts when 10,000 sessions arrive at once.
    """
    if not text or not text.endswith("Z"):
        return None
    try:
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Facts:
    """What the counters take from one record, worked out once per version of it."""

    outcome: str
    #: The client's software as `software` names it.
    client: str
    #: Each failing list's kind once (a list that failed both ways is one failure).
    kinds: tuple[str, ...]
    started: float | None

    @classmethod
    def of(cls, record: SessionRecord) -> Facts:
        kinds = tuple(dict.fromkeys(kind_label(name) for name in record.failing_lists))
        return cls(record.outcome, software(record.client_banner), kinds, started_ts(record))


@dataclass(frozen=True, slots=True)
class Change:
    """A record that arrived: `old` is the version it replaces, None for a new session."""

    old: SessionRecord | None
    new: SessionRecord


class Pending:
    """Records waiting for the next refresh; a later version of a session replaces an earlier one."""

    def __init__(self) -> None:
        self._records: dict[str, SessionRecord] = {}
        self._partial: set[str] = set()

    def add(self, records: Iterable[SessionRecord], *, partial: bool = False) -> None:
        for record in records:
            self._records[record.id] = record
            if partial:
                self._partial.add(record.id)
            else:
                self._partial.discard(record.id)

    def drain(self) -> tuple[list[SessionRecord], set[str]]:
        """The waiting records, and the ids of those that are summaries."""
        out, partial = list(self._records.values()), self._partial
        self._records, self._partial = {}, set()
        return out, partial

    def __len__(self) -> int:
        return len(self._records)


class SessionIndex:
    """Every session seen, the latest version of each, in the order they first arrived."""

    def __init__(self) -> None:
        self._records: dict[str, SessionRecord] = {}
        self._subjects: dict[str, Subject] = {}
        self._facts: dict[str, Facts] = {}
        self._partial: set[str] = set()

    def apply(
        self, records: Iterable[SessionRecord], *, partial: Collection[str] = ()
    ) -> list[Change]:
        """Takes new versions of sessions; those in `partial` are summaries, not whole records."""
        changes: list[Change] = []
        for record in records:
            old = self._records.get(record.id)
            if record.id in partial:
                self._partial.add(record.id)
            else:
                self._partial.discard(record.id)
            if old == record:
                continue
            self._records[record.id] = record
            # Worked out as each version arrives, a batch at a time: the first filter over
            # 100,000 sessions would otherwise take seconds to work out every subject.
            self._subjects[record.id] = Subject.of(record)
            self._facts[record.id] = Facts.of(record)
            changes.append(Change(old, record))
        return changes

    def is_partial(self, session_id: str) -> bool:
        return session_id in self._partial

    def get(self, session_id: str) -> SessionRecord | None:
        return self._records.get(session_id)

    def subject(self, session_id: str) -> Subject:
        return self._subjects[session_id]

    def facts(self, record: SessionRecord) -> Facts:
        """The counted facts of `record` (of the version held, or worked out for another)."""
        facts = self._facts.get(record.id)
        if facts is None or self._records.get(record.id) is not record:
            return Facts.of(record)
        return facts

    def matching(self, keep: Filter) -> list[SessionRecord]:
        """The sessions `keep` matches, in arrival order."""
        if not keep:
            return list(self._records.values())
        matches = keep.matches
        subjects = self._subjects
        return [r for r in self._records.values() if matches(subjects[r.id])]

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[SessionRecord]:
        return iter(self._records.values())


class Counters:
    """Totals over the shown sessions: outcomes, failing lists (each kind once per session),
    client software, failure times."""

    def __init__(self) -> None:
        self.total = 0
        self.outcomes: Counter[str] = Counter()
        self.lists: Counter[str] = Counter()
        self.software: Counter[str] = Counter()
        self.failed_software: Counter[str] = Counter()
        self._times: list[float] = []
        self._failure_times: list[float] = []

    @classmethod
    def of(cls, facts: Sequence[Facts]) -> Counters:
        """The counters of many sessions at once, counted in C (`Counter` over lists) and the
        times sorted once: a filter over 100,000 sessions counts them all again."""
        counters = cls()
        counters.total = len(facts)
        counters.outcomes.update(f.outcome for f in facts)
        counters.software.update(f.client for f in facts)
        failed = [f for f in facts if f.outcome == "failed"]
        counters.failed_software.update(f.client for f in failed)
        counters.lists.update(kind for f in facts if f.kinds for kind in f.kinds)
        counters._times = sorted(f.started for f in facts if f.started is not None)
        counters._failure_times = sorted(f.started for f in failed if f.started is not None)
        return counters

    def add(self, session: SessionRecord | Facts) -> None:
        self._count(session, 1)

    def remove(self, session: SessionRecord | Facts) -> None:
        self._count(session, -1)

    def _count(self, session: SessionRecord | Facts, sign: int) -> None:
        facts = session if isinstance(session, Facts) else Facts.of(session)
        self.total += sign
        self.outcomes[facts.outcome] += sign
        self.software[facts.client] += sign
        failed = facts.outcome == "failed"
        if failed:
            self.failed_software[facts.client] += sign
        for kind in facts.kinds:
            self.lists[kind] += sign
        ts = facts.started
        if ts is not None:
            _adjust(self._times, ts, sign)
            if failed:
                _adjust(self._failure_times, ts, sign)
        if sign < 0:
            # Keep `most_common` free of zero entries left by removals.
            for counter in (self.outcomes, self.lists, self.software, self.failed_software):
                for key in [k for k, v in counter.items() if v <= 0]:
                    del counter[key]

    @property
    def failed(self) -> int:
        return self.outcomes["failed"]

    @property
    def first_failure(self) -> float | None:
        return self._failure_times[0] if self._failure_times else None

    @property
    def last_failure(self) -> float | None:
        return self._failure_times[-1] if self._failure_times else None

    @property
    def span(self) -> tuple[float, float] | None:
        return (self._times[0], self._times[-1]) if self._times else None

    def failure_histogram(self, buckets: int) -> list[int]:
        """Failures per equal slice of the time the shown sessions cover, oldest first."""
        if buckets <= 0 or not self._times:
            return []
        start, end = self._times[0], self._times[-1]
        width = (end - start) / buckets
        if width <= 0:
            return [0] * (buckets - 1) + [len(self._failure_times)]
        out: list[int] = []
        lo = 0
        for i in range(1, buckets + 1):
            edge = start + width * i
            hi = (
                len(self._failure_times)
                if i == buckets
                else bisect.bisect_left(self._failure_times, edge, lo)
            )
            out.append(hi - lo)
            lo = hi
        return out


def _adjust(values: list[float], value: float, sign: int) -> None:
    """Adds `value` to, or removes one copy from, a sorted list."""
    if sign > 0:
        bisect.insort(values, value)
        return
    index = bisect.bisect_left(values, value)
    if index < len(values) and values[index] == value:
        del values[index]
