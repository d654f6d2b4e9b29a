"""The I/O of an SSH probe: a few bounded conversations with one server, never authenticated.

The bytes and their reading live in the core (kexproxy/core/sshprobe.py); this module opens
one connection at a time to the one HOST:PORT it was given, sends what the core wrote, feeds
the answer to the core's reader until it is complete, says goodbye with SSH_MSG_DISCONNECT
and closes. Bounded like the TLS probe (`ProbeLimits`): one connection at a time, at most
`rate` a second, `max_handshakes` in all, `timeout` seconds for each answer, and at most
`MAX_ANSWER_BYTES` read from any one (a server that drips, floods or stays silent ends its
conversation with a note). The first conversation's bytes, both directions, also go through
the usual `ConnectionTracker`, so the grades come from the same record and diagnosis as a
capture's.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kexproxy.core.catalogue import Catalogue, catalogue
from kexproxy.core.connection import ConnectionTracker
from kexproxy.core.diagnosis import diagnosed
from kexproxy.core.events import KexInit
from kexproxy.core.lists import KEX_ALGORITHMS, SERVER_HOST_KEY_ALGORITHMS
from kexproxy.core.observer import Endpoint, Leg
from kexproxy.core.record import JSONDict, SessionRecord
from kexproxy.core.sshprobe import (
    PeerReader,
    banner_bytes,
    choose_kex,
    disconnect_bytes,
    full_offer,
    host_key_of,
    host_key_offer,
    kex_init_payload,
    kexinit_of,
    kexinit_payload,
    listen_offer,
    packet,
    report,
)
from kexproxy.sources.tls_probe import Pacer, ProbeLimits, Unreachable

#: Bytes read per recv.
READ_SIZE = 65_536
#: Most bytes read from one conversation: a banner, a KEXINIT and a KEX reply are a few KiB;
#: OpenSSH's largest packet is 256 KiB (its PACKET_MAX_SIZE), so this leaves room for one.
MAX_ANSWER_BYTES = 512 * 1024

__all__ = [
    "ClientAudit",
    "Conversation",
    "ListenLimits",
    "ProbeLimits",
    "Unreachable",
    "converse",
    "probe_ssh",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Conversation:
    """One connection's outcome: what the server said, the bytes of both sides, how it ended."""

    reader: PeerReader
    ours: KexInit
    sent: bytes
    received: bytes
    ending: str
    local: tuple[str, int] | None
    started: float


def converse(
    host: str,
    port: int,
    lists: Sequence[Sequence[str]],
    *,
    kex: str | None,
    timeout: float,
) -> Conversation:
    """One conversation: banner and KEXINIT, then (with `kex`) that method's first message.

    Never raises for what the server does: refused, reset, garbage, silence and floods all
    end in a `Conversation` whose `ending` and reader say what happened.
    """
    cookie = os.urandom(16)
    ours = kexinit_of(lists, cookie)
    reader = PeerReader()
    started = time.time()
    opening = banner_bytes() + packet(kexinit_payload(lists, cookie))
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return Conversation(
            reader=reader,
            ours=ours,
            sent=b"",
            received=b"",
            ending=f"refused: {exc.strerror or exc}",
            local=None,
            started=started,
        )
    sent = bytearray()
    received = bytearray()
    ending = "answered"
    local: tuple[str, int] | None = None
    deadline = time.monotonic() + timeout
    kex_sent = kex is None
    try:
        local = sock.getsockname()[:2]
        sock.sendall(opening)
        sent += opening
        while not reader.done(want_reply=kex is not None):
            if not kex_sent and reader.kexinit is not None and kex is not None:
                first = packet(kex_init_payload(kex))
                sock.sendall(first)
                sent += first
                kex_sent = True
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                ending = f"no complete answer within {timeout:g} s"
                break
            if len(received) >= MAX_ANSWER_BYTES:
                ending = f"more than {MAX_ANSWER_BYTES} bytes without a complete answer"
                break
            sock.settimeout(left)
            data = sock.recv(READ_SIZE)
            if not data:
                reader.receive_eof()
                break
            received += data
            reader.receive_data(data)
    except TimeoutError:
        ending = f"no complete answer within {timeout:g} s"
    except OSError as exc:
        reader.receive_eof()
        ending = f"connection lost: {exc.strerror or exc}"
    finally:
        try:
            if reader.identification is not None and reader.failure is None:
                goodbye = disconnect_bytes()
                sock.settimeout(1.0)
                sock.sendall(goodbye)
                sent += goodbye
        except OSError:
            pass
        sock.close()
    return Conversation(
        reader=reader,
        ours=ours,
        sent=bytes(sent),
        received=bytes(received),
        ending=ending,
        local=local,
        started=started,
    )


def conversation_record(conv: Conversation, host: str, port: int) -> SessionRecord:
    """The session record of a conversation, built by the usual tracker and diagnosed."""
    local = conv.local or ("0.0.0.0", 0)
    tracker = ConnectionTracker(
        a=Endpoint(local[0], local[1]),
        b=Endpoint(host, port),
        initiator="syn",
        session_id=f"probe-{int(conv.started * 1000):x}",
        source="probe",
    )
    ts = conv.started
    if conv.sent:
        tracker.receive("a", conv.sent, ts)
    if conv.received:
        tracker.receive("b", conv.received, ts)
    tracker.receive_close("a", "fin", ts)
    return diagnosed(tracker.finish())


def _why(conv: Conversation, *, want_reply: bool) -> str:
    if conv.ending.startswith("refused"):
        return conv.ending
    if conv.reader.done(want_reply=want_reply) and conv.ending == "answered":
        return conv.reader.why_not()
    return f"{conv.reader.why_not()} ({conv.ending})"


def probe_ssh(
    host: str,
    port: int,
    *,
    limits: ProbeLimits | None = None,
    progress: Callable[[int, str], None] | None = None,
    cat: Catalogue | None = None,
) -> JSONDict:
    """Probes HOST:PORT (and nothing else): its banner and KEXINIT, then each host key.

    Raises `Unreachable` when the first connection cannot be made; anything later ends the
    probe with what was learnt and a note.
    """
    cat = cat or catalogue()
    limits = limits or ProbeLimits()
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    pacer = Pacer(limits.rate)
    notes: list[str] = []
    full = full_offer(cat)
    pacer.wait()
    if progress is not None:
        progress(1, "banner and KEXINIT")
    first = converse(host, port, full, kex=None, timeout=limits.timeout)
    if first.ending.startswith("refused"):
        raise Unreachable(f"cannot connect to {target}: {first.ending.removeprefix('refused: ')}")
    handshakes = 1
    host_keys: list[JSONDict] = []
    diagnosis: JSONDict | None = None
    server = first.reader.kexinit
    if server is None or first.reader.identification is None:
        notes.append(_why(first, want_reply=False))
    else:
        diagnosis = conversation_record(first, host, port).diagnosis
        kex = choose_kex(server.names(KEX_ALGORITHMS))
        algorithms = [n for n in server.names(SERVER_HOST_KEY_ALGORITHMS) if n]
        if kex is None:
            notes.append(
                "the server offers no key exchange the probe can start "
                "(curve25519, ECDH or DH group 14): host keys not learnt"
            )
            algorithms = []
        for algorithm in algorithms:
            if handshakes >= limits.max_handshakes:
                notes.append(
                    f"stopped at the cap of {limits.max_handshakes} handshakes "
                    f"(--max-handshakes): host keys not learnt for "
                    f"{', '.join(algorithms[len(host_keys) :])}"
                )
                break
            assert kex is not None
            pacer.wait()
            handshakes += 1
            if progress is not None:
                progress(handshakes, f"host key {algorithm}")
            conv = converse(
                host, port, host_key_offer(full, kex, algorithm), kex=kex, timeout=limits.timeout
            )
            key, key_notes = host_key_of(kex, conv.ours, conv.reader)
            if key is None:
                notes.append(f"host key {algorithm}: {_why(conv, want_reply=True)}")
                continue
            entry: JSONDict = {
                "algorithm": algorithm,
                "key_type": key.get("key_type"),
                "bits": key.get("bits"),
                "sha256": key.get("sha256"),
            }
            if key.get("certificate"):
                entry["certificate"] = True
            if key.get("error"):
                entry["error"] = key["error"]
            host_keys.append(entry)
            notes += [f"host key {algorithm}: {n}" for n in key_notes]
    return report(
        target=target,
        first=first.reader,
        host_keys=host_keys,
        handshakes=handshakes,
        notes=notes,
        cat=cat,
        diagnosis=diagnosis,
    )


# -- probe --listen: the client audit ------------------------------------------------------

#: Clients served at once by default, and at most (each is one thread for a few seconds).
DEFAULT_MAX_CLIENTS = 16
MAX_CLIENTS = 256
DEFAULT_CLIENT_TIMEOUT = 10.0
#: How often the accept loop looks at its stop flag.
_ACCEPT_POLL = 0.25


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenLimits:
    """How much the client audit takes on: clients at once, seconds each, clients in all."""

    max_clients: int = DEFAULT_MAX_CLIENTS
    timeout: float = DEFAULT_CLIENT_TIMEOUT
    #: Stop after this many connections (None: until stopped).
    count: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.max_clients <= MAX_CLIENTS:
            raise ValueError(f"max_clients must be 1 to {MAX_CLIENTS}")
        if self.timeout <= 0:
            raise ValueError("timeout must be above 0 seconds")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1")


class ClientAudit:
    """A server that records each client's banner and KEXINIT, then says goodbye.

    It sends an ordinary banner and KEXINIT (`listen_offer`), reads the client's, sends
    SSH_MSG_DISCONNECT "by application" and closes; both directions' bytes go through the
    usual `ConnectionTracker`, so `on_record` gets the same `SessionRecord` a capture of
    that connection would give (source "probe"; the pipeline's stages diagnose it). Connections beyond `max_clients` at once
    are closed unanswered, so a flood costs no more than that many threads.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        on_record: Callable[[SessionRecord], None],
        limits: ListenLimits | None = None,
        cat: Catalogue | None = None,
    ) -> None:
        self._cat = cat or catalogue()
        limits = limits or ListenLimits()
        self._limits = limits
        self._on_record = on_record
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(limits.max_clients)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.refused = 0
        self.served = 0
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
            self._sock.listen(limits.max_clients)
        except OSError:
            self._sock.close()
            raise
        self.address: tuple[str, int] = self._sock.getsockname()[:2]

    def stop(self) -> None:
        self._stop.set()

    def serve(self) -> None:
        """Accepts until `stop` is called or `count` connections were taken, then waits for them."""
        self._sock.settimeout(_ACCEPT_POLL)
        taken = 0
        try:
            while not self._stop.is_set():
                if self._limits.count is not None and taken >= self._limits.count:
                    break
                try:
                    conn, peer = self._sock.accept()
                except TimeoutError:
                    continue
                taken += 1
                if not self._slots.acquire(blocking=False):
                    self.refused += 1
                    conn.close()
                    continue
                thread = threading.Thread(
                    target=self._serve_one, args=(conn, peer[:2]), daemon=True
                )
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
                thread.start()
        finally:
            self._sock.close()
            for thread in self._threads:
                thread.join(self._limits.timeout + 2)

    def _serve_one(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        try:
            record = self._converse(conn, peer)
            with self._lock:
                self.served += 1
                self._on_record(record)
        finally:
            self._slots.release()

    def _converse(self, conn: socket.socket, peer: tuple[str, int]) -> SessionRecord:
        chunks: list[tuple[Leg, bytes, float]] = []
        reader = PeerReader()
        lists = listen_offer(self._cat)
        deadline = time.monotonic() + self._limits.timeout
        received = 0
        client_closed = False
        note: str | None = None
        try:
            opening = banner_bytes() + packet(kexinit_payload(lists, os.urandom(16)))
            conn.settimeout(self._limits.timeout)
            conn.sendall(opening)
            chunks.append(("b", opening, time.time()))
            while not reader.done(want_reply=False):
                left = deadline - time.monotonic()
                if left <= 0 or received >= MAX_ANSWER_BYTES:
                    note = "the client sent no complete KEXINIT in time"
                    break
                conn.settimeout(left)
                data = conn.recv(READ_SIZE)
                if not data:
                    client_closed = True
                    break
                received += len(data)
                chunks.append(("a", data, time.time()))
                reader.receive_data(data)
            if reader.identification is not None and reader.failure is None:
                goodbye = disconnect_bytes()
                conn.sendall(goodbye)
                chunks.append(("b", goodbye, time.time()))
        except TimeoutError:
            note = "the client sent no complete KEXINIT in time"
        except OSError as exc:
            note = f"connection lost: {exc.strerror or exc}"
            client_closed = True
        finally:
            conn.close()
        local = self.address
        tracker = ConnectionTracker(
            a=Endpoint(peer[0], peer[1]),
            b=Endpoint(local[0], local[1]),
            initiator="accept",
            session_id=f"listen-{os.urandom(8).hex()}",
            source="probe",
        )
        for leg, data, ts in chunks:
            tracker.receive(leg, data, ts)
        end = time.time()
        if note is not None:
            tracker.receive_timeout(end, note)
        if client_closed:
            tracker.receive_close("a", "fin", end)
        tracker.receive_close("b", "fin", end)
        return tracker.finish()
