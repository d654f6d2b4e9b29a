"""Windows OpenSSH, Cisco IOS, Junos and RouterOS capability files: identity, honesty, templates.

The device files describe peers nobody could test here, so these checks hold them to what
can be checked without one: a banner that names no release leaves capabilities unknown, each
file says at its top that no device was tried, and every step template is well formed and
uses the token table where the device names algorithms its own way.
"""

from __future__ import annotations

import re
import string
from importlib import resources

import pytest

from kexproxy.core.catalogue import catalogue
from kexproxy.core.diagnosis.steps import PLACEHOLDERS
from kexproxy.core.implementations import (
    CONFIGURABLE,
    Implementation,
    identify,
    implementations,
)

DEVICES = ("cisco-ios", "junos", "routeros")
MINE = ("windows-openssh", *DEVICES)
#: The placeholders the recipe writer fills (issue 10 brief), plus the whole list through the
#: token table, which Junos's key-exchange set needs and the writer does not have yet.
TOKEN_PLACEHOLDERS = {"add_tokens", "names_tokens"}


def impl(key: str) -> Implementation:
    return implementations()[key]


def templates(key: str) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = impl(key).extra.get("template", {})
    return found


def options(implementation: Implementation) -> dict[tuple[str, str], str]:
    return {(role, category): value for (role, category), value in implementation.option.items()}


def tokens(implementation: Implementation) -> dict[str, dict[str, str]]:
    return {category: dict(table) for category, table in implementation.token.items()}


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_windows_openssh_is_openssh_at_the_same_release() -> None:
    windows = identify("SSH-2.0-OpenSSH_for_Windows_9.5")
    upstream = identify("SSH-2.0-OpenSSH_9.5p1")
    assert (windows.key, windows.version, windows.label) == (
        "windows-openssh",
        "9.5",
        "Windows OpenSSH 9.5",
    )
    assert upstream.key == "openssh"
    for category in CONFIGURABLE:
        assert windows.can_offer(category) == upstream.can_offer(category)
        for role in ("client", "server"):
            assert windows.defaults(role, category) == upstream.defaults(role, category)


def test_the_9_8_banner_comment_does_not_hide_the_release() -> None:
    peer = identify("SSH-2.0-OpenSSH_for_Windows_9.8 Win32-OpenSSH-GitHub")
    assert (peer.key, peer.version) == ("windows-openssh", "9.8")


def test_every_windows_release_is_built_from_the_upstream_release_it_names() -> None:
    upstream = impl("windows-openssh").extra["upstream"]
    assert {"7.7", "8.1", "9.5"} <= set(upstream)
    assert all(windows == built_from for windows, built_from in upstream.items())
    for version in impl("windows-openssh").extra["examples"].values():
        assert version in upstream


def test_the_pre_8_1_compression_deviation_is_real_and_named_in_the_catalogue() -> None:
    (deviation,) = impl("windows-openssh").extra["deviation"]
    assert (deviation["since"], deviation["until"]) == ("7.6", "8.1")
    assert deviation["can"] == {"compression": ["none"]}
    derived = identify("SSH-2.0-OpenSSH_for_Windows_7.7").defaults("server", "compression")
    assert derived is not None and "zlib@openssh.com" in derived
    assert deviation["default"]["server"]["compression"] == ["none"]


@pytest.mark.parametrize("key", DEVICES)
def test_a_device_banner_names_no_release_so_nothing_is_assumed(key: str) -> None:
    for software in impl(key).extra["examples"]:
        peer = identify(f"SSH-2.0-{software}")
        assert peer.key == key and peer.version is None
        for category in CONFIGURABLE:
            assert peer.can_offer(category) is None
            assert peer.defaults("server", category) is None


@pytest.mark.parametrize(
    ("banner", "key"),
    [
        ("SSH-1.99-Cisco-1.25", "cisco-ios"),
        ("SSH-2.0-Cisco-2.0", None),
        ("SSH-2.0-ROSSSH", "routeros"),
        ("SSH-2.0-ROSSSH_x", None),
        ("SSH-2.0-JSSH_4.1", "junos"),
        ("SSH-2.0-OpenSSH_7.5", "openssh"),
    ],
)
def test_device_banners_are_matched_exactly(banner: str, key: str | None) -> None:
    assert identify(banner).key == key


@pytest.mark.parametrize("key", DEVICES)
def test_a_device_file_says_at_its_top_that_no_device_was_tried(key: str) -> None:
    text = (
        resources.files("kexproxy.core.data")
        .joinpath("implementations", f"{key}.toml")
        .read_text("utf-8")
    )
    assert text.startswith("# NO REAL DEVICE: ")


@pytest.mark.parametrize("key", MINE)
def test_templates_name_a_category_and_a_configured_role(key: str) -> None:
    implementation = impl(key)
    notes = implementation.extra.get("template_note", {})
    for role, table in templates(key).items():
        assert role in implementation.configure, (key, role)
        assert set(table) <= {*CONFIGURABLE, "all"}, (key, role)
        assert notes.get(role, {}).get("all"), (key, role)


@pytest.mark.parametrize("key", MINE)
def test_templates_use_only_known_placeholders_and_tables_that_exist(key: str) -> None:
    implementation = impl(key)
    for role, table in templates(key).items():
        for category, text in table.items():
            used = fields(text)
            assert used <= PLACEHOLDERS, (key, role, category, used - PLACEHOLDERS)
            if used & TOKEN_PLACEHOLDERS:
                assert tokens(implementation).get(category), (key, category)
            if "option" in used:
                assert (role, category) in options(implementation), (key, role, category)


def test_cisco_steps_carry_the_whole_list_because_the_command_replaces_it() -> None:
    for table in templates("cisco-ios").values():
        for text in table.values():
            assert fields(text) == {"names_space"}, text


def test_cisco_templates_are_its_own_commands_for_each_option() -> None:
    option = options(impl("cisco-ios"))
    for role, table in templates("cisco-ios").items():
        for category, text in table.items():
            assert text == f"{option[(role, category)]} {{names_space}}"
    filled = templates("cisco-ios")["server"]["cipher"].format(
        names_space="aes128-ctr aes256-ctr aes128-cbc"
    )
    assert filled == "ip ssh server algorithm encryption aes128-ctr aes256-ctr aes128-cbc"


def test_junos_key_exchange_keywords_cover_every_name_it_is_known_to_offer() -> None:
    implementation = impl("junos")
    tokens = implementation.token["kex"]
    for release in implementation.releases:
        assert release.can["kex"] <= set(tokens), release.since
    keyword = re.compile(r"^[a-z0-9-]+$")
    assert all(keyword.match(word) for word in tokens.values())
    assert tokens["diffie-hellman-group-exchange-sha256"] == "group-exchange-sha2"


def test_junos_sets_are_written_as_junos_sets() -> None:
    table = templates("junos")["server"]
    assert table["cipher"].format(names_space="aes128-ctr aes256-ctr") == (
        "set system services ssh ciphers [ aes128-ctr aes256-ctr ]"
    )
    assert table["kex"].format(names_tokens="group-exchange-sha2 dh-group14-sha1") == (
        "set system services ssh key-exchange [ group-exchange-sha2 dh-group14-sha1 ]"
    )


def test_routeros_steps_are_its_own_settings() -> None:
    implementation = impl("routeros")
    table = templates("routeros")["server"]
    assert table["kex"] == table["cipher"] == "/ip ssh set strong-crypto=no"
    assert "mac" not in table
    assert table["host_key"].format(add_tokens="ed25519") == "/ip ssh set host-key-type=ed25519"
    assert set(implementation.token["host_key"].values()) == {"rsa", "ed25519"}


def test_routeros_strong_crypto_yes_leaves_a_subset_of_the_default_key_exchange() -> None:
    implementation = impl("routeros")
    strong = set(implementation.extra["strong_crypto"]["yes"]["kex"])
    (default_6x,) = [r for r in implementation.releases if r.since == "6.30"]
    assert strong < set(default_6x.default[("server", "kex")])
    assert all(catalogue().lookup(name, "kex") is not None for name in strong)
