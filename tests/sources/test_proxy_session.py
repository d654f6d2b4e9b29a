"""A relayed session's pieces that need no upstream: addresses as sshd shows them, and a
reset that really is an RST (the end-to-end behaviour is in tests/sources/test_proxy.py)."""

from __future__ import annotations

import socket

import pytest

from kexproxy.core.observer import Endpoint
from kexproxy.sources.proxy_session import endpoint_of, reset_socket


def test_ipv4_mapped_addresses_are_shown_as_ipv4_as_sshd_does() -> None:
    assert endpoint_of(("::ffff:127.0.0.1", 2222, 0, 0)) == Endpoint("127.0.0.1", 2222)
    assert endpoint_of(("::1", 22, 0, 0)) == Endpoint("::1", 22)
    assert endpoint_of(("127.0.0.1", 40000)) == Endpoint("127.0.0.1", 40000)


def test_reset_socket_sends_an_rst_not_a_fin() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        reset_socket(accepted)
        with client, pytest.raises(ConnectionResetError):
            client.settimeout(5)
            client.recv(10)


def test_reset_socket_on_a_closed_socket_is_harmless() -> None:
    sock = socket.socket()
    sock.close()
    reset_socket(sock)
