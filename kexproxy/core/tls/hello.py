"""ClientHello and ServerHello: the offers and answers a TLS record is built from, and their decoding.

Decoding takes a handshake body (after the 4-byte header) and raises `DecodeError` naming
the field and the bytes left, so the parser can turn garbage into one precise `ParseFailed`.
Lists keep at most `limits.TLS_KEPT_ENTRIES` entries (GREASE included, as on the wire).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from kexproxy.core import limits
from kexproxy.core.codec import Cursor, DecodeError
from kexproxy.core.tls.names import (
    extension_name,
    group_name,
    is_grease,
    scheme_name,
    suite_name,
    version_name,
)

#: RFC 8446 section 4.1.3: a HelloRetryRequest is a ServerHello whose random is this.
HRR_RANDOM = hashlib.sha256(b"HelloRetryRequest").digest()
#: RFC 8446 section 4.1.2: legacy_session_id is at most 32 bytes.
MAX_SESSION_ID = 32
RANDOM_LENGTH = 32

# Extension types decoded here (IANA TLS ExtensionType Values).
EXT_SERVER_NAME = 0
EXT_SUPPORTED_GROUPS = 10
EXT_EC_POINT_FORMATS = 11
EXT_SIGNATURE_ALGORITHMS = 13
EXT_ALPN = 16
EXT_SUPPORTED_VERSIONS = 43
EXT_KEY_SHARE = 51
#: RFC 6066 section 3: the only NameType.
HOST_NAME = 0
#: TLS 1.3 drafts before 22 had a ServerHello without session id and compression method.
_DRAFT_PREFIX = 0x7F00
_FIRST_COMPATIBLE_DRAFT = 22


class Reader(Cursor):
    """`Cursor` plus the TLS presentation-language integers and vectors (RFC 8446 section 3)."""

    __slots__ = ()

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def vector(self, size: int, what: str) -> Reader:
        """The body of a vector with a `size`-byte length, as a reader of its own."""
        length = self.uint(size, f"{what} length")
        if length > self.remaining:
            raise DecodeError(f"{what}: length {length} overruns the {self.remaining} bytes left")
        start = self.position
        self.take(length, what)
        return Reader(self._data, start, start + length)

    def codes(self, size: int, what: str, width: int = 2) -> tuple[int, ...]:
        """A vector of `width`-byte codes; at most TLS_KEPT_ENTRIES are kept."""
        body = self.vector(size, what)
        if body.remaining % width:
            raise DecodeError(f"{what}: length {body.remaining} is not a multiple of {width}")
        out: list[int] = []
        while body.remaining:
            code = body.uint(width, what)
            if len(out) < limits.TLS_KEPT_ENTRIES:
                out.append(code)
        return tuple(out)

    def end(self, what: str) -> None:
        if self.remaining:
            raise DecodeError(f"{what}: {self.remaining} bytes left over")


def _names(codes: tuple[int, ...], name: Callable[[int], str]) -> list[str]:
    return [name(code) for code in codes if not is_grease(code)]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientHello:
    """A ClientHello's offers in wire order, GREASE included (RFC 8446 section 4.1.2)."""

    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: tuple[int, ...]
    extensions: tuple[int, ...]
    supported_versions: tuple[int, ...]
    supported_groups: tuple[int, ...]
    key_share_groups: tuple[int, ...]
    signature_algorithms: tuple[int, ...]
    ec_point_formats: tuple[int, ...]
    alpn: tuple[str, ...]
    server_name: str | None
    sslv2: bool = False

    def grease(self) -> int:
        """How many GREASE values `to_dict` leaves out (RFC 8701)."""
        lists = (
            self.cipher_suites,
            self.extensions,
            self.supported_versions,
            self.supported_groups,
            self.key_share_groups,
            self.signature_algorithms,
        )
        return sum(1 for codes in lists for code in codes if is_grease(code))

    def to_dict(self) -> dict[str, object]:
        versions = self.supported_versions or (self.legacy_version,)
        return {
            "legacy_version": version_name(self.legacy_version),
            "versions": _names(versions, version_name),
            "cipher_suites": _names(self.cipher_suites, suite_name),
            "supported_groups": _names(self.supported_groups, group_name),
            "key_share_groups": _names(self.key_share_groups, group_name),
            "signature_algorithms": _names(self.signature_algorithms, scheme_name),
            "alpn": list(self.alpn),
            "server_name": self.server_name,
            "extensions": _names(self.extensions, extension_name),
            "sslv2": self.sslv2,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerHello:
    """A ServerHello, or a HelloRetryRequest when `retry` (RFC 8446 sections 4.1.3 and 4.1.4)."""

    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: tuple[int, ...]
    selected_version: int | None
    key_share_group: int | None
    alpn: str | None
    retry: bool

    @property
    def version(self) -> int:
        return self.legacy_version if self.selected_version is None else self.selected_version

    def to_dict(self) -> dict[str, object]:
        if self.retry:
            return {
                "cipher_suite": suite_name(self.cipher_suite),
                "selected_group": (
                    None if self.key_share_group is None else group_name(self.key_share_group)
                ),
            }
        return {
            "version": version_name(self.version),
            "cipher_suite": suite_name(self.cipher_suite),
            "key_share_group": (
                None if self.key_share_group is None else group_name(self.key_share_group)
            ),
            "alpn": self.alpn,
            "extensions": _names(self.extensions, extension_name),
        }


@dataclass(slots=True)
class _ClientExtensions:
    types: list[int]
    versions: tuple[int, ...] = ()
    groups: tuple[int, ...] = ()
    shares: tuple[int, ...] = ()
    schemes: tuple[int, ...] = ()
    formats: tuple[int, ...] = ()
    alpn: tuple[str, ...] = ()
    server_name: str | None = None


def _alpn_names(reader: Reader) -> tuple[str, ...]:
    body = reader.vector(2, "application_layer_protocol_negotiation")
    out: list[str] = []
    while body.remaining:
        name = body.vector(1, "protocol name")
        if not name.remaining:
            raise DecodeError("application_layer_protocol_negotiation: empty protocol name")
        text = name.rest().decode("latin-1")
        if len(out) < limits.TLS_KEPT_ENTRIES:
            out.append(text)
    return tuple(out)


def _server_name(reader: Reader) -> str | None:
    body = reader.vector(2, "server_name list")
    found: str | None = None
    while body.remaining:
        kind = body.uint(1, "server_name type")
        name = body.vector(2, "server_name")
        if kind == HOST_NAME and found is None:
            found = name.rest()[: limits.MAX_TEXT].decode("latin-1")
    return found


def _key_share_groups(reader: Reader) -> tuple[int, ...]:
    body = reader.vector(2, "key_share client_shares")
    out: list[int] = []
    while body.remaining:
        group = body.uint(2, "key_share group")
        body.vector(2, "key_exchange")
        if len(out) < limits.TLS_KEPT_ENTRIES:
            out.append(group)
    return tuple(out)


def _client_extension(ext: _ClientExtensions, code: int, data: Reader) -> None:
    if code == EXT_SERVER_NAME:
        # An empty server_name is legal in a ServerHello only, but clients send it too.
        ext.server_name = _server_name(data) if data.remaining else None
    elif code == EXT_SUPPORTED_GROUPS:
        ext.groups = data.codes(2, "supported_groups")
    elif code == EXT_EC_POINT_FORMATS:
        ext.formats = data.codes(1, "ec_point_formats", width=1)
    elif code == EXT_SIGNATURE_ALGORITHMS:
        ext.schemes = data.codes(2, "signature_algorithms")
    elif code == EXT_ALPN:
        ext.alpn = _alpn_names(data)
    elif code == EXT_SUPPORTED_VERSIONS:
        ext.versions = data.codes(1, "supported_versions")
    elif code == EXT_KEY_SHARE:
        ext.shares = _key_share_groups(data)
    else:
        return
    data.end(extension_name(code))


def _extensions(cursor: Reader) -> list[tuple[int, Reader]]:
    """The extension block, if any bytes remain (hellos before TLS 1.2 may have none)."""
    if not cursor.remaining:
        return []
    block = cursor.vector(2, "extensions")
    cursor.end("hello after its extensions")
    out: list[tuple[int, Reader]] = []
    while block.remaining:
        code = block.uint(2, "extension type")
        out.append((code, block.vector(2, f"extension {extension_name(code)}")))
    return out


def _kept(codes: list[int]) -> tuple[int, ...]:
    return tuple(codes[: limits.TLS_KEPT_ENTRIES])


def decode_client_hello(body: bytes) -> ClientHello:
    """A ClientHello handshake body (RFC 8446 4.1.2, RFC 5246 7.4.1.2); raises DecodeError."""
    cursor = Reader(body)
    legacy_version = cursor.uint(2, "legacy_version")
    random = cursor.take(RANDOM_LENGTH, "random")
    session_id = cursor.vector(1, "session_id").rest()
    if len(session_id) > MAX_SESSION_ID:
        raise DecodeError(f"session_id: {len(session_id)} bytes, over {MAX_SESSION_ID}")
    suites = cursor.codes(2, "cipher_suites")
    compression = cursor.codes(1, "compression_methods", width=1)
    ext = _ClientExtensions(types=[])
    for code, data in _extensions(cursor):
        ext.types.append(code)
        _client_extension(ext, code, data)
    return ClientHello(
        legacy_version=legacy_version,
        random=random,
        session_id=session_id,
        cipher_suites=suites,
        compression_methods=compression,
        extensions=_kept(ext.types),
        supported_versions=ext.versions,
        supported_groups=ext.groups,
        key_share_groups=ext.shares,
        signature_algorithms=ext.schemes,
        ec_point_formats=ext.formats,
        alpn=ext.alpn,
        server_name=ext.server_name,
    )


def decode_sslv2_client_hello(body: bytes) -> ClientHello:
    """An SSLv2 CLIENT-HELLO after its msg_type byte (RFC 5246 appendix E.2).

    Cipher specs are three bytes; those whose first byte is 0 are TLS cipher suites and keep
    their two-byte code, the others (SSL 2.0 ciphers) keep all three.
    """
    cursor = Reader(body)
    version = cursor.uint(2, "version")
    specs_length = cursor.uint(2, "cipher_spec_length")
    session_length = cursor.uint(2, "session_id_length")
    challenge_length = cursor.uint(2, "challenge_length")
    if specs_length % 3:
        raise DecodeError(f"cipher_specs: length {specs_length} is not a multiple of 3")
    specs = Reader(cursor.take(specs_length, "cipher_specs"))
    session_id = cursor.take(session_length, "session_id")
    challenge = cursor.take(challenge_length, "challenge")
    cursor.end("SSLv2 CLIENT-HELLO")
    suites: list[int] = []
    while specs.remaining:
        spec = specs.uint(3, "cipher spec")
        if len(suites) < limits.TLS_KEPT_ENTRIES:
            suites.append(spec)
    return ClientHello(
        legacy_version=version,
        random=challenge,
        session_id=session_id,
        cipher_suites=tuple(suites),
        compression_methods=(0,),
        extensions=(),
        supported_versions=(),
        supported_groups=(),
        key_share_groups=(),
        signature_algorithms=(),
        ec_point_formats=(),
        alpn=(),
        server_name=None,
        sslv2=True,
    )


def _is_old_draft(version: int) -> bool:
    return version & 0xFF00 == _DRAFT_PREFIX and (version & 0xFF) < _FIRST_COMPATIBLE_DRAFT


def decode_server_hello(body: bytes) -> ServerHello:
    """A ServerHello or HelloRetryRequest body (RFC 8446 4.1.3); raises DecodeError."""
    cursor = Reader(body)
    legacy_version = cursor.uint(2, "legacy_version")
    random = cursor.take(RANDOM_LENGTH, "random")
    old_draft = _is_old_draft(legacy_version)
    session_id = b"" if old_draft else cursor.vector(1, "session_id").rest()
    if len(session_id) > MAX_SESSION_ID:
        raise DecodeError(f"session_id: {len(session_id)} bytes, over {MAX_SESSION_ID}")
    suite = cursor.uint(2, "cipher_suite")
    compression = 0 if old_draft else cursor.uint(1, "compression_method")
    retry = random == HRR_RANDOM
    types: list[int] = []
    selected: int | None = None
    share: int | None = None
    alpn: str | None = None
    for code, data in _extensions(cursor):
        types.append(code)
        if code == EXT_SUPPORTED_VERSIONS:
            selected = data.uint(2, "supported_versions selected_version")
        elif code == EXT_KEY_SHARE:
            share = data.uint(2, "key_share group")
            if not retry:
                data.vector(2, "key_exchange")
        elif code == EXT_ALPN:
            names = _alpn_names(data)
            if len(names) != 1:
                raise DecodeError(f"application_layer_protocol_negotiation: {len(names)} names")
            alpn = names[0]
        else:
            continue
        data.end(extension_name(code))
    return ServerHello(
        legacy_version=legacy_version,
        random=random,
        session_id=session_id,
        cipher_suite=suite,
        compression_method=compression,
        extensions=_kept(types),
        selected_version=selected,
        key_share_group=share,
        alpn=alpn,
        retry=retry,
    )
