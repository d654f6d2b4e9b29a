"""Which ClientHellos a TLS probe sends and what each answer means, sans I/O.

Theory of operation: a server that refuses sends no offer, so what it accepts is learnt by
asking. `TlsProbePlan.steps()` is a generator that yields one `HelloSpec` (a ClientHello to
send) at a time and is sent back the `Answer` the server gave (its bytes through
`TlsDirectionParser`, summarised by `summarise`); the caller does the I/O and may stop at any
point, since `result()` reports what was learnt so far. The order of questions:

1. versions, one at a time (TLS 1.3, 1.2, 1.1, 1.0), each with every suite, group and scheme
   kexproxy knows, so that only the version can be refused;
2. cipher suites per accepted version: offer all, note the chosen one, remove it, repeat
   until the server refuses; then offer the accepted ones reversed, which tells whether the
   order found is the server's preference or merely ours;
3. groups: in TLS 1.3 with an EMPTY key_share, so the HelloRetryRequest names the server's
   choice without kexproxy computing a share for each group; in TLS 1.2 (when 1.3 is not
   spoken) the ServerKeyExchange names the curve;
4. signature schemes: in TLS 1.2 the ServerKeyExchange names the scheme (remove, repeat); in
   TLS 1.3 CertificateVerify is encrypted, so one scheme at a time with a real key share, and
   a ServerHello means accepted;
5. the certificate chain from any TLS 1.2 Certificate (in TLS 1.3 it is encrypted: a note).

Every loop is bounded by the list it shrinks, so a server that answers nonsense (a choice
that was not offered) ends the loop with a note instead of looping.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from kexproxy.core.events import ParseFailed, StreamEnded
from kexproxy.core.tls import names
from kexproxy.core.tls.certificate import describe
from kexproxy.core.tls.events import (
    AlertReceived,
    CertificateReceived,
    EncryptedRecord,
    HandshakeReceived,
    ServerHelloReceived,
    ServerKeyExchangeReceived,
    Ssl2Message,
)
from kexproxy.core.tls.hello import ServerHello

TLS13 = 0x0304
TLS12 = 0x0303
TLS11 = 0x0302
TLS10 = 0x0301
#: The versions probed, newest first (SSL 3.0 and 2.0 are out of scope: RFC 7568, RFC 6176).
PROBED_VERSIONS = (TLS13, TLS12, TLS11, TLS10)
#: ServerHelloDone (RFC 5246 7.4.5): the end of a TLS 1.2 server's first flight.
SERVER_HELLO_DONE = 14
#: Signalling values, not suites: TLS_FALLBACK_SCSV would make a server refuse every lower
#: version on purpose (RFC 7507), and the renegotiation SCSV is no choice a server can make.
_SCSV = frozenset({0x00FF, 0x5600})
#: RFC 8422 5.1.1: "explicit curves" are markers, not groups a server can select.
_NOT_GROUPS = frozenset({0xFF01, 0xFF02})

#: Groups kexproxy can compute a real key share for (in the I/O layer, with `cryptography`),
#: in the order a TLS 1.3 signature probe picks one.
KEY_SHARE_GROUPS = (29, 23, 24, 25, 30)


def _is_tls13_suite(code: int) -> bool:
    return code >> 8 == 0x13


#: Every suite kexproxy can name, per version it can be negotiated in.
TLS13_SUITES: tuple[int, ...] = tuple(c for c in names.CIPHER_SUITES if _is_tls13_suite(c))
LEGACY_SUITES: tuple[int, ...] = tuple(
    c for c in names.CIPHER_SUITES if not _is_tls13_suite(c) and c not in _SCSV
)
ALL_GROUPS: tuple[int, ...] = tuple(g for g in names.GROUPS if g not in _NOT_GROUPS)
ALL_SCHEMES: tuple[int, ...] = tuple(names.SIGNATURE_SCHEMES)


def _tls13_scheme(name: str) -> bool:
    """RFC 8446 4.2.3: PKCS#1 v1.5, SHA-1 and SHA-224 schemes are not for TLS 1.3 handshakes."""
    legacy = ("rsa_pkcs1_", "ecdsa_sha1", "dsa_", "gostr", "sha224")
    return not any(part in name for part in legacy)


TLS13_SCHEMES: tuple[int, ...] = tuple(
    c for c, n in names.SIGNATURE_SCHEMES.items() if _tls13_scheme(n)
)


def suites_for(version: int) -> tuple[int, ...]:
    """Every suite kexproxy knows that `version` can negotiate."""
    return TLS13_SUITES if version == TLS13 else LEGACY_SUITES


def is_forward_secret(code: int) -> bool:
    """Whether a TLS 1.2 suite's key exchange is signed in a ServerKeyExchange (ECDHE or DHE)."""
    return names.suite_name(code).startswith(("TLS_ECDHE_", "TLS_DHE_"))


def is_ecdhe(code: int) -> bool:
    return names.suite_name(code).startswith("TLS_ECDHE_")


@dataclass(frozen=True, slots=True, kw_only=True)
class HelloSpec:
    """One ClientHello to send: `version` is the only version offered (TLS 1.3 via supported_versions).

    `key_shares` are the groups to send a real share for; empty in TLS 1.3 asks the server
    to name its group in a HelloRetryRequest (RFC 8446 4.1.4).
    """

    version: int
    cipher_suites: tuple[int, ...]
    groups: tuple[int, ...]
    key_shares: tuple[int, ...]
    signature_algorithms: tuple[int, ...]
    server_name: str | None
    #: What this handshake asks, for progress lines ("cipher suites, TLS 1.2").
    purpose: str
    #: supported_versions as sent, when more than `version` is offered (a client's own
    #: offer replayed by `proxy --probe-failures`); `version` is then the highest.
    versions: tuple[int, ...] = ()
    alpn: tuple[str, ...] = ()


Ending = Literal["answered", "closed", "timeout", "not_tls", "refused_connection"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What the server said to one ClientHello, as far as kexproxy reads it."""

    server_hello: ServerHello | None = None
    alert: int | None = None
    key_exchange: ServerKeyExchangeReceived | None = None
    certificates: tuple[bytes, ...] = ()
    ending: Ending = "answered"
    #: Why the answer is not TLS (the parser's reason), or what the connection did.
    detail: str | None = None

    @property
    def hello(self) -> ServerHello | None:
        """The ServerHello proper (a HelloRetryRequest is not one)."""
        sh = self.server_hello
        return sh if sh is not None and not sh.retry else None

    @property
    def retry(self) -> ServerHello | None:
        sh = self.server_hello
        return sh if sh is not None and sh.retry else None


def answer_complete(events: Sequence[object]) -> bool:
    """Whether the events so far hold everything a probe reads from one answer, so it can hang up.

    A HelloRetryRequest, an alert, a TLS 1.3 ServerHello (what follows is encrypted),
    ServerHelloDone, the first encrypted record, or the end of parsing.
    """
    for event in events:
        match event:
            case ServerHelloReceived(hello=hello) if hello.retry or hello.version == TLS13:
                return True
            case HandshakeReceived(msg_type=msg_type) if msg_type == SERVER_HELLO_DONE:
                return True
            case (
                AlertReceived() | EncryptedRecord() | ParseFailed() | StreamEnded() | Ssl2Message()
            ):
                return True
            case _:
                pass
    return False


def summarise(events: Sequence[object], ending: Ending = "answered") -> Answer:
    """An `Answer` from the parser's events for the server's direction (the first of each kind)."""
    server_hello: ServerHello | None = None
    alert: int | None = None
    kx: ServerKeyExchangeReceived | None = None
    certificates: tuple[bytes, ...] = ()
    detail: str | None = None
    for event in events:
        match event:
            case ServerHelloReceived(hello=hello) if server_hello is None:
                server_hello = hello
            case AlertReceived(description=code) if alert is None and code is not None:
                alert = code
            case ServerKeyExchangeReceived() if kx is None:
                kx = event
            case CertificateReceived(certificates=chain) if not certificates:
                certificates = chain
            case ParseFailed(reason=reason):
                ending, detail = "not_tls", reason
            case Ssl2Message():
                ending, detail = "not_tls", "the server answered in SSL 2.0"
            case _:
                pass
    return Answer(
        server_hello=server_hello,
        alert=alert,
        key_exchange=kx,
        certificates=certificates,
        ending=ending,
        detail=detail,
    )


def _refusal(answer: Answer) -> str:
    """How the server said no, in a few words, for notes."""
    if answer.alert is not None:
        return f"alert {names.alert_name(answer.alert)}"
    return {"closed": "closed the connection", "timeout": "no answer in time"}.get(
        answer.ending, answer.detail or "no ServerHello"
    )


class ProbeStopped(Exception):
    """The server stopped answering as TLS: the probe ends with what it learnt."""


@dataclass(slots=True)
class Findings:
    """What the probe has learnt so far; `TlsProbePlan.result` turns it into the report."""

    versions: list[int] = field(default_factory=list)
    suites: dict[int, list[int]] = field(default_factory=dict)
    groups: list[int] = field(default_factory=list)
    schemes: list[int] = field(default_factory=list)
    chain: tuple[bytes, ...] = ()
    notes: list[str] = field(default_factory=list)
    handshakes: int = 0


class TlsProbePlan:
    """The questions of one probe of one server, asked through `steps()`; see the module docstring."""

    __slots__ = ("found", "server_name")

    def __init__(self, server_name: str | None) -> None:
        self.server_name = server_name
        self.found = Findings()

    def _spec(
        self,
        version: int,
        purpose: str,
        *,
        suites: Sequence[int] | None = None,
        groups: Sequence[int] = ALL_GROUPS,
        key_shares: Sequence[int] = (),
        schemes: Sequence[int] = ALL_SCHEMES,
    ) -> HelloSpec:
        return HelloSpec(
            version=version,
            cipher_suites=tuple(suites_for(version) if suites is None else suites),
            groups=tuple(groups),
            key_shares=tuple(key_shares),
            signature_algorithms=tuple(schemes),
            server_name=self.server_name,
            purpose=purpose,
        )

    def _read(self, answer: Answer) -> Answer:
        """Counts the handshake, keeps the first chain, and stops the probe on an answer that is not TLS."""
        self.found.handshakes += 1
        if answer.certificates and not self.found.chain:
            self.found.chain = answer.certificates
        if answer.ending == "not_tls":
            raise ProbeStopped(f"the server's answer is not TLS ({answer.detail})")
        if answer.ending == "timeout":
            raise ProbeStopped("the server stopped answering (nothing complete within the timeout)")
        if answer.ending == "refused_connection":
            raise ProbeStopped(f"the server stopped accepting connections ({answer.detail})")
        return answer

    def steps(self) -> Generator[HelloSpec, Answer, None]:
        """Yields each ClientHello to send; send back the server's `Answer`. Ends when done."""
        try:
            yield from self._versions()
            for version in self.found.versions:
                yield from self._suites(version)
            yield from self._groups()
            yield from self._schemes()
            if TLS12 not in self.found.versions and TLS13 in self.found.versions:
                self.found.notes.append(
                    "only TLS 1.3 is spoken: the certificate is encrypted, so none is reported"
                )
        except ProbeStopped as stop:
            self.found.notes.append(f"probe ended early: {stop}")

    def _versions(self) -> Generator[HelloSpec, Answer, None]:
        refusals = []
        for version in PROBED_VERSIONS:
            answer = self._read(
                (yield self._spec(version, f"versions, {names.version_name(version)}"))
            )
            sh = answer.server_hello
            if sh is not None and sh.version == version:
                self.found.versions.append(version)
            elif sh is not None:
                self.found.notes.append(
                    f"offered {names.version_name(version)} alone, the server chose "
                    f"{names.version_name(sh.version)}"
                )
            else:
                refusals.append(f"{names.version_name(version)}: {_refusal(answer)}")
        if not self.found.versions:
            self.found.notes.append("no version accepted (" + "; ".join(refusals) + ")")

    def _suites(self, version: int) -> Generator[HelloSpec, Answer, None]:
        label = names.version_name(version)
        offered = list(suites_for(version))
        accepted: list[int] = []
        while offered:
            answer = self._read(
                (yield self._spec(version, f"cipher suites, {label}", suites=offered))
            )
            sh = answer.server_hello
            if sh is None or sh.version != version:
                break
            if sh.cipher_suite not in offered:
                self.found.notes.append(
                    f"{label}: the server chose {names.suite_name(sh.cipher_suite)}, not offered"
                )
                break
            accepted.append(sh.cipher_suite)
            offered.remove(sh.cipher_suite)
        self.found.suites[version] = accepted
        if len(accepted) >= 2:
            answer = self._read(
                (yield self._spec(version, f"suite order, {label}", suites=accepted[::-1]))
            )
            sh = answer.server_hello
            if sh is not None and sh.cipher_suite == accepted[-1]:
                self.found.notes.append(
                    f"{label}: the server follows the client's order; suites are listed in "
                    "kexproxy's offer order"
                )

    def _groups(self) -> Generator[HelloSpec, Answer, None]:
        offered = list(ALL_GROUPS)
        if TLS13 in self.found.versions:
            while offered:
                answer = self._read((yield self._spec(TLS13, "groups, TLS 1.3", groups=offered)))
                retry = answer.retry
                if retry is None or retry.key_share_group is None:
                    if answer.hello is not None:
                        self.found.notes.append(
                            "groups: the server answered an empty key_share with a ServerHello"
                        )
                    break
                if not self._take(offered, self.found.groups, retry.key_share_group, "group"):
                    break
            return
        legacy = [v for v in (TLS12, TLS11, TLS10) if v in self.found.versions]
        if not legacy:
            return
        version = legacy[0]
        ecdhe = [s for s in self.found.suites.get(version, []) if is_ecdhe(s)]
        if not ecdhe:
            self.found.notes.append("groups: no ECDHE suite accepted, so no group to learn")
            return
        while offered:
            label = f"groups, {names.version_name(version)}"
            answer = self._read((yield self._spec(version, label, suites=ecdhe, groups=offered)))
            kx = answer.key_exchange
            if answer.hello is None or kx is None or kx.group is None:
                break
            if not self._take(offered, self.found.groups, kx.group, "group"):
                break

    def _take(self, offered: list[int], into: list[int], chosen: int, what: str) -> bool:
        """Moves `chosen` from `offered` to `into`; False (with a note) if it was never offered."""
        if chosen not in offered:
            self.found.notes.append(f"the server chose {what} 0x{chosen:04x}, not offered")
            return False
        offered.remove(chosen)
        into.append(chosen)
        return True

    def _schemes(self) -> Generator[HelloSpec, Answer, None]:
        if TLS12 in self.found.versions:
            signed = [s for s in self.found.suites.get(TLS12, []) if is_forward_secret(s)]
            offered = list(ALL_SCHEMES)
            while signed and offered:
                answer = self._read(
                    (
                        yield self._spec(
                            TLS12, "signature schemes, TLS 1.2", suites=signed, schemes=offered
                        )
                    )
                )
                kx = answer.key_exchange
                if answer.hello is None or kx is None or kx.signature_scheme is None:
                    break
                if not self._take(offered, self.found.schemes, kx.signature_scheme, "scheme"):
                    break
        if TLS13 not in self.found.versions:
            return
        share = next((g for g in KEY_SHARE_GROUPS if g in self.found.groups), None)
        if share is None:
            self.found.notes.append(
                "TLS 1.3 signature schemes not probed: kexproxy computes key shares only for "
                + ", ".join(names.group_name(g) for g in KEY_SHARE_GROUPS)
            )
            return
        for scheme in TLS13_SCHEMES:
            answer = self._read(
                (
                    yield self._spec(
                        TLS13,
                        f"signature schemes, TLS 1.3 ({names.scheme_name(scheme)})",
                        groups=(share,),
                        key_shares=(share,),
                        schemes=(scheme,),
                    )
                )
            )
            if answer.hello is not None and scheme not in self.found.schemes:
                self.found.schemes.append(scheme)

    def result(self, target: str, notes: Sequence[str] = ()) -> dict[str, object]:
        """The report as `probe --tls --json` prints it (names from the IANA registries)."""
        f = self.found
        certificates = [d for d in (describe(der) for der in f.chain) if d is not None]
        return {
            "protocol": "tls",
            "target": target,
            "versions": [names.version_name(v) for v in f.versions],
            "cipher_suites": {
                names.version_name(v): [names.suite_name(s) for s in f.suites.get(v, [])]
                for v in f.versions
            },
            "supported_groups": [names.group_name(g) for g in f.groups],
            "signature_algorithms": [names.scheme_name(s) for s in f.schemes],
            "certificates": certificates,
            "server_name": self.server_name,
            "handshakes": f.handshakes,
            "notes": [*f.notes, *notes],
        }
