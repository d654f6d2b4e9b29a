"""Decoding of the key exchange messages: the host key, the group-exchange sizes, and notes.

Theory of operation: the KEX messages are opaque until the method is known (RFC 4253 7.1),
so the tracker keeps their payloads and this module reads them once the roles and the
negotiated method are known. A wrongly guessed first packet is dropped first (RFC 4253 7);
then the server's reply gives the host key K_S and the signature's type (RFC 4253 8,
RFC 5656 4, RFC 4419 3), group exchange gives the requested and sent sizes (RFC 4419),
and RSA key exchange gives the transient key's size (RFC 4432). Pure: messages in, a
`KexReply` out; anything malformed becomes a note, never an exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kexproxy.core.codec import Cursor, DecodeError, decode_text
from kexproxy.core.events import KexInit
from kexproxy.core.hostkey import parse_host_key
from kexproxy.core.messages import message_name
from kexproxy.core.negotiation import guess_is_wrong
from kexproxy.core.record import JSONDict

#: (message number, payload) in the order one role sent them.
Message = tuple[int, bytes]
#: The message that carries K_S, by KEX family: the server's reply (RSA: its first message).
_REPLY_NUMBER = {"dh": 31, "ecdh": 31, "gex": 33, "rsa": 30}


@dataclass(frozen=True, slots=True, kw_only=True)
class KexReply:
    """What the key exchange messages showed, as the record's ``host_key`` and ``dh_gex``."""

    host_key: JSONDict | None
    dh_gex: JSONDict | None
    #: What a reader should know: ignored guesses, malformed messages, key problems.
    notes: tuple[str, ...]


def decode_kex(
    *,
    family: str,
    client_kexinit: KexInit | None,
    server_kexinit: KexInit | None,
    client_messages: Sequence[Message],
    server_messages: Sequence[Message],
) -> KexReply:
    """The host key and group-exchange facts of one exchange, given the negotiated `family`."""
    notes: list[str] = []
    known = client_kexinit is not None and server_kexinit is not None
    server_msgs = _server_messages(client_kexinit, server_kexinit, server_messages, family, notes)
    client_msgs = _client_messages(client_kexinit, server_kexinit, client_messages, family, notes)
    if family == "unknown" and not known:
        # Without both KEXINITs the method is unknown; the server's reply message
        # still shows its layout: 33 only exists in group exchange.
        family = "gex" if any(n == 33 for n, _p in server_msgs) else "ecdh"
    reply_number = _REPLY_NUMBER.get(family)
    host_key: JSONDict | None = None
    dh_gex: JSONDict | None = None
    if family == "gex":
        dh_gex = _gex(client_msgs, server_msgs, notes)
    reply = next((p for n, p in server_msgs if n == reply_number), None)
    if reply is not None:
        host_key = _host_key_from_reply(reply, family, reply_number or 0, known, notes)
        if family == "rsa":
            dh_gex = _transient_rsa(reply, notes)
    if family == "rsa":
        for number, payload in server_msgs:
            if number == 32:
                try:
                    sig = Cursor(Cursor(payload).string("signature"))
                    if host_key is not None:
                        host_key["signature"] = decode_text(sig.string("signature type"))
                except DecodeError as exc:
                    notes.append(f"malformed SSH_MSG_KEXRSA_DONE: {exc}")
    return KexReply(host_key=host_key, dh_gex=dh_gex, notes=tuple(notes))


def _server_messages(
    ci: KexInit | None,
    si: KexInit | None,
    messages: Sequence[Message],
    family: str,
    notes: list[str],
) -> list[Message]:
    """The server's KEX messages, without a wrongly guessed first packet."""
    msgs = list(messages)
    # RFC 4432's server speaks first, so it may guess too (RFC 4253 7: either side may).
    if (
        ci is not None
        and si is not None
        and si.first_kex_packet_follows
        and msgs
        and guess_is_wrong(ci, si)
    ):
        notes.append(
            f"the server's guessed first KEX packet ({message_name(msgs[0][0], family)}) "
            "was ignored: its guess of the kex or host key algorithm was wrong"
        )
        msgs = msgs[1:]
    return msgs


def _client_messages(
    ci: KexInit | None,
    si: KexInit | None,
    messages: Sequence[Message],
    family: str,
    notes: list[str],
) -> list[Message]:
    """The client's KEX messages, without a wrongly guessed first packet."""
    msgs = list(messages)
    if ci is not None and si is not None and ci.first_kex_packet_follows and msgs:
        if guess_is_wrong(ci, si):
            notes.append(
                f"the client's guessed first KEX packet ({message_name(msgs[0][0], family)}) "
                "was ignored: its guess of the kex or host key algorithm was wrong"
            )
            msgs = msgs[1:]
        else:
            notes.append("the client's guessed first KEX packet was right and was used")
    return msgs


def _host_key_from_reply(
    payload: bytes, family: str, number: int, known: bool, notes: list[str]
) -> JSONDict | None:
    """The host key (K_S, always the reply's first field) and the signature's type.

    When the method is not `known`, the layout is a guess from the message numbers.
    """
    name = message_name(number, family)
    cursor = Cursor(payload)
    try:
        blob = cursor.string("host key")
    except DecodeError as exc:
        if known:
            notes.append(f"malformed {name}: {exc}; host key not decoded")
        return None
    key = parse_host_key(blob)
    if not known and key.key_type is None:
        return None  # the layout was a guess, and a guess that does not fit says nothing
    host_key = key.to_dict()
    if key.error:
        notes.append(key.error)
    if family == "rsa":
        return host_key
    try:
        cursor.string("server's public value")
        signature = Cursor(cursor.string("signature"))
        host_key["signature"] = decode_text(signature.string("signature type"))
    except DecodeError as exc:
        notes.append(f"malformed {name} after the host key: {exc}")
    return host_key


def _transient_rsa(payload: bytes, notes: list[str]) -> JSONDict | None:
    """RFC 4432: SSH_MSG_KEXRSA_PUBKEY's second field is the transient RSA key."""
    cursor = Cursor(payload)
    try:
        cursor.string("host key")
        transient = parse_host_key(cursor.string("transient RSA key"))
    except DecodeError as exc:
        notes.append(f"malformed SSH_MSG_KEXRSA_PUBKEY: {exc}")
        return None
    return {"transient_rsa_bits": transient.bits}


def _gex(
    client_msgs: Sequence[Message], server_msgs: Sequence[Message], notes: list[str]
) -> JSONDict:
    """RFC 4419: the sizes the client asked for (34, or old-style 30) and the group sent (31)."""
    out: JSONDict = {"request": None, "p_bits": None, "g": None}
    for number, payload in client_msgs:
        try:
            cursor = Cursor(payload)
            if number == 34:
                out["request"] = {
                    "min": cursor.uint32("min"),
                    "n": cursor.uint32("n"),
                    "max": cursor.uint32("max"),
                }
            elif number == 30:
                out["request"] = {"min": None, "n": cursor.uint32("n"), "max": None}
        except DecodeError as exc:
            notes.append(f"malformed {message_name(number, 'gex')}: {exc}")
    for number, payload in server_msgs:
        if number != 31:
            continue
        try:
            cursor = Cursor(payload)
            p = cursor.mpint("p")
            g = cursor.mpint("g")
            out["p_bits"] = p.bit_length()
            out["g"] = g if g.bit_length() <= 64 else None
        except DecodeError as exc:
            notes.append(f"malformed SSH_MSG_KEX_DH_GEX_GROUP: {exc}")
        break
    return out
