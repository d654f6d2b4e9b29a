"""The implementations' capability files load, agree with the catalogue, and identify banners."""

from __future__ import annotations

import pytest

from kexproxy.core.catalogue import catalogue
from kexproxy.core.implementations import (
    CONFIGURABLE,
    Implementation,
    identify,
    implementations,
    load,
    software_part,
)

IMPLEMENTATIONS = sorted(implementations().values(), key=lambda i: i.key)


def test_openssh_is_there_and_derived_from_the_catalogue() -> None:
    peer = identify("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3")
    assert peer.key == "openssh" and peer.version == "9.2" and peer.label == "OpenSSH 9.2"
    ciphers = peer.can_offer("cipher")
    assert ciphers is not None and "aes128-cbc" in ciphers and "arcfour" not in ciphers
    assert peer.defaults("client", "cipher") == (
        "chacha20-poly1305@openssh.com",
        "aes128-ctr",
        "aes192-ctr",
        "aes256-ctr",
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
    )
    assert peer.configure("client") == "ssh_option" and peer.configure("server") == "sshd_config"


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda i: i.key)
def test_every_example_banner_is_identified_with_its_release(impl: Implementation) -> None:
    examples = impl.extra.get("examples", {})
    assert examples, f"{impl.key}.toml lists no example banners"
    for software, version in examples.items():
        peer = identify(f"SSH-2.0-{software}")
        assert (peer.key, peer.version) == (impl.key, version or None), software


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda i: i.key)
def test_every_listed_name_is_in_the_catalogue_and_defaults_are_offerable(
    impl: Implementation,
) -> None:
    cat = catalogue()
    for release in impl.releases:
        assert release.source, f"{impl.key} {release.since}: no source"
        for category, offerable in release.can.items():
            unknown = [n for n in offerable if cat.lookup(n, category) is None]
            assert not unknown, f"{impl.key} {release.since} {category}: {unknown}"
        for (role, category), names in release.default.items():
            assert role in impl.roles
            can = release.can.get(category)
            if can is not None:
                assert set(names) <= can, f"{impl.key} {release.since} default {role} {category}"


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda i: i.key)
def test_tokens_and_options_name_known_categories(impl: Implementation) -> None:
    for category, table in impl.token.items():
        assert category in CONFIGURABLE
        cat = catalogue()
        assert all(cat.lookup(name, category) is not None for name in table), impl.key
    for role, _category in impl.option:
        assert role in impl.roles


def test_a_malformed_file_names_itself() -> None:
    with pytest.raises(ValueError, match=r"implementations/bad\.toml"):
        load(
            "bad",
            {
                "key": "bad",
                "name": "Bad",
                "banner": [],
                "release": [{"since": "1", "can": {"cipher": "x"}}],
            },
        )
    with pytest.raises(ValueError, match="not a step kind"):
        load("bad", {"key": "bad", "name": "Bad", "banner": [], "configure": {"client": "rm -rf"}})


@pytest.mark.parametrize(
    ("banner", "software"),
    [
        ("SSH-2.0-OpenSSH_9.2p1 Debian-2", "OpenSSH_9.2p1"),
        ("SSH-2.0-", None),
        ("SSH-1.99-Cisco-1.25", "Cisco-1.25"),
        (None, None),
        ("garbage", None),
        ("SSH-2.0-" + "A" * 100_000, "A" * 255),
    ],
)
def test_software_part_is_bounded_and_tolerant(banner: str | None, software: str | None) -> None:
    assert software_part(banner) == software


def test_an_unknown_banner_has_unknown_capabilities() -> None:
    peer = identify("SSH-2.0-NoSuchThing_1.0")
    assert peer.implementation is None and peer.label == "NoSuchThing_1.0"
    assert peer.can_offer("cipher") is None and peer.defaults("client", "cipher") is None


def test_named_is_a_software_name_without_a_release() -> None:
    from kexproxy.core.implementations import named

    openssh = named("OpenSSH")
    assert (openssh.key, openssh.version, openssh.label) == ("openssh", None, "OpenSSH")
    assert openssh.can_offer("kex") is None  # no release: what it can do is unknown
    assert named("dropbear").label == "Dropbear"
    assert named("Nonesuch").implementation is None and named("Nonesuch").label == "Nonesuch"
    assert named(None).label == "unknown software"
