"""HASSH fingerprints: the lists as sent, hashed as salesforce/hassh defines them."""

from __future__ import annotations

from tests.builders import Transcript
from tests.core.handshakes import negotiated_ecdh


def test_hassh_is_computed_over_the_lists_as_sent() -> None:
    r = negotiated_ecdh(Transcript()).finish()
    assert r["hassh_algorithms"] == (
        "curve25519-sha256,ecdh-sha2-nistp256,ext-info-c,kex-strict-c-v00@openssh.com;"
        "aes128-ctr,aes256-ctr;hmac-sha2-256,hmac-sha1;none"
    )
    import hashlib

    assert r["hassh"] == hashlib.md5(r["hassh_algorithms"].encode()).hexdigest()
    assert r["hassh_server_algorithms"].startswith(
        "curve25519-sha256,ecdh-sha2-nistp256,ext-info-s,"
    )
    assert r["hassh_server"] == hashlib.md5(r["hassh_server_algorithms"].encode()).hexdigest()
