"""A libssh client run once against a port: libssh_client.c, compiled with gcc once per test process."""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from tests.peers.base import (
    LOOPBACK,
    PeerError,
    PeerResult,
    run_command,
    skip_or_fail,
    which_or_skip,
)

#: The C source, beside this module.
SOURCE = Path(__file__).with_name("libssh_client.c")

#: The header libssh-dev installs; without it the client cannot be built.
LIBSSH_HEADER = Path("/usr/include/libssh/libssh.h")

#: What the client prints on stdout when the key exchange completed.
NEGOTIATED_PREFIX = "negotiated: "


@cache
def libssh_client_binary() -> Path:
    """Compile libssh_client.c into a temporary directory (removed at exit) and return the binary.

    Compiling once per process keeps gcc out of every test; a missing gcc or libssh-dev skips
    (or fails under KEXPROXY_REQUIRE_PEERS=1), because the client cannot exist without them.
    """
    gcc = which_or_skip("gcc")
    if not LIBSSH_HEADER.exists():
        skip_or_fail("libssh headers not installed (apt package libssh-dev)")
    folder = Path(tempfile.mkdtemp(prefix="kexproxy-libssh-"))
    atexit.register(shutil.rmtree, folder, True)
    binary = folder / "libssh_client"
    built = run_command(
        [gcc, "-Wall", "-Wextra", "-Werror", "-O1", "-o", str(binary), str(SOURCE), "-lssh"],
        timeout=120,
    )
    if built.returncode != 0:
        raise PeerError(f"gcc could not build {SOURCE.name}:\n{built.stderr}")
    return binary


def libssh_version() -> str:
    """The installed libssh's release ("0.10.6"), from libssh.h, so a test picks its capability block."""
    if not LIBSSH_HEADER.exists():
        skip_or_fail("libssh headers not installed (apt package libssh-dev)")
    # libssh_version.h since 0.10; libssh.h itself before.
    headers = [LIBSSH_HEADER, LIBSSH_HEADER.with_name("libssh_version.h")]
    header = "".join(h.read_text(errors="replace") for h in headers if h.exists())
    parts = [
        re.search(rf"#define LIBSSH_VERSION_{part}\s+(\d+)", header)
        for part in ("MAJOR", "MINOR", "MICRO")
    ]
    if not all(parts):
        raise PeerError(f"no LIBSSH_VERSION_MAJOR/MINOR/MICRO in {headers}")
    return ".".join(match.group(1) for match in parts if match)


def run_libssh(
    port: int,
    options: Mapping[str, str] | None = None,
    *,
    host: str = LOOPBACK,
    timeout: float = 20.0,
) -> PeerResult:
    """Run the libssh client against ``host:port`` with ``options`` set by ssh_options_set().

    ``options`` maps an option's name in libssh.h to the string a program would pass, e.g.
    ``{"SSH_OPTIONS_CIPHERS_C_S": "aes128-ctr"}``. Exit code 0 means the key exchange
    completed (stdout "negotiated: kex=... cipher_c2s=..."); 1 means it did not, with
    libssh's own error text on stderr after "libssh: "; 2 means an option was refused.
    Authentication is never attempted.
    """
    binary = libssh_client_binary()
    argv = [str(binary), host, str(port)]
    argv += [f"{name}={value}" for name, value in (options or {}).items()]
    return run_command(argv, timeout=timeout)


def negotiated(result: PeerResult) -> dict[str, str]:
    """The client's "negotiated:" line as a dictionary (empty when the key exchange failed)."""
    for line in result.stdout.splitlines():
        if line.startswith(NEGOTIATED_PREFIX):
            fields: dict[str, str] = {}
            for item in line.removeprefix(NEGOTIATED_PREFIX).split():
                key, _, value = item.partition("=")
                fields[key] = value
            return fields
    return {}
