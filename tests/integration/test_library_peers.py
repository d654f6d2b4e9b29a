"""The paramiko, AsyncSSH and libssh capability files against the real libraries installed here.

Each library's client is put through the relay in front of a real sshd, and each Python
library's server behind it in front of a real ssh; the record's KEXINITs are what the peer
sent. Untouched, a peer must send its release's `default` lists (markers and libssh's empty
trailing name aside); configured with its release's whole `can` lists, it must send them.
The installed Python libraries are also asked what they registered, so a name they have and
the file lacks (or the reverse, without a [requires] reason) is caught without a peer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pytest

from kexproxy.core.catalogue import LIST_CATEGORY, Category
from kexproxy.core.implementations import CONFIGURABLE, Release, identify, implementations
from tests.integration.library_records import (
    CAT,
    CERT,
    LIBSSH_OPTIONS,
    assert_sends_defaults,
    installed,
    offered,
    relayed,
    release_of,
)
from tests.peers import (
    Sshd,
    openssh_key,
    run_asyncssh,
    run_libssh,
    run_paramiko,
    run_ssh,
)
from tests.peers.base import PeerResult
from tests.peers.library_servers import asyncssh_server, paramiko_server
from tests.peers.libssh_client import libssh_version

# ---------------------------------------------------------------------------------------
# Untouched clients and servers


CLIENTS: dict[str, Callable[[int], PeerResult]] = {
    "paramiko": lambda port: run_paramiko(port, command=None),
    "asyncssh": lambda port: run_asyncssh(port, command=None),
    "libssh": run_libssh,
}


@pytest.mark.peers
@pytest.mark.parametrize("key", list(CLIENTS))
def test_an_untouched_client_sends_its_release_defaults(key: str) -> None:
    with Sshd() as sshd:
        record = relayed(sshd.port, CLIENTS[key])
    assert record.outcome == "negotiated", record.failures
    assert_sends_defaults(record, key)


SERVERS = {"paramiko": paramiko_server, "asyncssh": asyncssh_server}
HOST_KEYS = ("ed25519", "ecdsa", "rsa")


@pytest.mark.peers
@pytest.mark.parametrize("key", list(SERVERS))
def test_an_untouched_server_sends_its_release_defaults(key: str) -> None:
    keys = [openssh_key(kind) for kind in HOST_KEYS]
    with SERVERS[key](keys) as port:
        record = relayed(port, lambda p: run_ssh(p, command=None, timeout=15))
    peer = identify(record.server_banner)
    release_of(peer, key)
    for rfc, names in offered(record.server_kexinit).items():
        category = LIST_CATEGORY[rfc]
        defaults = peer.defaults("server", category)
        assert defaults is not None
        if category == "host_key":
            # Only the algorithms of its keys (one of each kind here), in its own order.
            assert names and set(names) <= set(defaults), names
            assert {"ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-256"} <= set(names)
        else:
            assert tuple(names) == defaults, rfc


# ---------------------------------------------------------------------------------------
# What the installed Python libraries registered, against `can`


def paramiko_registered() -> dict[Category, set[str]]:
    transport = installed("paramiko").Transport
    return {
        "kex": set(transport._kex_info),
        "host_key": set(transport._key_info),
        "cipher": set(transport._cipher_info),
        "mac": set(transport._mac_info),
        "compression": set(transport._compression_info),
    }


def asyncssh_registered() -> dict[Category, set[str]]:
    lib = installed("asyncssh")
    public_key = lib.public_key

    def names(*lists: Sequence[bytes]) -> set[str]:
        return {name.decode("ascii") for names in lists for name in names}

    return {
        "kex": names(lib.kex.get_kex_algs()),
        "host_key": names(
            public_key.get_certificate_algs(),
            public_key.get_public_key_algs(),
            public_key.get_x509_certificate_algs(),
        ),
        "cipher": names(lib.encryption.get_encryption_algs()),
        "mac": names(lib.mac.get_mac_algs()),
        "compression": names(lib.compression.get_compression_algs()),
    }


REGISTERED: dict[str, Callable[[], dict[Category, set[str]]]] = {
    "paramiko": paramiko_registered,
    "asyncssh": asyncssh_registered,
}


def installed_release(key: str) -> tuple[Release, Mapping[str, str]]:
    """The release block of the library installed here, and its [requires] table."""
    module = installed(key)
    peer = identify(f"SSH-2.0-{'AsyncSSH' if key == 'asyncssh' else key}_{module.__version__}")
    impl = implementations()[key]
    return release_of(peer, key), impl.extra.get("requires", {})


@pytest.mark.parametrize("key", list(REGISTERED))
def test_the_installed_library_registers_what_its_release_can_offer(key: str) -> None:
    release, requires = installed_release(key)
    registered = REGISTERED[key]()
    for category in CONFIGURABLE:
        can = release.can[category]
        # Registered but not listed: GSS-API key exchange, or a name the catalogue lacks.
        for name in registered[category] - can:
            assert name.startswith("gss-") or CAT.lookup(name, category) is None, name
        # Listed but not registered here: only for a reason written in [requires].
        assert can - registered[category] <= set(requires), category


# ---------------------------------------------------------------------------------------
# Clients configured with their whole `can` lists


def can_here(key: str, release: Release, category: Category) -> list[str]:
    """`can` in the file's order, less the names this machine's library lacks for a written reason."""
    names = [n for n in release.can[category] if not (key == "paramiko" and CERT in n)]
    if key in REGISTERED:
        registered = REGISTERED[key]()[category]
        names = [n for n in names if n in registered]
    return names


def paramiko_with_can(release: Release) -> Callable[[int], PeerResult]:
    lists = {c: can_here("paramiko", release, c) for c in CONFIGURABLE}
    return lambda port: run_paramiko(
        port,
        kex=lists["kex"],
        host_key_algs=lists["host_key"],
        ciphers=lists["cipher"],
        macs=lists["mac"],
        compression=lists["compression"],
        command=None,
    )


def asyncssh_with_can(release: Release) -> Callable[[int], PeerResult]:
    lists = {c: can_here("asyncssh", release, c) for c in CONFIGURABLE}
    return lambda port: run_asyncssh(
        port,
        command=None,
        kex_algs=lists["kex"],
        server_host_key_algs=lists["host_key"],
        encryption_algs=lists["cipher"],
        mac_algs=lists["mac"],
        compression_algs=lists["compression"],
    )


def libssh_with_can(release: Release) -> Callable[[int], PeerResult]:
    options = {
        option: ",".join(release.can[category])
        for category, names in LIBSSH_OPTIONS.items()
        for option in names
    }
    return lambda port: run_libssh(port, options)


def libssh_release() -> Release:
    return release_of(identify(f"SSH-2.0-libssh_{libssh_version()}"), "libssh")


@pytest.mark.peers
@pytest.mark.parametrize("key", ["paramiko", "asyncssh", "libssh"])
def test_a_client_given_its_whole_can_lists_sends_them(key: str) -> None:
    release = libssh_release() if key == "libssh" else installed_release(key)[0]
    client = {
        "paramiko": paramiko_with_can,
        "asyncssh": asyncssh_with_can,
        "libssh": libssh_with_can,
    }[key](release)
    with Sshd() as sshd:
        record = relayed(sshd.port, client)
    assert release is release_of(identify(record.client_banner), key)
    for rfc, names in offered(record.client_kexinit).items():
        category = LIST_CATEGORY[rfc]
        expected = can_here(key, release, category)
        if key == "paramiko" and category == "host_key":
            # paramiko appends each base name's certificate variant itself.
            expected = expected + [n + CERT for n in expected]
            assert set(expected) <= release.can[category]
        assert names == expected, rfc


# ---------------------------------------------------------------------------------------
# The libssh client's own behaviour, which the recipe tests rely on


@pytest.mark.peers
def test_libssh_client_reports_a_refused_option_and_a_failed_key_exchange() -> None:
    with Sshd(["Ciphers aes128-ctr"]) as sshd:
        refused = run_libssh(sshd.port, {"SSH_OPTIONS_KEY_EXCHANGE": "no-such-kex"})
        failed = run_libssh(
            sshd.port,
            {
                "SSH_OPTIONS_CIPHERS_C_S": "aes256-gcm@openssh.com",
                "SSH_OPTIONS_CIPHERS_S_C": "aes256-gcm@openssh.com",
            },
        )
        worked = run_libssh(sshd.port, {"SSH_OPTIONS_CIPHERS_C_S": "aes128-ctr"})
    assert refused.returncode == 2 and "no allowed algorithm" in refused.stderr
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.startswith("libssh: ") and "aes128-ctr" in failed.stderr
    # One direction set, the other left at its default: sshd still agrees on aes128-ctr.
    assert worked.returncode == 0, worked.stderr
    assert "cipher_c2s=aes128-ctr" in worked.stdout and "cipher_s2c=aes128-ctr" in worked.stdout
