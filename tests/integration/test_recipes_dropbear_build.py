"""kexproxy's Dropbear build recipes (localoptions.h lines) proven on a rebuilt dropbear and dbclient.

Dropbear's server lists, and dbclient's beyond what -c and -m pick from, are fixed at build
time, so the recipe is ``#define`` lines for localoptions.h. Each test records a failing
handshake with the installed Dropbear 2022.83 (the server, with a real OpenSSH client
restricted to a name it does not offer; or dbclient, with an sshd that takes only such a
name), takes the top recipe for the Dropbear side, and builds Debian's 2022.83 source twice:
with exactly the recipe's lines in localoptions.h, where the handshake must then negotiate
the added name, and with an empty localoptions.h, where it must still fail (so the lines are
what fixes it, not the source build itself).
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from kexproxy.core.catalogue import catalogue
from kexproxy.core.record import SessionRecord
from tests.integration.recipe_checks import (
    added,
    assert_negotiates_with,
    assert_own_syntax,
    recorded,
    top,
)
from tests.peers import (
    REQUIRE_ENV,
    Dropbear,
    PeerError,
    PeerResult,
    Sshd,
    dropbear_build,
    run_command,
    run_dbclient,
    run_ssh,
    which_or_skip,
)
from tests.peers.dropbear_build import Build, build_dropbear, source_or_skip

pytestmark = pytest.mark.peers

INSTALLED = "Dropbear 2022.83"
#: The server's lists a client must match; host keys follow the keys given, the same here.
SERVER_LISTS = (
    "kex_algorithms",
    "encryption_algorithms_client_to_server",
    "mac_algorithms_client_to_server",
    "compression_algorithms_client_to_server",
)


@pytest.fixture(scope="session")
def dropbear_builds(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Build]:
    """build_dropbear for this test session, one build per localoptions.h text.

    Under pytest-xdist every worker has its own basetemp inside one shared parent, so the
    builds go there and a variant built by one worker serves the others.
    """
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if base.name.startswith("popen-gw") else base) / "dropbear-builds"
    root.mkdir(parents=True, exist_ok=True)

    def build(localoptions: str) -> Build:
        made = build_dropbear(localoptions, root)
        print(f"dropbear build ({len(localoptions.splitlines())} lines): {made.seconds:.1f}s")
        return made

    return build


def offers(record: SessionRecord) -> dict[str, list[str]]:
    """The server's lists, markers (kex-strict, kexguess2) left out."""
    kexinit = record.server_kexinit
    assert kexinit is not None
    cat = catalogue()
    return {rfc: [n for n in kexinit[rfc] if not cat.is_marker(n)] for rfc in SERVER_LISTS}


CASES = [
    # group1 is client-only by default (DROPBEAR_DH_GROUP1_CLIENTONLY): two macros.
    pytest.param(["-oKexAlgorithms=diffie-hellman-group1-sha1"], id="kex-group1"),
    pytest.param(["-oCiphers=aes128-cbc"], id="cipher-cbc"),
    pytest.param(["-oCiphers=aes128-ctr", "-oMACs=hmac-sha2-512"], id="mac-sha2-512"),
]


@pytest.mark.slow
@pytest.mark.parametrize("client_opts", CASES)
def test_top_server_recipe_built_into_dropbear_makes_ssh_negotiate(
    tmp_path: Path, client_opts: list[str], dropbear_builds: Callable[[str], Build]
) -> None:
    def ssh(port: int) -> PeerResult:
        return run_ssh(port, *client_opts)

    with Dropbear() as installed:
        failure, result = recorded(tmp_path / "installed.pcap", installed.port, ssh)
    assert "Unable to negotiate" in result.stderr, result.stderr
    recipe = top(failure, "server")
    assert_own_syntax(failure, recipe, INSTALLED, {"dropbear_build"})
    [step] = recipe["steps"]
    lines = step["text"].splitlines()
    assert lines and all(line.startswith("#define DROPBEAR_") for line in lines), lines
    assert any("localoptions.h" in note for note in recipe["notes"]), recipe["notes"]

    plain = dropbear_builds("")
    with Dropbear(binary=plain.dropbear) as server:
        unchanged, result = recorded(tmp_path / "plain.pcap", server.port, ssh)
    assert unchanged.outcome == "failed", unchanged.outcome
    assert unchanged.failing_lists == failure.failing_lists
    # The source build offers what Debian's installed build does, so the recipe read from
    # the installed server is the one the rebuilt server needs.
    assert offers(unchanged) == offers(failure)

    fixed = dropbear_builds(step["text"] + "\n")
    with Dropbear(binary=fixed.dropbear) as server:
        applied, result = recorded(tmp_path / "fixed.pcap", server.port, ssh)
    assert "Unable to negotiate" not in result.stderr, result.stderr
    assert_negotiates_with(applied, added(recipe))


@pytest.mark.slow
def test_top_client_recipe_built_into_dbclient_makes_it_negotiate(
    tmp_path: Path, dropbear_builds: Callable[[str], Build]
) -> None:
    """dbclient's -c takes only ciphers its build has: for CBC the recipe is a rebuilt dbclient."""
    with Sshd(["Ciphers aes128-cbc"]) as sshd:
        failure, result = recorded(tmp_path / "installed.pcap", sshd.port, run_dbclient)
        assert "No matching algo" in result.stderr, result.stderr
        recipe = top(failure, "client")
        assert_own_syntax(failure, recipe, INSTALLED, {"dropbear_build"})
        assert recipe["command"] is None, recipe["command"]
        [step] = recipe["steps"]
        assert all(line.startswith("#define DROPBEAR_") for line in step["text"].splitlines())

        plain = dropbear_builds("")
        unchanged, result = recorded(
            tmp_path / "plain.pcap", sshd.port, lambda p: run_dbclient(p, binary=plain.dbclient)
        )
        assert unchanged.outcome == "failed", unchanged.outcome
        fixed = dropbear_builds(step["text"] + "\n")
        applied, result = recorded(
            tmp_path / "fixed.pcap", sshd.port, lambda p: run_dbclient(p, binary=fixed.dbclient)
        )
    assert result.returncode == 0, result.stderr
    assert_negotiates_with(applied, added(recipe))


@pytest.mark.parametrize("algorithm", ["ssh-dss", "ecdsa-sha2-nistp384"])
def test_a_missing_host_key_type_gets_a_dropbearkey_step(tmp_path: Path, algorithm: str) -> None:
    """Dropbear offers a host key algorithm only for a host key it holds, and one ECDSA size,
    its key's (svr-runopts.c load_all_hostkeys): DSS is built into 2022.83 and ECDSA covers
    every curve, so the recipe makes the key (never over an existing file), no rebuild, and
    the installed dropbear started with it beside its keys offers the algorithm."""

    def ssh(port: int) -> PeerResult:
        return run_ssh(port, f"-oHostKeyAlgorithms={algorithm}")

    with Dropbear() as installed:
        failure, result = recorded(tmp_path / "installed.pcap", installed.port, ssh)
    assert "Unable to negotiate" in result.stderr, result.stderr
    recipe = top(failure, "server")
    assert_own_syntax(failure, recipe, INSTALLED, {"host_key"})
    [step] = recipe["steps"]
    guard, _, command = step["text"].partition(" || ")
    argv = shlex.split(command)
    path = argv[argv.index("-f") + 1]
    assert argv[0] == "dropbearkey" and guard == f"[ -e {path} ]"
    assert any("-r" in note for note in recipe["notes"]), recipe["notes"]
    local = tmp_path / Path(path).name
    argv[argv.index("-f") + 1] = str(local)
    run_command([which_or_skip("dropbearkey"), *argv[1:]], timeout=120)
    assert local.exists()
    with Dropbear(["-r", str(local)]) as server:
        applied, result = recorded(tmp_path / "fixed.pcap", server.port, ssh)
    assert "Unable to negotiate" not in result.stderr, result.stderr
    assert_negotiates_with(applied, {algorithm})


# -- the source: pinned, checked, and a skip (or a CI failure) when it cannot be had -------


def test_the_source_checks_refuse_a_changed_tarball_and_an_unreachable_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsc = source_or_skip().with_name(dropbear_build.DSC)
    assert dropbear_build.dsc_sha256(dsc.read_text(), dropbear_build.TARBALL) == (
        dropbear_build.TARBALL_SHA256
    )
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copyfile(dsc, cache / dropbear_build.DSC)
    (cache / dropbear_build.TARBALL).write_bytes(b"not the tarball")
    with pytest.raises(PeerError, match="SHA-256"):
        dropbear_build.fetch_source(cache)
    assert not (cache / dropbear_build.TARBALL).exists()

    # Nothing listens on port 1 of loopback: the fetch fails, and the test skips, or fails in CI.
    monkeypatch.setattr(dropbear_build, "DEBIAN_POOL", "http://127.0.0.1:1/")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="cannot fetch"):
        source_or_skip()
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="cannot fetch"):
        source_or_skip()
