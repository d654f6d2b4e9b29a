"""Shared by the recipe tests for paramiko, AsyncSSH and libssh: record, read, paste, check.

A recipe is proven by a handshake, so each piece here is one thing a user does or sees: the
record of a real handshake, the top recipe for a side (checked to speak the library's own
syntax), the user's program with the recipe's setting pasted in place of theirs, and what
the wire shows once it runs.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from kexproxy.core.record import JSONDict, SessionRecord
from kexproxy.pipeline import capture_records
from tests.integration.library_records import CERT, installed, offered
from tests.peers import (
    PeerResult,
    Tcpdump,
    client_key,
    run_command,
)
from tests.peers.libssh_client import libssh_version

#: The only kind of step a library's side may get; OpenSSH's syntax never reaches it.
LIBRARY_STEP = "library_setting"
OPENSSH_KINDS = {"ssh_option", "ssh_config", "sshd_config"}

# The user's programs: SETTING is their own keyword arguments, replaced by the recipe's.
PARAMIKO_CLIENT_PROGRAM = r"""
import sys
import paramiko
port, key = int(sys.argv[1]), sys.argv[2]
client = paramiko.SSHClient()
client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
try:
    client.connect("127.0.0.1", port=port, username="root", key_filename=key,
                   look_for_keys=False, allow_agent=False, timeout=10, banner_timeout=10,
                   auth_timeout=10, SETTING)
    print("connected")
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1)
finally:
    client.close()
"""

ASYNCSSH_CLIENT_PROGRAM = r"""
import asyncio, sys
import asyncssh
port, key = int(sys.argv[1]), sys.argv[2]

async def main():
    async with asyncssh.connect("127.0.0.1", port, username="root", client_keys=[key],
                                known_hosts=None, config=None, agent_path=None,
                                connect_timeout=10, login_timeout=10, SETTING):
        print("connected")

try:
    asyncio.run(main())
except (OSError, asyncssh.Error) as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1)
"""

#: One ssh_options_set() call as libssh's steps spell it.
LIBSSH_CALL = re.compile(r'ssh_options_set\(session, (SSH_OPTIONS_[A-Z_]+), "([^"]*)"\);')


# -- recording and reading ----------------------------------------------------------------


def recorded(
    path: Path, port: int, run: Callable[[int], PeerResult]
) -> tuple[SessionRecord, PeerResult]:
    """The one record of `run` against `port`, captured with tcpdump and read as kexproxy reads it."""
    with Tcpdump(path, port):
        result = run(port)
    [record] = capture_records(str(path))
    return record, result


def top(record: SessionRecord, side: str, software: str) -> JSONDict:
    """The best recipe for `side`: it names the library, covers every failing list, and
    writes only library settings for it."""
    recipes = (record.diagnosis or {})["recipes"]
    mine = [r for r in recipes if r["side"] == side]
    assert mine, recipes
    recipe: JSONDict = min(mine, key=lambda r: r["rank"])
    assert set(recipe["covers"]) == set(record.failing_lists), recipe
    assert recipe["software"] == {side: software}, recipe
    assert recipe["steps"], recipe
    for step in recipe["steps"]:
        assert step["side"] == side and step["software"] == software, step
        assert step["kind"] == LIBRARY_STEP, step
    return recipe


def no_openssh_syntax_for(record: SessionRecord, side: str) -> None:
    """No recipe gives the library's side an ssh option or an sshd_config line."""
    for recipe in (record.diagnosis or {})["recipes"]:
        for step in recipe["steps"]:
            assert step["side"] != side or step["kind"] not in OPENSSH_KINDS, step


def added(recipe: JSONDict, side: str) -> set[str]:
    return {a["name"] for a in recipe["adds"] if a["side"] == side}


def assert_negotiates(record: SessionRecord, recipe: JSONDict, side: str) -> None:
    """The wire shows a completed key exchange that chose a name the recipe added on `side`."""
    assert record.outcome == "negotiated", (record.outcome, record.failures)
    chosen = set((record.negotiated or {}).values())
    assert added(recipe, side) & chosen, (recipe["adds"], record.negotiated)


def no_followers(names: set[str]) -> set[str]:
    return set()


def paramiko_cert_variants(names: set[str]) -> set[str]:
    """paramiko offers the certificate variant of every host key name it offers, after the
    names themselves (Transport.preferred_keys), so adding a name adds its variant too."""
    return {f"{name}{CERT}" for name in names if not name.endswith(CERT)}


def assert_adds_only(
    before: SessionRecord,
    after: SessionRecord,
    recipe: JSONDict,
    side: str,
    follows: Callable[[set[str]], set[str]] = no_followers,
) -> None:
    """The pasted setting changed each covered list by the recipe's names (and what the
    library itself puts with them) and nothing else: what the user left out stays out."""
    was = offered(before.client_kexinit if side == "client" else before.server_kexinit)
    now = offered(after.client_kexinit if side == "client" else after.server_kexinit)
    for rfc in recipe["covers"]:
        names = {a["name"] for a in recipe["adds"] if a["side"] == side and rfc in a["lists"]}
        assert names and not names & set(was[rfc]), (rfc, names, was[rfc])
        followers = follows(names) if rfc == "server_host_key_algorithms" else set()
        assert set(now[rfc]) == set(was[rfc]) | names | followers, (rfc, was[rfc], now[rfc])


# -- pasting a step into a program ----------------------------------------------------------


def keyword_arguments(text: str) -> dict[str, str]:
    """Each keyword argument of `text` (``a=1, b=[2]``) as its own source text, in order."""
    source = f"f({text})"
    call = ast.parse(source, mode="eval").body
    assert isinstance(call, ast.Call) and not call.args, text
    out: dict[str, str] = {}
    for keyword in call.keywords:
        value = ast.get_source_segment(source, keyword.value)
        assert keyword.arg is not None and value is not None, text
        out[keyword.arg] = value
    return out


def pasted(user: str, steps: Sequence[str]) -> str:
    """The user's keyword arguments with each step's replacing theirs of the same name.

    Several ``disabled_algorithms`` steps become one dictionary (paramiko's note: "merge
    them into one disabled_algorithms dictionary"); a keyword cannot be given twice.
    """
    kwargs = keyword_arguments(user)
    from_recipe: dict[str, str] = {}
    for text in steps:
        for name, value in keyword_arguments(text).items():
            if name in from_recipe:
                assert name == "disabled_algorithms", (name, steps)
                merged = {**ast.literal_eval(from_recipe[name]), **ast.literal_eval(value)}
                from_recipe[name] = json.dumps(merged)
            else:
                from_recipe[name] = value
    kwargs.update(from_recipe)
    return ", ".join(f"{name}={value}" for name, value in kwargs.items())


def python_program(script: str, setting: str) -> Callable[[int], PeerResult]:
    """`script` with `setting` in its connect call, run against a port with the test client key."""
    code = script.replace("SETTING", setting)
    return lambda port: run_command(
        [sys.executable, "-c", code, str(port), str(client_key())], timeout=40
    )


def libssh_options(user: Mapping[str, str], steps: Sequence[str]) -> dict[str, str]:
    """The user's ssh_options_set calls with each step's call replacing theirs for that option."""
    options = dict(user)
    for text in steps:
        assert LIBSSH_CALL.sub("", text).strip() == "", text
        options.update(LIBSSH_CALL.findall(text))
    return options


def label(key: str) -> str:
    """The installed library as kexproxy names it from its banner ("paramiko 5.1.0")."""
    if key == "libssh":
        return f"libssh {libssh_version()}"
    name = {"paramiko": "paramiko", "asyncssh": "AsyncSSH"}[key]
    return f"{name} {installed(key).__version__}"


def steps_of(recipe: JSONDict) -> list[str]:
    return [str(step["text"]) for step in recipe["steps"]]
