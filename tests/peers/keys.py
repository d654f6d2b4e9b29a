"""Host and client keys for the peers, made once per run with the peers' own key tools and cached."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path

from tests.peers.base import PeerError, run_command, which_or_skip

# ---------------------------------------------------------------------------------------
# Keys


#: ssh-keygen arguments per host/client key kind.
SSH_KEYGEN_KINDS: dict[str, tuple[str, ...]] = {
    "ed25519": ("-t", "ed25519"),
    "rsa": ("-t", "rsa", "-b", "3072"),
    "rsa1024": ("-t", "rsa", "-b", "1024"),
    "ecdsa": ("-t", "ecdsa", "-b", "256"),
    "ecdsa384": ("-t", "ecdsa", "-b", "384"),
    "ecdsa521": ("-t", "ecdsa", "-b", "521"),
    "dsa": ("-t", "dsa"),
}

#: dropbearkey arguments per host key kind.
DROPBEAR_KINDS: dict[str, tuple[str, ...]] = {
    "ed25519": ("-t", "ed25519"),
    "rsa": ("-t", "rsa", "-s", "3072"),
    "rsa1024": ("-t", "rsa", "-s", "1024"),
    "ecdsa": ("-t", "ecdsa", "-s", "256"),
    "ecdsa384": ("-t", "ecdsa", "-s", "384"),
    "ecdsa521": ("-t", "ecdsa", "-s", "521"),
    "dss": ("-t", "dss"),
}

_key_cache: dict[tuple[str, str], Path] = {}


@cache
def _cache_dir() -> Path:
    """Return this process's key cache directory, removed at exit, since RSA key generation is slow."""
    path = Path(tempfile.mkdtemp(prefix="kexproxy-keys-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def openssh_key(kind: str) -> Path:
    """Return the path of a passphrase-less OpenSSH private key of ``kind`` (``.pub`` beside it).

    Generated once per process and reused, because a 3072-bit RSA key takes a noticeable
    fraction of a second and tests start many servers.
    """
    if kind not in SSH_KEYGEN_KINDS:
        raise ValueError(f"unknown key kind {kind!r}; known: {sorted(SSH_KEYGEN_KINDS)}")
    cached = _key_cache.get(("openssh", kind))
    if cached is not None and cached.exists():
        return cached
    keygen = which_or_skip("ssh-keygen")
    path = _cache_dir() / f"openssh_{kind}"
    path.unlink(missing_ok=True)
    result = run_command(
        [
            keygen,
            "-q",
            *SSH_KEYGEN_KINDS[kind],
            "-N",
            "",
            "-C",
            f"kexproxy-test-{kind}",
            "-f",
            str(path),
        ],
        timeout=60,
    )
    if result.returncode != 0:
        raise PeerError(f"ssh-keygen {kind} failed: {result.stderr}")
    _key_cache[("openssh", kind)] = path
    return path


def dropbear_key(kind: str) -> Path:
    """Return the path of a dropbear-format host key of ``kind``, cached per process like openssh_key."""
    if kind not in DROPBEAR_KINDS:
        raise ValueError(f"unknown dropbear key kind {kind!r}; known: {sorted(DROPBEAR_KINDS)}")
    cached = _key_cache.get(("dropbear", kind))
    if cached is not None and cached.exists():
        return cached
    keygen = which_or_skip("dropbearkey")
    path = _cache_dir() / f"dropbear_{kind}"
    path.unlink(missing_ok=True)
    result = run_command([keygen, *DROPBEAR_KINDS[kind], "-f", str(path)], timeout=60)
    if result.returncode != 0:
        raise PeerError(f"dropbearkey {kind} failed: {result.stderr}")
    _key_cache[("dropbear", kind)] = path
    return path


def client_key() -> Path:
    """Return the ed25519 client key every server fixture authorises for root, so clients log in without passwords."""
    return openssh_key("ed25519")


def client_key_ppk() -> Path:
    """Return client_key() converted to PuTTY's .ppk format (via puttygen), since plink reads no OpenSSH keys."""
    cached = _key_cache.get(("ppk", "ed25519"))
    if cached is not None and cached.exists():
        return cached
    puttygen = which_or_skip("puttygen")
    path = _cache_dir() / "client_ed25519.ppk"
    result = run_command(
        [puttygen, str(client_key()), "-O", "private", "-o", str(path)], timeout=30
    )
    if result.returncode != 0:
        raise PeerError(f"puttygen failed: {result.stderr}")
    _key_cache[("ppk", "ed25519")] = path
    return path


def client_key_dropbear() -> Path:
    """Return client_key() converted to dropbear's format (via dropbearconvert), since dbclient 2022.83 cannot read OpenSSH's new key format ("String too long")."""
    cached = _key_cache.get(("dropbear-client", "ed25519"))
    if cached is not None and cached.exists():
        return cached
    convert = which_or_skip("dropbearconvert")
    path = _cache_dir() / "client_ed25519.dropbear"
    path.unlink(missing_ok=True)
    result = run_command([convert, "openssh", "dropbear", str(client_key()), str(path)], timeout=30)
    if result.returncode != 0:
        raise PeerError(f"dropbearconvert failed: {result.stdout}{result.stderr}")
    _key_cache[("dropbear-client", "ed25519")] = path
    return path


def openssh_fingerprint(public_key: Path) -> str:
    """Return the ``SHA256:...`` fingerprint of a public key file, which plink's -hostkey accepts."""
    keygen = which_or_skip("ssh-keygen")
    result = run_command([keygen, "-l", "-E", "sha256", "-f", str(public_key)], timeout=10)
    if result.returncode != 0:
        raise PeerError(f"ssh-keygen -l failed: {result.stderr}")
    return result.stdout.split()[1]


def _copy_private(src: Path, dst: Path) -> None:
    """Copy a private key with mode 0600, because sshd refuses group- or world-readable host keys."""
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o600)
