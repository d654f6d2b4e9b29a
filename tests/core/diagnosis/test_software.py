"""What a banner claims and what a side offered, as the fixes read them."""

from __future__ import annotations

import pytest

from kexproxy.core.diagnosis.software import Software, offered
from kexproxy.core.implementations import Peer


@pytest.mark.parametrize(
    ("banner", "name", "version"),
    [
        ("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3", "OpenSSH", "9.2"),
        ("SSH-2.0-dropbear_2022.83", "Dropbear", "2022.83"),
        ("SSH-2.0-PuTTY_Release_0.80", "PuTTY_Release_0.80", None),
        ("SSH-2.0-", None, None),
        ("not a banner", None, None),
        (None, None, None),
    ],
)
def test_software_from_the_banner(
    banner: str | None, name: str | None, version: str | None
) -> None:
    assert Software.from_banner(banner) == Software(name=name, version=version)


def test_who_is_openssh() -> None:
    assert Software.from_banner("SSH-2.0-OpenSSH_9.6").is_openssh
    assert not Software.from_banner("SSH-2.0-PuTTY_Release_0.80").is_openssh
    assert not Software.from_banner("SSH-2.0-dropbear_2022.83").is_openssh


def test_predates_compares_releases_and_knows_nothing_of_unknown_ones() -> None:
    assert Peer(None, "6.9", None).predates("7.0")
    assert not Peer(None, "7.0", None).predates("7.0")
    assert not Peer(None, "10.0", None).predates("7.4")
    assert not Peer(None, None, None).predates("7.0")


def test_offered_skips_what_is_not_text() -> None:
    kexinit = {"kex_algorithms": ["curve25519-sha256", 3, None, "ext-info-c"]}
    assert offered(kexinit, "kex_algorithms") == ["curve25519-sha256", "ext-info-c"]
    assert offered(kexinit, "server_host_key_algorithms") == []
    assert offered(None, "kex_algorithms") == []
