"""Real SSH peers on 127.0.0.1 for tests and for scripts/record_captures.py.

Servers (OpenSSH ``sshd``, ``dropbear``), clients (OpenSSH ``ssh``, ``dbclient``, PuTTY
``plink``, paramiko, asyncssh, Go's x/crypto/ssh, JSch), a loopback ``tcpdump`` and ``tshark`` field extraction,
``plink``, paramiko, asyncssh, a small libssh client built with gcc), a loopback ``tcpdump`` and ``tshark`` field extraction,
so tests check kexproxy against what real implementations put on the wire and log rather
than against our own idea of it.

Everything listens and connects on 127.0.0.1 only, on ephemeral ports. Every helper has a
timeout, kills the processes it started (with their children) when it is done, and removes
its temporary files. A missing binary skips the test (``pytest.skip``), or fails it when the
environment variable ``KEXPROXY_REQUIRE_PEERS=1`` is set, as CI does.

Typical use::

    with Sshd(["KexAlgorithms curve25519-sha256"]) as sshd, Tcpdump(path, sshd.port):
        result = run_ssh(sshd.port, "-oKexAlgorithms=diffie-hellman-group14-sha1")
    assert "no matching key exchange method found" in result.stderr
    sshd.wait_log(r"Unable to negotiate with 127\\.0\\.0\\.1 port \\d+: .* \\[preauth\\]")
"""

from __future__ import annotations

from tests.peers.base import (
    APT_PACKAGE,
    BANNER_FIELDS,
    KEXINIT_FIELDS,
    LOOPBACK,
    REQUIRE_ENV,
    PeerError,
    PeerResult,
    client_argv0,
    find_binary,
    free_port,
    is_listening,
    kill_tree,
    listening_inodes,
    peers_required,
    python_module_or_skip,
    run_command,
    skip_or_fail,
    which_or_skip,
)
from tests.peers.capture import (
    Tcpdump,
    capturing,
    one_shot_server,
    tool_version,
    tshark_banner_rows,
    tshark_count,
    tshark_disconnect_rows,
    tshark_fields,
    tshark_kexinit_rows,
    tshark_message_codes,
    tshark_summary,
)
from tests.peers.clients import (
    run_asyncssh,
    run_dbclient,
    run_paramiko,
    run_plink,
    run_plink_session,
    run_ssh,
    send_raw,
)
from tests.peers.keys import (
    client_key,
    client_key_dropbear,
    client_key_ppk,
    dropbear_key,
    openssh_fingerprint,
    openssh_key,
)
from tests.peers.library_clients import run_go_client, run_jsch_client
from tests.peers.libssh_client import libssh_client_binary, run_libssh
from tests.peers.servers import Dropbear, Sshd, root_home

__all__ = [
    "APT_PACKAGE",
    "BANNER_FIELDS",
    "KEXINIT_FIELDS",
    "LOOPBACK",
    "REQUIRE_ENV",
    "Dropbear",
    "PeerError",
    "PeerResult",
    "Sshd",
    "Tcpdump",
    "capturing",
    "client_argv0",
    "client_key",
    "client_key_dropbear",
    "client_key_ppk",
    "dropbear_key",
    "find_binary",
    "free_port",
    "is_listening",
    "kill_tree",
    "libssh_client_binary",
    "listening_inodes",
    "one_shot_server",
    "openssh_fingerprint",
    "openssh_key",
    "peers_required",
    "python_module_or_skip",
    "root_home",
    "run_asyncssh",
    "run_command",
    "run_dbclient",
    "run_go_client",
    "run_jsch_client",
    "run_libssh",
    "run_paramiko",
    "run_plink",
    "run_plink_session",
    "run_ssh",
    "send_raw",
    "skip_or_fail",
    "tool_version",
    "tshark_banner_rows",
    "tshark_count",
    "tshark_disconnect_rows",
    "tshark_fields",
    "tshark_kexinit_rows",
    "tshark_message_codes",
    "tshark_summary",
    "which_or_skip",
]
