"""kexproxy's recipes applied to real OpenSSH on loopback, as a user would apply them.

Each test records a failing handshake between a real sshd and ssh with tcpdump, reads it
with the same code as ``kexproxy read``, and applies the top recipe for one side exactly as
printed: a server recipe by editing the keyword's existing line of the real sshd_config (the
way the recipe's note says: add the name to the line that is there) or adding it when there
is none, a host key step by running its ssh-keygen and adding its HostKey line; a client
recipe by running its command, or, when the user's own options already set the keyword,
by adding the name to that option. The handshake must then complete with an added name
chosen; a recipe that does not work fails the test.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from kexproxy.core.record import JSONDict, SessionRecord
from kexproxy.pipeline import capture_records
from tests.peers import LOOPBACK, PeerResult, Sshd, Tcpdump, openssh_key, run_asyncssh, run_ssh

pytestmark = pytest.mark.peers

#: Where ssh -v names each negotiated algorithm (OpenSSH kex.c, kex_choose_conf).
KEX_LINE = re.compile(r"debug1: kex: algorithm: (\S+)")
HOSTKEY_LINE = re.compile(r"debug1: kex: host key algorithm: (\S+)")
CIPHER_LINE = re.compile(r"debug1: kex: (?:client->server|server->client) cipher: (\S+) MAC: (\S+)")


@contextmanager
def failing(
    tmp_path: Path, sshd_config: Sequence[str], client_opts: Sequence[str], **sshd: object
) -> Iterator[tuple[Sshd, SessionRecord]]:
    """A real sshd, kept running, and the record of a failing handshake with it."""
    path = tmp_path / "failure.pcap"
    with Sshd(sshd_config, **sshd) as server:  # type: ignore[arg-type]
        with Tcpdump(path, server.port):
            result = run_ssh(server.port, *client_opts)
        assert result.negotiation_message, result.stderr
        [record] = capture_records(str(path))
        assert record.outcome == "failed", record.outcome
        yield server, record


def top(record: SessionRecord, side: str) -> JSONDict:
    """The best recipe for `side`, checked to cover every failing list."""
    recipes = [r for r in (record.diagnosis or {})["recipes"] if r["side"] == side]
    assert recipes, (record.diagnosis or {})["recipes"]
    recipe: JSONDict = min(recipes, key=lambda r: r["rank"])
    assert set(recipe["covers"]) == set(record.failing_lists), recipe
    return recipe


def added(recipe: JSONDict, side: str) -> set[str]:
    return {a["name"] for a in recipe["adds"] if a["side"] == side}


def chosen(result: PeerResult) -> set[str]:
    names = set(KEX_LINE.findall(result.stderr)) | set(HOSTKEY_LINE.findall(result.stderr))
    for cipher, mac in CIPHER_LINE.findall(result.stderr):
        names |= {cipher, mac}
    return names


def assert_negotiates(result: PeerResult, names: set[str]) -> None:
    """The handshake finished and chose one of the added names."""
    assert "SSH2_MSG_NEWKEYS received" in result.stderr, result.stderr
    assert "Unable to negotiate" not in result.stderr
    assert names & chosen(result), (names, chosen(result))


def edit_sshd_config(lines: Sequence[str], step: str) -> list[str]:
    """An sshd_config line applied as a user would: "+names" joins the keyword's line."""
    keyword, _, value = step.partition(" ")
    out = list(lines)
    for index, line in enumerate(out):
        if line.split(" ", 1)[0].lower() == keyword.lower():
            out[index] = f"{line},{value[1:]}" if value.startswith("+") else f"{keyword} {value}"
            return out
    return [*out, step]


def edit_options(opts: Sequence[str], option: str) -> list[str]:
    """An ``-oKey=+names`` option applied to the user's own: joined to theirs if set."""
    key, _, value = option[2:].partition("=")
    out = list(opts)
    for index, opt in enumerate(out):
        if opt.startswith("-o") and opt[2:].split("=", 1)[0].lower() == key.lower():
            out[index] = f"{opt},{value[1:]}" if value.startswith("+") else option
            return out
    return [option, *out]


def apply_server(
    recipe: JSONDict, config: Sequence[str], tmp_path: Path
) -> tuple[list[str], list[str]]:
    """The server's steps applied: sshd_config lines edited, host keys made. Returns the
    new config and the HostKey lines to add beside the fixture's keys."""
    lines = list(config)
    host_keys: list[str] = []
    for step in recipe["steps"]:
        if step["side"] != "server":
            continue
        assert step["software"].startswith("OpenSSH ")
        if step["kind"] == "sshd_config":
            lines = edit_sshd_config(lines, step["text"])
        elif step["kind"] == "host_key":
            keygen, hostkey = step["text"].split("\n")
            guard, _, keygen = keygen.partition(" || ")
            argv = shlex.split(keygen)
            path = argv[argv.index("-f") + 1]
            local = tmp_path / Path(path).name
            argv[argv.index("-f") + 1] = str(local)
            assert argv[0] == "ssh-keygen" and guard == f"[ -e {path} ]"
            subprocess.run(argv, check=True, capture_output=True, timeout=60)
            assert hostkey == f"HostKey {path}"
            host_keys.append(f"HostKey {local}")
        else:
            raise AssertionError(f"not an OpenSSH server step: {step}")
    return lines, host_keys


def client_options(recipe: JSONDict, user_opts: Sequence[str], port: int) -> list[str]:
    """The client's steps applied: the command as printed when the user set nothing the
    recipe sets; else each option joined to the user's own (the recipe's note)."""
    steps = [s for s in recipe["steps"] if s["side"] == "client"]
    assert all(s["kind"] == "ssh_option" for s in steps), steps
    command = shlex.split(recipe["command"])
    assert command[0] == "ssh" and command[-1] == LOOPBACK
    assert command[-3:-1] == ["-p", str(port)]
    assert command[1:-3] == [s["text"] for s in steps]
    opts = list(user_opts)
    for step in steps:
        opts = edit_options(opts, step["text"])
    assert recipe["persist"]["text"].startswith(f"Host {LOOPBACK}\n    ")
    return opts


# -- server recipes: the client restricted, sshd with the line a user would edit -------------

SERVER_CASES = [
    pytest.param(
        ["KexAlgorithms curve25519-sha256"],
        ["-oKexAlgorithms=diffie-hellman-group14-sha256"],
        False,
        id="kex",
    ),
    # sshd offers rsa-sha2-512, so it evidently holds an RSA key: only the line changes.
    pytest.param(
        ["HostKeyAlgorithms ssh-ed25519,rsa-sha2-512"],
        ["-oHostKeyAlgorithms=ssh-rsa"],
        False,
        id="host-key-held",
    ),
    # sshd offers only Ed25519: the wire cannot tell a missing RSA key from a line hiding
    # it, so the recipe makes sure of the key (never over an existing one) and the line.
    pytest.param(
        ["HostKeyAlgorithms ssh-ed25519"],
        ["-oHostKeyAlgorithms=rsa-sha2-256"],
        True,
        id="host-key-hidden",
    ),
    pytest.param(["Ciphers aes256-gcm@openssh.com"], ["-oCiphers=aes128-ctr"], False, id="cipher"),
    pytest.param(
        ["Ciphers aes128-ctr", "MACs hmac-sha2-512-etm@openssh.com"],
        ["-oCiphers=aes128-ctr", "-oMACs=hmac-sha2-256"],
        False,
        id="mac",
    ),
    pytest.param(
        [],
        [
            "-oKexAlgorithms=diffie-hellman-group1-sha1",
            "-oHostKeyAlgorithms=ssh-rsa",
            "-oCiphers=3des-cbc",
            "-oMACs=hmac-md5",
        ],
        False,
        id="every-list",
    ),
]


@pytest.mark.parametrize(("sshd_config", "client_opts", "new_key"), SERVER_CASES)
def test_top_server_recipe_makes_real_sshd_negotiate(
    tmp_path: Path, sshd_config: list[str], client_opts: list[str], new_key: bool
) -> None:
    with failing(tmp_path, sshd_config, client_opts) as (_sshd, record):
        recipe = top(record, "server")
    config, keys = apply_server(recipe, sshd_config, tmp_path)
    assert bool(keys) == new_key, recipe["steps"]
    assert "Match" in recipe["scope"]
    existing = [f"HostKey {openssh_key(k)}" for k in ("ed25519", "rsa", "ecdsa")] if keys else []
    with Sshd([*config, *existing, *keys]) as sshd:
        result = run_ssh(sshd.port, *client_opts, "-v")
    assert_negotiates(result, added(recipe, "server"))


def test_a_missing_host_key_type_gets_a_host_key_step(tmp_path: Path) -> None:
    """sshd has only an Ed25519 key and the client takes only RSA: the server needs a key."""
    client_opts = ["-oHostKeyAlgorithms=rsa-sha2-512,rsa-sha2-256"]
    with failing(tmp_path, [], client_opts, host_keys=("ed25519",)) as (_sshd, record):
        recipe = top(record, "server")
    assert [s["kind"] for s in recipe["steps"]] == ["host_key", "sshd_config"]
    config, keys = apply_server(recipe, [], tmp_path)
    existing = f"HostKey {openssh_key('ed25519')}"
    with Sshd([*config, existing, *keys]) as sshd:
        result = run_ssh(sshd.port, *client_opts, "-v")
    assert_negotiates(result, added(recipe, "server"))


# -- client recipes: sshd restricted by its line, ssh at its defaults or restricted ----------

CLIENT_CASES = [
    pytest.param(
        ["KexAlgorithms diffie-hellman-group14-sha1,diffie-hellman-group1-sha1"], [], id="kex"
    ),
    pytest.param(["HostKeyAlgorithms ssh-rsa"], [], id="host-key"),
    pytest.param(["Ciphers aes128-cbc,3des-cbc"], [], id="cipher"),
    pytest.param(["Ciphers aes128-ctr", "MACs hmac-md5,hmac-sha1-96"], [], id="mac"),
    pytest.param(
        ["Ciphers aes128-ctr"], ["-oCiphers=aes256-gcm@openssh.com"], id="cipher-user-option"
    ),
]


@pytest.mark.parametrize(("sshd_config", "client_opts"), CLIENT_CASES)
def test_top_client_recipe_makes_real_ssh_negotiate(
    tmp_path: Path, sshd_config: list[str], client_opts: list[str]
) -> None:
    with failing(tmp_path, sshd_config, client_opts) as (sshd, record):
        recipe = top(record, "client")
        opts = client_options(recipe, client_opts, sshd.port)
        result = run_ssh(sshd.port, *opts, "-v")
    assert_negotiates(result, added(recipe, "client"))
    assert recipe["software"] == {"client": "OpenSSH 9.2"}


def test_a_two_sided_recipe_applied_to_both(tmp_path: Path) -> None:
    """Both sides restricted to classical methods, both able to do a post-quantum one: the
    strongest recipe has both add it, and applied to both it is what they choose."""
    sshd_config = ["KexAlgorithms curve25519-sha256"]
    client_opts = ["-oKexAlgorithms=diffie-hellman-group14-sha256"]
    with failing(tmp_path, sshd_config, client_opts) as (sshd, record):
        both = [r for r in (record.diagnosis or {})["recipes"] if r["side"] == "both"]
        assert both and both[0]["rank"] == 1, (record.diagnosis or {})["recipes"]
        recipe = both[0]
        opts = client_options(recipe, client_opts, sshd.port)
    config, _keys = apply_server(recipe, sshd_config, tmp_path)
    names = added(recipe, "client")
    assert names == added(recipe, "server") and all("sntrup" in n or "mlkem" in n for n in names)
    with Sshd(config) as server:
        result = run_ssh(server.port, *opts, "-v")
    assert_negotiates(result, names)


def test_a_compression_server_recipe_edits_sshd_compression_line(tmp_path: Path) -> None:
    """An OpenSSH client always offers none, so a compression failure needs a client that
    insists (AsyncSSH with compression_algs=["zlib@openssh.com"]) and an sshd that says
    Compression no: the server recipe edits that line, and the same client then logs in."""
    sshd_config = ["Compression no"]
    path = tmp_path / "failure.pcap"
    with Sshd(sshd_config) as server:
        with Tcpdump(path, server.port):
            result = run_asyncssh(server.port, compression_algs=["zlib@openssh.com"])
        assert result.returncode != 0, result.stderr
    [record] = capture_records(str(path))
    assert record.outcome == "failed"
    recipe = top(record, "server")
    assert [s["text"] for s in recipe["steps"]] == ["Compression yes"]
    config, _keys = apply_server(recipe, sshd_config, tmp_path)
    assert config == ["Compression yes"]
    with Sshd(config) as server:
        fixed = run_asyncssh(server.port, compression_algs=["zlib@openssh.com"])
    assert fixed.returncode == 0, fixed.stderr
