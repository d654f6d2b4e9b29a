"""Fix recipes: the ssh option and config lines as printed, and the warnings beside them."""

from __future__ import annotations

from tests.core.diagnosis.records import diag, fixes_for, make_record


def test_mac_and_host_key_forms() -> None:
    record = make_record(
        client={"cipher": "aes128-ctr", "mac": "hmac-sha2-512"},
        server={"cipher": "aes128-ctr", "mac": "hmac-md5"},
    )
    client = fixes_for(record, "client")[0]
    assert client["ssh_option"] == "-oMACs=+hmac-md5" and "MD5" in client["warning"]
    assert fixes_for(record, "server")[0]["sshd_config"] == "MACs +hmac-sha2-512"

    record = make_record(server={"host_key": "ssh-rsa"})
    client = fixes_for(record, "client")[0]
    assert client["ssh_option"] == "-oHostKeyAlgorithms=+ssh-rsa"
    server = fixes_for(record, "server")
    # sshd has an RSA key (it offers ssh-rsa): rsa-sha2-512 needs no new key, so it comes first.
    assert server[0]["add"] == "rsa-sha2-512"
    assert "already has" in server[0]["warning"]
    ed25519 = next(f for f in server if f["add"] == "ssh-ed25519")
    assert "HostKey" in ed25519["warning"] and "ssh-keygen -t ed25519" in ed25519["warning"]


def test_compression_is_yes_or_no_in_openssh() -> None:
    record = make_record(
        client={"compression": "none"}, server={"compression": "zlib,zlib@openssh.com"}
    )
    client = fixes_for(record, "client")
    assert {f["ssh_option"] for f in client} == {"-oCompression=yes"}
    assert client[0]["ssh_config"] == "Host 10.0.0.2\n    Compression yes"
    server = fixes_for(record, "server")
    assert [f["sshd_config"] for f in server] == ["Compression no"]
    # sshd has had no pre-authentication zlib since 7.4: it is not offered as a server fix.
    record = make_record(client={"compression": "zlib"}, server={"compression": "none"})
    assert fixes_for(record, "server") == []
    assert any("upgrading the client" in text for text in diag(record)["real_fix"])
    old = make_record(
        client={"compression": "zlib"},
        server={"compression": "none"},
        server_banner="SSH-2.0-OpenSSH_6.6",
    )
    assert fixes_for(old, "server")[0]["sshd_config"] == "Compression yes"
    odd = make_record(client={"compression": "none"}, server={"compression": "lz4@example.com"})
    fix = fixes_for(odd, "client")[0]
    assert fix["ssh_option"] is None and "no option" in fix["warning"]


def test_old_openssh_gets_the_full_list_instead_of_plus() -> None:
    record = make_record(
        client={"kex": "diffie-hellman-group1-sha1,diffie-hellman-group-exchange-sha1"},
        client_banner="SSH-2.0-OpenSSH_6.6.1p1",
        server={"kex": "curve25519-sha256,curve25519-sha256@libssh.org"},
    )
    # OpenSSH 6.6 knows only the libssh.org name of X25519 and has no "+name" syntax.
    [fix] = fixes_for(record, "client")
    assert fix["ssh_option"] == (
        "-oKexAlgorithms=diffie-hellman-group1-sha1,diffie-hellman-group-exchange-sha1,"
        "curve25519-sha256@libssh.org"
    )


def test_several_failing_lists_get_combined_forms() -> None:
    record = make_record(
        client={"kex": "diffie-hellman-group1-sha1", "cipher": "3des-cbc", "mac": "hmac-md5"},
    )
    lists = record.failing_lists
    assert "kex_algorithms" in lists and "encryption_algorithms_client_to_server" in lists
    combined = diag(record)["combined"]
    assert combined["server"]["sshd_config"].splitlines() == [
        "KexAlgorithms +diffie-hellman-group1-sha1",
        "Ciphers +3des-cbc",
        "MACs +hmac-md5",
    ]
    assert combined["client"]["ssh_option"].startswith("-oKexAlgorithms=+sntrup761")
    assert combined["client"]["ssh_config"].startswith("Host 10.0.0.2\n    KexAlgorithms +")


def test_dropbear_sides_get_dropbear_advice() -> None:
    """Dropbear fixes its algorithms at build time: names outside its build rank last."""
    record = make_record(
        client={
            "kex": "curve25519-sha256,kexguess2@matt.ucc.asn.au",
            "cipher": "chacha20-poly1305@openssh.com",
        },
        server={"kex": "diffie-hellman-group-exchange-sha256", "cipher": "aes128-ctr,aes256-cbc"},
        client_banner="SSH-2.0-dropbear_2022.83",
    )
    kex = [f for f in diag(record)["fixes"] if f["list"] == "kex_algorithms"]
    assert kex[0]["side"] == "server" and kex[-1]["side"] == "client"
    assert "rebuild or upgrade it" in kex[-1]["warning"]
    cipher = fixes_for(record, "client")
    cipher = [f for f in cipher if "encryption_algorithms_client_to_server" in f["lists"]]
    assert cipher[0]["add"] == "aes128-ctr"
    assert "dbclient -c aes128-ctr" in cipher[0]["warning"]
