"""RFC 4253 section 7.1 algorithm negotiation, the way OpenSSH computes it on each side.

The choice for each list is the first entry of the client's list that the server also
lists. OpenSSH's `match_list` (match.c) reads at most 40 entries of the server's list
and stops reading either list at an empty element; markers such as ``ext-info-c`` are
never chosen; with an AEAD cipher the MAC lists are not negotiated. Each side stops at its
first failure in its own order (kex.c `kex_choose_conf`): kex, host key, then its incoming
direction, then its outgoing one, and logs "Unable to negotiate ...: REASON. Their offer: ...".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kexproxy.core import limits
from kexproxy.core.codec import split_name_list
from kexproxy.core.events import KexInit
from kexproxy.core.limits import KEPT_NAMES
from kexproxy.core.lists import (
    BY_FIELD,
    KEX_ALGORITHMS,
    KIND,
    MARKERS,
    NEGOTIATED,
    SERVER_HOST_KEY_ALGORITHMS,
    STRICT_CLIENT,
    STRICT_SERVER,
)

Role = Literal["client", "server"]

#: Ciphers that carry their own integrity (OpenSSH cipher.c, auth_len != 0): no MAC negotiated.
AEAD_CIPHERS = frozenset(
    {"aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"}
)
IMPLICIT_MAC = "<implicit>"

#: RFC 4432 key exchange methods that need an encryption-capable (RSA) host key.
ENCRYPTION_KEX = frozenset({"rsa1024-sha1", "rsa2048-sha256"})
ENCRYPTION_CAPABLE_HOST_KEYS = frozenset({"ssh-rsa"})

_C2S = tuple(n.field for n in NEGOTIATED if n.direction == "c2s" and n.field is not None)
_S2C = tuple(n.field for n in NEGOTIATED if n.direction == "s2c" and n.field is not None)
#: kex.c: kex, host key, then mode IN, then mode OUT. The client's IN is server-to-client.
CHECK_ORDER: dict[Role, tuple[str, ...]] = {
    "client": ("kex", "host_key", *_S2C, *_C2S),
    "server": ("kex", "host_key", *_C2S, *_S2C),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """A list with no common algorithm, with both offers as sent."""

    list: str
    client_offer: tuple[str, ...]
    server_offer: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "list": self.list,
            "client_offer": list(self.client_offer),
            "server_offer": list(self.server_offer),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    """The first failure one side hits in its own check order, in OpenSSH's words."""

    list: str
    reason: str
    their_offer: tuple[str, ...]
    message: str

    def to_dict(self) -> dict[str, object]:
        return {
            "list": self.list,
            "reason": self.reason,
            "their_offer": list(self.their_offer),
            "message": self.message,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Negotiation:
    """The outcome of both KEXINITs: per record field, the algorithm or None for no match."""

    chosen: dict[str, str | None]
    failures: tuple[Failure, ...]
    rejections: dict[Role, Rejection | None]

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, str | None]:
        return dict(self.chosen)


def _entries(raw: str, limit: int | None = None) -> list[str]:
    """Names as OpenSSH reads them: up to the first empty element, at most `limit`."""
    out: list[str] = []
    for name in raw.split(","):
        if not name or (limit is not None and len(out) >= limit):
            break
        out.append(name)
    return out


def match_list(client_raw: str, server_raw: str) -> str | None:
    """The first client name the server also offers (OpenSSH match.c `match_list`)."""
    server = set(_entries(server_raw, limits.OPENSSH_MAX_PROPOSAL_ENTRIES))
    for name in _entries(client_raw):
        if name in server and name not in MARKERS:
            return name
    return None


def _choose_kex(client: KexInit, server: KexInit) -> str | None:
    """First common kex; RFC 4253 7.1: an RSA kex also needs an RSA host key in common."""
    server_names = set(_entries(server.raw(KEX_ALGORITHMS), limits.OPENSSH_MAX_PROPOSAL_ENTRIES))
    for name in _entries(client.raw(KEX_ALGORITHMS)):
        if name not in server_names or name in MARKERS:
            continue
        if name in ENCRYPTION_KEX:
            client_keys = set(_entries(client.raw(SERVER_HOST_KEY_ALGORITHMS)))
            server_keys = set(_entries(server.raw(SERVER_HOST_KEY_ALGORITHMS)))
            if not client_keys & server_keys & ENCRYPTION_CAPABLE_HOST_KEYS:
                continue
        return name
    return None


def negotiate(
    client: KexInit,
    server: KexInit,
    *,
    client_addr: tuple[str, int],
    server_addr: tuple[str, int],
) -> Negotiation:
    """Both sides' computation over the two KEXINITs; addresses go into each side's message."""
    chosen: dict[str, str | None] = {"kex": _choose_kex(client, server)}
    for field in ("host_key", *_C2S, *_S2C):
        rfc, kind = BY_FIELD[field].rfc, BY_FIELD[field].kind
        if kind == "mac":
            cipher = chosen["cipher_c2s" if field.endswith("c2s") else "cipher_s2c"]
            if cipher in AEAD_CIPHERS:
                chosen[field] = IMPLICIT_MAC
                continue
        chosen[field] = match_list(client.raw(rfc), server.raw(rfc))
    failed = {field for field, value in chosen.items() if value is None}
    failures = tuple(
        Failure(
            list=BY_FIELD[field].rfc,
            client_offer=client.names(BY_FIELD[field].rfc)[:KEPT_NAMES],
            server_offer=server.names(BY_FIELD[field].rfc)[:KEPT_NAMES],
        )
        for field in CHECK_ORDER["client"]
        if field in failed
    )
    rejections: dict[Role, Rejection | None] = {}
    sides: tuple[tuple[Role, KexInit, tuple[str, int]], ...] = (
        ("client", server, server_addr),
        ("server", client, client_addr),
    )
    for role, peer, peer_addr in sides:
        first = next((field for field in CHECK_ORDER[role] if field in failed), None)
        rejections[role] = None if first is None else _rejection(first, peer, peer_addr, role)
    ordered = {n.field: chosen[n.field] for n in NEGOTIATED if n.field is not None}
    return Negotiation(chosen=ordered, failures=failures, rejections=rejections)


def _rejection(field: str, peer: KexInit, peer_addr: tuple[str, int], role: Role) -> Rejection:
    listed = BY_FIELD[field]
    assert listed.kind is not None  # every negotiated list has a kind
    reason = KIND[listed.kind].reason
    their = peer.raw(listed.rfc)
    return Rejection(
        list=listed.rfc,
        reason=reason,
        their_offer=split_name_list(their)[:KEPT_NAMES],
        message=rejection_message(peer_addr, reason, their, role),
    )


def rejection_message(peer: tuple[str, int], reason: str, their_offer: str, role: Role) -> str:
    """What `role` (ssh, or sshd without " [preauth]") writes when `peer` offered nothing
    it accepts, made visible and cut as OpenSSH's log does."""
    message = f"Unable to negotiate with {peer[0]} port {peer[1]}: {reason}. "
    message += f"Their offer: {their_offer}"
    return openssh_logged(message, preauth=role == "server")


#: OpenSSH's log.c formats a message into MSGBUFSIZ (1024) bytes, makes it visible with
#: strnvis(VIS_SAFE | VIS_OCTAL) into another 1024, and writes "%.*s\r\n" with 1021 of them.
_MSGBUF = 1024
_LINE = _MSGBUF - 3
#: Bytes strnvis(VIS_SAFE) leaves as they are: graphic ASCII, space, TAB, LF, BS, BEL, CR.
_VISIBLE = frozenset(range(0x21, 0x7F)) | {0x20, 0x09, 0x0A, 0x08, 0x07, 0x0D}
PREAUTH = " [preauth]"


def _strnvis(data: bytes) -> bytes:
    """strnvis(dst, src, MSGBUFSIZ, VIS_SAFE | VIS_OCTAL): escapes, never split, fill the buffer."""
    out = bytearray()
    for byte in data:
        if byte == 0x5C:
            piece = b"\\\\"
        elif byte in _VISIBLE:
            piece = bytes((byte,))
        else:
            piece = b"\\%03o" % byte
        if len(out) + len(piece) > _MSGBUF - 1:
            break
        out += piece
    return bytes(out)


def openssh_logged(message: str, *, preauth: bool = False) -> str:
    """`message` as OpenSSH writes it to stderr: made visible and cut as log.c does.

    The client (ssh) logs once. sshd's pre-authentication child makes the message visible
    and hands it to the monitor, which logs it again with " [preauth]" (so escapes are
    escaped twice and a long line loses the suffix); the suffix is left off here, as the
    record's server message never has it. Text kexproxy decoded from invalid UTF-8 holds
    ``\\xNN`` for each such byte and is shown that way, not as OpenSSH's octal.
    """
    raw = message.encode("utf-8", "surrogateescape")[: _MSGBUF - 1]
    line = _strnvis(raw)
    if preauth:
        line = _strnvis((line + PREAUTH.encode())[: _MSGBUF - 1])
    line = line[:_LINE]
    if preauth and line.endswith(PREAUTH.encode()):
        line = line[: -len(PREAUTH)]
    return line.decode("utf-8", "surrogateescape")


def guess_is_wrong(client: KexInit, server: KexInit) -> bool:
    """OpenSSH `proposals_match`: a guessed packet is skipped when the first kex or host key differ."""
    for rfc in (KEX_ALGORITHMS, SERVER_HOST_KEY_ALGORITHMS):
        if client.raw(rfc).split(",", 1)[0] != server.raw(rfc).split(",", 1)[0]:
            return True
    return False


def strict_kex(kexinit: KexInit | None, role: Role) -> bool:
    if kexinit is None:
        return False
    marker = STRICT_CLIENT if role == "client" else STRICT_SERVER
    return marker in kexinit.names(KEX_ALGORITHMS)


def kex_family(kex: str | None) -> str:
    """Which message layout the method uses: dh, ecdh (and PQ hybrids), gex, rsa, gss or unknown."""
    if kex is None:
        return "unknown"
    if kex.startswith("diffie-hellman-group-exchange-"):
        return "gex"
    if kex.startswith("diffie-hellman-group"):
        return "dh"
    if kex in ENCRYPTION_KEX:
        return "rsa"
    if kex.startswith("gss-"):
        return "gss"
    if kex.startswith(("ecdh-sha2-", "curve25519-", "curve448-", "sntrup761x25519-", "mlkem")):
        return "ecdh"
    return "unknown"
