"""`proxy --probe-failures`: a failed TLS handshake's final record waits while the upstream is asked which list it refused.

Where it sits, and why: between the recorder and the pipeline, as a wrapper of the
`publish` callback (`FailureProber.publish`). The relay never sees it: the relay hands its
trackers to the recorder (the recording process for ``kexproxy proxy``), so bytes are
forwarded first and never held, whatever a probe costs. A stage would be the wrong place:
stages run synchronously on every record and must not do I/O, while a probe takes up to a
few seconds; so the one record that needs it, the FINAL record of a TLS handshake the
server refused, is held back and published later with the answer, from a thread of its own.
Every other record (live ones, SSH, successes, client refusals) passes straight through.
Publishes are serialised by one lock, because the sinks behind `publish` were written for
one caller at a time.

The probe touches nothing but the session's upstream (the record's server endpoint), with
the client's own offer varied one list at a time (kexproxy/core/tls/failprobe.py), one
connection at a time, paced and capped per upstream like `probe --tls`; its verdict is
cached per upstream and offer, so a client that fails a thousand times costs one probe.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable

from kexproxy.core.record import JSONDict, SessionRecord
from kexproxy.core.tls.failprobe import (
    PROBED_LISTS,
    accepted,
    client_offer,
    rejection,
    variant,
)
from kexproxy.core.tls.probing import Answer
from kexproxy.sources.tls_probe import Pacer, ProbeLimits, client_hello_bytes, handshake
from kexproxy.worker import Worker

Publish = Callable[[SessionRecord, bool], None]
Handshake = Callable[[str, int, bytes, float], Answer]

#: Failed handshakes waiting for a probe; past this the oldest is published unprobed.
MAX_WAITING = 1_000

DEFAULT_LIMITS = ProbeLimits()

#: A cached verdict: the lists whose widening got a ServerHello.
Verdict = tuple[str, ...]


def needs_probe(record: SessionRecord) -> bool:
    """A final TLS record of a handshake the server refused, with a client offer to replay."""
    return (
        record.protocol == "tls"
        and record.outcome == "failed"
        and record.client_hello is not None
        and (record.rejections or {}).get("server") is not None
    )


class FailureProber:
    """Wraps `publish`; see the module docstring. `close` waits for the probes under way."""

    def __init__(
        self,
        publish: Publish,
        *,
        limits: ProbeLimits = DEFAULT_LIMITS,
        warn: Callable[[str], None] | None = None,
        handshake: Handshake = handshake,
    ) -> None:
        self._publish = publish
        self._limits = limits
        self._warn = warn
        self._handshake = handshake
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int, str], Verdict] = {}
        self._used: dict[tuple[str, int], int] = {}
        self._pacers: dict[tuple[str, int], Pacer] = {}
        #: Handshakes made so far, for tests and the last line.
        self.handshakes = 0
        self._worker: Worker[SessionRecord] = Worker(
            self._handle,
            name="tls-failure-probe",
            max_queued=MAX_WAITING,
            on_drop=self._publish_now,
            on_error=self._error,
        )

    def publish(self, record: SessionRecord, final: bool) -> None:
        if final and needs_probe(record):
            self._worker.put(record)
            return
        with self._lock:
            self._publish(record, final)

    def close(self, timeout: float | None = None) -> bool:
        """Finishes the probes waiting (each bounded by the limits), then returns."""
        return self._worker.close(timeout)

    def _publish_now(self, record: SessionRecord) -> None:
        with self._lock:
            self._publish(record, True)

    def _error(self, exc: BaseException) -> None:
        if self._warn is not None:
            self._warn(f"probe-failures: {type(exc).__name__}: {exc}")

    def _handle(self, records: list[SessionRecord]) -> None:
        for record in records:
            final = record
            try:
                final = self._probed(record)
            except Exception as exc:  # a failed probe must not lose the record
                self._error(exc)
            self._publish_now(final)

    def _probed(self, record: SessionRecord) -> SessionRecord:
        hello = record.client_hello or {}
        host, port = str(record.server.get("ip")), int(record.server.get("port") or 0)
        key = (host, port, json.dumps(hello, sort_keys=True))
        verdict = self._cache.get(key)
        if verdict is None:
            verdict = self._ask(host, port, hello)
            if verdict is None:
                return record
            self._cache[key] = verdict
        return _with_rejection(record, verdict)

    def _ask(self, host: str, port: int, hello: JSONDict) -> Verdict | None:
        """The lists whose widening the upstream accepts; None when the probe could not finish."""
        offer = client_offer(hello)
        if offer is None:
            return None
        upstream = (host, port)
        pacer = self._pacers.setdefault(upstream, Pacer(self._limits.rate))
        found: list[str] = []
        for list_name in PROBED_LISTS:
            spec = variant(offer, list_name)
            if spec is None:
                continue
            if self._used.get(upstream, 0) >= self._limits.max_handshakes:
                if self._warn is not None:
                    self._warn(
                        f"probe-failures: the cap of {self._limits.max_handshakes} "
                        f"handshakes to {host}:{port} is reached; records stay inferred"
                    )
                return None
            pacer.wait()
            self._used[upstream] = self._used.get(upstream, 0) + 1
            self.handshakes += 1
            answer = self._handshake(host, port, client_hello_bytes(spec), self._limits.timeout)
            if answer.ending in ("timeout", "refused_connection", "not_tls"):
                return None
            if accepted(list_name, answer):
                found.append(list_name)
        return tuple(found)


def _with_rejection(record: SessionRecord, verdict: Verdict) -> SessionRecord:
    """The record with `rejections.server` (and its failure) naming the list the probe found."""
    hello = record.client_hello or {}
    previous = (record.rejections or {}).get("server")
    new = rejection(verdict, hello, previous if isinstance(previous, dict) else None)
    if new is None:
        return record
    lst = new["list"]
    failures = [{"list": lst, "client_offer": _client_list(hello, lst), "server_offer": None}]
    return dataclasses.replace(
        record, rejections={**record.rejections, "server": new}, failures=failures
    )


def _client_list(hello: JSONDict, lst: str) -> list[object]:
    if lst == "server_name":
        name = hello.get("server_name")
        return [name] if name is not None else []
    value = hello.get(lst)
    return list(value) if isinstance(value, list) else []
