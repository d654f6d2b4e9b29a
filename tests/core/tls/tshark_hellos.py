"""Hellos as tshark decodes them, and small builders of hello bytes and pcaps for tshark to read.

The fingerprint tests build kexproxy's ClientHello / ServerHello from tshark's own decoded
fields, so a difference between our JA3 and tshark's can only come from the fingerprint code,
never from a disagreement between two parsers.
"""

from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kexproxy.core.tls.hello import ClientHello, ServerHello
from tests.core.frames import ether, ip_tcp
from tests.peers.base import which_or_skip

#: tshark fields read per frame, in this order (multi-valued ones joined by ",").
FIELDS = (
    "frame.number",
    "tls.handshake.type",
    "tls.handshake.version",
    "tls.handshake.ciphersuite",
    "tls.handshake.cipherspec",
    "tls.handshake.extension.type",
    "tls.handshake.extensions_supported_group",
    "tls.handshake.extensions_ec_point_format",
    "tls.handshake.ja3_full",
    "tls.handshake.ja3",
    "tls.handshake.ja3s_full",
    "tls.handshake.ja3s",
)

_HELLO_TYPES = {"1", "2"}


@dataclass(frozen=True, slots=True)
class DecodedHello:
    """One hello as tshark saw it: our dataclass built from its fields, and its JA3 pair or None."""

    frame: int
    hello: ClientHello | ServerHello
    tshark_ja3: tuple[str, str] | None


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v, 0) for v in text.split(",") if v)


def decoded_hellos(capture: Path) -> list[DecodedHello]:
    """Every frame holding exactly one ClientHello or ServerHello, as tshark decodes it."""
    tshark = which_or_skip("tshark")
    argv = [tshark, "-r", str(capture), "-Y", "tls.handshake.type == 1 || tls.handshake.type == 2"]
    argv += ["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for field in FIELDS:
        argv += ["-e", field]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout
    hellos = []
    for line in out.splitlines():
        row = dict(zip(FIELDS, line.split("\t"), strict=True))
        kinds = [t for t in row["tls.handshake.type"].split(",") if t in _HELLO_TYPES]
        if len(kinds) != 1:
            continue  # two hellos in one frame: their fields cannot be told apart
        if not row["tls.handshake.version"]:
            continue  # an SSLv2 SERVER-HELLO: no TLS ServerHello, and tshark gives it no JA3S
        version = _ints(row["tls.handshake.version"])[0]
        if kinds[0] == "1":
            sslv2 = bool(row["tls.handshake.cipherspec"])
            suites = _ints(
                row["tls.handshake.cipherspec" if sslv2 else "tls.handshake.ciphersuite"]
            )
            hello: ClientHello | ServerHello = client_hello(
                version=version,
                cipher_suites=suites,
                extensions=_ints(row["tls.handshake.extension.type"]),
                supported_groups=_ints(row["tls.handshake.extensions_supported_group"]),
                ec_point_formats=_ints(row["tls.handshake.extensions_ec_point_format"]),
                sslv2=sslv2,
            )
            full, digest = row["tls.handshake.ja3_full"], row["tls.handshake.ja3"]
        else:
            hello = server_hello(
                version=version,
                cipher_suite=_ints(row["tls.handshake.ciphersuite"])[0],
                extensions=_ints(row["tls.handshake.extension.type"]),
            )
            full, digest = row["tls.handshake.ja3s_full"], row["tls.handshake.ja3s"]
        pair = (full, digest) if digest else None
        hellos.append(DecodedHello(int(row["frame.number"]), hello, pair))
    return hellos


def client_hello(
    *,
    version: int = 0x0303,
    cipher_suites: tuple[int, ...] = (0x1301,),
    extensions: tuple[int, ...] = (),
    supported_versions: tuple[int, ...] = (),
    supported_groups: tuple[int, ...] = (),
    key_share_groups: tuple[int, ...] = (),
    signature_algorithms: tuple[int, ...] = (),
    ec_point_formats: tuple[int, ...] = (),
    alpn: tuple[str, ...] = (),
    server_name: str | None = None,
    sslv2: bool = False,
) -> ClientHello:
    """A ClientHello with only what a test names; the rest empty."""
    return ClientHello(
        legacy_version=version,
        random=bytes(32),
        session_id=b"",
        cipher_suites=cipher_suites,
        compression_methods=(0,),
        extensions=extensions,
        supported_versions=supported_versions,
        supported_groups=supported_groups,
        key_share_groups=key_share_groups,
        signature_algorithms=signature_algorithms,
        ec_point_formats=ec_point_formats,
        alpn=alpn,
        server_name=server_name,
        sslv2=sslv2,
    )


def server_hello(
    *, version: int = 0x0303, cipher_suite: int = 0xC02F, extensions: tuple[int, ...] = ()
) -> ServerHello:
    """A ServerHello with only what a test names."""
    return ServerHello(
        legacy_version=version,
        random=bytes(32),
        session_id=b"",
        cipher_suite=cipher_suite,
        compression_method=0,
        extensions=extensions,
        selected_version=None,
        key_share_group=None,
        alpn=None,
        retry=False,
    )


# -- wire builders, so tshark can judge hellos no public capture holds -------------------


def _u16s(values: tuple[int, ...]) -> bytes:
    return b"".join(struct.pack("!H", v) for v in values)


def _extension_body(hello: ClientHello, ext: int) -> bytes:
    """A valid body for the extensions JA3 reads; other extensions go empty (tshark accepts that)."""
    if ext == 10:
        groups = _u16s(hello.supported_groups)
        return struct.pack("!H", len(groups)) + groups
    if ext == 11:
        return bytes([len(hello.ec_point_formats), *hello.ec_point_formats])
    return b""


def client_hello_record(hello: ClientHello, *, with_extension_block: bool = True) -> bytes:
    """`hello` as one TLS handshake record (the extension block left out on request, as SSL 3.0 did)."""
    suites = _u16s(hello.cipher_suites)
    body = struct.pack("!H", hello.legacy_version) + hello.random
    body += bytes([len(hello.session_id)]) + hello.session_id
    body += struct.pack("!H", len(suites)) + suites
    body += bytes([len(hello.compression_methods), *hello.compression_methods])
    if with_extension_block:
        exts = b"".join(
            struct.pack("!HH", e, len(b)) + b
            for e, b in ((e, _extension_body(hello, e)) for e in hello.extensions)
        )
        body += struct.pack("!H", len(exts)) + exts
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(message)) + message


def server_hello_record(hello: ServerHello, *, with_extension_block: bool = True) -> bytes:
    """`hello` as one TLS handshake record."""
    body = struct.pack("!H", hello.legacy_version) + hello.random
    body += bytes([len(hello.session_id)]) + hello.session_id
    body += struct.pack("!HB", hello.cipher_suite, hello.compression_method)
    if with_extension_block:
        exts = b"".join(struct.pack("!HH", e, 0) for e in hello.extensions)
        body += struct.pack("!H", len(exts)) + exts
    message = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + struct.pack("!H", len(message)) + message


def write_pcap(path: Path, payloads: list[bytes]) -> None:
    """One TCP connection per payload (client to port 443), each payload in one segment."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for index, payload in enumerate(payloads):
        packet = ether(ip_tcp(("127.0.0.1", 40000 + index), ("127.0.0.1", 443), 1, payload))
        out += struct.pack("<IIII", index + 1, 0, len(packet), len(packet)) + packet
    path.write_bytes(bytes(out))
