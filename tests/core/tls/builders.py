"""Wire bytes for the TLS parser tests: records, handshake messages and hellos from small builders."""

from __future__ import annotations

from collections.abc import Sequence

from kexproxy.core.tls.hello import HRR_RANDOM

TLS12 = 0x0303
TLS13 = 0x0304


def u8(n: int) -> bytes:
    return n.to_bytes(1, "big")


def u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def u24(n: int) -> bytes:
    return n.to_bytes(3, "big")


def vec8(body: bytes) -> bytes:
    return u8(len(body)) + body


def vec16(body: bytes) -> bytes:
    return u16(len(body)) + body


def vec24(body: bytes) -> bytes:
    return u24(len(body)) + body


def codes16(codes: Sequence[int]) -> bytes:
    return b"".join(u16(c) for c in codes)


def record(content_type: int, fragment: bytes, version: int = 0x0301) -> bytes:
    return u8(content_type) + u16(version) + u16(len(fragment)) + fragment


def handshake(msg_type: int, body: bytes) -> bytes:
    return u8(msg_type) + u24(len(body)) + body


def ext(code: int, data: bytes) -> bytes:
    return u16(code) + vec16(data)


def sni(name: str) -> bytes:
    return ext(0, vec16(u8(0) + vec16(name.encode())))


def alpn_ext(*names: str) -> bytes:
    return ext(16, vec16(b"".join(vec8(n.encode()) for n in names)))


def client_hello_body(
    *,
    suites: Sequence[int] = (0x1301, 0xC02F),
    extensions: Sequence[bytes] | None = None,
    version: int = TLS12,
    session_id: bytes = b"\x11" * 32,
) -> bytes:
    if extensions is None:
        extensions = (
            sni("example.com"),
            ext(10, vec16(codes16((0x001D, 0x0017)))),
            ext(11, vec8(b"\x00")),
            ext(13, vec16(codes16((0x0403, 0x0804)))),
            alpn_ext("h2", "http/1.1"),
            ext(43, vec8(codes16((TLS13, TLS12)))),
            ext(51, vec16(u16(0x001D) + vec16(b"\x22" * 32))),
        )
    block = vec16(b"".join(extensions)) if extensions else b""
    return (
        u16(version)
        + b"\x01" * 32
        + vec8(session_id)
        + vec16(codes16(suites))
        + vec8(b"\x00")
        + block
    )


def server_hello_body(
    *,
    suite: int = 0x1301,
    extensions: Sequence[bytes] | None = None,
    retry: bool = False,
    version: int = TLS12,
) -> bytes:
    if extensions is None:
        share = u16(0x001D) if retry else u16(0x001D) + vec16(b"\x33" * 32)
        extensions = (ext(43, u16(TLS13)), ext(51, share))
    random = HRR_RANDOM if retry else b"\x02" * 32
    block = vec16(b"".join(extensions)) if extensions else b""
    return u16(version) + random + vec8(b"\x11" * 32) + u16(suite) + b"\x00" + block


def client_hello(body: bytes | None = None) -> bytes:
    return record(22, handshake(1, client_hello_body() if body is None else body))


def server_hello(body: bytes | None = None) -> bytes:
    return record(22, handshake(2, server_hello_body() if body is None else body), TLS12)


def alert(level: int, description: int) -> bytes:
    return record(21, bytes((level, description)), TLS12)


CCS = record(20, b"\x01", TLS12)


def sslv2_client_hello(specs: Sequence[int], challenge: bytes = b"\x05" * 16) -> bytes:
    body = (
        b"\x01"
        + u16(0x0301)
        + u16(3 * len(specs))
        + u16(0)
        + u16(len(challenge))
        + b"".join(s.to_bytes(3, "big") for s in specs)
        + challenge
    )
    return u16(0x8000 | len(body)) + body
