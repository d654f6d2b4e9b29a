"""Transcripts shared by the tracker, KEX-reply, record-builder and HASSH tests."""

from __future__ import annotations

from tests.builders import (
    Offer,
    Transcript,
    client_offer,
    ecdh_init,
    ecdh_reply,
    host_key,
    ident,
    kexinit,
    newkeys,
    server_offer,
)

CLIENT_BANNER = ident("OpenSSH_9.6")
SERVER_BANNER = ident("OpenSSH_9.2p1", comments="Debian-2+deb12u3")
ENCRYPTED = b"\x8f\x02\x11\xee" * 20


def negotiated_ecdh(
    t: Transcript, *, client: Offer | None = None, server: Offer | None = None
) -> Transcript:
    """A whole OpenSSH-like handshake with an Ed25519 host key, up to encrypted data."""
    key = host_key("ed25519")
    t.server(SERVER_BANNER).client(CLIENT_BANNER)
    t.client(kexinit(client or client_offer())).server(kexinit(server or server_offer()))
    t.client(ecdh_init()).server(ecdh_reply(key.blob) + newkeys())
    t.client(newkeys() + ENCRYPTED).server(ENCRYPTED)
    return t


def decided(t: Transcript) -> bool:
    """`tracker.decided`, read through a call so that mypy keeps no earlier narrowing."""
    return t.tracker.decided


def fp(blob: bytes) -> str:
    from kexproxy.core.hostkey import fingerprint

    return fingerprint(blob)
