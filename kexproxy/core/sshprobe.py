"""An SSH probe's questions and the reading of its answers, sans I/O.

Theory of operation: a probe is a few short conversations with one server, none of them
authenticated. The first sends kexproxy's banner and a KEXINIT offering every name the
catalogue knows (strongest first) and reads the server's banner and KEXINIT. Each later one
offers a single host key algorithm the server listed and a key exchange both sides can do
(`choose_kex`), sends that method's first message with a fresh ephemeral key, and reads the
server's reply, whose first field is the host key (RFC 4253 8, RFC 5656 4). Every
conversation ends with SSH_MSG_DISCONNECT "by application". This module writes those bytes
and reads the answers with the usual `DirectionParser`; the source (kexproxy/sources/
ssh_probe.py) only moves bytes, so a hostile server's bytes meet the same parser as any
capture's, and become a note, never an exception.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kexproxy.core.catalogue import GRADE_ORDER, LIST_CATEGORY, Catalogue, Category
from kexproxy.core.events import (
    Disconnect,
    Event,
    Identification,
    KexInit,
    KexInitReceived,
    KexMessage,
    ParseFailed,
    PlaintextLine,
    PreBannerLine,
)
from kexproxy.core.kexreply import decode_kex
from kexproxy.core.lists import (
    BY_FIELD,
    CLIENT_MARKERS,
    KEX_ALGORITHMS,
    RFC_NAMES,
    SERVER_HOST_KEY_ALGORITHMS,
    STRICT_SERVER,
    fields_of,
)
from kexproxy.core.messages import DisconnectReason, Msg
from kexproxy.core.negotiation import kex_family
from kexproxy.core.parser import DirectionParser
from kexproxy.core.record import JSONDict

#: The identification line the probe sends (RFC 4253 4.2), CR LF added on the wire.
PROBE_BANNER = "SSH-2.0-kexproxy_probe"
#: The description sent with SSH_MSG_DISCONNECT (RFC 4253 11.1).
GOODBYE = "kexproxy probe done"
#: RFC 4253 6: the cipher block size (8 for "none") that packet length plus padding fill.
BLOCK = 8
#: RFC 4253 6: at least four bytes of padding.
MIN_PADDING = 4
#: Messages that carry the server's host key: KEXDH_REPLY / KEX_ECDH_REPLY (RFC 4253 8, RFC 5656 4).
REPLY = 31
#: The key exchanges the probe can start, in the order it prefers them (cheapest first).
PROBE_KEX: tuple[str, ...] = (
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "curve448-sha512",
    "diffie-hellman-group14-sha256",
    "diffie-hellman-group14-sha1",
)
#: RFC 3526 3: the 2048-bit MODP group (group 14), generator 2.
GROUP14_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879"
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B"
    "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA4836"
    "1C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804"
    "F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6"
    "955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)
#: Exponent size for group 14: twice its 112-bit strength (RFC 8270 3, as OpenSSH sizes it).
DH_EXPONENT_BITS = 256
_CURVES: dict[str, ec.EllipticCurve] = {
    "ecdh-sha2-nistp256": ec.SECP256R1(),
    "ecdh-sha2-nistp384": ec.SECP384R1(),
    "ecdh-sha2-nistp521": ec.SECP521R1(),
}


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def _mpint(value: int) -> bytes:
    """RFC 4251 5 mpint of a non-negative value: a leading zero byte when the top bit is set."""
    return _string(value.to_bytes((value.bit_length() + 8) // 8, "big") if value else b"")


def packet(payload: bytes) -> bytes:
    """A binary packet with no cipher and no MAC (RFC 4253 6), zero padding."""
    padding = BLOCK - (5 + len(payload)) % BLOCK
    if padding < MIN_PADDING:
        padding += BLOCK
    length = 1 + len(payload) + padding
    return length.to_bytes(4, "big") + bytes([padding]) + payload + bytes(padding)


def banner_bytes() -> bytes:
    return PROBE_BANNER.encode("ascii") + b"\r\n"


def kexinit_payload(lists: Sequence[Sequence[str]], cookie: bytes) -> bytes:
    """SSH_MSG_KEXINIT (RFC 4253 7.1): the ten name-lists in wire order, no guessed packet."""
    if len(lists) != len(RFC_NAMES) or len(cookie) != 16:
        raise ValueError("a KEXINIT has ten name-lists and a 16-byte cookie")
    body = b"".join(_string(",".join(names).encode("ascii")) for names in lists)
    return bytes([Msg.KEXINIT]) + cookie + body + b"\x00" + bytes(4)


def kexinit_of(lists: Sequence[Sequence[str]], cookie: bytes) -> KexInit:
    """The `KexInit` event the parser would read from `kexinit_payload(lists, cookie)`."""
    return KexInit(
        cookie=cookie,
        raw_lists=tuple(",".join(names) for names in lists),
        first_kex_packet_follows=False,
        reserved=0,
    )


def disconnect_bytes() -> bytes:
    """SSH_MSG_DISCONNECT, reason 11 "by application" (RFC 4253 11.1, RFC 4250 4.2.2)."""
    payload = (
        bytes([Msg.DISCONNECT])
        + int(DisconnectReason.BY_APPLICATION).to_bytes(4, "big")
        + _string(GOODBYE.encode("ascii"))
        + _string(b"")
    )
    return packet(payload)


def _preferred(cat: Catalogue, category: Category) -> list[str]:
    """Every exact name the catalogue knows in `category`: the newest OpenSSH client's
    default list first (a modern client's order), then the rest strongest first."""
    latest = cat.history.releases[-1]
    names = list(cat.history.defaults(latest, "client", category))
    rest = [a for a in cat if a.category == category and not a.prefix and a.name not in names]
    rest.sort(key=lambda a: GRADE_ORDER.get(a.grade or "unknown", 4))
    return names + [a.name for a in rest]


def full_offer(cat: Catalogue) -> tuple[tuple[str, ...], ...]:
    """The ten lists of the first KEXINIT: every name the catalogue knows, modern ones first.

    The kex list ends with the client's markers (ext-info-c, strict KEX), as a modern client's
    does; languages are empty (RFC 4253 7.1).
    """
    out: list[tuple[str, ...]] = []
    for rfc in RFC_NAMES:
        category = LIST_CATEGORY.get(rfc)
        if category is None:
            out.append(())
            continue
        names = _preferred(cat, category)
        if rfc == KEX_ALGORITHMS:
            names += [m for m in CLIENT_MARKERS if m not in names]
        out.append(tuple(names))
    return tuple(out)


def listen_offer(cat: Catalogue) -> tuple[tuple[str, ...], ...]:
    """The lists `probe --listen` sends: the newest OpenSSH server's defaults and its markers.

    A client sends its own KEXINIT whatever the server offers, so a server that looks
    ordinary is enough; a longer offer would only trip clients' own limits (Dropbear
    refuses a list of more than about fifty names).
    """
    history = cat.history
    latest = history.releases[-1]
    out: list[tuple[str, ...]] = []
    for rfc in RFC_NAMES:
        category = LIST_CATEGORY.get(rfc)
        if category is None:
            out.append(())
            continue
        names = list(history.defaults(latest, "server", category))
        if rfc == KEX_ALGORITHMS:
            names += ["ext-info-s", STRICT_SERVER]
        out.append(tuple(names))
    return tuple(out)


def host_key_offer(
    full: Sequence[Sequence[str]], kex: str, host_key_algorithm: str
) -> tuple[tuple[str, ...], ...]:
    """The lists of a host key conversation: one kex, one host key algorithm, the rest full."""
    out = [tuple(names) for names in full]
    out[RFC_NAMES.index(KEX_ALGORITHMS)] = (kex,)
    out[RFC_NAMES.index(SERVER_HOST_KEY_ALGORITHMS)] = (host_key_algorithm,)
    return tuple(out)


def choose_kex(server_kex: Sequence[str]) -> str | None:
    """The first of `PROBE_KEX` the server offers, or None when it offers none of them."""
    offered = set(server_kex)
    return next((name for name in PROBE_KEX if name in offered), None)


def kex_init_payload(kex: str) -> bytes:
    """The client's first key exchange message for `kex`, with a fresh ephemeral key.

    ECDH and curve25519/448 send Q_C as a string (RFC 5656 4, RFC 8731 3); group 14 sends
    e = g^x mod p as an mpint (RFC 4253 8). The private half is never kept: the probe stops
    at the server's reply and derives no keys.
    """
    number = bytes([30])
    if kex.startswith("curve25519-"):
        raw = x25519.X25519PrivateKey.generate().public_key()
        return number + _string(raw.public_bytes(Encoding.Raw, PublicFormat.Raw))
    if kex == "curve448-sha512":
        raw448 = x448.X448PrivateKey.generate().public_key()
        return number + _string(raw448.public_bytes(Encoding.Raw, PublicFormat.Raw))
    if kex in _CURVES:
        point = ec.generate_private_key(_CURVES[kex]).public_key()
        return number + _string(point.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))
    if kex.startswith("diffie-hellman-group14-"):
        # Plain arithmetic: cryptography's finite-field DH is deprecated, and the exponent
        # (RFC 4253 8: random, 1 < x < q) is thrown away after this one message.
        exponent = secrets.randbits(DH_EXPONENT_BITS) | 1 << (DH_EXPONENT_BITS - 1)
        return number + _mpint(pow(2, exponent, GROUP14_P))
    raise ValueError(f"the probe cannot start key exchange {kex}")


@dataclass(slots=True)
class PeerReader:
    """What one conversation learnt from the peer's bytes (a server's, or a client's for --listen)."""

    parser: DirectionParser = field(default_factory=DirectionParser)
    pre_banner: list[str] = field(default_factory=list)
    identification: Identification | None = None
    kexinit: KexInit | None = None
    reply: tuple[int, bytes] | None = None
    disconnect: Disconnect | None = None
    failure: str | None = None
    text: list[str] = field(default_factory=list)
    ended: bool = False

    def receive_data(self, data: bytes) -> None:
        self._apply(self.parser.receive_data(data))

    def receive_eof(self) -> None:
        self.ended = True
        self._apply(self.parser.receive_eof())

    def _apply(self, events: Sequence[Event]) -> None:
        for event in events:
            if isinstance(event, PreBannerLine):
                self.pre_banner.append(event.text)
            elif isinstance(event, Identification):
                self.identification = event
            elif isinstance(event, KexInitReceived) and self.kexinit is None:
                self.kexinit = event.kexinit
            elif isinstance(event, KexMessage) and self.reply is None:
                self.reply = (event.number, event.payload)
            elif isinstance(event, Disconnect):
                self.disconnect = event
            elif isinstance(event, ParseFailed):
                self.failure = event.reason
            elif isinstance(event, PlaintextLine):
                self.text.append(event.text)

    def done(self, *, want_reply: bool) -> bool:
        """Nothing more is worth waiting for: the answer is in, or the server gave up."""
        if self.failure is not None or self.disconnect is not None or self.ended:
            return True
        if self.identification is not None and not self.parser.parsing:
            return True  # protocol 1, or a NEWKEYS the probe never asked for
        if self.kexinit is None:
            return False
        return self.reply is not None or not want_reply

    def why_not(self) -> str:
        """One line saying why the conversation ended without its answer."""
        if self.failure is not None:
            return f"not SSH, or broken: {self.failure}"
        if self.disconnect is not None:
            return (
                f"the server disconnected (reason {self.disconnect.reason_code}): "
                f"{self.disconnect.description}"
            )
        if self.text:
            return f"the server wrote text instead of packets: {self.text[0]}"
        if self.identification is None:
            return "the server sent no SSH identification line"
        if self.kexinit is None:
            return "the server sent no SSH_MSG_KEXINIT"
        return "the server sent no key exchange reply"


def host_key_of(
    kex: str, ours: KexInit, reader: PeerReader
) -> tuple[JSONDict | None, tuple[str, ...]]:
    """The host key from a conversation's reply (decoded as records decode it), and notes."""
    if reader.reply is None:
        return None, (reader.why_not(),)
    decoded = decode_kex(
        family=kex_family(kex),
        client_kexinit=ours,
        server_kexinit=reader.kexinit,
        client_messages=[(30, b"")],
        server_messages=[reader.reply],
    )
    return decoded.host_key, decoded.notes


def _names(kexinit: KexInit, rfc: str) -> list[str]:
    return [n for n in kexinit.names(rfc) if n]


def _kind(kexinit: KexInit, kind: str) -> list[str]:
    """The names of both directions' lists of one kind, each once, s2c first."""
    out: list[str] = []
    for field_name in reversed(fields_of(kind)):
        out += [n for n in _names(kexinit, BY_FIELD[field_name].rfc) if n not in out]
    return out


def markers(kexinit: KexInit, cat: Catalogue) -> JSONDict:
    """The server's kex-list markers: strict KEX, ext-info, and any other the catalogue knows."""
    kex = _names(kexinit, KEX_ALGORITHMS)
    return {
        "strict_kex": STRICT_SERVER in kex,
        "ext_info": "ext-info-s" in kex,
        "all": [n for n in kex if cat.is_marker(n)],
    }


def terrapin(kexinit: KexInit, cat: Catalogue) -> JSONDict:
    """Whether a client could be led into a Terrapin-affected mode (CVE-2023-48795) by this server.

    A server is exposed when it offers chacha20-poly1305 or a CBC cipher with an EtM MAC
    and does not offer strict KEX; a client that lacks strict KEX is exposed even then,
    which is the client's verdict, not this one.
    """
    ciphers = _kind(kexinit, "cipher")
    macs = _kind(kexinit, "mac")
    modes = [n for n in ciphers if n == "chacha20-poly1305@openssh.com"]
    cbc = [n for n in ciphers if (a := cat.lookup(n, "cipher")) is not None and a.cbc]
    etm = [n for n in macs if (a := cat.lookup(n, "mac")) is not None and a.etm]
    if cbc and etm:
        modes.append(f"CBC ({', '.join(cbc)}) with EtM ({', '.join(etm)})")
    strict = STRICT_SERVER in _names(kexinit, KEX_ALGORITHMS)
    if not modes:
        exposed, reason = False, "offers no affected mode (chacha20-poly1305, CBC with EtM)"
    elif strict:
        exposed = False
        reason = (
            f"offers {'; '.join(modes)}, but also strict KEX: clients that do strict KEX are safe"
        )
    else:
        exposed = True
        reason = f"offers {'; '.join(modes)} without strict KEX (CVE-2023-48795)"
    return {
        "cve": "CVE-2023-48795",
        "exposed": exposed,
        "strict_kex": strict,
        "affected_modes": modes,
        "reason": reason,
    }


def graded_lists(kexinit: KexInit, cat: Catalogue) -> JSONDict:
    """Each offered name's catalogue grade, per negotiated list, and the weakest offered."""
    lists: JSONDict = {}
    weakest: str | None = None
    for rfc in RFC_NAMES:
        category = LIST_CATEGORY.get(rfc)
        if category is None:
            continue
        graded = {n: cat.grade(n, category) for n in _names(kexinit, rfc)}
        lists[rfc] = graded
        for grade in graded.values():
            known = grade in GRADE_ORDER and grade != "unknown"
            if known and (weakest is None or GRADE_ORDER[grade] > GRADE_ORDER[weakest]):
                weakest = grade
    return {"lists": lists, "weakest_offered": weakest}


def version_hint(kexinit: KexInit, cat: Catalogue) -> JSONDict:
    """The server's lists held against OpenSSH's and Dropbear's defaults (a hint, never a claim)."""
    offers: dict[Category, list[str]] = {
        "kex": _names(kexinit, KEX_ALGORITHMS),
        "host_key": _names(kexinit, SERVER_HOST_KEY_ALGORITHMS),
        "cipher": _names(kexinit, BY_FIELD["cipher_s2c"].rfc),
        "mac": _names(kexinit, BY_FIELD["mac_s2c"].rfc),
    }
    result: JSONDict = cat.version_hint(offers, "server").to_dict()
    return result


def kexinit_lists(kexinit: KexInit) -> JSONDict:
    """The ten lists as arrays, keyed by their RFC names, in wire order."""
    return {rfc: _names(kexinit, rfc) for rfc in RFC_NAMES}


def report(
    *,
    target: str,
    first: PeerReader,
    host_keys: Sequence[JSONDict],
    handshakes: int,
    notes: Sequence[str],
    cat: Catalogue,
    diagnosis: JSONDict | None = None,
) -> JSONDict:
    """The probe's JSON report from the first conversation and the host keys learnt.

    `diagnosis` is the usual diagnosis of the first conversation's record: what a client
    offering everything would negotiate with this server, graded as any session is.
    """
    ident = first.identification
    kexinit = first.kexinit
    out: JSONDict = {
        "protocol": "ssh",
        "target": target,
        "banner": ident.line if ident is not None else None,
        "pre_banner_lines": list(first.pre_banner),
        "kexinit": kexinit_lists(kexinit) if kexinit is not None else None,
        "host_keys": list(host_keys),
        "markers": markers(kexinit, cat) if kexinit is not None else None,
        "terrapin": terrapin(kexinit, cat) if kexinit is not None else None,
        "version_hint": version_hint(kexinit, cat) if kexinit is not None else None,
        "grades": None,
        "handshakes": handshakes,
        "notes": list(notes),
    }
    if kexinit is not None:
        grades = graded_lists(kexinit, cat)
        if diagnosis is not None:
            grades["best_client"] = {
                "grade": diagnosis.get("grade"),
                "negotiated": [
                    {"field": p["field"], "name": p["name"], "grade": p["grade"]}
                    for p in diagnosis.get("algorithms", [])
                ],
                "reasons": diagnosis.get("reasons", []),
                "post_quantum": diagnosis.get("post_quantum"),
            }
        out["grades"] = grades
    return out
