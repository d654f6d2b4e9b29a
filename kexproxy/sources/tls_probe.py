# scapy's packet classes are untyped; calling them is this module's purpose.
# mypy: disable-error-code="no-untyped-call"
"""The I/O of a TLS probe: ClientHellos built with scapy, one bounded connection at a time.

The questions and what answers mean live in the core (kexproxy/core/tls/probing.py); this
module only turns a `HelloSpec` into bytes, sends them to the one HOST:PORT it was given and
feeds what comes back to `TlsDirectionParser`. It is bounded so that probing is never a load
on the server: one connection at a time, at most `rate` connections a second, at most
`max_handshakes` in all, and `timeout` seconds for each answer to be complete (a server that
drips bytes or never answers ends the probe with what was learnt). scapy builds the
ClientHello because its TLS layer writes every field and length correctly; hostile answers
never reach scapy, only kexproxy's own parser.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kexproxy.core.tls.parser import TlsDirectionParser
from kexproxy.core.tls.probing import (
    TLS12,
    TLS13,
    Answer,
    HelloSpec,
    TlsProbePlan,
    answer_complete,
    summarise,
)

DEFAULT_RATE = 5.0
#: The ceiling on --rate: a probe is a handful of handshakes, never a load test.
MAX_RATE = 20.0
DEFAULT_MAX_HANDSHAKES = 200
DEFAULT_TIMEOUT = 5.0
#: Bytes read per recv; a TLS record is at most 2^14 + 256 (RFC 8446 5.1) plus its header.
READ_SIZE = 16_384 + 256 + 5
#: The record version of a ClientHello: TLS 1.0, as every modern client writes it for
#: middleboxes that refuse a higher one (RFC 8446 5.1, appendix D).
RECORD_VERSION = 0x0301


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeLimits:
    """How hard a probe may ask: connections a second, connections in all, seconds per answer."""

    rate: float = DEFAULT_RATE
    max_handshakes: int = DEFAULT_MAX_HANDSHAKES
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if not 0 < self.rate <= MAX_RATE:
            raise ValueError(f"rate must be above 0 and at most {MAX_RATE:g} handshakes a second")
        if self.max_handshakes < 1:
            raise ValueError("max_handshakes must be at least 1")
        if self.timeout <= 0:
            raise ValueError("timeout must be above 0 seconds")


class Unreachable(Exception):
    """The first connection to the target could not be made."""


def _public_key(group: int) -> bytes:
    """A fresh key share for `group` (RFC 8446 4.2.8.2): raw for X25519/X448, uncompressed points for NIST curves."""
    if group == 29:
        return (
            x25519.X25519PrivateKey.generate()
            .public_key()
            .public_bytes(Encoding.Raw, PublicFormat.Raw)
        )
    if group == 30:
        return (
            x448.X448PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        )
    curves: dict[int, ec.EllipticCurve] = {
        23: ec.SECP256R1(),
        24: ec.SECP384R1(),
        25: ec.SECP521R1(),
    }
    key = ec.generate_private_key(curves[group]).public_key()
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def client_hello_bytes(spec: HelloSpec) -> bytes:
    """The ClientHello record for `spec`, built with scapy's TLS layer.

    An EMPTY key_share (``client_shares=[]``) and codes scapy has no name for are both
    expressible in scapy 2.5+, so no byte here is written by hand.
    """
    from scapy.layers.tls.extensions import (
        ProtocolName,
        ServerName,
        TLS_Ext_ALPN,
        TLS_Ext_ServerName,
        TLS_Ext_SignatureAlgorithms,
        TLS_Ext_SupportedGroups,
        TLS_Ext_SupportedPointFormat,
        TLS_Ext_SupportedVersion_CH,
    )
    from scapy.layers.tls.handshake import TLSClientHello
    from scapy.layers.tls.keyexchange_tls13 import KeyShareEntry, TLS_Ext_KeyShare_CH
    from scapy.layers.tls.record import TLS

    ext: list[object] = []
    if spec.server_name:
        ext.append(
            TLS_Ext_ServerName(servernames=[ServerName(servername=spec.server_name.encode())])
        )
    if spec.groups:
        ext.append(TLS_Ext_SupportedGroups(groups=list(spec.groups)))
        ext.append(TLS_Ext_SupportedPointFormat(ecpl=[0]))
    if spec.version >= TLS12 and spec.signature_algorithms:
        ext.append(TLS_Ext_SignatureAlgorithms(sig_algs=list(spec.signature_algorithms)))
    if spec.alpn:
        protocols = [ProtocolName(protocol=p.encode("latin-1")) for p in spec.alpn]
        ext.append(TLS_Ext_ALPN(protocols=protocols))
    if spec.versions:
        ext.append(TLS_Ext_SupportedVersion_CH(versions=list(spec.versions)))
    elif spec.version == TLS13:
        ext.append(TLS_Ext_SupportedVersion_CH(versions=[TLS13]))
    if spec.version == TLS13:
        shares = [KeyShareEntry(group=g, key_exchange=_public_key(g)) for g in spec.key_shares]
        ext.append(TLS_Ext_KeyShare_CH(client_shares=shares))
    hello = TLSClientHello(
        version=min(spec.version, TLS12),
        ciphers=list(spec.cipher_suites),
        comp=[0],
        ext=ext,
    )
    return bytes(TLS(type=22, version=RECORD_VERSION, msg=[hello]))


def handshake(host: str, port: int, hello: bytes, timeout: float) -> Answer:
    """Sends `hello` on a new connection and reads the answer until it is complete or `timeout` passes.

    Never raises for what the server does: a refused connection, a reset, garbage and
    silence all become an `Answer` with its `ending`.
    """
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return Answer(ending="refused_connection", detail=exc.strerror or str(exc))
    parser = TlsDirectionParser()
    events: list[object] = []
    deadline = time.monotonic() + timeout
    ending: str = "answered"
    try:
        sock.sendall(hello)
        while not answer_complete(events):
            left = deadline - time.monotonic()
            if left <= 0:
                ending = "timeout"
                break
            sock.settimeout(left)
            data = sock.recv(READ_SIZE)
            if not data:
                events += parser.receive_eof()
                ending = "closed"
                break
            events += parser.receive_data(data)
    except TimeoutError:
        ending = "timeout"
    except OSError:
        events += parser.receive_eof()
        ending = "closed"
    finally:
        sock.close()
    answer = summarise(events, "answered")
    if answer.ending == "not_tls" or answer.server_hello is not None or answer.alert is not None:
        return answer
    return summarise(events, "timeout" if ending == "timeout" else "closed")


class Pacer:
    """Spaces connection starts at least 1/rate seconds apart."""

    __slots__ = ("_clock", "_interval", "_last", "_sleep")

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._interval = 1.0 / rate
        self._last: float | None = None
        self._clock = clock
        self._sleep = sleep

    def wait(self) -> None:
        now = self._clock()
        if self._last is not None and now < self._last + self._interval:
            self._sleep(self._last + self._interval - now)
            now = self._clock()
        self._last = now


def probe_tls(
    host: str,
    port: int,
    *,
    server_name: str | None,
    limits: ProbeLimits = ProbeLimits(),
    progress: Callable[[int, HelloSpec], None] | None = None,
) -> dict[str, object]:
    """Probes HOST:PORT (and nothing else) and returns the report of `TlsProbePlan.result`.

    Raises `Unreachable` when the very first connection fails; later failures end the probe
    with a note.
    """
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    plan = TlsProbePlan(server_name)
    steps = plan.steps()
    pacer = Pacer(limits.rate)
    notes: list[str] = []
    attempts = 0
    try:
        spec = next(steps)
        while True:
            if attempts >= limits.max_handshakes:
                notes.append(
                    f"stopped at the cap of {limits.max_handshakes} handshakes (--max-handshakes)"
                )
                break
            pacer.wait()
            attempts += 1
            if progress is not None:
                progress(attempts, spec)
            answer = handshake(host, port, client_hello_bytes(spec), limits.timeout)
            if attempts == 1 and answer.ending == "refused_connection":
                raise Unreachable(f"cannot connect to {target}: {answer.detail}")
            spec = steps.send(answer)
    except StopIteration:
        pass
    finally:
        steps.close()
    return plan.result(target, notes)
