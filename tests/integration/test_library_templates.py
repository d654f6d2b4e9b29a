"""Each paramiko, AsyncSSH and libssh recipe step, filled in and applied as a user would, does what it says.

A step's text (the capability file's `[template.<role>]`) is filled with a new list for one
category and pasted into the library's own code: into ``SSHClient.connect(...)`` or
``paramiko.Transport(sock, ...)``, ``asyncssh.connect(...)`` or ``asyncssh.create_server(...)``,
and, for libssh, turned into the ``ssh_options_set`` calls it spells (the test client passes
them to libssh unchanged). The peer then runs through the relay, and the list it sends must be
the new one: the option really replaces the list, in both directions where there are two.
No libssh server is built here, so libssh's server steps are checked only for their text.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence

import pytest

from kexproxy.core.catalogue import LIST_CATEGORY, Category
from kexproxy.core.implementations import CONFIGURABLE, Release, Role, identify, implementations
from kexproxy.core.record import SessionRecord
from tests.integration.library_records import offered, relayed, release_of
from tests.peers import Sshd, openssh_key, python_module_or_skip, run_libssh, run_ssh
from tests.peers.base import LOOPBACK, PeerResult, run_command
from tests.peers.library_servers import asyncssh_server, paramiko_server
from tests.peers.libssh_client import libssh_version

pytestmark = pytest.mark.peers

#: What paramiko offers for compression once compress=True (Transport.use_compression).
PARAMIKO_COMPRESSED = ("zlib@openssh.com", "zlib", "none")
HOST_KEYS = ("ed25519", "ecdsa", "rsa")

_PARAMIKO_CLIENT = r"""
import sys
import paramiko
port = int(sys.argv[1])
client = paramiko.SSHClient()
client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
try:
    client.connect("127.0.0.1", port=port, username="kexproxy", password="-",
                   look_for_keys=False, allow_agent=False, timeout=10, banner_timeout=10,
                   auth_timeout=10, STEP)
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
client.close()
"""

_ASYNCSSH_CLIENT = r"""
import asyncio, sys
import asyncssh
port = int(sys.argv[1])

async def main():
    try:
        async with asyncssh.connect("127.0.0.1", port, username="kexproxy", password="-",
                                    known_hosts=None, config=None, agent_path=None,
                                    client_keys=None, connect_timeout=10, login_timeout=10,
                                    STEP):
            pass
    except (OSError, asyncssh.Error) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)

asyncio.run(main())
"""

#: One ssh_options_set() call as the libssh steps spell it.
LIBSSH_CALL = re.compile(r'ssh_options_set\(session, (SSH_OPTIONS_[A-Z_]+), "([^"]*)"\);')


def step(key: str, role: Role, category: Category) -> str:
    text: str = implementations()[key].extra["template"][role][category]
    return text


def fill(text: str, new: Sequence[str], can: Sequence[str], added: Sequence[str]) -> str:
    """The step with its placeholders filled, as the recipe writer fills them."""
    values = {
        "names": ",".join(new),
        "names_space": " ".join(new),
        "names_py": json.dumps(list(new)),
        "add": ",".join(added),
        "disabled_py": json.dumps([n for n in can if n not in new]),
        "host": LOOPBACK,
    }
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    assert not re.search(r"\{[a-z_]+\}", text), text
    return text


def installed_release(key: str) -> Release:
    if key == "libssh":
        return release_of(identify(f"SSH-2.0-libssh_{libssh_version()}"), key)
    python_module_or_skip(key)
    version = run_command([sys.executable, "-c", f"import {key}; print({key}.__version__)"])
    software = {"paramiko": "paramiko", "asyncssh": "AsyncSSH"}[key]
    return release_of(identify(f"SSH-2.0-{software}_{version.stdout.strip()}"), key)


def one_more(key: str, release: Release, role: Role, category: Category) -> list[str]:
    """A name this release can offer beyond its default, that needs nothing optional."""
    requires = implementations()[key].extra.get("requires", {})
    default = release.default[(role, category)]
    spare = [n for n in sorted(release.can[category]) if n not in default and n not in requires]
    return spare[:1]


def target(
    key: str, release: Release, role: Role, category: Category
) -> tuple[list[str], list[str]]:
    """The new list to ask for and the names it adds: one more name, or (paramiko) one fewer."""
    default = list(release.default[(role, category)])
    if key == "paramiko":
        # disabled_algorithms only removes; compression first needs compress=True.
        if category == "compression":
            return ["zlib@openssh.com", "none"], ["zlib@openssh.com"]
        first = default[0]
        return [n for n in default if n != first and not n.startswith(first + "-cert")], []
    added = one_more(key, release, role, category)
    assert added or category == "compression", (key, category)
    if not added:
        return default[1:] + default[:1], []
    return default + added, added


def python_client(script: str, filled: str) -> Callable[[int], PeerResult]:
    code = script.replace("STEP", filled)
    return lambda port: run_command([sys.executable, "-c", code, str(port)], timeout=40)


def libssh_client(filled: str) -> Callable[[int], PeerResult]:
    calls = LIBSSH_CALL.findall(filled)
    assert LIBSSH_CALL.sub("", filled).strip() == "", filled
    return lambda port: run_libssh(port, dict(calls))


def client_for(key: str, filled: str) -> Callable[[int], PeerResult]:
    if key == "paramiko":
        return python_client(_PARAMIKO_CLIENT, filled)
    if key == "asyncssh":
        return python_client(_ASYNCSSH_CLIENT, filled)
    return libssh_client(filled)


def lists_of(record: SessionRecord, role: Role, category: Category) -> list[list[str]]:
    side = record.client_kexinit if role == "client" else record.server_kexinit
    return [names for rfc, names in offered(side).items() if LIST_CATEGORY[rfc] == category]


@pytest.mark.parametrize("category", CONFIGURABLE)
@pytest.mark.parametrize("key", ["paramiko", "asyncssh", "libssh"])
def test_a_client_step_makes_the_client_send_the_new_list(key: str, category: Category) -> None:
    release = installed_release(key)
    new, added = target(key, release, "client", category)
    can = sorted(release.can[category])
    filled = fill(step(key, "client", category), new, can, added)
    with Sshd() as sshd:
        record = relayed(sshd.port, client_for(key, filled))
    assert identify(record.client_banner).key == key
    # Both directions of a cipher, MAC or compression list change together.
    for names in lists_of(record, "client", category):
        assert names == new, filled


SERVERS = {"paramiko": paramiko_server, "asyncssh": asyncssh_server}


#: Each library server's lists a step can set (AsyncSSH's host key list is its keys' own).
SERVER_CASES = [
    (key, category)
    for key in SERVERS
    for category in CONFIGURABLE
    if category in implementations()[key].extra["template"]["server"]
]


@pytest.mark.parametrize(("key", "category"), SERVER_CASES)
def test_a_server_step_makes_the_server_send_the_new_list(key: str, category: Category) -> None:
    templates = implementations()[key].extra["template"]["server"]
    release = installed_release(key)
    new, added = target(key, release, "server", category)
    can = sorted(release.can[category])
    filled = fill(templates[category], new, can, added)
    keys = [openssh_key(kind) for kind in HOST_KEYS]
    with SERVERS[key](keys, filled) as port:
        record = relayed(port, lambda p: run_ssh(p, command=None, timeout=15))
    assert identify(record.server_banner).key == key
    for names in lists_of(record, "server", category):
        if category == "host_key":
            # Only its own keys' types are ever offered: the one left out must be gone.
            assert names and set(names) <= set(new), (names, filled)
            assert release.default[("server", category)][0] not in names
        else:
            assert names == new, filled
