"""The algorithm catalogue: every SSH algorithm name kexproxy knows, graded, with its sources.

The facts live in two TOML files of the package (``data/algorithms.toml`` and
``data/openssh-defaults.toml``) so that a reviewer can check a grade against its cited source
without reading code; this module only loads them, once, through `importlib.resources` (a
package read, not I/O on the user's files), and answers questions about names. A name the
catalogue does not know is reported as unknown, never as an error: peers invent names.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from kexproxy.core.lists import NEGOTIATED

Grade = Literal["strong", "good", "weak", "broken"]
Category = Literal["kex", "host_key", "cipher", "mac", "compression", "marker"]
CATEGORIES: tuple[Category, ...] = ("kex", "host_key", "cipher", "mac", "compression", "marker")
#: Strongest first. Only a post-quantum hybrid key exchange is `strong` (the rule is in the
#: header of data/algorithms.toml).
GRADES: tuple[Grade, ...] = ("strong", "good", "weak", "broken")
#: Order for ranking: lower is stronger; names outside the catalogue rank after broken ones.
GRADE_ORDER: dict[str, int] = {"strong": 0, "good": 1, "weak": 2, "broken": 3, "unknown": 4}

#: RFC 4253 7.1 name-list -> catalogue category (languages are free text, never graded).
LIST_CATEGORY: dict[str, Category] = {n.rfc: n.kind for n in NEGOTIATED if n.kind is not None}

#: Keys of an era in openssh-defaults.toml: the lists ssh (client) and sshd (server) send.
DEFAULT_LISTS = (
    "client_kex",
    "server_kex",
    "host_key",
    "client_cipher",
    "server_cipher",
    "client_mac",
    "server_mac",
)
_ROLE_LIST: dict[tuple[str, Category], str] = {
    ("client", "kex"): "client_kex",
    ("server", "kex"): "server_kex",
    ("client", "host_key"): "host_key",
    ("server", "host_key"): "host_key",
    ("client", "cipher"): "client_cipher",
    ("server", "cipher"): "server_cipher",
    ("client", "mac"): "client_mac",
    ("server", "mac"): "server_mac",
}


@functools.lru_cache(maxsize=1024)
def version_key(version: str | None) -> tuple[int, ...]:
    """``"9.8"`` -> ``(9, 8)``; ``"<=6.1"`` (present since before the history) -> ``(0,)``.

    Cached: `version_hint` compares every release with every era on each record, which
    made this parse the live proxy's largest cost per session. Bounded, because versions
    also come from banners, which strangers write; only ASCII digits count, at most nine
    per part and eight parts ("9.\u2463" or ten thousand nines are not a version).
    """
    if not version or version.startswith("<="):
        return (0,)
    parts: list[int] = []
    for piece in version.split(".", 8)[:8]:
        digits = "".join(ch for ch in piece if "0" <= ch <= "9")[:9]
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Issue:
    """One reason an algorithm is not good, with the severity the grading rule gives it."""

    key: str
    severity: Literal["broken", "weak", "note"]
    text: str
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DefaultSpan:
    """Releases a name was in a default list: from `entered` up to, not including, `left`."""

    entered: str
    left: str | None

    def describe(self, first_release: str) -> str:
        start = f"<={self.entered}" if self.entered == first_release else self.entered
        return f"{start} to {self.left} (excl.)" if self.left else f"{start} onwards"


@dataclass(frozen=True, slots=True, kw_only=True)
class Algorithm:
    """A catalogue entry: what the name is, how strong, why, and where it came and went."""

    name: str
    category: Category
    grade: Grade | None
    reason: str
    issues: tuple[str, ...]
    sources: tuple[str, ...]
    post_quantum: bool = False
    openssh_added: str | None = None
    openssh_removed: str | None = None
    openssh_client_default: tuple[DefaultSpan, ...] = ()
    openssh_server_default: tuple[DefaultSpan, ...] = ()
    dropbear_default: tuple[str, ...] = ()
    prefix: bool = False
    dh_bits: int | None = None
    rfc9142: str | None = None
    mode: str | None = None
    block_bits: int | None = None
    etm: bool | None = None
    key_type: str | None = None
    certificate: bool | None = None
    kind: str | None = None
    #: Why the grade differs from ssh-audit's level for the name, where it does.
    versus_ssh_audit: str | None = None
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def is_marker(self) -> bool:
        return self.category == "marker"

    @property
    def aead(self) -> bool:
        return self.mode == "aead"

    @property
    def cbc(self) -> bool:
        return self.mode == "cbc"

    def in_openssh(self, version: str) -> bool:
        """Whether OpenSSH `version`'s code has it (an absent `openssh_added` means never)."""
        if self.openssh_added is None:
            return False
        if version_key(version) < version_key(self.openssh_added):
            return False
        return not (
            self.openssh_removed and version_key(version) >= version_key(self.openssh_removed)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "category": self.category,
            "grade": self.grade,
            "reason": self.reason,
            "issues": list(self.issues),
            "post_quantum": self.post_quantum,
            "sources": list(self.sources),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Era:
    """OpenSSH's default lists from release `start` until the next era."""

    start: str
    note: str
    lists: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True, kw_only=True)
class DefaultsHistory:
    """OpenSSH's default lists release by release, and Dropbear's observed ones."""

    releases: tuple[str, ...]
    eras: tuple[Era, ...]
    compression_client: tuple[str, ...]
    compression_server: tuple[str, ...]
    dropbear_version: str
    dropbear: Mapping[str, tuple[str, ...]]

    def era_of(self, release: str) -> Era:
        key = version_key(release)
        current = self.eras[0]
        for era in self.eras:
            if version_key(era.start) <= key:
                current = era
        return current

    def defaults(self, release: str, role: str, category: Category) -> tuple[str, ...]:
        """The list `role` ("client"/"server") of OpenSSH `release` sends for `category`."""
        if category == "compression":
            return self.compression_client if role == "client" else self.compression_server
        return self.era_of(release).lists[_ROLE_LIST[(role, category)]]

    def spans(self, name: str, list_key: str) -> tuple[DefaultSpan, ...]:
        """When `name` entered and left the default list `list_key` (see DEFAULT_LISTS)."""
        spans: list[DefaultSpan] = []
        entered: str | None = None
        for release in self.releases:
            present = name in self.era_of(release).lists[list_key]
            if present and entered is None:
                entered = release
            elif not present and entered is not None:
                spans.append(DefaultSpan(entered=entered, left=release))
                entered = None
        if entered is not None:
            spans.append(DefaultSpan(entered=entered, left=None))
        return tuple(spans)


class Catalogue:
    """Lookups over the loaded data; build it with `catalogue()`, which caches one instance."""

    def __init__(
        self,
        algorithms: Iterable[Algorithm],
        issues: Mapping[str, Issue],
        sources: Mapping[str, str],
        history: DefaultsHistory,
    ) -> None:
        self.issues = dict(issues)
        self.sources = dict(sources)
        self.history = history
        self._exact: dict[tuple[str, str], Algorithm] = {}
        self._hint_cache: dict[tuple[str, tuple[frozenset[str], ...]], VersionHint] = {}
        self._sets_cache: dict[
            tuple[str, tuple[Category, ...]],
            list[tuple[tuple[str, ...], dict[Category, frozenset[str]]]],
        ] = {}
        self._prefixes: list[Algorithm] = []
        #: Prefix entries (``gss-group14-sha256-*``) by category: a name no entry knows is
        #: matched against its own category's stems only.
        stems: dict[str, dict[str, Algorithm]] = {}
        for algorithm in algorithms:
            if algorithm.prefix:
                self._prefixes.append(algorithm)
                stems.setdefault(algorithm.category, {})[algorithm.name[:-1]] = algorithm
            else:
                self._exact[(algorithm.category, algorithm.name)] = algorithm
        # One regular expression per category: its first match, longest stem first, in C.
        self._stems = {
            category: (
                re.compile("|".join(re.escape(s) for s in sorted(found, key=len, reverse=True))),
                found,
            )
            for category, found in stems.items()
        }

    def __iter__(self) -> Iterator[Algorithm]:
        yield from self._exact.values()
        yield from self._prefixes

    def __len__(self) -> int:
        return len(self._exact) + len(self._prefixes)

    def lookup(self, name: str, category: Category) -> Algorithm | None:
        """The entry for `name` in `category`; a kex list also holds markers."""
        found = self._exact.get((category, name))
        if found is None and category == "kex":
            found = self._exact.get(("marker", name))
        if found is None and category in self._stems:
            pattern, by_stem = self._stems[category]
            match = pattern.match(name)
            if match is not None:
                return by_stem[match.group()]
        return found

    def lookup_in_list(self, name: str, rfc_list: str) -> Algorithm | None:
        category = LIST_CATEGORY.get(rfc_list)
        return None if category is None else self.lookup(name, category)

    def is_marker(self, name: str) -> bool:
        return ("marker", name) in self._exact

    def grade(self, name: str, category: Category) -> str:
        """`strong`, `good`, `weak`, `broken`, ``marker``, or `unknown` for a name not known."""
        algorithm = self.lookup(name, category)
        if algorithm is None:
            return "unknown"
        return algorithm.grade or "marker"

    def issue_texts(self, algorithm: Algorithm, *, notes: bool = False) -> list[str]:
        out = []
        for key in algorithm.issues:
            issue = self.issues[key]
            if notes or issue.severity != "note":
                out.append(issue.text)
        return out

    def counted_issues(self, algorithm: Algorithm) -> int:
        """How many grade-lowering issues it has: finer ranking within one grade."""
        return sum(1 for key in algorithm.issues if self.issues[key].severity != "note")

    def version_hint(self, offers: Mapping[Category, Sequence[str]], role: str) -> VersionHint:
        """Which OpenSSH releases' default lists the offered lists match, as sets.

        Sets, not orders: ssh reorders host key algorithms for hosts it knows, and the point is
        a hint, never a version claim (distributions backport, configs change lists). sshd's
        host key list depends on the keys it has, so it is left out for a server.
        """
        categories: tuple[Category, ...] = ("kex", "cipher", "mac")
        if role == "client":
            categories = ("kex", "host_key", "cipher", "mac")
        if any(len(offers.get(category, ())) > _MAX_HINT_NAMES for category in categories):
            # No default list of any release is that long; nor is it worth a cache entry.
            return VersionHint(
                text=f"{role} lists are longer than any OpenSSH default set",
                releases=(),
                distance=_NEAR + 1,
                differences=(),
                dropbear=False,
            )
        offered = {
            category: frozenset(n for n in offers.get(category, ()) if not self.is_marker(n))
            for category in categories
        }
        key = (role, tuple(offered[c] for c in categories))
        cached = self._hint_cache.get(key)
        if cached is None:
            cached = self._version_hint(offered, role, categories)
            if len(self._hint_cache) >= _HINT_CACHE_SIZE:
                self._hint_cache.clear()
            self._hint_cache[key] = cached
        return cached

    def _version_hint(
        self,
        offered: Mapping[Category, frozenset[str]],
        role: str,
        categories: tuple[Category, ...],
    ) -> VersionHint:
        scores: list[tuple[int, str, tuple[str, ...]]] = []
        for releases, defaults in self._default_sets(role, categories):
            found: list[str] = []
            for category in categories:
                default = defaults[category]
                found += [f"+{n}" for n in sorted(offered[category] - default)]
                found += [f"-{n}" for n in sorted(default - offered[category])]
            scores += [(len(found), release, tuple(found)) for release in releases]
        best = min(score for score, _r, _d in scores)
        matching = [(release, diffs) for score, release, diffs in scores if score == best]
        dropbear = self._dropbear_distance(offered, role) == 0
        groups: dict[tuple[str, ...], list[str]] = {}
        for release, diffs in matching:
            groups.setdefault(diffs, []).append(release)
        if best == 0:
            ranges = _release_ranges([r for r, _d in matching], self.history.releases)
            text = f"{role} lists match OpenSSH {ranges} defaults"
        elif best <= _NEAR:
            described = " or ".join(
                f"{_release_ranges(releases, self.history.releases)} ({', '.join(diffs)})"
                for diffs, releases in groups.items()
            )
            text = f"{role} lists are closest to OpenSSH {described} defaults"
        elif dropbear:
            text = f"{role} lists match Dropbear {self.history.dropbear_version} defaults"
        else:
            text = f"{role} lists match no OpenSSH default set of {ranges_all(self.history)}"
        if dropbear and best <= _NEAR:
            text += f"; also Dropbear {self.history.dropbear_version}'s"
        near = best <= _NEAR
        return VersionHint(
            text=text,
            releases=tuple(r for r, _d in matching) if near else (),
            distance=best,
            differences=tuple(d for diffs in groups for d in diffs)[:_MAX_DIFFS] if near else (),
            dropbear=dropbear,
        )

    def _default_sets(
        self, role: str, categories: tuple[Category, ...]
    ) -> list[tuple[tuple[str, ...], dict[Category, frozenset[str]]]]:
        """Releases grouped by identical default sets, computed once: hints run per record."""
        key = (role, categories)
        cached = self._sets_cache.get(key)
        if cached is None:
            groups: dict[tuple[frozenset[str], ...], list[str]] = {}
            for release in self.history.releases:
                sets = tuple(frozenset(self.history.defaults(release, role, c)) for c in categories)
                groups.setdefault(sets, []).append(release)
            cached = [
                (tuple(releases), dict(zip(categories, sets, strict=True)))
                for sets, releases in groups.items()
            ]
            self._sets_cache[key] = cached
        return cached

    def _dropbear_distance(self, offered: Mapping[Category, frozenset[str]], role: str) -> int:
        """How many names the offer differs by from Dropbear's observed lists for `role`."""
        keys = {
            "kex": f"{role}_kex",
            "host_key": "host_key",
            "cipher": f"{role}_cipher",
            "mac": f"{role}_mac",
        }
        total = 0
        for category, names in offered.items():
            total += len(names ^ frozenset(self.history.dropbear.get(keys[category], ())))
        return total


#: A hint names the nearest releases when the lists differ from them by at most this many names.
_NEAR = 3
_MAX_DIFFS = 12
#: Distinct offers whose hint is kept: a capture repeats the same few peers many times.
_HINT_CACHE_SIZE = 4096
#: Longer offered lists are not compared with the defaults (the longest has 28 names).
_MAX_HINT_NAMES = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionHint:
    """What the offered lists suggest about the software, from the lists alone."""

    text: str
    releases: tuple[str, ...]
    distance: int
    differences: tuple[str, ...]
    dropbear: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "releases": list(self.releases),
            "distance": self.distance,
            "differences": list(self.differences),
            "dropbear": self.dropbear,
        }


def _release_ranges(chosen: Sequence[str], releases: Sequence[str]) -> str:
    """``["8.9", "9.0", "9.1"]`` -> ``"8.9 to 9.1"``; gaps give comma-separated runs."""
    index = {release: i for i, release in enumerate(releases)}
    runs: list[list[str]] = []
    for release in sorted(chosen, key=index.__getitem__):
        if runs and index[runs[-1][-1]] + 1 == index[release]:
            runs[-1].append(release)
        else:
            runs.append([release])
    first = releases[0]
    parts = []
    for run in runs:
        start = f"<={run[0]}" if run[0] == first else run[0]
        parts.append(start if len(run) == 1 else f"{start} to {run[-1]}")
    return ", ".join(parts)


def ranges_all(history: DefaultsHistory) -> str:
    return f"{history.releases[0]} to {history.releases[-1]}"


def _load_toml(name: str) -> dict[str, Any]:
    from kexproxy.core.data import load_toml

    return load_toml(name)


def _history(data: Mapping[str, Any]) -> DefaultsHistory:
    eras = tuple(
        Era(
            start=str(era["from"]),
            note=str(era.get("note", "")),
            lists={key: tuple(era[key]) for key in DEFAULT_LISTS},
        )
        for era in data["era"]
    )
    dropbear = dict(data["dropbear"])
    return DefaultsHistory(
        releases=tuple(data["releases"]),
        eras=eras,
        compression_client=tuple(data["compression_client"]),
        compression_server=tuple(data["compression_server"]),
        dropbear_version=str(dropbear.pop("version")),
        dropbear={k: tuple(v) for k, v in dropbear.items() if isinstance(v, list)},
    )


_KNOWN_FIELDS = {
    "name",
    "category",
    "grade",
    "reason",
    "issues",
    "sources",
    "pq",
    "openssh",
    "openssh_removed",
    "dh_bits",
    "rfc9142",
    "mode",
    "block_bits",
    "etm",
    "key_type",
    "certificate",
    "kind",
    "versus_ssh_audit",
}
_CLIENT_LIST: dict[str, str] = {
    "kex": "client_kex",
    "host_key": "host_key",
    "cipher": "client_cipher",
    "mac": "client_mac",
}
_SERVER_LIST: dict[str, str] = {
    "kex": "server_kex",
    "cipher": "server_cipher",
    "mac": "server_mac",
    "host_key": "host_key",
}
_DROPBEAR_LISTS: dict[str, tuple[str, str]] = {
    "kex": ("client_kex", "server_kex"),
    "host_key": ("host_key", "host_key"),
    "cipher": ("client_cipher", "server_cipher"),
    "mac": ("client_mac", "server_mac"),
    "compression": ("compression_client", "compression_server"),
}


def _algorithm(raw: Mapping[str, Any], history: DefaultsHistory) -> Algorithm:
    category = cast(Category, raw["category"])
    name = str(raw["name"])
    client_spans: tuple[DefaultSpan, ...] = ()
    server_spans: tuple[DefaultSpan, ...] = ()
    if category in _CLIENT_LIST:
        client_spans = history.spans(name, _CLIENT_LIST[category])
        server_spans = history.spans(name, _SERVER_LIST[category])
    elif category == "compression":
        first = history.releases[0]
        if name in history.compression_client:
            client_spans = (DefaultSpan(entered=first, left=None),)
        if name in history.compression_server:
            server_spans = (DefaultSpan(entered=first, left=None),)
    dropbear: list[str] = []
    if category in _DROPBEAR_LISTS:
        for role, key in zip(("client", "server"), _DROPBEAR_LISTS[category], strict=True):
            if name in history.dropbear.get(key, ()):
                dropbear.append(role)
    grade = raw.get("grade")
    return Algorithm(
        name=name,
        category=category,
        grade=cast(Grade | None, grade),
        reason=str(raw.get("reason", "")),
        issues=tuple(raw.get("issues", ())),
        sources=tuple(raw.get("sources", ())),
        post_quantum=bool(raw.get("pq", False)),
        openssh_added=raw.get("openssh"),
        openssh_removed=raw.get("openssh_removed"),
        openssh_client_default=client_spans,
        openssh_server_default=server_spans,
        dropbear_default=tuple(dropbear),
        prefix=name.endswith("*"),
        dh_bits=raw.get("dh_bits"),
        rfc9142=raw.get("rfc9142"),
        mode=raw.get("mode"),
        block_bits=raw.get("block_bits"),
        etm=raw.get("etm"),
        key_type=raw.get("key_type"),
        certificate=raw.get("certificate"),
        kind=raw.get("kind"),
        versus_ssh_audit=raw.get("versus_ssh_audit"),
        extra=tuple((k, str(v)) for k, v in raw.items() if k not in _KNOWN_FIELDS),
    )


@functools.cache
def catalogue() -> Catalogue:
    """The catalogue, loaded from the package data on first use and shared afterwards."""
    data = _load_toml("algorithms.toml")
    history = _history(_load_toml("openssh-defaults.toml"))
    issues = {
        key: Issue(
            key=key,
            severity=value["severity"],
            text=value["text"],
            sources=tuple(value.get("sources", ())),
        )
        for key, value in data["issue"].items()
    }
    return Catalogue(
        (_algorithm(raw, history) for raw in data["algorithm"]),
        issues,
        dict(data["source"]),
        history,
    )
