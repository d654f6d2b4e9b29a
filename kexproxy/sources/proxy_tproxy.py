"""TPROXY mode (``--tproxy``): sockets that let the relay keep the client's own address.

Theory of operation. On a router, an iptables ``TPROXY`` rule in the mangle table hands a
forwarded connection to a local listener without rewriting it, so the accepted socket's
*local* address is the server the client connected to: no connection-tracking lookup as
after ``REDIRECT``. The listener must carry ``IP_TRANSPARENT`` (``IPV6_TRANSPARENT``) for
the kernel to give it connections addressed elsewhere. The upstream socket carries the
same option, which lets it bind to an address that is not the router's: the client's own
address and port. The server then sees the real client, and its replies, routed back
through the router, are steered to the upstream socket by the ``-m socket --transparent``
mark rule and the ``fwmark`` routing rule (README, "TPROXY mode").

Both options need CAP_NET_ADMIN (root has it); without it setsockopt fails with EPERM,
reported here as one line that says so. When the client's own port is already taken on
the router (another socket bound to that address and port, or a connection to the same
server in TIME_WAIT) the upstream socket takes the client's address with a port the kernel
picks; the record's relay note then names the port the server saw.
"""

from __future__ import annotations

import contextlib
import errno
import socket

from kexproxy.core.observer import Endpoint

#: linux/in.h IP_TRANSPARENT and linux/in6.h IPV6_TRANSPARENT (not in every Python's socket).
IP_TRANSPARENT = getattr(socket, "IP_TRANSPARENT", 19)
IPV6_TRANSPARENT = getattr(socket, "IPV6_TRANSPARENT", 75)
#: What connect() or bind() says when the client's own address and port cannot be used.
_PORT_TAKEN = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL})

MISSING_PRIVILEGE = "--tproxy needs root or CAP_NET_ADMIN (the kernel refused IP_TRANSPARENT)"


def make_transparent(sock: socket.socket) -> None:
    """Sets IP_TRANSPARENT (IPV6_TRANSPARENT on an IPv6 socket, which also covers its
    IPv4-mapped clients: both options set the same flag of the socket).

    Raises PermissionError with `MISSING_PRIVILEGE` when the process lacks CAP_NET_ADMIN.
    """
    try:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_TRANSPARENT, 1)
    except PermissionError as exc:
        raise PermissionError(errno.EPERM, MISSING_PRIVILEGE) from exc


def dial_as_client(upstream: Endpoint, client: Endpoint) -> tuple[socket.socket | None, int]:
    """A non-blocking connect to `upstream` from `client`'s own address and port, under way:
    (the socket, connect's errno) as `proxy_session.dial` returns, or (None, errno).

    Falls back to the client's address with a port the kernel picks when the client's own
    port is taken here; the socket's name then says which port the server sees.
    """
    sock, err = _dial_from(upstream, (client.ip, client.port))
    if err in _PORT_TAKEN and client.port != 0:
        if sock is not None:
            sock.close()
        sock, err = _dial_from(upstream, (client.ip, 0))
    return sock, err


def _dial_from(upstream: Endpoint, source: tuple[str, int]) -> tuple[socket.socket | None, int]:
    family = socket.AF_INET6 if ":" in upstream.ip else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        return None, exc.errno or errno.EMFILE
    try:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        make_transparent(sock)
        # A connection from this address and port that just ended (TIME_WAIT on this side)
        # does not block a new one to another server.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(source)
    except OSError as exc:
        sock.close()
        return None, exc.errno or errno.EIO
    try:
        err = sock.connect_ex((upstream.ip, upstream.port))
    except OSError as exc:
        err = exc.errno or errno.EIO
    return sock, err


def is_own_address(ip: str) -> bool:
    """True when `ip` is an address of this host (of the namespace the proxy runs in): a
    socket without IP_TRANSPARENT can bind only to those."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((ip, 0))
    except OSError:
        return False
    return True
