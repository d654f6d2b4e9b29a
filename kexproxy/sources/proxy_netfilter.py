"""Transparent mode: the address a REDIRECTed connection was really sent to.

iptables' ``REDIRECT`` target rewrites the destination of a connection to the proxy's own
address; netfilter's connection tracking remembers the original one and hands it back
through ``getsockopt(SO_ORIGINAL_DST)`` (IPv4, linux/netfilter_ipv4.h) or
``getsockopt(IP6T_SO_ORIGINAL_DST)`` (IPv6, linux/netfilter_ipv6/ip6_tables.h). Both
options are number 80, at levels SOL_IP and SOL_IPV6.
"""

from __future__ import annotations

import socket
import struct

#: linux/netfilter_ipv4.h SO_ORIGINAL_DST; linux/netfilter_ipv6/ip6_tables.h IP6T_SO_ORIGINAL_DST.
SO_ORIGINAL_DST = 80
IP6T_SO_ORIGINAL_DST = 80
_SOL_IP = getattr(socket, "SOL_IP", 0)
_SOL_IPV6 = getattr(socket, "SOL_IPV6", 41)
#: sizeof(struct sockaddr_in) and sizeof(struct sockaddr_in6).
_SOCKADDR_IN = 16
_SOCKADDR_IN6 = 28


class NotRedirected(OSError):
    """The connection carries no original destination: it was not redirected by netfilter."""


def original_destination(sock: socket.socket) -> tuple[str, int]:
    """The (ip, port) the client connected to before netfilter redirected it to us.

    Raises `NotRedirected` for a connection that netfilter did not redirect (ENOENT) and
    OSError for anything else, so the caller can refuse it instead of relaying in a loop.
    """
    try:
        if sock.family == socket.AF_INET6 and not _v4_mapped(sock):
            raw = sock.getsockopt(_SOL_IPV6, IP6T_SO_ORIGINAL_DST, _SOCKADDR_IN6)
            return parse_sockaddr(raw)
        # An IPv4 client of a dual-stack ("::") listener is tracked by IPv4 netfilter.
        raw = sock.getsockopt(_SOL_IP, SO_ORIGINAL_DST, _SOCKADDR_IN)
        return parse_sockaddr(raw)
    except FileNotFoundError as exc:
        raise NotRedirected(
            exc.errno, "no original destination (not a redirected connection)"
        ) from exc


def parse_sockaddr(raw: bytes) -> tuple[str, int]:
    """Decodes a C ``struct sockaddr_in``/``sockaddr_in6`` (family in host order, port in network order)."""
    if len(raw) < 8:
        raise OSError(f"short sockaddr ({len(raw)} bytes)")
    family = struct.unpack_from("=H", raw, 0)[0]
    port = struct.unpack_from("!H", raw, 2)[0]
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    if family == socket.AF_INET6 and len(raw) >= 24:
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port
    raise OSError(f"unexpected address family {family} in the original destination")


def _v4_mapped(sock: socket.socket) -> bool:
    try:
        return str(sock.getsockname()[0]).startswith("::ffff:")
    except OSError:
        return False
