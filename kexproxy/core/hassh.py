"""HASSH fingerprints (salesforce/hassh): an MD5 of one side's kex;cipher;MAC;compression lists.

Kept for correlation with tools that log HASSH (Zeek, Suricata), not as a security measure:
MD5 is what the published definition uses, so the digest must be MD5 to match theirs.
"""

from __future__ import annotations

import hashlib

from kexproxy.core.events import KexInit
from kexproxy.core.lists import Direction, lists_for


def hassh_algorithms(kexinit: KexInit | None, direction: Direction) -> str | None:
    """HASSH's input: kex;enc;mac;comp of one side, each list exactly as sent.

    A client's fingerprint reads its client-to-server lists, a server's (HASSHServer) its
    server-to-client ones.
    """
    if kexinit is None:
        return None
    return ";".join(kexinit.raw(n.rfc) for n in lists_for(direction) if n.kind != "host_key")


def hassh(algorithms: str | None) -> str | None:
    """The fingerprint of `hassh_algorithms`' string (bytes the peer sent, kept as sent)."""
    if algorithms is None:
        return None
    return hashlib.md5(
        algorithms.encode("utf-8", "surrogateescape"), usedforsecurity=False
    ).hexdigest()
