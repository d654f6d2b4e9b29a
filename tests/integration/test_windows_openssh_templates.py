"""Windows OpenSSH's recipe steps, as kexproxy prints them, read back by a real OpenSSH's own parser.

No Windows host is available here. ssh.exe and sshd.exe read their options with OpenSSH's
readconf.c and servconf.c, which the port leaves as upstream's, so the local ``ssh -G`` and
``sshd -T`` show whether a filled step is accepted and really appends the added name to the
list, as the templates claim. The Windows sshd_config ships ending in a Match block, and the
note says to put the line above it: below it sshd refuses the keyword, which is checked too.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import Path

import pytest

from kexproxy.core.catalogue import Category, catalogue
from kexproxy.core.diagnosis.steps import Change, Target, write
from kexproxy.core.implementations import Peer, identify
from kexproxy.core.negotiation import Role
from tests.peers import openssh_key, run_command, which_or_skip

pytestmark = pytest.mark.peers

#: contrib/win32/openssh/sshd_config (PowerShell/openssh-portable v9.5.0.0): its last lines.
WINDOWS_MATCH_BLOCK = (
    "Match Group administrators",
    "       AuthorizedKeysFile __PROGRAMDATA__/ssh/administrators_authorized_keys",
)
#: How ssh -G and sshd -T print each list's keyword.
DUMPED: dict[str, str] = {
    "kex": "kexalgorithms",
    "host_key": "hostkeyalgorithms",
    "cipher": "ciphers",
    "mac": "macs",
}
LISTS: tuple[Category, ...] = ("kex", "host_key", "cipher", "mac")


def step(role: Role, category: Category, name: str = "zlib@openssh.com") -> str:
    """What a recipe for a Windows side prints: the sshd_config line, or the ssh command."""
    peer = local_windows_peer()
    written = write(
        peer,
        role,
        [Change(category, (name,), ())],
        target=Target("example.test", None),
        cat=catalogue(),
    )
    assert written.ok and written.notes and "%" in written.notes[0]  # Windows paths
    if role == "client":
        assert written.command is not None
        return written.command
    [line] = written.steps
    return str(line["text"])


def local_windows_peer() -> Peer:
    """The Windows OpenSSH built from the same upstream release as the local OpenSSH."""
    version = run_command([which_or_skip("ssh"), "-V"]).stderr
    found = re.search(r"OpenSSH_([0-9]+\.[0-9]+)", version)
    assert found, version
    return identify(f"SSH-2.0-OpenSSH_for_Windows_{found.group(1)}")


def dumped(output: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in output.splitlines() if " " in line)


def sshd_dump(tmp_path: Path, lines: Sequence[str]) -> tuple[int, dict[str, str], str]:
    """sshd -T on a config holding `lines` before the shipped Match block."""
    config = tmp_path / "sshd_config"
    body = [f"HostKey {openssh_key('ed25519')}", *lines, *WINDOWS_MATCH_BLOCK]
    config.write_text("\n".join(body) + "\n")
    result = run_command([which_or_skip("sshd"), "-T", "-f", str(config)])
    return result.returncode, dumped(result.stdout), result.stderr


def ssh_dump(command: str) -> dict[str, str]:
    """ssh -G with the options of a filled client step, ignoring any user or system config."""
    argv = shlex.split(command)
    assert argv[0] == "ssh" and argv[-1] == "example.test", argv
    result = run_command([which_or_skip("ssh"), "-G", "-F", "/dev/null", *argv[1:]])
    assert result.returncode == 0, result.stderr
    return dumped(result.stdout)


def addable(peer: Peer, category: Category, offered: Sequence[str]) -> str:
    can = peer.can_offer(category)
    assert can is not None
    candidates = sorted(set(can) - set(offered))
    assert candidates, category
    return candidates[0]


@pytest.mark.parametrize("category", LISTS)
def test_a_filled_server_step_appends_the_name_to_what_sshd_offers(
    tmp_path: Path, category: Category
) -> None:
    code, before, error = sshd_dump(tmp_path, [])
    assert code == 0, error
    offered = before[DUMPED[category]].split(",")
    name = addable(local_windows_peer(), category, offered)
    code, after, error = sshd_dump(tmp_path, [step("server", category, name)])
    assert code == 0, error
    assert after[DUMPED[category]].split(",") == [*offered, name]


def test_the_server_step_is_refused_below_the_shipped_match_block(tmp_path: Path) -> None:
    config = tmp_path / "sshd_config"
    line = step("server", "cipher", "aes128-cbc")
    config.write_text(
        "\n".join([f"HostKey {openssh_key('ed25519')}", *WINDOWS_MATCH_BLOCK, line]) + "\n"
    )
    result = run_command([which_or_skip("sshd"), "-T", "-f", str(config)])
    assert result.returncode != 0
    assert "not allowed within a Match block" in result.stderr


def test_the_server_compression_step_is_accepted(tmp_path: Path) -> None:
    code, after, error = sshd_dump(tmp_path, [step("server", "compression")])
    assert code == 0, error
    assert after["compression"] == "yes"


@pytest.mark.parametrize("category", LISTS)
def test_a_filled_client_step_appends_the_name_to_what_ssh_offers(category: Category) -> None:
    host = "example.test"
    before = ssh_dump(f"ssh {host}")[DUMPED[category]].split(",")
    name = addable(local_windows_peer(), category, before)
    after = ssh_dump(step("client", category, name))
    assert after[DUMPED[category]].split(",") == [*before, name]


def test_the_client_compression_step_turns_compression_on() -> None:
    assert ssh_dump("ssh example.test")["compression"] == "no"
    assert ssh_dump(step("client", "compression"))["compression"] == "yes"
