"""Recipes: each alone fixes every failing list, in the changing side's own syntax."""

from __future__ import annotations

from typing import Any

from kexproxy.core.catalogue import GRADE_ORDER
from tests.core.diagnosis.records import diag, make_record


def recipes_of(record: Any, side: str | None = None) -> list[dict[str, Any]]:
    out = diag(record)["recipes"]
    return [r for r in out if side is None or r["side"] == side]


def kinds(recipe: dict[str, Any]) -> list[str]:
    return [s["kind"] for s in recipe["steps"]]


def texts(recipe: dict[str, Any]) -> list[str]:
    return [s["text"] for s in recipe["steps"]]


def test_an_openssh_client_recipe_is_a_command_and_a_host_block() -> None:
    record = make_record(
        client={"cipher": "aes128-ctr", "mac": "hmac-sha2-512"},
        server={"cipher": "aes128-ctr", "mac": "hmac-md5"},
    )
    [client] = recipes_of(record, "client")
    assert kinds(client) == ["ssh_option"] and texts(client) == ["-oMACs=+hmac-md5"]
    assert client["command"] == "ssh -oMACs=+hmac-md5 10.0.0.2"
    assert client["persist"]["text"] == "Host 10.0.0.2\n    MACs +hmac-md5"
    assert client["software"] == {"client": "OpenSSH 9.2"}
    assert any("MD5" in w for w in client["warnings"])
    assert "10.0.0.2" in client["scope"]
    [server] = recipes_of(record, "server")
    assert texts(server) == ["MACs +hmac-sha2-512"] and server["command"] is None


def test_a_server_host_key_recipe_uses_a_held_key_or_makes_one() -> None:
    # sshd has an RSA key (it offers ssh-rsa): rsa-sha2-512 needs only the algorithm line.
    record = make_record(server={"host_key": "ssh-rsa"}, client={"host_key": "rsa-sha2-512"})
    [server] = recipes_of(record, "server")
    assert texts(server) == ["HostKeyAlgorithms +ssh-rsa"] or texts(server) == [
        "HostKeyAlgorithms +rsa-sha2-512"
    ]
    # Only an Ed25519 key on the server, an RSA-only client: the server may lack an RSA key
    # or hide it with HostKeyAlgorithms; the recipe makes one unless it exists, and the line.
    record = make_record(server={"host_key": "ssh-ed25519"}, client={"host_key": "rsa-sha2-512"})
    [server] = recipes_of(record, "server")
    assert kinds(server) == ["host_key", "sshd_config"]
    assert texts(server) == [
        "[ -e /etc/ssh/ssh_host_rsa_key ] || "
        "ssh-keygen -q -t rsa -b 3072 -N '' -f /etc/ssh/ssh_host_rsa_key\n"
        "HostKey /etc/ssh/ssh_host_rsa_key",
        "HostKeyAlgorithms +rsa-sha2-512",
    ]
    assert any("HostKey line" in n for n in server["notes"])
    assert server["effort"] == 1


def test_compression_is_yes_or_no_in_openssh() -> None:
    record = make_record(
        client={"compression": "none"}, server={"compression": "zlib,zlib@openssh.com"}
    )
    [client] = recipes_of(record, "client")
    assert texts(client) == ["-oCompression=yes"]
    [server] = recipes_of(record, "server")
    assert texts(server) == ["Compression no"]
    # sshd has had no pre-authentication zlib since 7.4: no server recipe, an upgrade word.
    record = make_record(client={"compression": "zlib"}, server={"compression": "none"})
    assert recipes_of(record, "server") == []
    assert any("server (OpenSSH 9.2) can add none" in t for t in diag(record)["real_fix"])
    old = make_record(
        client={"compression": "zlib"},
        server={"compression": "none"},
        server_banner="SSH-2.0-OpenSSH_6.6",
    )
    assert texts(recipes_of(old, "server")[0]) == ["Compression yes"]
    # OpenSSH cannot offer a compression it does not know: no client recipe for lz4.
    odd = make_record(client={"compression": "none"}, server={"compression": "lz4@example.com"})
    assert recipes_of(odd, "client") == []


def test_old_openssh_gets_the_full_list_instead_of_plus() -> None:
    record = make_record(
        client={"kex": "diffie-hellman-group1-sha1,diffie-hellman-group-exchange-sha1"},
        client_banner="SSH-2.0-OpenSSH_6.6.1p1",
        server={"kex": "curve25519-sha256,curve25519-sha256@libssh.org"},
    )
    # OpenSSH 6.6 knows only the libssh.org name of X25519 and has no "+name" syntax.
    [client] = recipes_of(record, "client")
    assert texts(client) == [
        "-oKexAlgorithms=diffie-hellman-group1-sha1,diffie-hellman-group-exchange-sha1,"
        "curve25519-sha256@libssh.org"
    ]


def test_each_recipe_alone_covers_every_failing_list() -> None:
    record = make_record(
        client={"kex": "diffie-hellman-group1-sha1", "cipher": "3des-cbc", "mac": "hmac-md5"},
    )
    failing = set(record.failing_lists)
    assert {"kex_algorithms", "encryption_algorithms_client_to_server"} <= failing
    recipes = recipes_of(record)
    assert [r["rank"] for r in recipes] == list(range(1, len(recipes) + 1))
    for recipe in recipes:
        assert set(recipe["covers"]) == failing
    [server] = recipes_of(record, "server")
    assert texts(server) == [
        "KexAlgorithms +diffie-hellman-group1-sha1",
        "Ciphers +3des-cbc",
        "MACs +hmac-md5",
    ]
    [client] = recipes_of(record, "client")
    assert client["command"].startswith("ssh -oKexAlgorithms=+") and client["command"].endswith(
        " 10.0.0.2"
    )
    assert len(client["steps"]) == 3 and client["persist"]["text"].startswith("Host 10.0.0.2\n")
    # The weak server recipe says whom it reaches and how to keep other clients off it.
    assert "Match" in server["scope"] and "second sshd" in server["scope"]
    grades = [GRADE_ORDER.get(r["grade"], 9) for r in recipes]
    assert grades == sorted(grades)


def test_software_kexproxy_cannot_write_for_gets_words_not_openssh_syntax() -> None:
    record = make_record(
        server={"cipher": "aes128-ctr"},
        client={"cipher": "aes256-gcm@openssh.com"},
        client_banner="SSH-2.0-Foo_1.0",
    )
    [client] = recipes_of(record, "client")
    assert kinds(client) == ["note"] and client["command"] is None and client["persist"] is None
    assert texts(client) == [
        "Add aes128-ctr to the client's cipher algorithms in its own settings."
    ]
    assert any("Foo_1.0 is not in kexproxy's catalogue" in n for n in client["notes"])
    assert "kexproxy does not know what the client's software can offer." in client["warnings"]


def test_a_side_too_old_for_anything_is_told_which_release_would_do() -> None:
    record = make_record(
        client={"kex": "diffie-hellman-group14-sha1,curve25519-sha256@libssh.org"},
        client_banner="SSH-2.0-OpenSSH_6.6",
        server={"kex": "sntrup761x25519-sha512@openssh.com,mlkem768x25519-sha256"},
    )
    [client] = recipes_of(record, "client")
    assert kinds(client) == ["upgrade"]
    assert texts(client) == [
        # 8.5 has it, but only 9.0 offers it untouched: the text says to set it.
        "Upgrade OpenSSH on the client to 8.5 or later: it can offer "
        "sntrup761x25519-sha512@openssh.com (set it to offer "
        "sntrup761x25519-sha512@openssh.com)."
    ]
    assert recipes_of(record)[-1] is client  # an upgrade ranks after any setting


def test_names_a_shell_or_config_file_would_misread_never_reach_a_step() -> None:
    record = make_record(
        client={"cipher": "aes128-ctr"},
        server={"cipher": "evil\nPermitRootLogin yes,a b,$(reboot),aes256-ctr"},
        client_banner="SSH-2.0-OpenSSH_9.2",
    )
    for recipe in recipes_of(record):
        for text in [*texts(recipe), recipe["command"] or ""]:
            assert "PermitRootLogin" not in text and "$(" not in text and "a b" not in text
    [client] = recipes_of(record, "client")
    assert texts(client) == ["-oCiphers=+aes256-ctr"]


def test_a_handshake_that_did_not_fail_negotiation_gets_no_recipe() -> None:
    """An aborted or incomplete record has no failing list: nothing to fix, nothing said,
    unless a PuTTY client gave up on its warning line (tests/integration/test_recipes_putty.py)."""
    from pathlib import Path

    from kexproxy.pipeline import capture_records

    captures = Path(__file__).parents[3] / "captures"
    for name in ("banner-refused.pcap", "plink-kex-fail-no-client-kexinit.pcap"):
        for record in capture_records(str(captures / name)):
            assert record.outcome in ("aborted", "incomplete"), name
            assert (diag(record)["recipes"], diag(record)["real_fix"]) == ([], []), name
