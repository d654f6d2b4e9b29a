"""What the dashboard knows, without Textual: every session by id, the pending batch, counters.

Records arrive one by one from a worker (up to hundreds a second); the app gathers them in
a `Pending` batch and applies the batch a few times a second, so that the table and the
counters change in steps the terminal can draw. Kept pure so that tests and the scale
test can drive it without an app.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from kexproxy.core.record import SessionRecord
from kexproxy.filtering import Subject
from kexproxy.present import kind_label, software


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
            # Computed when a filter first needs it: opening 10,000 sessions needs none.
            self._subjects.pop(record.id, None)
            changes.append(Change(old, record))
        return changes

    def is_partial(self, session_id: str) -> bool:
        return session_id in self._partial

    def get(self, session_id: str) -> SessionRecord | None:
        return self._records.get(session_id)

    def subject(self, session_id: str) -> Subject:
        subject = self._subjects.get(session_id)
        if subject is None:
            subject = self._subjects[session_id] = Subject.of(self._records[session_id])
        return subject

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

    def add(self, record: SessionRecord) -> None:
        self._count(record, 1)

    def remove(self, record: SessionRecord) -> None:
        self._count(record, -1)

    def _count(self, record: SessionRecord, sign: int) -> None:
        self.total += sign
        self.outcomes[record.outcome] += sign
        client = software(record.client_banner)
        self.software[client] += sign
        failed = record.outcome == "failed"
        if failed:
            self.failed_software[client] += sign
        # A list that failed both ways is one failure of the session, not two: "MAC", never
        # "MAC c2s" and "MAC s2c" side by side with the same count.
        for kind in dict.fromkeys(kind_label(name) for name in record.failing_lists):
            self.lists[kind] += sign
        ts = started_ts(record)
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
