"""The recorder side of the relay: jobs in, records out, identical to building them in place."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

from kexproxy.core.observer import Endpoint
from kexproxy.core.record import SessionRecord
from kexproxy.core.tracker import SessionTracker
from kexproxy.sources.captures import Collector
from kexproxy.sources.pcap import read_capture
from kexproxy.sources.proxy_record import (
    BytesMoved,
    InThreadRecorder,
    Recorder,
    RecordJob,
    RelayFacts,
    SessionStarted,
    live_job,
)

ROOT = Path(__file__).resolve().parents[2]


def _tracker(name: str) -> SessionTracker:
    found: list[SessionTracker] = []

    class Keep(Collector):
        def on_finished(self, observer: SessionTracker) -> None:
            found.append(observer)

    keep = Keep(name, lambda record: None)
    read_capture(str(ROOT / "captures" / name), keep.factory, on_finished=keep.on_finished)
    return found[0]


def _relay(session_id: str, **changes: object) -> RelayFacts:
    facts = RelayFacts(
        session_id=session_id,
        client=Endpoint("127.0.0.1", 40000),
        upstream=Endpoint("127.0.0.1", 22),
        client_view=None,
        server_view=None,
        relayed=True,
        broken=None,
        bytes_a=10,
        bytes_b=20,
        now=1_700_000_000.0,
    )
    return dataclasses.replace(facts, **changes)  # type: ignore[arg-type]


def test_a_final_job_gives_the_trackers_own_record() -> None:
    tracker = _tracker("openssh-kex-fail.pcap")
    published: list[tuple[SessionRecord, bool]] = []
    Recorder(lambda r, f: published.append((r, f)), warn=print).handle(
        RecordJob(tracker=tracker, final=True, relay=_relay("x"))
    )
    assert published == [(tracker.finish(), True)]


def test_a_live_job_is_a_copy_and_refreshes_reuse_it() -> None:
    tracker = _tracker("openssh-success.pcap")
    published: list[tuple[SessionRecord, bool]] = []
    recorder = Recorder(lambda r, f: published.append((r, f)), warn=print)
    job = live_job(tracker, _relay("live"))
    assert isinstance(job.tracker, bytes)
    recorder.handle(job)
    recorder.handle(BytesMoved(session_id="live", bytes_a=111, bytes_b=222, last_ts=1.7e9))
    recorder.handle(BytesMoved(session_id="unknown", bytes_a=1, bytes_b=2, last_ts=None))
    assert [final for _r, final in published] == [False, False]
    live, moved = (r for r, _f in published)
    assert live == tracker.record()
    assert moved == dataclasses.replace(
        live, bytes={"c2s": 111, "s2c": 222}, ended="2023-11-14T22:13:20.000000Z"
    )


def test_views_rebuild_the_messages_and_a_turned_away_connection_is_aborted() -> None:
    tracker = _tracker("openssh-kex-fail.pcap")
    view = Endpoint("192.0.2.1", 2222)  # documentation address: never dialled
    record = Recorder(lambda r, f: None, warn=print).build(
        RecordJob(tracker=tracker, final=True, relay=_relay("v", client_view=view))
    )
    assert "Unable to negotiate with 192.0.2.1 port 2222" in record.rejections["client"]["message"]
    # An OpenSSH side's own words are its message: rebuilt with it.
    assert record.rejections["client"]["native"] == record.rejections["client"]["message"]
    assert any(
        n.startswith("relayed by kexproxy: the client saw its peer as 192.0.2.1")
        for n in record.notes
    )


class _Broken(SessionTracker):
    def finish(self) -> SessionRecord:
        raise RuntimeError("boom")


def test_a_tracker_that_cannot_build_gives_a_fallback_record_with_the_reason() -> None:
    tracker = _Broken(
        a=Endpoint("127.0.0.1", 1), b=Endpoint("127.0.0.1", 2), initiator="accept",
        session_id="b", source="proxy",
    )  # fmt: skip
    warnings: list[str] = []
    record = Recorder(lambda r, f: None, warn=warnings.append).build(
        RecordJob(tracker=tracker, final=True, relay=_relay("b"))
    )
    assert record.id == "b" and record.outcome == "incomplete"
    assert record.bytes == {"c2s": 10, "s2c": 20}
    assert "RuntimeError: boom" in record.notes[-1] and "RuntimeError: boom" in warnings[0]


def test_jobs_are_picklable_for_the_recording_process() -> None:
    job = RecordJob(tracker=_tracker("openssh-kex-fail.pcap"), final=True, relay=_relay("p"))
    again = pickle.loads(pickle.dumps([job]))[0]
    assert Recorder(lambda r, f: None, warn=print).build(again) == Recorder(
        lambda r, f: None, warn=print
    ).build(job)


def test_the_thread_recorder_publishes_everything_before_close_returns() -> None:
    published: list[str] = []
    recorder = InThreadRecorder(lambda r, f: published.append(r.id), warn=print)
    for i in range(200):
        recorder.submit(RecordJob(tracker=_tracker("openssh-kex-fail.pcap"), final=True,
                                  relay=_relay(f"t{i}")))  # fmt: skip
    assert recorder.close() is True
    assert len(published) == 200


def test_a_started_session_gets_a_live_in_progress_record_made_by_the_recorder() -> None:
    import jsonschema

    from kexproxy.core.record import rfc3339
    from kexproxy.schema import session_record_schema

    published: list[tuple[SessionRecord, bool]] = []
    recorder = Recorder(lambda r, f: published.append((r, f)), warn=print)
    recorder.handle(SessionStarted(relay=_relay("new", relayed=False, bytes_a=0, bytes_b=0)))
    [(record, final)] = published
    assert not final
    assert (record.id, record.source, record.outcome) == ("new", "proxy", "in_progress")
    assert record.started == rfc3339(1_700_000_000.0) and record.ended is None
    assert record.client == {"ip": "127.0.0.1", "port": 40000}
    assert record.server == {"ip": "127.0.0.1", "port": 22}
    assert record.bytes == {"c2s": 0, "s2c": 0} and record.notes == []
    jsonschema.validate(record.to_dict(), session_record_schema())
    # Nothing to refresh from: byte counts come once a decided record was published.
    recorder.handle(BytesMoved(session_id="new", bytes_a=5, bytes_b=6, last_ts=None))
    assert len(published) == 1
