"""Records as the tracker would build them from two KEXINITs, diagnosed, for the diagnosis tests."""

from __future__ import annotations

from typing import Any

from kexproxy.core.diagnosis import diagnosed
from kexproxy.core.events import KexInit
from kexproxy.core.lists import RFC_NAMES
from kexproxy.core.negotiation import negotiate, strict_kex
from kexproxy.core.record import JSONDict, SessionRecord

#: OpenSSH 9.2's client defaults (markers included), a well-behaved starting point.
CLIENT = {
    "kex": "sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,"
    "ecdh-sha2-nistp256,diffie-hellman-group-exchange-sha256,diffie-hellman-group14-sha256,"
    "ext-info-c,kex-strict-c-v00@openssh.com",
    "host_key": "ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256",
    "cipher": "chacha20-poly1305@openssh.com,aes128-ctr,aes256-gcm@openssh.com",
    "mac": "umac-64-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-256,hmac-sha1",
    "compression": "none,zlib@openssh.com,zlib",
}


SERVER = {
    **CLIENT,
    "kex": CLIENT["kex"].replace("ext-info-c,kex-strict-c", "ext-info-s,kex-strict-s"),
    "compression": "none,zlib@openssh.com",
}


_KIND_LISTS = {
    "kex": ("kex_algorithms",),
    "host_key": ("server_host_key_algorithms",),
    "cipher": ("encryption_algorithms_client_to_server", "encryption_algorithms_server_to_client"),
    "mac": ("mac_algorithms_client_to_server", "mac_algorithms_server_to_client"),
    "compression": (
        "compression_algorithms_client_to_server",
        "compression_algorithms_server_to_client",
    ),
}


def kexinit(lists: dict[str, str]) -> KexInit:
    raw = dict.fromkeys(RFC_NAMES, "")
    for kind, names in lists.items():
        for rfc in _KIND_LISTS.get(kind, (kind,)):
            raw[rfc] = names
    return KexInit(
        cookie=bytes(16),
        raw_lists=tuple(raw[name] for name in RFC_NAMES),
        first_kex_packet_follows=False,
        reserved=0,
    )


def make_record(
    client: dict[str, str] | None = None,
    server: dict[str, str] | None = None,
    *,
    client_banner: str = "SSH-2.0-OpenSSH_9.2p1",
    server_banner: str = "SSH-2.0-OpenSSH_9.2p1",
    host_key: JSONDict | None = None,
    dh_gex: JSONDict | None = None,
) -> SessionRecord:
    """A record as the session tracker would build it from two KEXINITs, then diagnosed."""
    ci = kexinit({**CLIENT, **(client or {})})
    si = kexinit({**SERVER, **(server or {})})
    neg = negotiate(ci, si, client_addr=("10.0.0.1", 50000), server_addr=("10.0.0.2", 22))
    record = SessionRecord(
        id="t",
        source="pcap",
        capture=None,
        started=None,
        ended=None,
        client={"ip": "10.0.0.1", "port": 50000},
        server={"ip": "10.0.0.2", "port": 22},
        client_banner=client_banner,
        server_banner=server_banner,
        client_kexinit=ci.to_dict(),
        server_kexinit=si.to_dict(),
        outcome="negotiated" if neg.ok else "failed",
        negotiated=neg.to_dict(),
        failures=[f.to_dict() for f in neg.failures],
        rejections={r: (v.to_dict() if v else None) for r, v in neg.rejections.items()},
        evidence={"first_close": None, "how": None, "disconnects": [], "banner_error": None},
        host_key=host_key
        if host_key is not None
        else {"algorithm": "ssh-ed25519", "key_type": "ed25519", "bits": 256},
        hassh=None,
        hassh_server=None,
        hassh_algorithms=None,
        hassh_server_algorithms=None,
        strict_kex={"client": strict_kex(ci, "client"), "server": strict_kex(si, "server")},
        bytes={"c2s": 0, "s2c": 0},
        notes=[],
        dh_gex=dh_gex,
    )
    return diagnosed(record)


def diag(record: SessionRecord) -> dict[str, Any]:
    assert record.diagnosis is not None
    return record.diagnosis


def fixes_for(record: SessionRecord, side: str) -> list[JSONDict]:
    return [f for f in diag(record)["fixes"] if f["side"] == side]
