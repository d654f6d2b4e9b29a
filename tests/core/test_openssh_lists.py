"""OpenSSH's list arithmetic against OpenSSH itself: ``sshd -T`` and ``ssh -G`` print the lists
a value makes, and `assemble_names` must make the same (order included)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kexproxy.core.openssh_lists import (
    ListError,
    assemble_names,
    bad_names,
    filter_list,
    match_pattern,
    match_pattern_list,
    parse_line,
)
from tests.peers import which_or_skip
from tests.peers.keys import openssh_key

#: sshd -T / ssh -G print each keyword lower-cased; ssh -Q names OpenSSH's `all` table.
QUERY = {"KexAlgorithms": "kex", "Ciphers": "cipher", "MACs": "mac", "HostKeyAlgorithms": "key"}

CASES = [
    ("Ciphers", "+aes128-cbc"),
    ("Ciphers", "-aes*"),
    ("Ciphers", "-*-ctr,chacha20-poly1305@openssh.com"),
    ("Ciphers", "^aes256-gcm@openssh.com,aes128-ctr"),
    ("Ciphers", "aes256-ctr,aes128-ctr,aes256-ctr"),
    ("MACs", "-*-etm@openssh.com"),
    ("MACs", "+hmac-md5"),
    ("KexAlgorithms", "-sntrup*,diffie-hellman-group1?-*"),
    ("KexAlgorithms", "^diffie-hellman-group14-sha1"),
    ("KexAlgorithms", "curve25519-sha256,diffie-hellman-group14-sha256"),
    ("HostKeyAlgorithms", "ssh-ed*"),
    ("HostKeyAlgorithms", "+ssh-rsa"),
    ("HostKeyAlgorithms", "-*cert*"),
    ("HostKeyAlgorithms", "^rsa-sha2-*,ssh-ed25519"),
]


def _all(keyword: str) -> tuple[str, ...]:
    ssh = which_or_skip("ssh")
    query = QUERY[keyword]
    out = subprocess.run([ssh, "-Q", query], capture_output=True, text=True, check=True).stdout
    names = out.split()
    if keyword == "HostKeyAlgorithms":
        # sshd and ssh expand host key patterns over key types and their signature names.
        sig = subprocess.run([ssh, "-Q", "key-sig"], capture_output=True, text=True, check=True)
        names = list(dict.fromkeys([*names, *sig.stdout.split()]))
    return tuple(names)


def _sshd_lists(tmp_path: Path, line: str | None) -> tuple[str, str]:
    """(stdout, stderr) of ``sshd -T`` with a config holding `line`."""
    sshd = which_or_skip("sshd")
    config = tmp_path / "sshd_config"
    config.write_text(f"HostKey {openssh_key('ed25519')}\n" + (f"{line}\n" if line else ""))
    done = subprocess.run(
        [sshd, "-T", "-f", str(config)], capture_output=True, text=True, check=False
    )
    return done.stdout, done.stderr


def _effective(text: str, keyword: str) -> tuple[str, ...]:
    for row in text.splitlines():
        key, _, value = row.partition(" ")
        if key == keyword.lower():
            return tuple(value.split(","))
    raise AssertionError(f"{keyword} not in output:\n{text}")


@pytest.mark.peers
@pytest.mark.parametrize(("keyword", "value"), CASES)
def test_sshd_assembles_as_kexproxy(tmp_path: Path, keyword: str, value: str) -> None:
    default_out, _ = _sshd_lists(tmp_path, None)
    changed_out, err = _sshd_lists(tmp_path, f"{keyword} {value}")
    known = _all(keyword)
    expected = _effective(changed_out, keyword)
    assert not bad_names(keyword, value, known)  # type: ignore[arg-type]
    assert assemble_names(value, _effective(default_out, keyword), known) == expected, err


@pytest.mark.peers
@pytest.mark.parametrize(("keyword", "value"), CASES)
def test_ssh_assembles_as_kexproxy(keyword: str, value: str) -> None:
    ssh = which_or_skip("ssh")
    argv = [ssh, "-F", "/dev/null", "-G", "127.0.0.1"]
    default = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    changed = subprocess.run(
        [*argv[:-1], f"-o{keyword}={value}", "127.0.0.1"],
        capture_output=True,
        text=True,
        check=True,
    )
    expected = _effective(changed.stdout, keyword)
    assert assemble_names(value, _effective(default, keyword), _all(keyword)) == expected


@pytest.mark.peers
@pytest.mark.parametrize(
    ("keyword", "value", "complaint"),
    [
        ("Ciphers", "aes*", "Bad SSH2 cipher spec 'aes*'."),
        ("KexAlgorithms", "^sntrup*", "Bad SSH2 KexAlgorithms '^sntrup*'."),
        ("MACs", "+hmac-sha2-*", "Bad SSH2 mac spec '+hmac-sha2-*'."),
        ("Ciphers", "+no-such-cipher", "Bad SSH2 cipher spec '+no-such-cipher'."),
    ],
)
def test_sshd_refuses_what_kexproxy_refuses(
    tmp_path: Path, keyword: str, value: str, complaint: str
) -> None:
    _, err = _sshd_lists(tmp_path, f"{keyword} {value}")
    assert complaint in err
    assert bad_names(keyword, value, _all(keyword))  # type: ignore[arg-type]


def test_patterns_follow_match_c() -> None:
    assert match_pattern("aes128-ctr", "aes*-ctr")
    assert match_pattern("aes128-ctr", "aes1?8-ctr")
    assert not match_pattern("aes128-ctr", "aes1?-ctr")
    assert not match_pattern("aes128-ctr", "aes")  # the whole name, not a prefix
    assert match_pattern("a.b", "a.b") and not match_pattern("axb", "a.b")  # no regex leaks
    assert match_pattern_list("aes128-cbc", "aes*,!*-cbc") == -1  # a negated match wins
    assert match_pattern_list("aes128-ctr", "aes*,!*-cbc") == 1
    assert match_pattern_list("chacha", "aes*") == 0
    assert filter_list(("a", "b", "ab"), "a*", denylist=True) == ("b",)
    assert filter_list(("a", "b", "ab"), "a*", denylist=False) == ("a", "ab")


def test_assemble_edges() -> None:
    default = ("x", "y")
    assert assemble_names("", default, ("x", "y", "z")) == default
    assert assemble_names("+z,x", default, ("x", "y", "z")) == ("x", "y", "z")
    assert assemble_names("z,unknown", default, ("x", "y", "z")) == ("z",)  # `all` filters
    with pytest.raises(ListError):
        assemble_names("unknown", default, ("x", "y"))
    with pytest.raises(ListError):
        assemble_names("!x", default, ("x", "y"))
    assert assemble_names("-*", default, ("x", "y")) == ()  # sshd then has nothing to offer


def test_parse_line_forms() -> None:
    assert str(parse_line("ciphers -aes128-cbc")) == "Ciphers -aes128-cbc"
    assert str(parse_line("-oKexAlgorithms=+diffie-hellman-group14-sha1")) == (
        "KexAlgorithms +diffie-hellman-group14-sha1"
    )
    assert parse_line("MACs=hmac-sha2-256").value == "hmac-sha2-256"
    for text in ("Compression yes", "Ciphers", "Ciphers a b"):
        with pytest.raises(ListError):
            parse_line(text)
