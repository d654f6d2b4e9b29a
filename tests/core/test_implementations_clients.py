"""Dropbear's and PuTTY's capability files: tokens cover what they offer, lists agree with settings."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kexproxy.core.catalogue import catalogue
from kexproxy.core.diagnosis.steps import PLACEHOLDERS
from kexproxy.core.implementations import STEP_KINDS, identify, implementations
from kexproxy.core.lists import CLIENT_MARKERS, MARKERS, SERVER_MARKERS
from tests.implementation_files import PUTTY_WARN, fill, putty_setting, raw_file

PUTTY = raw_file("putty")
DROPBEAR = raw_file("dropbear")
#: PuTTY's three preference settings and the category each orders (settings.c).
PUTTY_SETTINGS = {"KEX": "kex", "HostKey": "host_key", "Cipher": "cipher"}
#: The placeholders recipe writers fill (issue 10), plus PuTTY's whole-setting {tokens}.
DROPBEAR_MACRO = re.compile(r"^DROPBEAR_[A-Z0-9_]+(=[01])?$")


def putty_releases() -> list[dict[str, Any]]:
    return list(PUTTY["release"])


@pytest.mark.parametrize("release", putty_releases(), ids=lambda r: r["since"])
def test_putty_tokens_cover_every_name_it_can_offer(release: dict[str, Any]) -> None:
    for key, category in PUTTY_SETTINGS.items():
        setting = release["setting"][key].split(",")
        assert setting.count(PUTTY_WARN) == 1 and len(setting) == len(set(setting)), key
        table = PUTTY["token"][category]
        for name in release["can"][category]:
            assert name in table, f"{release['since']} {category}: {name} has no token"
            assert table[name] in setting, f"{release['since']}: {table[name]} not in {key}"


@pytest.mark.parametrize("release", putty_releases(), ids=lambda r: r["since"])
def test_putty_defaults_follow_the_setting_and_warn_split(release: dict[str, Any]) -> None:
    for key, category in PUTTY_SETTINGS.items():
        setting = release["setting"][key].split(",")
        table = PUTTY["token"][category]
        positions = [setting.index(table[n]) for n in release["default"]["client"][category]]
        assert positions == sorted(positions), f"{release['since']} {category} out of order"
        below = [
            n
            for n in release["default"]["client"][category]
            if setting.index(table[n]) > setting.index(PUTTY_WARN)
        ]
        assert release.get("below_warn", {}).get(category, []) == below, category


@pytest.mark.parametrize("release", putty_releases(), ids=lambda r: r["since"])
def test_putty_offers_everything_but_single_des_and_certificates(release: dict[str, Any]) -> None:
    """ssh2_write_kexinit_lists lists every token's names, below WARN too (see putty.toml)."""
    for category in ("kex", "host_key", "cipher", "mac", "compression"):
        left_out = set(release["can"][category]) - set(release["default"]["client"][category])
        conditional = {
            n
            for n in left_out
            if n in PUTTY["requires"].get(category, {}) or n.endswith("-cert-v01@openssh.com")
        }
        assert left_out == conditional, f"{release['since']} {category}: {left_out}"


def test_putty_moves_an_added_token_above_warn_and_leaves_the_rest() -> None:
    setting = "ntru-curve25519,ecdh,dh-gex-sha1,dh-group14-sha1,rsa,WARN,dh-group1-sha1"
    tokens = PUTTY["token"]["kex"]
    assert putty_setting(setting, tokens, ["diffie-hellman-group1-sha1"]) == (
        "ntru-curve25519,ecdh,dh-gex-sha1,dh-group14-sha1,rsa,dh-group1-sha1,WARN"
    )
    assert putty_setting(setting, tokens, ["curve25519-sha256"]) == setting
    step = fill(PUTTY["template"]["client"]["kex"], names=[], add=[], tokens=setting)
    assert step == f"KEX={setting}"


def test_putty_has_no_mac_step_and_names_its_panels() -> None:
    putty = implementations()["putty"]
    assert ("client", "mac") not in putty.option
    assert "mac" not in PUTTY["template"]["client"]
    for category in PUTTY["template"]["client"]:
        assert PUTTY["panel"]["client"][category].startswith("Connection > SSH")


@pytest.mark.parametrize("release", DROPBEAR["release"], ids=lambda r: r["since"])
def test_dropbear_tokens_are_macros_for_every_name_it_can_build(release: dict[str, Any]) -> None:
    for category in ("kex", "host_key", "cipher", "mac"):
        table = DROPBEAR["token"][category]
        for name in release["can"][category]:
            assert name in table, f"{release['since']} {category}: {name} has no macro"
            assert all(DROPBEAR_MACRO.match(m) for m in table[name].split()), table[name]


@pytest.mark.parametrize("release", DROPBEAR["release"], ids=lambda r: r["since"])
def test_dropbear_server_host_keys_are_key_types_not_security_keys(
    release: dict[str, Any],
) -> None:
    offered = release["default"]["server"]["host_key"]
    assert offered and not [n for n in offered if n.startswith("sk-")]
    assert [n for n in release["default"]["client"]["host_key"] if n in offered] == offered


@pytest.mark.parametrize("raw", [PUTTY, DROPBEAR], ids=lambda r: r["key"])
def test_templates_use_known_placeholders_and_options(raw: dict[str, Any]) -> None:
    for role, templates in raw["template"].items():
        for category, text in templates.items():
            assert set(re.findall(r"\{(\w+)\}", text)) <= PLACEHOLDERS, text
            assert category in raw["option"][role], f"{raw['key']} {role} {category}"
        assert raw["template_note"][role]["all"]
    for kinds in raw.get("template_kind", {}).values():
        assert set(kinds.values()) <= set(STEP_KINDS)


@pytest.mark.parametrize("raw", [PUTTY, DROPBEAR], ids=lambda r: r["key"])
def test_markers_are_the_registry_markers_of_their_role(raw: dict[str, Any]) -> None:
    either = MARKERS - set(CLIENT_MARKERS) - set(SERVER_MARKERS)
    sent_by = {"client": set(CLIENT_MARKERS) | either, "server": set(SERVER_MARKERS) | either}
    for role, table in raw["markers"].items():
        assert set(table) <= sent_by[role], (raw["key"], role)


@pytest.mark.parametrize(
    ("banner", "release"),
    [
        ("SSH-2.0-PuTTY_Release_0.84", "0.83"),
        ("SSH-2.0-PuTTY_Release_0.73", "0.71"),
        ("SSH-2.0-dropbear_2019.78", "2018.76"),
        ("SSH-2.0-dropbear_2026.94", "2026.91"),
    ],
)
def test_a_release_without_changes_reads_the_block_before_it(banner: str, release: str) -> None:
    peer = identify(banner)
    assert peer.implementation is not None
    found = peer.implementation.release(peer.version)
    assert found is not None and found.since == release


def test_an_older_release_than_any_block_is_unknown_not_guessed() -> None:
    peer = identify("SSH-2.0-dropbear_2017.75")
    assert peer.key == "dropbear" and peer.can_offer("cipher") is None
    assert identify("SSH-2.0-PuTTY_Snapshot_2024_03_01.1a2b3c4").defaults("client", "kex") is None


def test_the_gssapi_names_are_catalogued_key_exchanges() -> None:
    cat = catalogue()
    for names in PUTTY["gssapi_kex"].values():
        assert all(cat.lookup(n, "kex") is not None for n in names)
