"""What each SSH implementation can offer, what it offers untouched, and how a user changes it.

Advice must be something the peer can do, written the way its own users write it. The facts
live in one TOML file per implementation (``data/implementations/<key>.toml``), each fact
with its source beside it, so a reviewer can check a claim without reading code; this
module loads them once and answers three questions about a banner: which implementation and
release it claims (`identify`), which names that release can be configured to offer
(`Peer.can_offer`), and what it offers by default (`Peer.defaults`). OpenSSH's facts are not
repeated there: they come from the algorithm catalogue and its defaults history.

A banner is a claim a peer makes about itself; it chooses only the syntax of advice and what
to suggest, never a verdict. A banner nobody recognises gives a `Peer` with no implementation,
whose capabilities are unknown (``None``), never assumed.

File format (every key but ``key``, ``name`` and ``banner`` optional)::

    key = "putty"                    # the file's stem
    name = "PuTTY"                   # as its users write it
    banner = ['^PuTTY_Release_(?P<version>[0-9.]+)']   # regexes on the software part
    roles = ["client"]               # the roles it can play
    derived = "openssh"              # capabilities from the OpenSSH catalogue instead
    [configure]                      # per role: the recipe step kind that changes its lists
    client = "putty_setting"
    [option.client]                  # per role and category: the option, keyword or field
    cipher = "Cipher"
    [token.cipher]                   # per category: algorithm name -> its own setting token
    "aes128-ctr" = "aes"
    [[release]]                      # one block per release that changed something
    since = "0.78"                   # holds until the next block's `since`
    source = "..."                   # where these lists were read (file, function, release)
    can.kex = [...]                  # what it can be configured to offer, both roles
    default.client.kex = [...]       # what it offers untouched, in its order
    [source]                         # the keys `source` lines may cite
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, cast, get_args

from kexproxy.core.catalogue import CATEGORIES, Catalogue, Category, catalogue, version_key
from kexproxy.core.data import load_toml
from kexproxy.core.negotiation import Role

#: The ways a recipe step is applied (issue 10): each is written by the recipes' syntax module.
StepKind = Literal[
    "ssh_option",
    "ssh_config",
    "sshd_config",
    "dbclient_option",
    "dropbear_build",
    "putty_setting",
    "library_setting",
    "network_device",
    "host_key",
    "upgrade",
    "note",
    # TLS (kexproxy/core/tls/steps.py)
    "openssl_conf",
    "nginx_conf",
    "apache_conf",
    "s_client_option",
    "curl_option",
    "python_ssl",
    "java_security",
]
STEP_KINDS: tuple[str, ...] = get_args(StepKind)
#: The categories a configuration can change (markers are the implementation's own business).
CONFIGURABLE: tuple[Category, ...] = tuple(c for c in CATEGORIES if c != "marker")
ROLES: tuple[Role, ...] = ("client", "server")
#: The banner's software part read for identification (RFC 4253 allows 255 bytes in all).
MAX_SOFTWARE_CHARS = 255


@dataclass(frozen=True, slots=True, kw_only=True)
class Release:
    """One release's lists: what it can offer and what it offers untouched."""

    since: str
    source: str
    can: Mapping[Category, frozenset[str]]
    default: Mapping[tuple[Role, Category], tuple[str, ...]]
    #: Other facts of the release (PuTTY's whole `setting` strings, its `below_warn` names).
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Implementation:
    """One SSH implementation: how to recognise it, what it can do, how it is configured."""

    key: str
    name: str
    patterns: tuple[re.Pattern[str], ...]
    roles: tuple[Role, ...]
    derived: str | None = None
    configure: Mapping[Role, StepKind] = field(default_factory=dict)
    option: Mapping[tuple[Role, Category], str] = field(default_factory=dict)
    token: Mapping[Category, Mapping[str, str]] = field(default_factory=dict)
    releases: tuple[Release, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def release(self, version: str | None) -> Release | None:
        """The block that describes `version`: the newest whose `since` is not after it."""
        if version is None or not self.releases:
            return None
        key = version_key(version)
        chosen: Release | None = None
        for release in self.releases:
            if version_key(release.since) <= key:
                chosen = release
        return chosen

    def match(self, software: str) -> str | None:
        """The version a banner's software part names, "" for no version, None if not this."""
        for pattern in self.patterns:
            found = pattern.search(software)
            if found is not None:
                return (found.groupdict().get("version") or "").strip(".")
        return None


@dataclass(frozen=True, slots=True)
class Peer:
    """What one side's banner claims it runs, with the catalogue to answer for OpenSSH."""

    implementation: Implementation | None
    version: str | None
    software: str | None

    @property
    def key(self) -> str | None:
        return self.implementation.key if self.implementation else None

    @property
    def label(self) -> str:
        """``OpenSSH 9.2``, ``PuTTY 0.78``, the banner's own word, or ``unknown software``."""
        if self.implementation is None:
            return self.software or "unknown software"
        return (
            f"{self.implementation.name} {self.version}"
            if self.version
            else self.implementation.name
        )

    def predates(self, release: str) -> bool:
        """True when the banner names a release older than `release` (an unknown one is not)."""
        return self.version is not None and version_key(self.version) < version_key(release)

    def configure(self, role: Role) -> StepKind | None:
        return self.implementation.configure.get(role) if self.implementation else None

    def can_offer(self, category: Category, cat: Catalogue | None = None) -> frozenset[str] | None:
        """Every name this release can be configured to offer, or None when unknown."""
        impl = self.implementation
        if impl is None:
            return None
        if impl.derived == "openssh":
            if not self.version:
                return None
            cat = cat or catalogue()
            return frozenset(
                a.name
                for a in cat
                if a.category == category and not a.prefix and a.in_openssh(self.version)
            )
        release = impl.release(self.version)
        return release.can.get(category) if release else None

    def defaults(
        self, role: Role, category: Category, cat: Catalogue | None = None
    ) -> tuple[str, ...] | None:
        """What this release offers as `role` when nobody configured it, or None when unknown."""
        impl = self.implementation
        if impl is None:
            return None
        if impl.derived == "openssh":
            if not self.version:
                return None
            return (cat or catalogue()).history.defaults(self.version, role, category)
        release = impl.release(self.version)
        return release.default.get((role, category)) if release else None


def software_part(banner: str | None) -> str | None:
    """``SSH-2.0-OpenSSH_9.2p1 Debian-2`` -> ``OpenSSH_9.2p1``: what implementations name."""
    if not banner:
        return None
    parts = banner[: MAX_SOFTWARE_CHARS + 8].split("-", 2)
    if len(parts) < 3:
        return None
    software = parts[2].split(" ", 1)[0][:MAX_SOFTWARE_CHARS]
    return software or None


def identify(banner: str | None) -> Peer:
    """The implementation and release `banner` claims; unknown ones have no implementation."""
    software = software_part(banner)
    if software is None:
        return Peer(None, None, None)
    for impl in implementations().values():
        version = impl.match(software)
        if version is not None:
            return Peer(impl, version or None, software)
    return Peer(None, None, software)


def named(software: str | None) -> Peer:
    """A peer known by its software's name alone (``OpenSSH``, ``Dropbear``), no release: what
    a server's own log shows of it. An unknown name gives a `Peer` with no implementation."""
    if not software:
        return Peer(None, None, None)
    for impl in implementations().values():
        if software.lower() in (impl.key, impl.name.lower()):
            return Peer(impl, None, impl.name)
    return Peer(None, None, software)


def _names(raw: Any, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        raise ValueError(f"{where}: expected a list of algorithm names")
    return tuple(raw)


def _category(name: str, where: str) -> Category:
    if name not in CONFIGURABLE:
        raise ValueError(f"{where}: {name!r} is not one of {', '.join(CONFIGURABLE)}")
    return name


def _role(name: str, where: str) -> Role:
    if name not in ROLES:
        raise ValueError(f"{where}: {name!r} is not client or server")
    return name


def _release(raw: Mapping[str, Any], where: str) -> Release:
    can = {
        _category(c, where): frozenset(_names(v, f"{where} can.{c}"))
        for c, v in raw.get("can", {}).items()
    }
    default: dict[tuple[Role, Category], tuple[str, ...]] = {}
    for role, lists in raw.get("default", {}).items():
        for c, v in lists.items():
            default[(_role(role, where), _category(c, where))] = _names(
                v, f"{where} default.{role}.{c}"
            )
    return Release(
        since=str(raw["since"]),
        source=str(raw.get("source", "")),
        can=can,
        default=default,
        extra={k: v for k, v in raw.items() if k not in ("since", "source", "can", "default")},
    )


_KNOWN_KEYS = {
    "key",
    "name",
    "banner",
    "roles",
    "derived",
    "configure",
    "option",
    "token",
    "release",
    "source",
}


def load(stem: str, data: Mapping[str, Any]) -> Implementation:
    """One implementation from its parsed TOML; a malformed file raises ValueError naming it."""
    where = f"implementations/{stem}.toml"
    if data.get("key") != stem:
        raise ValueError(f"{where}: key must be {stem!r}")
    configure: dict[Role, StepKind] = {}
    for role, kind in data.get("configure", {}).items():
        if kind not in STEP_KINDS:
            raise ValueError(f"{where}: configure.{role} = {kind!r} is not a step kind")
        configure[_role(role, where)] = cast(StepKind, kind)
    option = {
        (_role(role, where), _category(c, where)): str(v)
        for role, table in data.get("option", {}).items()
        for c, v in table.items()
    }
    token = {
        _category(c, where): {str(k): str(v) for k, v in table.items()}
        for c, table in data.get("token", {}).items()
    }
    releases = sorted(
        (_release(r, f"{where} release {r.get('since')}") for r in data.get("release", [])),
        key=lambda r: version_key(r.since),
    )
    return Implementation(
        key=stem,
        name=str(data["name"]),
        patterns=tuple(re.compile(p) for p in data["banner"]),
        roles=tuple(_role(r, where) for r in data.get("roles", ROLES)),
        derived=data.get("derived"),
        configure=configure,
        option=option,
        token=token,
        releases=tuple(releases),
        sources={str(k): str(v) for k, v in data.get("source", {}).items()},
        extra={k: v for k, v in data.items() if k not in _KNOWN_KEYS},
    )


@functools.cache
def implementations() -> Mapping[str, Implementation]:
    """Every implementation in the package data, by key, loaded on first use."""
    folder = resources.files("kexproxy.core.data").joinpath("implementations")
    out: dict[str, Implementation] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            stem = entry.name.removesuffix(".toml")
            out[stem] = load(stem, load_toml(f"implementations/{entry.name}"))
    return out
