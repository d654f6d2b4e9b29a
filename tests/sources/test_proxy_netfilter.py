"""Recovering the original destination after an iptables REDIRECT (the whole path is tested
with real iptables in tests/sources/test_proxy_transparent.py); here the parts that need no
firewall: decoding the kernel's sockaddr and refusing a connection nobody redirected."""

from __future__ import annotations

import socket
import struct

import pytest

from kexproxy.sources.proxy_netfilter import NotRedirected, original_destination, parse_sockaddr


def test_sockaddr_in_and_in6_are_decoded() -> None:
    v4 = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 2222) + socket.inet_aton("127.0.0.1")
    assert parse_sockaddr(v4 + bytes(8)) == ("127.0.0.1", 2222)
    v6 = (
        struct.pack("=H", socket.AF_INET6)
        + struct.pack("!H", 22)
        + bytes(4)
        + socket.inet_pton(socket.AF_INET6, "::1")
        + bytes(4)
    )
    assert parse_sockaddr(v6) == ("::1", 22)


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x02\x00\x00", struct.pack("=H", 99) + bytes(14), struct.pack("=H", 10) + bytes(8)],
)
def test_a_short_or_foreign_sockaddr_is_an_oserror(raw: bytes) -> None:
    with pytest.raises(OSError):
        parse_sockaddr(raw)


def test_a_connection_that_was_not_redirected_has_no_original_destination() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        with client, accepted, pytest.raises(OSError) as caught:
            original_destination(accepted)
    # Without conntrack the kernel has no such option at all; with it, ENOENT says "not ours".
    assert isinstance(caught.value, NotRedirected) or caught.value.errno is not None
