"""kexproxy's client recipes applied to real non-OpenSSH clients: dbclient, Go x/crypto/ssh, JSch.

Each test records a failing handshake between a restricted sshd and the client with
tcpdump, reads it with the code behind ``kexproxy read``, takes the top client recipe, and
applies it as a user would: dbclient's printed command is run (with the test's own login
and batch options added, as run_dbclient adds them), and a library's step text is pasted
into the program after the user's own settings and the program rebuilt. The recipe must be
in the client's own syntax, never an ``ssh -o`` option or an sshd_config line, and the
changed client must then negotiate an added name.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

import pytest

from kexproxy.core.record import JSONDict
from tests.integration.recipe_checks import (
    added,
    assert_negotiates_with,
    assert_own_syntax,
    negotiated_names,
    recorded,
    top,
)
from tests.peers import LOOPBACK, PeerResult, Sshd, run_dbclient
from tests.peers.base import run_command
from tests.peers.library_clients import (
    GO_PROGRAM,
    JAVA_PROGRAM,
    build_go_program,
    build_java_class,
    java_command,
)

pytestmark = pytest.mark.peers

# -- dbclient: -c and -m on its command line ------------------------------------------------

DBCLIENT_CASES = [
    pytest.param(["Ciphers aes128-ctr"], ["-c", "aes256-ctr"], id="cipher"),
    pytest.param(
        ["Ciphers aes128-ctr", "MACs hmac-sha1"],
        ["-c", "aes128-ctr", "-m", "hmac-sha2-256"],
        id="mac",
    ),
    pytest.param(
        ["Ciphers aes128-ctr", "MACs hmac-sha1"],
        ["-c", "aes256-ctr", "-m", "hmac-sha2-256"],
        id="cipher-and-mac",
    ),
]


@pytest.mark.parametrize(("sshd_config", "dbclient_opts"), DBCLIENT_CASES)
def test_top_client_recipe_run_as_printed_makes_dbclient_negotiate(
    tmp_path: Path, sshd_config: list[str], dbclient_opts: list[str]
) -> None:
    with Sshd(sshd_config) as sshd:
        failure, result = recorded(
            tmp_path / "failure.pcap", sshd.port, lambda p: run_dbclient(p, *dbclient_opts)
        )
        assert "No matching algo" in result.stderr, result.stderr
        recipe = top(failure, "client")
        assert_own_syntax(failure, recipe, "Dropbear 2022.83", {"dbclient_option"})
        command = shlex.split(recipe["command"])
        assert command[0] == "dbclient" and command[-3:] == ["-p", str(sshd.port), LOOPBACK]
        words = [w for step in recipe["steps"] for w in shlex.split(step["text"])]
        assert command[1:-3] == words and words[0] in ("-c", "-m"), command
        # run_dbclient adds -y -y, the key and the user, then the same "-p PORT 127.0.0.1".
        applied, result = recorded(
            tmp_path / "applied.pcap", sshd.port, lambda p: run_dbclient(p, *command[1:-3])
        )
    assert result.returncode == 0, result.stderr
    assert_negotiates_with(applied, added(recipe))
    # With both lists restricted, each list's added name is the one chosen.
    assert added(recipe) <= negotiated_names(applied), (added(recipe), applied.negotiated)


# -- Go x/crypto/ssh: fields of ssh.ClientConfig in the program -----------------------------


GO_CASES = [
    # The library's defaults, and an sshd that takes only a CBC cipher Go can be set to.
    pytest.param(["Ciphers aes128-cbc"], [], id="cipher-cbc"),
    pytest.param(
        ["KexAlgorithms diffie-hellman-group14-sha256"],
        ['config.KeyExchanges = []string{"curve25519-sha256"}'],
        id="kex",
    ),
    pytest.param(
        ["Ciphers aes128-ctr", "MACs hmac-sha1"],
        ['config.MACs = []string{"hmac-sha2-256"}'],
        id="mac",
    ),
    pytest.param(
        ["HostKeyAlgorithms rsa-sha2-512"],
        ['config.HostKeyAlgorithms = []string{"ssh-ed25519"}'],
        id="host-key",
    ),
]


def program(template: str, lines: Sequence[str], indent: str) -> str:
    """The user's program with `lines` (their settings, then pasted steps) where it sets them."""
    body = [indent + line for text in lines for line in text.splitlines()]
    return template.replace("SETTINGS", "\n".join(body))


def run_program(argv: Sequence[str], port: int) -> PeerResult:
    return run_command([*argv, LOOPBACK, str(port)], timeout=40)


def apply_library_steps(recipe: JSONDict, user: Sequence[str]) -> list[str]:
    """The user's settings with the recipe's step text pasted after them, as printed."""
    return [*user, *(step["text"] for step in recipe["steps"])]


@pytest.mark.parametrize(("sshd_config", "user"), GO_CASES)
def test_top_client_recipe_pasted_into_a_go_program_makes_it_negotiate(
    tmp_path: Path, sshd_config: list[str], user: list[str]
) -> None:
    name = f"recipe_{tmp_path.name}"
    before = build_go_program(program(GO_PROGRAM, user, "\t"), f"{name}_before")
    with Sshd(sshd_config) as sshd:
        failure, result = recorded(
            tmp_path / "failure.pcap", sshd.port, lambda p: run_program([str(before)], p)
        )
        assert "ssh: no common algorithm for" in result.stderr, result.stderr
        recipe = top(failure, "client")
        assert_own_syntax(failure, recipe, "Go x/crypto/ssh", {"library_setting"})
        settings = apply_library_steps(recipe, user)
        assert all(s["text"].startswith("config.") for s in recipe["steps"]), recipe["steps"]
        after = build_go_program(program(GO_PROGRAM, settings, "\t"), f"{name}_after")
        applied, result = recorded(
            tmp_path / "applied.pcap", sshd.port, lambda p: run_program([str(after)], p)
        )
    assert result.returncode == 0 and "kex complete" in result.stderr, result.stderr
    assert_negotiates_with(applied, added(recipe))
    # "SSH-2.0-Go" names no release, so the recipe is written without knowing what the
    # installed library can do, and says so.
    assert failure.client_banner == "SSH-2.0-Go"
    assert "kexproxy does not know what the client's software can offer." in recipe["warnings"]


# -- JSch: Session.setConfig in the Java program --------------------------------------------


JSCH_CASES = [
    pytest.param(
        ["KexAlgorithms diffie-hellman-group14-sha1"],
        ['session.setConfig("kex", "diffie-hellman-group1-sha1");'],
        id="kex",
    ),
    pytest.param(
        ["Ciphers aes128-ctr"],
        [
            'session.setConfig("cipher.c2s", "aes256-cbc");',
            'session.setConfig("cipher.s2c", "aes256-cbc");',
        ],
        id="cipher",
    ),
    pytest.param(
        ["Ciphers aes128-ctr", "MACs hmac-sha1"],
        [
            'session.setConfig("mac.c2s", "hmac-sha2-256");',
            'session.setConfig("mac.s2c", "hmac-sha2-256");',
        ],
        id="mac",
    ),
    pytest.param(
        ["HostKeyAlgorithms ssh-rsa"],
        ['session.setConfig("server_host_key", "ecdsa-sha2-nistp256");'],
        id="host-key",
    ),
    pytest.param(
        ["Compression no"],
        [
            'session.setConfig("compression.c2s", "zlib@openssh.com");',
            'session.setConfig("compression.s2c", "zlib@openssh.com");',
        ],
        id="compression",
    ),
]


def java_program(class_name: str, lines: Sequence[str]) -> list[str]:
    source = program(JAVA_PROGRAM, lines, "    ").replace("CLASS", class_name)
    return java_command(build_java_class(source, class_name), class_name)


@pytest.mark.parametrize(("sshd_config", "user"), JSCH_CASES)
def test_top_client_recipe_pasted_into_a_jsch_program_makes_it_negotiate(
    tmp_path: Path, sshd_config: list[str], user: list[str]
) -> None:
    name = "Recipe" + "".join(c for c in tmp_path.name.title() if c.isalnum())
    before = java_program(f"{name}Before", user)
    with Sshd(sshd_config) as sshd:
        failure, result = recorded(
            tmp_path / "failure.pcap", sshd.port, lambda p: run_program(before, p)
        )
        assert "Algorithm negotiation fail" in result.stderr, result.stderr
        recipe = top(failure, "client")
        assert_own_syntax(failure, recipe, "JSch 0.1.54", {"library_setting"})
        settings = apply_library_steps(recipe, user)
        assert all(s["text"].startswith("session.setConfig(") for s in recipe["steps"])
        after = java_program(f"{name}After", settings)
        applied, result = recorded(
            tmp_path / "applied.pcap", sshd.port, lambda p: run_program(after, p)
        )
    assert result.returncode == 0 and "kex complete" in result.stderr, result.stderr
    assert_negotiates_with(applied, added(recipe))
