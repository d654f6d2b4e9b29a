"""Small builders for SSH wire bytes and a transcript driver for the session tracker.

Tests build what a peer sends from these instead of hex blobs, so each test reads as the
protocol it exercises: an identification line, binary packets padded as the "none" cipher
requires (RFC 4253 section 6), KEXINITs from lists, the KEX messages of each family with
host keys made from real keys, and the plaintext messages (DISCONNECT, DEBUG, IGNORE).
"""

from __future__ import annotations

import base64
import functools
import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

import jsonschema  # type: ignore[import-untyped]  # no stubs installed
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from kexproxy.core.diagnosis import diagnosed
from kexproxy.core.events import KexInit
from kexproxy.core.lists import RFC_NAMES
from kexproxy.core.observer import CloseKind, Endpoint, InitiatorEvidence, Leg
from kexproxy.core.record import SessionRecord
from kexproxy.core.tracker import SessionTracker

# -- RFC 4251 section 5 data types ---------------------------------------------------------


def uint32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def string(value: bytes | str) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return uint32(len(raw)) + raw


def mpint(value: int) -> bytes:
    """Two's complement, big-endian, minimal length (RFC 4251 section 5)."""
    if value == 0:
        return string(b"")
    length = (value.bit_length() + 8) // 8  # room for the sign bit
    return string(value.to_bytes(length, "big", signed=True))


def name_list(names: Iterable[str] | str) -> bytes:
    return string(names if isinstance(names, str) else ",".join(names))


def boolean(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


# -- identification lines and binary packets ---------------------------------------------


def ident(
    software: str = "OpenSSH_9.2p1",
    *,
    proto: str = "2.0",
    comments: str | None = None,
    eol: bytes = b"\r\n",
) -> bytes:
    """``SSH-proto-software [comments]`` with its line end (RFC 4253 section 4.2)."""
    line = f"SSH-{proto}-{software}"
    if comments is not None:
        line += f" {comments}"
    return line.encode() + eol


def packet(payload: bytes, *, padding: int | None = None, block: int = 8) -> bytes:
    """A binary packet for the "none" cipher: length, padding length, payload, padding.

    Without `padding`, the smallest padding of at least 4 bytes that makes the whole packet
    a multiple of `block`, as RFC 4253 section 6 requires.
    """
    if padding is None:
        padding = block - (4 + 1 + len(payload)) % block
        if padding < 4:
            padding += block
    length = 1 + len(payload) + padding
    return uint32(length) + bytes([padding]) + payload + bytes(padding)


def raw_packet(packet_length: int, padding_length: int, body: bytes) -> bytes:
    """A packet with fields exactly as given, to build malformed ones."""
    return uint32(packet_length) + bytes([padding_length]) + body


# -- KEXINIT (RFC 4253 section 7.1) --------------------------------------------------------

ListArg = Sequence[str] | str

DEFAULT_KEX: tuple[str, ...] = ("curve25519-sha256", "ecdh-sha2-nistp256")
DEFAULT_HOST_KEYS: tuple[str, ...] = ("ssh-ed25519", "rsa-sha2-512")
DEFAULT_CIPHERS: tuple[str, ...] = ("aes128-ctr", "aes256-ctr")
DEFAULT_MACS: tuple[str, ...] = ("hmac-sha2-256", "hmac-sha1")
DEFAULT_COMPRESSION: tuple[str, ...] = ("none",)


@dataclass(frozen=True, kw_only=True)
class Offer:
    """The ten name-lists of one KEXINIT; a list given as a str is sent exactly as written."""

    kex: ListArg = DEFAULT_KEX
    host_key: ListArg = DEFAULT_HOST_KEYS
    cipher_c2s: ListArg = DEFAULT_CIPHERS
    cipher_s2c: ListArg = DEFAULT_CIPHERS
    mac_c2s: ListArg = DEFAULT_MACS
    mac_s2c: ListArg = DEFAULT_MACS
    compression_c2s: ListArg = DEFAULT_COMPRESSION
    compression_s2c: ListArg = DEFAULT_COMPRESSION
    languages_c2s: ListArg = ()
    languages_s2c: ListArg = ()

    def lists(self) -> tuple[str, ...]:
        values = (
            self.kex,
            self.host_key,
            self.cipher_c2s,
            self.cipher_s2c,
            self.mac_c2s,
            self.mac_s2c,
            self.compression_c2s,
            self.compression_s2c,
            self.languages_c2s,
            self.languages_s2c,
        )
        return tuple(v if isinstance(v, str) else ",".join(v) for v in values)


def offer(
    *,
    kex: ListArg = DEFAULT_KEX,
    host_key: ListArg = DEFAULT_HOST_KEYS,
    ciphers: ListArg = DEFAULT_CIPHERS,
    macs: ListArg = DEFAULT_MACS,
    compression: ListArg = DEFAULT_COMPRESSION,
    languages: ListArg = (),
) -> Offer:
    """An offer with the same list in both directions, as most peers send."""
    return Offer(
        kex=kex,
        host_key=host_key,
        cipher_c2s=ciphers,
        cipher_s2c=ciphers,
        mac_c2s=macs,
        mac_s2c=macs,
        compression_c2s=compression,
        compression_s2c=compression,
        languages_c2s=languages,
        languages_s2c=languages,
    )


CLIENT_MARKERS = ("ext-info-c", "kex-strict-c-v00@openssh.com")
SERVER_MARKERS = ("ext-info-s", "kex-strict-s-v00@openssh.com")


def client_offer(**kwargs: Any) -> Offer:
    """An OpenSSH-like client offer: its kex list ends with the client markers."""
    kex = kwargs.pop("kex", DEFAULT_KEX)
    return offer(kex=[*_names(kex), *CLIENT_MARKERS], **kwargs)


def server_offer(**kwargs: Any) -> Offer:
    """An OpenSSH-like server offer: its kex list ends with the server markers."""
    kex = kwargs.pop("kex", DEFAULT_KEX)
    return offer(kex=[*_names(kex), *SERVER_MARKERS], **kwargs)


def _names(value: ListArg) -> list[str]:
    return value.split(",") if isinstance(value, str) else list(value)


def kexinit_payload(
    lists: Offer | None = None,
    *,
    cookie: bytes = bytes(range(16)),
    follows: bool = False,
    reserved: int = 0,
) -> bytes:
    lists = lists or Offer()
    body = b"".join(name_list(raw) for raw in lists.lists())
    return bytes([20]) + cookie + body + boolean(follows) + uint32(reserved)


def kexinit(
    lists: Offer | None = None,
    *,
    cookie: bytes = bytes(range(16)),
    follows: bool = False,
    reserved: int = 0,
) -> bytes:
    return packet(kexinit_payload(lists, cookie=cookie, follows=follows, reserved=reserved))


def kexinit_event(
    lists: Offer | None = None, *, follows: bool = False, cookie: bytes = bytes(range(16))
) -> KexInit:
    """The parsed form of `kexinit(lists)`, for tests of negotiation alone."""
    return KexInit(
        cookie=cookie,
        raw_lists=(lists or Offer()).lists(),
        first_kex_packet_follows=follows,
        reserved=0,
    )


def offer_dict(
    lists: Offer, *, cookie: bytes = bytes(range(16)), follows: bool = False
) -> dict[str, Any]:
    """What the record's KEXINIT object should say for `lists`."""
    out: dict[str, Any] = {"cookie": cookie.hex()}
    for name, raw in zip(RFC_NAMES, lists.lists(), strict=True):
        out[name] = raw.split(",") if raw else []
    out["first_kex_packet_follows"] = follows
    return out


# -- plaintext messages --------------------------------------------------------------------


def newkeys() -> bytes:
    return packet(bytes([21]))


def disconnect(code: int = 2, description: str = "", language: str = "") -> bytes:
    return packet(bytes([1]) + uint32(code) + string(description) + string(language))


def ignore(data: bytes = b"") -> bytes:
    return packet(bytes([2]) + string(data))


def debug(message: str, *, always_display: bool = False, language: str = "") -> bytes:
    return packet(bytes([4]) + boolean(always_display) + string(message) + string(language))


def unimplemented(sequence: int) -> bytes:
    return packet(bytes([3]) + uint32(sequence))


# -- host keys and signatures --------------------------------------------------------------

KeyKind = Literal["rsa", "ecdsa", "ed25519", "dsa"]


@dataclass(frozen=True)
class HostKeyPair:
    """A real key pair made with `cryptography`, and its public forms as OpenSSH writes them."""

    kind: KeyKind
    bits: int
    private: Any = field(repr=False)

    @property
    def openssh(self) -> bytes:
        """The ``key.pub`` line: ``TYPE BASE64``."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cryptography deprecates SSH DSA keys
            return self.private.public_key().public_bytes(  # type: ignore[no-any-return]
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            )

    @property
    def algorithm(self) -> str:
        return self.openssh.split(b" ")[0].decode()

    @property
    def blob(self) -> bytes:
        """The public key blob as it travels in a KEX reply (K_S)."""
        return base64.b64decode(self.openssh.split(b" ")[1])

    def private_openssh(self) -> bytes:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.private.private_bytes(  # type: ignore[no-any-return]
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )


_CURVES: dict[int, ec.EllipticCurve] = {
    256: ec.SECP256R1(),
    384: ec.SECP384R1(),
    521: ec.SECP521R1(),
}


@functools.cache
def host_key(kind: KeyKind, bits: int = 0) -> HostKeyPair:
    """A cached key of `kind` (RSA and DSA keys are slow to make; a test run makes each once)."""
    private: Any
    if kind == "rsa":
        bits = bits or 2048
        private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    elif kind == "ecdsa":
        bits = bits or 256
        private = ec.generate_private_key(_CURVES[bits])
    elif kind == "ed25519":
        bits = 256
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        bits = bits or 1024
        private = dsa.generate_private_key(key_size=bits)
    return HostKeyPair(kind=kind, bits=bits, private=private)


def signature(algorithm: str = "ssh-ed25519", sig: bytes = bytes(64)) -> bytes:
    """An RFC 4253 section 6.6 signature blob: its format name and the signature bytes."""
    return string(algorithm) + string(sig)


# -- KEX method messages -------------------------------------------------------------------


def ecdh_init(q_c: bytes = bytes(32)) -> bytes:
    """SSH_MSG_KEX_ECDH_INIT (RFC 5656 section 4); also the shape of KEXDH_INIT with a string."""
    return packet(bytes([30]) + string(q_c))


def ecdh_reply(host_key_blob: bytes, *, q_s: bytes = bytes(32), sig: bytes | None = None) -> bytes:
    """SSH_MSG_KEX_ECDH_REPLY: K_S, Q_S, signature (RFC 5656 section 4)."""
    sig = signature() if sig is None else sig
    return packet(bytes([31]) + string(host_key_blob) + string(q_s) + string(sig))


def dh_init(e: int = 5) -> bytes:
    """SSH_MSG_KEXDH_INIT (RFC 4253 section 8)."""
    return packet(bytes([30]) + mpint(e))


def dh_reply(host_key_blob: bytes, *, f: int = 7, sig: bytes | None = None) -> bytes:
    """SSH_MSG_KEXDH_REPLY: K_S, f, signature (RFC 4253 section 8)."""
    sig = signature() if sig is None else sig
    return packet(bytes([31]) + string(host_key_blob) + mpint(f) + string(sig))


def gex_request(minimum: int = 2048, n: int = 3072, maximum: int = 8192) -> bytes:
    """SSH_MSG_KEX_DH_GEX_REQUEST (RFC 4419 section 3)."""
    return packet(bytes([34]) + uint32(minimum) + uint32(n) + uint32(maximum))


def gex_request_old(n: int = 2048) -> bytes:
    """SSH_MSG_KEX_DH_GEX_REQUEST_OLD (RFC 4419 section 5)."""
    return packet(bytes([30]) + uint32(n))


def gex_group(p: int, g: int = 2) -> bytes:
    """SSH_MSG_KEX_DH_GEX_GROUP: the safe prime p and generator g."""
    return packet(bytes([31]) + mpint(p) + mpint(g))


def gex_init(e: int = 5) -> bytes:
    return packet(bytes([32]) + mpint(e))


def gex_reply(host_key_blob: bytes, *, f: int = 7, sig: bytes | None = None) -> bytes:
    """SSH_MSG_KEX_DH_GEX_REPLY: K_S, f, signature."""
    sig = signature() if sig is None else sig
    return packet(bytes([33]) + string(host_key_blob) + mpint(f) + string(sig))


def kexrsa_pubkey(host_key_blob: bytes, transient_blob: bytes) -> bytes:
    """SSH_MSG_KEXRSA_PUBKEY (RFC 4432 section 4): K_S and the transient RSA key K_T."""
    return packet(bytes([30]) + string(host_key_blob) + string(transient_blob))


def kexrsa_secret(encrypted: bytes = bytes(256)) -> bytes:
    return packet(bytes([31]) + string(encrypted))


def kexrsa_done(sig: bytes | None = None) -> bytes:
    sig = signature("rsa-sha2-256", bytes(256)) if sig is None else sig
    return packet(bytes([32]) + string(sig))


#: A 2048-bit safe prime: RFC 3526 group 14 (the modulus a GEX server may pick).
GROUP14_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879"
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B"
    "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA4836"
    "1C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804"
    "F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6"
    "955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)


# -- the record schema ---------------------------------------------------------------------


@functools.cache
def _schema_validator() -> Any:
    text = resources.files("kexproxy.schema").joinpath("session-record.schema.json").read_text()
    schema = json.loads(text)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def schema_errors(data: dict[str, Any]) -> list[str]:
    """What the JSON Schema finds wrong in a record's JSON form, one line per error."""
    errors = sorted(_schema_validator().iter_errors(data), key=lambda e: list(e.path))
    return [f"{list(e.path)}: {e.message}" for e in errors]


def assert_valid_record(record: SessionRecord) -> dict[str, Any]:
    """The record's JSON form, after checking it survives JSON and matches the schema."""
    data: dict[str, Any] = json.loads(json.dumps(record.to_dict(), allow_nan=False))
    errors = schema_errors(data)
    assert not errors, "\n".join(errors)
    return data


# -- transcripts for the session tracker ---------------------------------------------------

CLIENT = Endpoint("192.0.2.10", 50022)
SERVER = Endpoint("198.51.100.7", 22)
T0 = 1_700_000_000.0


class Transcript:
    """Drives a `SessionTracker` as "client says X, server says Y", with a clock ticking 1 ms.

    `reverse` puts the SSH server on the TCP initiator's leg (``a``), as in reverse SSH;
    `step` is the time between lines; every record asked for is diagnosed, as the pipeline
    does, and checked against the schema.
    """

    def __init__(
        self,
        *,
        client: Endpoint = CLIENT,
        server: Endpoint = SERVER,
        initiator: InitiatorEvidence = "syn",
        reverse: bool = False,
        step: float = 0.001,
        session_id: str = "test-1",
        source: str = "pcap",
    ) -> None:
        self.client_leg: Leg = "b" if reverse else "a"
        self.server_leg: Leg = "a" if reverse else "b"
        endpoints = {self.client_leg: client, self.server_leg: server}
        self.tracker = SessionTracker(
            a=endpoints["a"],
            b=endpoints["b"],
            initiator=initiator,
            session_id=session_id,
            source=source,
        )
        self.now = T0
        self.step = step

    def _tick(self) -> float:
        self.now += self.step
        return self.now

    def leg(self, who: Literal["client", "server"]) -> Leg:
        return self.client_leg if who == "client" else self.server_leg

    def client(self, *chunks: bytes) -> Transcript:
        for chunk in chunks:
            self.tracker.receive(self.client_leg, chunk, self._tick())
        return self

    def server(self, *chunks: bytes) -> Transcript:
        for chunk in chunks:
            self.tracker.receive(self.server_leg, chunk, self._tick())
        return self

    def close(self, who: Literal["client", "server"], kind: CloseKind = "fin") -> Transcript:
        self.tracker.receive_close(self.leg(who), kind, self._tick())
        return self

    def gap(self, who: Literal["client", "server"], nbytes: int = 100) -> Transcript:
        self.tracker.receive_gap(self.leg(who), nbytes, self._tick())
        return self

    def record(self) -> dict[str, Any]:
        return assert_valid_record(diagnosed(self.tracker.record()))

    def finish(self) -> dict[str, Any]:
        return assert_valid_record(diagnosed(self.tracker.finish()))


def openssh_handshake_start(
    client: Offer | None = None, server: Offer | None = None
) -> tuple[bytes, bytes]:
    """The first flight of each side: banner and KEXINIT, as OpenSSH sends them."""
    return (
        ident("OpenSSH_9.6") + kexinit(client or client_offer()),
        ident("OpenSSH_9.2p1", comments="Debian-2+deb12u3") + kexinit(server or server_offer()),
    )
