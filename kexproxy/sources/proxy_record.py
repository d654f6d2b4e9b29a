"""A relayed session's record, made away from the relay: the jobs a session hands over, and the
`Recorder` that turns them into records.

Theory of operation. The relay's loop only forwards bytes and feeds each session's tracker;
building a record (negotiation, key-exchange decoding, then the pipeline's stages and the
store) would take a millisecond of the loop's time per session, and in one Python process
that millisecond lands on other sessions' round trips whichever thread does it. So a
session hands a `RecordJob` (its tracker, and what only the relay knows) to whoever records:
a thread (`InThreadRecorder`, for the dashboard and tests) or another process (the proxy
command forks one, so records never share the relay's interpreter). A final job carries the
tracker itself, which nothing touches any more; a live job carries a pickled copy, because
the loop goes on feeding the original. Everything here is picklable plain data.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kexproxy.core.connection import ConnectionTracker
from kexproxy.core.negotiation import rejection_message
from kexproxy.core.observer import Endpoint, Leg, other_leg
from kexproxy.core.record import JSONDict, Outcome, SessionRecord, no_ssh_handshake, rfc3339
from kexproxy.sources.proxy_tape import Tape
from kexproxy.worker import Worker

Publish = Callable[[SessionRecord, bool], None]
Warn = Callable[[str], None]

#: Record jobs waiting for a thread recorder; past this the oldest are dropped and counted.
MAX_QUEUED_JOBS = 20_000


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayFacts:
    """What only the relay knows about a session when it hands it over."""

    session_id: str
    client: Endpoint
    upstream: Endpoint
    #: The address each TCP side saw as its peer ("a" the client's, "b" the server's).
    client_view: Endpoint | None
    server_view: Endpoint | None
    #: True once the upstream connection was made (bytes could flow).
    relayed: bool
    #: Why inspection stopped on an internal error, if it did.
    broken: str | None
    bytes_a: int
    bytes_b: int
    #: When the job was made (for a record the tracker could not build).
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordJob:
    """Make the session's record: live (`final` False) or the last one."""

    #: The tracker, or a pickled copy of it for a live record.
    tracker: ConnectionTracker | bytes
    final: bool
    relay: RelayFacts
    #: The bytes the tracker was shown, kept for the session's capture file (final only).
    tape: Tape | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BytesMoved:
    """A live session's byte counts moved: republish its last record with the new counts."""

    session_id: str
    bytes_a: int
    bytes_b: int
    last_ts: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStarted:
    """The relay accepted a connection: its first record (`in_progress`), made by the
    recorder, so that a session that never gets further (the proxy is killed) still has one.
    """

    relay: RelayFacts


RecorderItem = RecordJob | BytesMoved | SessionStarted


def live_job(tracker: ConnectionTracker, relay: RelayFacts) -> RecordJob:
    """A job for a live record: a copy of the tracker, which the loop goes on feeding."""
    return RecordJob(
        tracker=pickle.dumps(tracker, protocol=pickle.HIGHEST_PROTOCOL), final=False, relay=relay
    )


class Recorder:
    """Turns record jobs into records and hands them to `publish`; keeps each live session's
    last record so that a byte-count refresh costs a copy, not a rebuild."""

    def __init__(self, publish: Publish, *, warn: Warn, capture_dir: str | None = None) -> None:
        """`capture_dir`: where each session's capture file goes (`proxy --pcap`), if anywhere."""
        self._publish = publish
        self._warn = warn
        self._capture_dir = capture_dir
        self._live: dict[str, SessionRecord] = {}

    def handle(self, item: RecorderItem) -> None:
        if isinstance(item, BytesMoved):
            self._refresh(item)
            return
        if isinstance(item, SessionStarted):
            self._publish(fallback_record(item.relay, outcome="in_progress"), False)
            return
        record = self.build(item)
        if item.tape is not None and self._capture_dir is not None:
            record = self._write_capture(record, item.tape, self._capture_dir)
        if item.final:
            self._live.pop(item.relay.session_id, None)
        else:
            self._live[item.relay.session_id] = record
        self._publish(record, item.final)

    def build(self, job: RecordJob) -> SessionRecord:
        relay = job.relay
        broken = relay.broken
        try:
            tracker = job.tracker
            if isinstance(tracker, bytes):
                tracker = pickle.loads(tracker)
            record = tracker.finish() if job.final else tracker.record()
        except Exception as exc:  # a record is degraded, never lost
            why = f"{type(exc).__name__}: {exc}"
            broken = broken or (
                f"inspection stopped after an internal error in the tracker's record: {why}; "
                "the relay went on"
            )
            self._warn(f"kexproxy: session {relay.session_id}: {broken}")
            record = fallback_record(relay)
        return adjust(record, relay, broken)

    def _write_capture(self, record: SessionRecord, tape: Tape, directory: str) -> SessionRecord:
        """Writes the session's capture file and names it in the record (`capture`)."""
        # Imported here: scapy takes a second to load, and only a recorder writing
        # captures needs it.
        from kexproxy.sources.proxy_pcap import capture_name, write_capture

        path = str(Path(directory) / capture_name(record.id))
        notes = list(record.notes)
        try:
            write_capture(tape, path)
        except Exception as exc:  # a capture is lost, never the record
            why = f"{type(exc).__name__}: {exc}"
            self._warn(f"kexproxy: session {record.id}: could not write {path}: {why}")
            notes.append(f"the capture file {path} could not be written: {why}")
            return dataclasses.replace(record, notes=notes)
        if tape.dropped:
            notes.append(
                f"the capture file holds the handshake's first bytes only: {tape.dropped} "
                "bytes shown to the tracker were past its limit"
            )
        return dataclasses.replace(record, capture=path, notes=notes)

    def _refresh(self, moved: BytesMoved) -> None:
        last = self._live.get(moved.session_id)
        if last is None:
            return
        a_is_client = last.roles.get("tcp_initiator") != "server"
        c2s, s2c = (moved.bytes_a, moved.bytes_b) if a_is_client else (moved.bytes_b, moved.bytes_a)
        record = dataclasses.replace(
            last,
            bytes={"c2s": c2s, "s2c": s2c},
            ended=rfc3339(moved.last_ts) if moved.last_ts is not None else last.ended,
        )
        self._live[moved.session_id] = record
        self._publish(record, False)


def adjust(record: SessionRecord, relay: RelayFacts, broken: str | None) -> SessionRecord:
    """What only the relay knows: the peers' views of each other, and its own notes."""
    changes: JSONDict = {}
    client_side: Leg = "a" if record.roles.get("tcp_initiator") != "server" else "b"
    views: dict[Leg, Endpoint | None] = {"a": relay.client_view, "b": relay.server_view}
    sides: dict[str, Leg] = {"client": client_side, "server": other_leg(client_side)}
    rejections = dict(record.rejections)
    for role, side in sides.items():
        rejection = rejections.get(role)
        view = views[side]
        # OpenSSH's line names the peer's address, as each side saw it; OpenSSL's (TLS) does not.
        if isinstance(rejection, dict) and view is not None and record.protocol == "ssh":
            # Rebuilt, not edited: the peer's address changes the line's length, and
            # OpenSSH cuts long lines at a fixed length.
            message = rejection_message(
                (view.ip, view.port),
                str(rejection.get("reason", "")),
                ",".join(str(n) for n in rejection.get("their_offer") or ()),
                "client" if role == "client" else "server",
            )
            changed = {**rejection, "message": message}
            if rejection.get("native") == rejection.get("message"):
                changed["native"] = message  # an OpenSSH side: its own words are the message
            rejections[role] = changed
    if rejections != record.rejections:
        changes["rejections"] = rejections
    notes = list(record.notes)
    relay_note = _relay_note(relay, views, client_side)
    if relay_note:
        notes.append(relay_note)
    if broken:
        notes.append(broken)
    if notes != record.notes:
        changes["notes"] = notes
    if record.outcome == "not_ssh" and not relay.relayed:
        # Nothing reached the upstream: the connection was turned away, not non-SSH.
        changes["outcome"] = "aborted"
    return dataclasses.replace(record, **changes) if changes else record


def _relay_note(
    relay: RelayFacts, views: dict[Leg, Endpoint | None], client_side: Leg
) -> str | None:
    parts = []
    real: dict[Leg, Endpoint] = {"a": relay.client, "b": relay.upstream}
    for side in (client_side, other_leg(client_side)):
        view = views[side]
        if view is not None and view != real[other_leg(side)]:
            role = "client" if side == client_side else "server"
            parts.append(f"the {role} saw its peer as {view.ip} port {view.port}")
    if not parts:
        return None
    return (
        "relayed by kexproxy: "
        + " and ".join(parts)
        + "; rejection messages name the peer each side saw"
    )


def fallback_record(relay: RelayFacts, *, outcome: Outcome = "incomplete") -> SessionRecord:
    """A minimal record from what the relay knows: when the tracker cannot build one (the
    session still counts), or, `in_progress` and not ended, for a session just accepted."""
    started = rfc3339(relay.now)
    return SessionRecord(
        **no_ssh_handshake(),
        id=relay.session_id,
        source="proxy",
        capture=None,
        started=started,
        ended=None if outcome == "in_progress" else started,
        client={"ip": relay.client.ip, "port": relay.client.port},
        server={"ip": relay.upstream.ip, "port": relay.upstream.port},
        outcome=outcome,
        negotiated=None,
        failures=[],
        rejections={"client": None, "server": None},
        evidence={"first_close": None, "how": None, "disconnects": [], "banner_error": None},
        bytes={"c2s": relay.bytes_a, "s2c": relay.bytes_b},
        notes=[],
    )


class InThreadRecorder:
    """Records in a thread of this process: for the dashboard's built-in proxy and tests.

    Python runs one thread at a time, so this thread works mostly while the loop waits for
    events; `kexproxy proxy` records in another process instead.
    """

    def __init__(
        self,
        publish: Publish,
        *,
        warn: Warn,
        max_queued: int = MAX_QUEUED_JOBS,
        capture_dir: str | None = None,
    ) -> None:
        self._recorder = Recorder(publish, warn=warn, capture_dir=capture_dir)
        self._warn = warn
        self._worker: Worker[RecorderItem] = Worker(
            self._run, name="records", max_queued=max_queued, on_drop=self._dropped
        )

    def attach(self, loop: object) -> None:
        """Nothing to watch: the thread takes the items."""

    def submit(self, item: RecorderItem) -> None:
        self._worker.put(item)

    def close(self) -> bool:
        """Records everything queued, then stops; False when records were dropped."""
        self._worker.close()
        return self._worker.dropped == 0

    def _run(self, items: list[RecorderItem]) -> None:
        for item in items:
            try:
                self._recorder.handle(item)
            except Exception as exc:  # a record is lost, never the proxy
                self._warn(f"kexproxy: could not finish a session's record: {exc!r}")

    def _dropped(self, item: RecorderItem) -> None:
        if self._worker.dropped == 1:
            self._warn("kexproxy: the record thread is not keeping up; records are being dropped")
