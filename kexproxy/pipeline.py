"""The program's spine: every record goes from its source through the stages once, then to every sink.

Theory of operation::

    bytes: a relayed socket (sources/proxy*), a capture frame (sources/pcap, capfile)
      -> TCP reassembled, one parser per direction   core/reassembly, core/parser
      -> events -> one tracker per connection         core/tracker (both directions joined)
      -> record (frozen, the one JSON schema)          core/record
      -> stages, in order, once per record            this module: diagnosis, then policy
      -> fan-out to the sinks                         sinks/: store, JSON lines, console
                                                      table, summary lines; the TUI's
                                                      MessageSink; each never blocks

A source calls `Pipeline.publish(record, final=...)`: `final=False` for a live session that
may change (the proxy publishes when a handshake is decided, then again), `final=True` once.
Every front end (`read`, `proxy`, `explain`, the TUI) builds one `Pipeline` and hands it to
its source; a new source or sink is one module in its layer and one line where it is wired.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from kexproxy.core.record import SessionRecord
from kexproxy.sinks.base import Sink

if TYPE_CHECKING:
    from kexproxy.core.policy import Policy

#: A step every record passes once: record in, record out (diagnosis, a policy verdict).
Stage = Callable[[SessionRecord], SessionRecord]


class Pipeline:
    """Stages once per record, then every sink; counts what it saw for the last line."""

    def __init__(self, sinks: Sequence[Sink], *, stages: Sequence[Stage] = ()) -> None:
        self.sinks = list(sinks)
        self.stages = tuple(stages)
        #: Sessions ended so far, how many of those failed to negotiate, and how many
        #: violated the policy.
        self.finished = 0
        self.failed = 0
        self.violations = 0

    def process(self, record: SessionRecord) -> SessionRecord:
        """The record after every stage, without handing it on."""
        for stage in self.stages:
            record = stage(record)
        return record

    def publish(self, record: SessionRecord, final: bool = True) -> None:
        record = self.process(record)
        if final:
            self.finished += 1
            self.failed += record.outcome == "failed"
            self.violations += (record.policy or {}).get("compliant") is False
        for sink in self.sinks:
            sink.update(record, final=final)

    def close(self) -> bool:
        """Closes every sink; False when one could not finish (a stalled reader, a dead store)."""
        finished = True
        for sink in self.sinks:
            if sink.close() is False:
                finished = False
        return finished


class CollectSink:
    """Keeps the final records in memory, in order: for tables, `explain` and tests."""

    def __init__(self) -> None:
        self.records: list[SessionRecord] = []

    def update(self, record: SessionRecord, *, final: bool) -> None:
        if final:
            self.records.append(record)

    def close(self) -> None:
        pass


# -- stages -------------------------------------------------------------------------------------


class PolicyFileError(ValueError):
    """A policy file that cannot be used; the message is one line naming it."""


def policy_stage(path: str) -> Stage:
    """The policy in `path` as a stage that adds its verdict to each record.

    Every front end with ``--policy`` loads it here. Raises `PolicyFileError` ("policy PATH:
    what is wrong") for a file that is missing, unreadable, not TOML or not a policy.
    """
    from kexproxy.core.textsafe import printable

    try:
        policy = _load_policy(path)
    except (OSError, ValueError) as exc:
        why = exc.strerror.lower() if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PolicyFileError(f"policy {printable(path)}: {why}") from exc

    def judge(record: SessionRecord) -> SessionRecord:
        return replace(record, policy={**policy.evaluate(record), "file": path})

    return judge


def _load_policy(path: str) -> Policy:
    """Reads a policy file (TOML); the core only ever sees the parsed data."""
    import tomllib

    from kexproxy.core.policy import Policy

    with open(path, "rb") as handle:
        try:
            data = tomllib.load(handle)
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
            ) from None
    return Policy.from_dict(data, default_name=Path(path).stem)


def diagnosis_stage(record: SessionRecord) -> SessionRecord:
    """Grades, verdicts and ranked fixes; a record that has them already (a stored one) keeps
    its own, so that a record reads the same wherever it is shown, and a session that has
    only just started has none."""
    from kexproxy.core.diagnosis import diagnosed

    if record.diagnosis is not None or record.outcome == "in_progress":
        return record  # nothing was negotiated yet: nothing to grade
    return diagnosed(record)


def stages(*, policy: str | None = None) -> list[Stage]:
    """The stages every front end runs, in order: what earlier TLS handshakes with the same
    server say of a refusal the wire does not name (`ServerMemory`: state, so one per
    pipeline), the diagnosis, then the policy's verdict (which reads the diagnosis). Raises
    `PolicyFileError` for a bad policy file."""
    from kexproxy.core.tls.history import ServerMemory

    out: list[Stage] = [ServerMemory(), diagnosis_stage]
    if policy:
        out.append(policy_stage(policy))
    return out


def capture_records(
    path: str, *, include_non_ssh: bool = False, policy: str | None = None
) -> list[SessionRecord]:
    """Every record of one capture after the stages, in the order the reader finishes them.

    Raises the capture source's `CaptureError` for a capture cut short (after reading it).
    """
    from kexproxy.sources.captures import analyse_capture

    collected = CollectSink()
    pipeline = Pipeline([collected], stages=stages(policy=policy))
    analyse_capture(path, pipeline.publish, include_non_ssh=include_non_ssh)
    return collected.records
