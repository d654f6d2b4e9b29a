"""HASSH fingerprints: the lists as sent, hashed as salesforce/hassh defines them."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from kexproxy.core.hassh import hassh, hassh_algorithms
from tests.builders import Transcript, client_offer, kexinit_event
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


def test_hassh_reads_each_direction_and_nothing_is_fingerprinted_without_a_kexinit() -> None:
    lists = client_offer(ciphers=["aes256-ctr"], macs=["hmac-sha1"], compression=["zlib"])
    sent = kexinit_event(replace(lists, cipher_s2c="chacha20-poly1305@openssh.com"))
    c2s = hassh_algorithms(sent, "c2s")
    s2c = hassh_algorithms(sent, "s2c")
    assert c2s is not None and c2s.endswith(";aes256-ctr;hmac-sha1;zlib")
    assert s2c is not None and s2c.endswith(";chacha20-poly1305@openssh.com;hmac-sha1;zlib")
    assert c2s.split(";")[0] == s2c.split(";")[0] == sent.raw("kex_algorithms")
    assert hassh(c2s) == hashlib.md5(c2s.encode()).hexdigest()
    assert hassh_algorithms(None, "c2s") is None and hassh(None) is None
