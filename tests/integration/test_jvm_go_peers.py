"""The Go x/crypto/ssh and JSch catalogue entries against the real libraries Debian installs.

Each client is relayed through kexproxy to a local sshd, so the record's client KEXINIT is
what the library really sent: untouched, it must be the catalogue's default for the
installed release; with the catalogue's own step templates pasted into a program (the text
a recipe would give a user), it must offer exactly the names put in, and negotiate them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import pytest

from kexproxy.core.catalogue import LIST_CATEGORY, Category, catalogue
from kexproxy.core.implementations import Implementation, Release, identify, implementations
from kexproxy.core.record import SessionRecord
from tests.builders import assert_valid_record
from tests.peers import Sshd, run_go_client, run_jsch_client, skip_or_fail
from tests.peers.base import run_command
from tests.peers.library_clients import (
    GO_PROGRAM,
    JAVA_PROGRAM,
    build_go_program,
    build_java_class,
    debian_package_version,
    java_command,
)
from tests.sources.proxy_harness import RunningProxy, config

pytestmark = pytest.mark.peers

#: The RFC 4253 lists of a KEXINIT by category; ciphers, MACs and compression come twice.
LISTS_OF: dict[Category, tuple[str, ...]] = {}
for _rfc, _category in LIST_CATEGORY.items():
    LISTS_OF[_category] = (*LISTS_OF.get(_category, ()), _rfc)


def offered(record: SessionRecord, category: Category) -> list[list[str]]:
    """The client's lists of `category`, markers (ext-info-c, kex-strict-*) left out."""
    kexinit = record.client_kexinit
    assert kexinit is not None
    cat = catalogue()
    return [[n for n in kexinit[rfc] if not cat.is_marker(n)] for rfc in LISTS_OF[category]]


def relayed(run: object, *args: object) -> SessionRecord:
    """Run a client (a callable taking the port first) through the relay to a default sshd."""
    with Sshd() as sshd, RunningProxy(config(sshd.port)) as proxy:
        result = run(proxy.port, *args)  # type: ignore[operator]
        assert result.returncode == 0, result.stderr
        [record] = proxy.wait_finals(1)
    assert_valid_record(record)
    assert record.outcome == "negotiated", record.outcome
    return record


def installed_release(implementation: Implementation, package: str) -> Release:
    version = debian_package_version(package)
    if version is None:
        skip_or_fail(f"apt package {package} not installed")
    release = implementation.release(version)
    assert release is not None, f"{implementation.key} {version}: no release block"
    return release


def assert_defaults(record: SessionRecord, defaults: Mapping[Category, Sequence[str]]) -> None:
    for category, names in defaults.items():
        for sent in offered(record, category):
            assert sent == list(names), category


def test_go_client_offers_the_catalogue_defaults_of_the_installed_release() -> None:
    go = implementations()["go"]
    release = installed_release(go, "golang-golang-x-crypto-dev")
    record = relayed(run_go_client)
    assert identify(record.client_banner).key == "go"
    assert_defaults(
        record,
        {c: names for (role, c), names in release.default.items() if role == "client"},
    )


def test_jsch_offers_the_catalogue_defaults_of_the_release_its_banner_names() -> None:
    jsch = implementations()["jsch"]
    installed = installed_release(jsch, "libjsch-java")
    record = relayed(run_jsch_client)
    peer = identify(record.client_banner)
    assert peer.key == "jsch" and peer.version is not None
    assert jsch.release(peer.version) == installed  # 0.1.55 says JSCH-0.1.54
    defaults = {c: peer.defaults("client", c) for c in ("kex", "host_key", "cipher", "mac")}
    assert all(defaults.values())
    assert_defaults(record, {c: d for c, d in defaults.items() if d is not None})
    assert_defaults(record, {"compression": installed.default[("client", "compression")]})


# ---------------------------------------------------------------------------------------
# The step templates, pasted into a program as a user would


def fill(template: str, names: Sequence[str]) -> str:
    """What a recipe writer puts in for one step that sets the whole list to `names`."""
    return template.replace("{names}", ",".join(names)).replace(
        "{names_go}", "[]string{" + ", ".join(json.dumps(n) for n in names) + "}"
    )


#: One name per list for the steps, each one the installed release can offer, and the
#: sshd_config lines that make a local sshd accept only those.
GO_CHOICE: dict[Category, str] = {
    "kex": "diffie-hellman-group-exchange-sha256",  # the client half only, not a default
    "host_key": "ssh-rsa",
    "cipher": "aes128-cbc",  # not a default
    "mac": "hmac-sha1-96",
}
JSCH_CHOICE: dict[Category, str] = {
    "kex": "diffie-hellman-group1-sha1",
    "host_key": "ssh-rsa",
    "cipher": "aes256-cbc",
    "mac": "hmac-sha2-256",
    "compression": "zlib@openssh.com",  # not a default
}
SSHD_KEYWORD: dict[Category, str] = {
    "kex": "KexAlgorithms",
    "host_key": "HostKeyAlgorithms",
    "cipher": "Ciphers",
    "mac": "MACs",
}


def steps(implementation: Implementation, choice: Mapping[Category, str], indent: str) -> str:
    table = implementation.extra["template"]["client"]
    lines = []
    for category, name in choice.items():
        for line in fill(table[category], [name]).splitlines():
            lines.append(indent + line)
    return "\n".join(lines)


def run_relayed_program(argv: list[str], choice: Mapping[Category, str]) -> SessionRecord:
    sshd_lines = [f"{SSHD_KEYWORD[c]} {n}" for c, n in choice.items() if c in SSHD_KEYWORD]
    with Sshd(sshd_lines) as sshd, RunningProxy(config(sshd.port)) as proxy:
        result = run_command([*argv, "127.0.0.1", str(proxy.port)], timeout=40)
        assert result.returncode == 0, result.stderr
        [record] = proxy.wait_finals(1)
    assert_valid_record(record)
    assert record.outcome == "negotiated", record.outcome
    return record


def assert_exactly(record: SessionRecord, choice: Mapping[Category, str]) -> None:
    for category, name in choice.items():
        assert offered(record, category) == [[name]] * len(LISTS_OF[category]), category


def test_go_client_steps_replace_each_list_with_what_they_name() -> None:
    go = implementations()["go"]
    release = installed_release(go, "golang-golang-x-crypto-dev")
    for category, name in GO_CHOICE.items():
        assert name in release.can[category], (category, name)
    binary = build_go_program(GO_PROGRAM.replace("SETTINGS", steps(go, GO_CHOICE, "\t")), "steps")
    record = run_relayed_program([str(binary)], GO_CHOICE)
    assert_exactly(record, GO_CHOICE)
    assert record.negotiated is not None
    assert record.negotiated["kex"] == GO_CHOICE["kex"]


def test_jsch_steps_replace_each_list_with_what_they_name() -> None:
    jsch = implementations()["jsch"]
    release = installed_release(jsch, "libjsch-java")
    for category, name in JSCH_CHOICE.items():
        assert name in release.can[category], (category, name)
    source = JAVA_PROGRAM.replace("CLASS", "TemplateSteps").replace(
        "SETTINGS", steps(jsch, JSCH_CHOICE, "    ")
    )
    classes = build_java_class(source, "TemplateSteps")
    record = run_relayed_program(java_command(classes, "TemplateSteps"), JSCH_CHOICE)
    assert_exactly(record, JSCH_CHOICE)
    assert record.negotiated is not None
    assert record.negotiated["compression_c2s"] == "zlib@openssh.com"
