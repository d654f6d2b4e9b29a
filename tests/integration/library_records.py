"""Shared by the library capability tests: a relayed record, its offered lists, the release block."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from kexproxy.core.catalogue import LIST_CATEGORY, Category, catalogue
from kexproxy.core.implementations import Peer, Release, identify
from kexproxy.core.record import SessionRecord
from tests.builders import assert_valid_record
from tests.peers import python_module_or_skip
from tests.peers.base import PeerResult
from tests.sources.proxy_harness import RunningProxy, config

CAT = catalogue()

#: The libssh option names that set each list, both directions where there are two.
LIBSSH_OPTIONS: dict[Category, tuple[str, ...]] = {
    "kex": ("SSH_OPTIONS_KEY_EXCHANGE",),
    "host_key": ("SSH_OPTIONS_HOSTKEYS",),
    "cipher": ("SSH_OPTIONS_CIPHERS_C_S", "SSH_OPTIONS_CIPHERS_S_C"),
    "mac": ("SSH_OPTIONS_HMAC_C_S", "SSH_OPTIONS_HMAC_S_C"),
    "compression": ("SSH_OPTIONS_COMPRESSION",),
}

CERT = "-cert-v01@openssh.com"


def offered(kexinit: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """Each of the eight lists of a KEXINIT without markers and empty names (libssh 0.10's trailing comma)."""
    assert kexinit is not None
    return {
        rfc: [name for name in kexinit[rfc] if name and not CAT.is_marker(name)]
        for rfc in LIST_CATEGORY
    }


def relayed(upstream_port: int, client: Callable[[int], PeerResult]) -> SessionRecord:
    """The record of one client run through the relay to ``upstream_port``."""
    with RunningProxy(config(upstream_port)) as proxy:
        client(proxy.port)
        [record] = proxy.wait_finals(1, timeout=30)
    assert_valid_record(record)
    return record


def release_of(peer: Peer, key: str) -> Release:
    """The capability block `peer` is described by; it must be implementation `key` and known."""
    assert peer.key == key, peer.label
    assert peer.implementation is not None
    release = peer.implementation.release(peer.version)
    assert release is not None, peer.label
    return release


def assert_sends_defaults(record: SessionRecord, key: str) -> None:
    """The record's client sent exactly its release's default lists (markers aside)."""
    peer = identify(record.client_banner)
    release_of(peer, key)
    for rfc, names in offered(record.client_kexinit).items():
        assert tuple(names) == peer.defaults("client", LIST_CATEGORY[rfc]), rfc


def installed(module: str) -> ModuleType:
    """The installed Python library `module`, imported here; skips (or fails) when it is missing."""
    python_module_or_skip(module)
    with warnings.catch_warnings():
        # asyncssh's DSA support warns on import with current cryptography; not ours to fix.
        warnings.simplefilter("ignore")
        return importlib.import_module(module)
