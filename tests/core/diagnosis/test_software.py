"""What a banner claims and what a side offered, as the fixes read them."""

from __future__ import annotations

import pytest

from kexproxy.core.catalogue import catalogue
from kexproxy.core.diagnosis.software import Software, offered


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


def test_who_is_openssh_and_who_is_third_party() -> None:
    openssh = Software.from_banner("SSH-2.0-OpenSSH_9.6")
    putty = Software.from_banner("SSH-2.0-PuTTY_Release_0.80")
    dropbear = Software.from_banner("SSH-2.0-dropbear_2022.83")
    assert openssh.is_openssh and not openssh.is_third_party
    assert putty.is_third_party and not putty.is_openssh
    assert not dropbear.is_third_party and not dropbear.is_openssh
    curve = catalogue().lookup("curve25519-sha256", "kex")
    assert openssh.known_to_offer(curve, "client") and not putty.known_to_offer(curve, "client")
    assert not dropbear.known_to_offer(None, "server")


def test_predates_compares_releases_and_knows_nothing_of_unknown_ones() -> None:
    assert Software(name="OpenSSH", version="6.9").predates("7.0")
    assert not Software(name="OpenSSH", version="7.0").predates("7.0")
    assert not Software(name="OpenSSH", version="10.0").predates("7.4")
    assert not Software(name=None, version=None).predates("7.0")


def test_offered_skips_what_is_not_text() -> None:
    kexinit = {"kex_algorithms": ["curve25519-sha256", 3, None, "ext-info-c"]}
    assert offered(kexinit, "kex_algorithms") == ["curve25519-sha256", "ext-info-c"]
    assert offered(kexinit, "server_host_key_algorithms") == []
    assert offered(None, "kex_algorithms") == []
