"""Go x/crypto/ssh, JSch and Apache MINA SSHD: banners, release blocks, and the step templates."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kexproxy.core.catalogue import version_key
from kexproxy.core.diagnosis.steps import PLACEHOLDERS
from kexproxy.core.implementations import CONFIGURABLE, Implementation, identify, implementations

KEYS = ("go", "jsch", "mina")
#: The placeholders a recipe writer fills (issue 10, item 2).


def impl(key: str) -> Implementation:
    return implementations()[key]


def templates(implementation: Implementation) -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = implementation.extra.get("template", {})
    return table


@pytest.mark.parametrize(
    ("banner", "key", "version"),
    [
        ("SSH-2.0-Go", "go", None),
        ("SSH-2.0-JSCH-0.1.54", "jsch", "0.1.54"),
        ("SSH-2.0-JSCH_0.2.17", "jsch", "0.2.17"),
        ("SSH-2.0-JSCH_2.28.7", "jsch", "2.28.7"),
        ("SSH-2.0-JSCH-null", "jsch", None),
        ("SSH-2.0-APACHE-SSHD-2.9.2", "mina", "2.9.2"),
        ("SSH-2.0-SSHD-CORE-1.7.0", "mina", "1.7.0"),
        ("SSH-2.0-SSHD-UNKNOWN", "mina", None),
        ("SSH-2.0-Gorilla_1.0", None, None),
        ("SSH-2.0-JSCHWAB", None, None),
    ],
)
def test_banners_name_the_library_and_its_release(
    banner: str, key: str | None, version: str | None
) -> None:
    peer = identify(banner)
    assert (peer.key, peer.version) == (key, version)


def test_a_go_banner_carries_no_version_so_its_capabilities_stay_unknown() -> None:
    peer = identify("SSH-2.0-Go")
    assert peer.label == "Go x/crypto/ssh"
    assert peer.can_offer("kex") is None and peer.defaults("client", "kex") is None


@pytest.mark.parametrize(
    ("key", "version", "since"),
    [
        # Go pseudo-versions order by their commit date.
        ("go", "0.0.0-20171231000000-0123456789ab", None),
        ("go", "0.0.0-20190617133340-57b3e21c3d56", "0.0.0-20190617"),
        ("go", "0.0.0-20211215000000-0123456789ab", "0.0.0-20211115"),
        ("go", "0.4.0", "0.0.0-20220314"),
        ("go", "0.38.0", "0.38.0"),
        ("go", "0.55.0", "0.39.0"),
        ("jsch", "0.1.55", "0.1.54"),
        ("jsch", "0.1.71", "0.1.68"),
        ("jsch", "2.27.3", "0.2.26"),
        ("jsch", "2.28.7", "2.28.0"),
        ("mina", "2.1.1", "2.0.0"),
        ("mina", "2.9.2", "2.8.0"),
        ("mina", "2.17.1", "2.15.0"),
    ],
)
def test_a_version_picks_the_block_that_describes_it(
    key: str, version: str, since: str | None
) -> None:
    release = impl(key).release(version)
    assert (release.since if release else None) == since


@pytest.mark.parametrize("key", KEYS)
def test_templates_cover_every_option_with_known_placeholders(key: str) -> None:
    implementation = impl(key)
    table = templates(implementation)
    notes: dict[str, Any] = implementation.extra.get("template_note", {})
    assert set(table) == set(implementation.roles) == set(implementation.configure)
    for role, steps in table.items():
        assert set(steps) <= {*CONFIGURABLE, "all"}, (key, role)
        for (option_role, category), _option in implementation.option.items():
            if option_role == role:
                assert category in steps or "all" in steps, (key, role, category)
        for text in steps.values():
            assert set(re.findall(r"\{(\w+)\}", text)) <= PLACEHOLDERS, (key, role, text)
        assert notes.get(role, {}).get("all"), (key, role)


@pytest.mark.parametrize("category", ["cipher", "mac", "compression"])
def test_jsch_steps_set_both_directions_to_the_same_list(category: str) -> None:
    text = templates(impl("jsch"))["client"][category]
    assert f'session.setConfig("{category}.c2s", "{{names}}");' in text
    assert f'session.setConfig("{category}.s2c", "{{names}}");' in text


def test_go_server_group_exchange_is_limited_to_the_releases_that_allowed_it() -> None:
    go = impl("go")
    [limit] = go.extra["role_limit"]
    assert (limit["role"], limit["category"]) == ("server", "kex")
    limited = set(limit["names"])
    before = [r for r in go.releases if version_key(r.since) < version_key(limit["until"])]
    assert any(limited <= r.can["kex"] for r in before)
    for release in go.releases:
        assert not limited & set(release.default[("server", "kex")]), release.since


@pytest.mark.parametrize("key", KEYS)
def test_every_release_names_its_source_and_both_roles_defaults(key: str) -> None:
    implementation = impl(key)
    for release in implementation.releases:
        assert "tag" in release.source or "commit" in release.source, release.since
        for role in implementation.roles:
            for category in ("kex", "cipher", "mac", "compression"):
                if (role, category) in implementation.option or category == "compression":
                    assert release.default.get((role, category)), (key, release.since, role)


def test_the_documented_changes_are_where_the_sources_put_them() -> None:
    go, jsch, mina = impl("go"), impl("jsch"), impl("mina")

    def default(i: Implementation, version: str, role: str, category: str) -> tuple[str, ...]:
        release = i.release(version)
        assert release is not None
        return release.default[(role, category)]  # type: ignore[index]

    assert "diffie-hellman-group1-sha1" in default(go, "0.0.0-20190101", "client", "kex")
    assert "diffie-hellman-group1-sha1" not in default(go, "0.0.0-20191001", "client", "kex")
    assert default(go, "0.40.0", "client", "kex")[0] == "mlkem768x25519-sha256"
    assert "ssh-rsa" in default(jsch, "0.1.72", "client", "host_key")
    assert "ssh-rsa" not in default(jsch, "0.2.0", "client", "host_key")
    assert default(jsch, "0.2.26", "client", "cipher")[0] == "aes128-gcm@openssh.com"
    assert "ssh-rsa" in default(mina, "2.3.0", "client", "host_key")
    assert "rsa-sha2-256" not in default(mina, "2.3.0", "client", "host_key")
    assert "aes128-cbc" in default(mina, "2.13.0", "client", "cipher")
    assert "aes128-cbc" not in default(mina, "2.13.0", "server", "cipher")
    assert default(mina, "2.8.0", "server", "compression") == ("none", "zlib", "zlib@openssh.com")
    assert default(mina, "2.8.0", "client", "compression") == ("none",)
