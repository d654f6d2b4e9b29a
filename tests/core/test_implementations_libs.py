"""paramiko, AsyncSSH and libssh in the capability catalogue: banners, releases, steps, requirements."""

from __future__ import annotations

import re
import string

import pytest

from kexproxy.core.diagnosis.steps import PLACEHOLDERS
from kexproxy.core.implementations import CONFIGURABLE, Implementation, identify, implementations

LIBRARIES = ("paramiko", "asyncssh", "libssh")

#: The placeholders a recipe writer fills (impl-common brief); anything else is a typo.

#: paramiko's disabled_algorithms keys: the last word of Transport's _preferred_* attributes.
PARAMIKO_KEYS = {
    "kex": "kex",
    "host_key": "keys",
    "cipher": "ciphers",
    "mac": "macs",
    "compression": "compression",
}


def library(key: str) -> Implementation:
    return implementations()[key]


def placeholders(text: str) -> set[str]:
    """The {names} in a template; Python's own braces (dict literals) are not placeholders."""
    return {
        field
        for _, field, _, _ in string.Formatter().parse(text.replace('{"', "").replace("}}", "}"))
        if field and re.fullmatch(r"[a-z_]+", field)
    }


@pytest.mark.parametrize(
    ("banner", "key", "version", "since"),
    [
        ("SSH-2.0-paramiko_5.1.0", "paramiko", "5.1.0", "5.1.0"),
        ("SSH-2.0-paramiko_2.10.4", "paramiko", "2.10.4", "2.10.4"),
        ("SSH-2.0-paramiko_2.12.0", "paramiko", "2.12.0", "2.11.0"),
        ("SSH-2.0-paramiko_3.4.0", "paramiko", "3.4.0", "2.11.0"),
        ("SSH-2.0-AsyncSSH_2.24.1", "asyncssh", "2.24.1", "2.24.0"),
        ("SSH-2.0-AsyncSSH_2.9.0", "asyncssh", "2.9.0", "2.6.0"),
        ("SSH-2.0-libssh_0.10.6", "libssh", "0.10.6", "0.10.5"),
        ("SSH-2.0-libssh_0.11.1", "libssh", "0.11.1", "0.10.5"),
        ("SSH-2.0-libssh-0.7.3", "libssh", "0.7.3", "0.7.2"),
    ],
)
def test_a_banner_picks_the_release_block_that_describes_it(
    banner: str, key: str, version: str, since: str
) -> None:
    peer = identify(banner)
    assert (peer.key, peer.version) == (key, version)
    assert peer.implementation is not None
    release = peer.implementation.release(peer.version)
    assert release is not None and release.since == since


@pytest.mark.parametrize(
    "banner",
    ["SSH-2.0-libssh2_1.10.0", "SSH-2.0-paramikoX_1.0", "SSH-2.0-asyncssh_2.24.1"],
)
def test_look_alike_banners_are_not_these_libraries(banner: str) -> None:
    assert identify(banner).key not in LIBRARIES


@pytest.mark.parametrize(
    "banner", ["SSH-2.0-paramiko_1.15.2", "SSH-2.0-AsyncSSH_1.16.1", "SSH-2.0-libssh-0.6.3"]
)
def test_a_release_older_than_the_catalogue_has_unknown_capabilities(banner: str) -> None:
    peer = identify(banner)
    assert peer.key in LIBRARIES
    assert peer.can_offer("kex") is None and peer.defaults("client", "kex") is None


@pytest.mark.parametrize("key", LIBRARIES)
def test_every_release_lists_every_category_for_both_roles(key: str) -> None:
    impl = library(key)
    assert impl.releases
    for release in impl.releases:
        assert set(release.can) == set(CONFIGURABLE), release.since
        for role in ("client", "server"):
            for category in CONFIGURABLE:
                names = release.default.get((role, category))
                assert names, (release.since, role, category)
                assert len(set(names)) == len(names), (release.since, role, category)


@pytest.mark.parametrize("key", LIBRARIES)
def test_every_step_is_a_library_setting_with_known_placeholders(key: str) -> None:
    impl = library(key)
    assert impl.configure == {"client": "library_setting", "server": "library_setting"}
    templates = impl.extra["template"]
    notes = impl.extra["template_note"]
    for role in ("client", "server"):
        assert notes[role]["all"].strip()
        for category, text in templates[role].items():
            assert category in CONFIGURABLE
            used = placeholders(text)
            assert used <= PLACEHOLDERS, (role, category, used)
            assert used & {"names", "names_py", "disabled_py"}, (role, category, text)
    # Only AsyncSSH's server has no host key list to set (its keys decide).
    for role in ("client", "server"):
        missing = set(CONFIGURABLE) - set(templates[role])
        expected = {"host_key"} if (key, role) == ("asyncssh", "server") else set()
        assert missing == expected, (role, missing)


def test_paramiko_steps_use_the_disabled_algorithms_key_of_each_list() -> None:
    templates = library("paramiko").extra["template"]
    for role in ("client", "server"):
        for category, word in PARAMIKO_KEYS.items():
            text = templates[role][category]
            assert f'disabled_algorithms={{"{word}": {{disabled_py}}}}' in text, (role, text)
    assert "compress=True" in templates["client"]["compression"]
    assert "use_compression(True)" in templates["server"]["compression"]


def test_libssh_sets_ciphers_and_macs_in_both_directions() -> None:
    templates = library("libssh").extra["template"]
    for role in ("client", "server"):
        for category, option in (("cipher", "CIPHERS"), ("mac", "HMAC")):
            text = templates[role][category]
            assert f"SSH_OPTIONS_{option}_C_S" in text and f"SSH_OPTIONS_{option}_S_C" in text


@pytest.mark.parametrize("key", LIBRARIES)
def test_a_name_with_a_requirement_is_one_the_library_can_offer(key: str) -> None:
    impl = library(key)
    offerable = {
        name for release in impl.releases for names in release.can.values() for name in names
    }
    requires = impl.extra.get("requires", {})
    assert requires and set(requires) <= offerable


def test_paramiko_client_offers_what_it_can_except_compression() -> None:
    # disabled_algorithms only removes names: a recipe can only pick from the default lists.
    for release in library("paramiko").releases:
        for category in ("kex", "cipher", "mac"):
            assert set(release.default[("client", category)]) == release.can[category]
        assert release.default[("client", "compression")] == ("none",)
