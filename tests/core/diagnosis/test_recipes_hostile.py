"""Recipes from hostile offers and banners: never a crash, never a stranger's byte in a step."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from kexproxy.core.catalogue import catalogue
from tests.core.diagnosis.records import diag, make_record

#: Names a real peer sends, and names that would break a config line or a shell word.
NAMES = st.sampled_from(
    [
        *sorted({a.name for a in catalogue() if not a.prefix})[:120],
        "evil\nPermitRootLogin yes",
        "a b",
        "$(reboot)",
        "x;rm -rf /",
        "\x1b[2J",
        "é",
        "",
        "A" * 300,
    ]
)
BANNERS = st.sampled_from(
    [
        "SSH-2.0-OpenSSH_9.2p1",
        "SSH-2.0-OpenSSH_6.6",
        "SSH-2.0-dropbear_2022.83",
        "SSH-2.0-PuTTY_Release_0.78",
        "SSH-2.0-paramiko_5.1.0",
        "SSH-2.0-AsyncSSH_2.24.1",
        "SSH-2.0-libssh_0.10.6",
        "SSH-2.0-Go",
        "SSH-2.0-JSCH-0.1.54",
        "SSH-2.0-Cisco-1.25",
        "SSH-2.0-ROSSSH",
        "SSH-2.0-OpenSSH_for_Windows_9.5",
        "SSH-2.0-APACHE-SSHD-2.12.0",
        "SSH-2.0-\x1b[31mEvil_1.0",
        "SSH-2.0-",
        "garbage",
    ]
)
KINDS = ("kex", "host_key", "cipher", "mac", "compression")
#: What a step's text may hold: printable ASCII, newlines between lines, tabs in code.
SAFE = re.compile(r"[\x20-\x7e\n\t]*")


@settings(max_examples=300, deadline=None)
@given(
    client=st.dictionaries(st.sampled_from(KINDS), st.lists(NAMES, min_size=1, max_size=6)),
    server=st.dictionaries(st.sampled_from(KINDS), st.lists(NAMES, min_size=1, max_size=6)),
    client_banner=BANNERS,
    server_banner=BANNERS,
)
def test_recipes_from_anything_are_safe_to_paste(
    client: dict[str, list[str]],
    server: dict[str, list[str]],
    client_banner: str,
    server_banner: str,
) -> None:
    record = make_record(
        client={k: ",".join(v) for k, v in client.items()},
        server={k: ",".join(v) for k, v in server.items()},
        client_banner=client_banner,
        server_banner=server_banner,
    )
    recipes = diag(record)["recipes"]
    if record.failures:
        assert recipes or diag(record)["real_fix"]
    for rank, recipe in enumerate(recipes, 1):
        assert recipe["rank"] == rank
        assert set(recipe["covers"]) <= set(record.failing_lists)
        for step in recipe["steps"]:
            assert SAFE.fullmatch(step["text"]), step
            assert "PermitRootLogin" not in step["text"] and "$(" not in step["text"]
        assert SAFE.fullmatch(recipe["command"] or ""), recipe["command"]
