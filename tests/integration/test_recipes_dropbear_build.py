"""kexproxy's Dropbear server recipes (localoptions.h lines) proven on a rebuilt dropbear.

Dropbear's server lists are fixed at build time, so its recipe is ``#define`` lines for
localoptions.h. Each test restricts a real OpenSSH client to a name the installed Dropbear
2022.83 does not offer but can be built with, records the failing handshake against the
installed server, takes the top server recipe, and builds Debian's 2022.83 source twice:
with exactly the recipe's lines in localoptions.h, where the client must then negotiate the
added name, and with an empty localoptions.h, where it must still fail (so the lines are
what fixes it, not the source build itself).
"""

from __future__ import annotations

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
from tests.peers import Dropbear, PeerResult, run_ssh
from tests.peers.dropbear_build import Build, build_dropbear

pytestmark = [pytest.mark.peers, pytest.mark.slow]

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
]


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
    assert_own_syntax(recipe, INSTALLED, {"dropbear_build"})
    [step] = recipe["steps"]
    lines = step["text"].splitlines()
    assert lines and all(line.startswith("#define DROPBEAR_") for line in lines), lines
    assert any("localoptions.h" in note for note in recipe["notes"]), recipe["notes"]

    plain = dropbear_builds("")
    with Dropbear(binary=plain.binary) as server:
        unchanged, result = recorded(tmp_path / "plain.pcap", server.port, ssh)
    assert unchanged.outcome == "failed", unchanged.outcome
    assert unchanged.failing_lists == failure.failing_lists
    # The source build offers what Debian's installed build does, so the recipe read from
    # the installed server is the one the rebuilt server needs.
    assert offers(unchanged) == offers(failure)

    fixed = dropbear_builds(step["text"] + "\n")
    with Dropbear(binary=fixed.binary) as server:
        applied, result = recorded(tmp_path / "fixed.pcap", server.port, ssh)
    assert "Unable to negotiate" not in result.stderr, result.stderr
    assert_negotiates_with(applied, added(recipe))
