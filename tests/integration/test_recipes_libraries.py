"""kexproxy's recipes for paramiko, AsyncSSH and libssh, applied to the real library as a user would.

Each test records a failing handshake between a real library peer and a real OpenSSH peer
with tcpdump, reads it with the same code as ``kexproxy read``, and takes the top recipe for
the library's side. Its steps are pasted into the library program in place of the user's own
setting: a paramiko or AsyncSSH keyword argument replaces the user's argument of that name
(several paramiko ``disabled_algorithms`` steps merged into one dictionary, as the recipe's
note says), and a libssh ``ssh_options_set`` call replaces the user's call for that option.
The handshake is recorded again and must complete with an added name chosen; a recipe that
does not work fails the test.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.integration.library_recipes import (
    ASYNCSSH_CLIENT_PROGRAM,
    PARAMIKO_CLIENT_PROGRAM,
    added,
    assert_adds_only,
    assert_negotiates,
    keyword_arguments,
    label,
    libssh_options,
    no_openssh_syntax_for,
    paramiko_cert_variants,
    pasted,
    python_program,
    recorded,
    steps_of,
    top,
)
from tests.integration.library_records import CERT
from tests.peers import PeerResult, Sshd, openssh_key, run_libssh, run_ssh
from tests.peers.library_servers import asyncssh_server, paramiko_server
from tests.peers.libssh_client import negotiated

pytestmark = pytest.mark.peers


# -- client recipes: a restricted library client against a real sshd restricted differently ----

PARAMIKO_CLIENT_CASES = [
    pytest.param(
        ["KexAlgorithms ecdh-sha2-nistp384"],
        'disabled_algorithms={"kex": ["ecdh-sha2-nistp384", "ecdh-sha2-nistp521"]}',
        id="kex",
    ),
    pytest.param(
        ["Ciphers aes256-ctr"],
        'disabled_algorithms={"ciphers": ["aes256-ctr", "aes192-ctr"]}',
        id="cipher",
    ),
    pytest.param(
        ["Ciphers aes128-ctr", "MACs hmac-sha2-512"],
        'disabled_algorithms={"macs": ["hmac-sha2-512", "hmac-sha2-512-etm@openssh.com"]}',
        id="mac",
    ),
    pytest.param(
        ["HostKeyAlgorithms ssh-ed25519"],
        'disabled_algorithms={"keys": ["ssh-ed25519", "ecdsa-sha2-nistp256"]}',
        id="host-key",
    ),
    # Two lists: two steps, merged into the one dictionary paramiko takes.
    pytest.param(
        ["KexAlgorithms diffie-hellman-group16-sha512", "Ciphers aes192-ctr"],
        'disabled_algorithms={"kex": ["diffie-hellman-group16-sha512", "ecdh-sha2-nistp256"], '
        '"ciphers": ["aes192-ctr", "aes128-ctr"]}',
        id="kex-and-cipher",
    ),
]


@pytest.mark.parametrize(("sshd_config", "user"), PARAMIKO_CLIENT_CASES)
def test_top_client_recipe_makes_real_paramiko_negotiate(
    tmp_path: Path, sshd_config: list[str], user: str
) -> None:
    """paramiko 5.1 with names disabled is told to stop disabling one, never to upgrade."""
    software = label("paramiko")
    with Sshd(sshd_config) as sshd:
        record, before = recorded(
            tmp_path / "failure.pcap", sshd.port, python_program(PARAMIKO_CLIENT_PROGRAM, user)
        )
        assert record.outcome == "failed" and "connected" not in before.stdout, before.stderr
        recipe = top(record, "client", software)
        setting = pasted(user, steps_of(recipe))
        fixed, after = recorded(
            tmp_path / "fixed.pcap", sshd.port, python_program(PARAMIKO_CLIENT_PROGRAM, setting)
        )
    no_openssh_syntax_for(record, "client")
    diagnosis = record.diagnosis or {}
    assert not any(s["kind"] == "upgrade" for r in diagnosis["recipes"] for s in r["steps"])
    # Nor is it told it can add nothing: that line is what sends a user to an upgrade.
    assert not any(line.startswith("The client (") for line in diagnosis["real_fix"])
    assert all(text.startswith("disabled_algorithms={") for text in steps_of(recipe))
    assert "connected" in after.stdout, (setting, after.stderr)
    assert_negotiates(fixed, recipe, "client")
    assert_adds_only(record, fixed, recipe, "client", paramiko_cert_variants)


def test_paramiko_host_key_step_disables_no_name_paramiko_ignores(tmp_path: Path) -> None:
    """Every certificate name the step disables has its base name disabled too: paramiko
    adds the certificate form of each base name it keeps, whatever the list says."""
    user = 'disabled_algorithms={"keys": ["ssh-ed25519"]}'
    with Sshd(["HostKeyAlgorithms ssh-ed25519"]) as sshd:
        record, _ = recorded(
            tmp_path / "failure.pcap", sshd.port, python_program(PARAMIKO_CLIENT_PROGRAM, user)
        )
    recipe = top(record, "client", label("paramiko"))
    assert added(recipe, "client") == {"ssh-ed25519"}, recipe["adds"]
    [text] = steps_of(recipe)
    disabled = set(ast.literal_eval(keyword_arguments(text)["disabled_algorithms"])["keys"])
    ignored = {n for n in disabled if n.endswith(CERT) and n.removesuffix(CERT) not in disabled}
    assert not ignored, text


ASYNCSSH_CLIENT_CASES = [
    pytest.param(
        ["KexAlgorithms curve25519-sha256"],
        'kex_algs=["diffie-hellman-group14-sha256"]',
        'kex_algs=["diffie-hellman-group14-sha256", "curve25519-sha256"]',
        id="kex",
    ),
    pytest.param(
        ["Ciphers aes256-gcm@openssh.com"],
        'encryption_algs=["aes128-ctr"]',
        'encryption_algs=["aes128-ctr", "aes256-gcm@openssh.com"]',
        id="cipher",
    ),
    pytest.param(
        ["Ciphers aes128-ctr", "MACs hmac-sha2-256-etm@openssh.com"],
        'mac_algs=["hmac-sha1"]',
        'mac_algs=["hmac-sha1", "hmac-sha2-256-etm@openssh.com"]',
        id="mac",
    ),
    pytest.param(
        ["HostKeyAlgorithms ssh-ed25519"],
        'server_host_key_algs=["rsa-sha2-256"]',
        'server_host_key_algs=["rsa-sha2-256", "ssh-ed25519"]',
        id="host-key",
    ),
    # The case: zlib only, against a server without it. AsyncSSH is told to add
    # none, its own default, in its own keyword, never that it "may not implement" it.
    pytest.param(
        ["Compression no"],
        'compression_algs=["zlib"]',
        'compression_algs=["zlib", "none"]',
        id="compression-zlib-only",
    ),
]


@pytest.mark.parametrize(("sshd_config", "user", "expected"), ASYNCSSH_CLIENT_CASES)
def test_top_client_recipe_makes_real_asyncssh_negotiate(
    tmp_path: Path, sshd_config: list[str], user: str, expected: str
) -> None:
    software = label("asyncssh")
    with Sshd(sshd_config) as sshd:
        record, before = recorded(
            tmp_path / "failure.pcap", sshd.port, python_program(ASYNCSSH_CLIENT_PROGRAM, user)
        )
        assert record.outcome == "failed" and "connected" not in before.stdout, before.stderr
        recipe = top(record, "client", software)
        assert steps_of(recipe) == [expected], recipe["steps"]
        setting = pasted(user, steps_of(recipe))
        fixed, after = recorded(
            tmp_path / "fixed.pcap", sshd.port, python_program(ASYNCSSH_CLIENT_PROGRAM, setting)
        )
    no_openssh_syntax_for(record, "client")
    assert not any("may not implement" in w for w in recipe["warnings"]), recipe["warnings"]
    assert "connected" in after.stdout, (setting, after.stderr)
    assert_negotiates(fixed, recipe, "client")
    assert_adds_only(record, fixed, recipe, "client")


LIBSSH_CLIENT_CASES = [
    pytest.param(
        ["KexAlgorithms curve25519-sha256"],
        {"SSH_OPTIONS_KEY_EXCHANGE": "diffie-hellman-group14-sha256"},
        id="kex",
    ),
    pytest.param(
        ["Ciphers aes256-gcm@openssh.com"],
        {"SSH_OPTIONS_CIPHERS_C_S": "aes128-ctr", "SSH_OPTIONS_CIPHERS_S_C": "aes128-ctr"},
        id="cipher",
    ),
    pytest.param(
        ["Ciphers aes128-ctr", "MACs hmac-sha2-512-etm@openssh.com"],
        {"SSH_OPTIONS_HMAC_C_S": "hmac-sha2-256", "SSH_OPTIONS_HMAC_S_C": "hmac-sha2-256"},
        id="mac",
    ),
    pytest.param(
        ["HostKeyAlgorithms ssh-ed25519"], {"SSH_OPTIONS_HOSTKEYS": "rsa-sha2-256"}, id="host-key"
    ),
    pytest.param(
        ["KexAlgorithms ecdh-sha2-nistp256", "Ciphers aes128-gcm@openssh.com"],
        {
            "SSH_OPTIONS_KEY_EXCHANGE": "curve25519-sha256",
            "SSH_OPTIONS_CIPHERS_C_S": "aes256-ctr",
            "SSH_OPTIONS_CIPHERS_S_C": "aes256-ctr",
        },
        id="kex-and-cipher",
    ),
]


@pytest.mark.parametrize(("sshd_config", "user"), LIBSSH_CLIENT_CASES)
def test_top_client_recipe_makes_real_libssh_negotiate(
    tmp_path: Path, sshd_config: list[str], user: dict[str, str]
) -> None:
    software = label("libssh")
    with Sshd(sshd_config) as sshd:
        record, before = recorded(
            tmp_path / "failure.pcap", sshd.port, lambda port: run_libssh(port, user)
        )
        assert record.outcome == "failed" and before.returncode == 1, before.stderr
        recipe = top(record, "client", software)
        options = libssh_options(user, steps_of(recipe))
        fixed, after = recorded(
            tmp_path / "fixed.pcap", sshd.port, lambda port: run_libssh(port, options)
        )
    no_openssh_syntax_for(record, "client")
    # Ciphers and MACs are set in both directions, or one direction keeps the user's list.
    for text in steps_of(recipe):
        if "_C_S" in text:
            assert text.count("_C_S") == text.count("_S_C") == 1, text
    assert after.returncode == 0 and negotiated(after), (options, after.stderr)
    assert_negotiates(fixed, recipe, "client")
    assert_adds_only(record, fixed, recipe, "client")


# -- server recipes: a restricted ssh client against a restricted library server -----------

HOST_KEYS = ("ed25519", "ecdsa", "rsa")

SERVER_CASES = [
    pytest.param(
        "paramiko",
        'disabled_algorithms={"kex": ["ecdh-sha2-nistp256", "ecdh-sha2-nistp384"]}',
        ["-oKexAlgorithms=ecdh-sha2-nistp256"],
        id="paramiko-kex",
    ),
    pytest.param(
        "paramiko",
        'disabled_algorithms={"ciphers": ["aes128-ctr", "aes256-ctr"]}',
        ["-oCiphers=aes128-ctr"],
        id="paramiko-cipher",
    ),
    pytest.param(
        "paramiko",
        'disabled_algorithms={"macs": ["hmac-sha2-512", "hmac-sha1"]}',
        ["-oCiphers=aes128-ctr", "-oMACs=hmac-sha2-512"],
        id="paramiko-mac",
    ),
    pytest.param(
        "paramiko",
        'disabled_algorithms={"kex": ["ecdh-sha2-nistp256"], "ciphers": ["aes128-ctr", "aes192-ctr"]}',
        ["-oKexAlgorithms=ecdh-sha2-nistp256", "-oCiphers=aes128-ctr"],
        id="paramiko-kex-and-cipher",
    ),
    pytest.param(
        "asyncssh",
        'kex_algs=["curve25519-sha256"]',
        ["-oKexAlgorithms=ecdh-sha2-nistp256"],
        id="asyncssh-kex",
    ),
    pytest.param(
        "asyncssh",
        'encryption_algs=["aes256-gcm@openssh.com"]',
        ["-oCiphers=aes128-ctr"],
        id="asyncssh-cipher",
    ),
    pytest.param(
        "asyncssh",
        'mac_algs=["hmac-sha2-512-etm@openssh.com"]',
        ["-oCiphers=aes128-ctr", "-oMACs=hmac-sha2-256"],
        id="asyncssh-mac",
    ),
    pytest.param(
        "asyncssh",
        'kex_algs=["curve25519-sha256"], encryption_algs=["aes256-gcm@openssh.com"]',
        ["-oKexAlgorithms=ecdh-sha2-nistp256", "-oCiphers=aes128-ctr"],
        id="asyncssh-kex-and-cipher",
    ),
]

SERVERS: dict[str, Callable[[Sequence[Path], str], AbstractContextManager[int]]] = {
    "paramiko": paramiko_server,
    "asyncssh": asyncssh_server,
}


def serving(key: str, setting: str) -> AbstractContextManager[int]:
    """The library's server program with `setting` pasted into its constructor call."""
    return SERVERS[key]([openssh_key(kind) for kind in HOST_KEYS], setting)


def ssh_client(opts: Sequence[str]) -> Callable[[int], PeerResult]:
    return lambda port: run_ssh(port, *opts, "-v", command=None, timeout=15)


@pytest.mark.parametrize(("key", "user", "client_opts"), SERVER_CASES)
def test_top_server_recipe_makes_real_library_server_negotiate(
    tmp_path: Path, key: str, user: str, client_opts: list[str]
) -> None:
    software = label(key)
    with serving(key, user) as port:
        record, before = recorded(tmp_path / "failure.pcap", port, ssh_client(client_opts))
    assert record.outcome == "failed" and before.returncode != 0, before.stderr
    recipe = top(record, "server", software)
    no_openssh_syntax_for(record, "server")
    assert "Match" not in recipe["scope"] and software in recipe["scope"], recipe["scope"]
    setting = pasted(user, steps_of(recipe))
    with serving(key, setting) as port:
        fixed, after = recorded(tmp_path / "fixed.pcap", port, ssh_client(client_opts))
    assert "SSH2_MSG_NEWKEYS received" in after.stderr, (setting, after.stderr)
    assert_negotiates(fixed, recipe, "server")
    assert_adds_only(record, fixed, recipe, "server")
