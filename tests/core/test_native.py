"""Each software's own words for a failed negotiation, one template at a time."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

from kexproxy.core.diagnosis.software import Software
from kexproxy.core.native import NATIVE_CHARS, ORDER, Failed, native_line
from kexproxy.core.negotiation import Role
from kexproxy.pipeline import capture_records
from kexproxy.present import native_words
from kexproxy.sinks.summary import SummarySink

ROOT = Path(__file__).resolve().parents[2]

KEX, HOST_KEY, CIPHER_CS, _CIPHER_SC, MAC_CS, _MAC_SC, COMP_CS, COMP_SC = ORDER
OPENSSH = "Unable to negotiate with 127.0.0.1 port 22: no matching cipher found. Their offer: x"


def failed(
    role: Role,
    *failing: str,
    own: dict[str, list[str]] | None = None,
    peer: dict[str, list[str]] | None = None,
) -> Failed:
    return Failed(
        role=role,
        failing=frozenset(failing),
        own=own or {},
        peer=peer or {},
        peer_addr=("192.0.2.7", 50022),
    )


def line(banner: str, f: Failed) -> str | None:
    return native_line(Software.from_banner(banner), f, openssh_message=OPENSSH)


def test_openssh_words_are_the_message() -> None:
    assert line("SSH-2.0-OpenSSH_9.2p1 Debian", failed("client", KEX)) == OPENSSH


def test_unknown_software_has_no_words() -> None:
    assert line("SSH-2.0-WeirdSSH_1.0", failed("client", KEX)) is None
    assert line("", failed("client", KEX)) is None


def test_dropbear_names_its_first_failing_list_in_its_order() -> None:
    server = failed("server", MAC_CS, CIPHER_CS)
    assert line("SSH-2.0-dropbear_2022.83", server) == (
        "Exit before auth from <192.0.2.7:50022>: No matching algo enc c->s"
    )
    assert line("SSH-2.0-dropbear_2019.78", server) == "Exit before auth: No matching algo enc c->s"
    assert (
        line("SSH-2.0-dropbear_2022.83", failed("client", COMP_SC)) == "No matching algo comp s->c"
    )
    assert line("SSH-2.0-dropbear_2011.54", server) is None


def test_paramiko_words_per_list() -> None:
    banner = "SSH-2.0-paramiko_5.1.0"
    assert (
        line(banner, failed("client", KEX)) == "Incompatible ssh peer (no acceptable kex algorithm)"
    )
    assert (
        line(banner, failed("client", HOST_KEY)) == "Incompatible ssh peer (no acceptable host key)"
    )
    assert line(banner, failed("client", MAC_CS, CIPHER_CS)) == (
        "Incompatible ssh server (no acceptable ciphers)"
    )
    assert line(banner, failed("client", MAC_CS)) == "Incompatible ssh server (no acceptable macs)"
    comp = failed(
        "client",
        COMP_CS,
        COMP_SC,
        own={COMP_CS: ["none"], COMP_SC: ["none"]},
        peer={COMP_CS: ["zlib"], COMP_SC: ["none", "zlib"]},
    )
    assert line(banner, comp) == (
        "Incompatible ssh server (no acceptable compression) [] ['none'] ('none',)"
    )
    assert line("SSH-2.0-paramiko_1.18.0", failed("client", KEX)) is None


def test_asyncssh_quotes_both_offers_without_its_markers() -> None:
    f = failed(
        "client",
        KEX,
        own={KEX: ["diffie-hellman-group14-sha1", "ext-info-c", "kex-strict-c-v00@openssh.com"]},
        peer={KEX: ["curve25519-sha256", "kex-strict-s-v00@openssh.com"]},
    )
    assert line("SSH-2.0-AsyncSSH_2.24.1", f) == (
        "No matching key exchange algorithm found, sent diffie-hellman-group14-sha1 and "
        "received curve25519-sha256,kex-strict-s-v00@openssh.com"
    )
    empty = failed("server", MAC_CS, own={MAC_CS: ["hmac-sha2-256"]}, peer={MAC_CS: []})
    assert line("SSH-2.0-AsyncSSH_2.24.1", empty) == (
        "No matching MAC algorithm found, sent hmac-sha2-256 and received <None>"
    )
    assert line("SSH-2.0-AsyncSSH_2.24.1", failed("server", HOST_KEY)) == (
        "Unable to find compatible server host key"
    )
    assert line("SSH-2.0-AsyncSSH_2.24.1", failed("client", HOST_KEY)) is None
    assert line("SSH-2.0-AsyncSSH_2.14.0", f) is None
    odd = failed("client", KEX, own={KEX: ["a"]}, peer={KEX: ["caf\u00e9"]})
    assert line("SSH-2.0-AsyncSSH_2.24.1", odd) is None


def test_putty_078_quotes_the_servers_whole_list() -> None:
    f = failed("client", MAC_CS, own={MAC_CS: ["hmac-sha2-256"]}, peer={MAC_CS: ["a", "b"]})
    assert line("SSH-2.0-PuTTY_Release_0.78", f) == (
        'Selected client-to-server MAC "a,b" does not correspond to any supported algorithm'
    )
    assert line("SSH-2.0-PuTTY_Release_0.81", f) is None
    assert line("SSH-2.0-PuTTY_Release_0.78", failed("server", KEX)) is None


def test_go_quotes_ours_then_the_peers() -> None:
    f = failed(
        "server", HOST_KEY, own={HOST_KEY: ["ssh-ed25519"]}, peer={HOST_KEY: ["ssh-rsa", 'a"b']}
    )
    assert line("SSH-2.0-Go", f) == (
        'ssh: no common algorithm for host key; we offered: ["ssh-ed25519"], '
        'peer offered: ["ssh-rsa" "a\\"b"]'
    )
    hostile = failed("server", KEX, own={KEX: ["x"]}, peer={KEX: ["\x1b[31m"]})
    assert line("SSH-2.0-Go", hostile) is None


def test_jsch_old_and_fork() -> None:
    f = failed(
        "client", CIPHER_CS, own={CIPHER_CS: ["aes128-cbc"]}, peer={CIPHER_CS: ["aes256-gcm"]}
    )
    assert line("SSH-2.0-JSCH-0.1.54", f) == "Algorithm negotiation fail"
    assert line("SSH-2.0-JSCH_0.2.17", f) == (
        'Algorithm negotiation fail: algorithmName="cipher.c2s" '
        'jschProposal="aes128-cbc" serverProposal="aes256-gcm"'
    )
    assert line("SSH-2.0-JSCH-0.1.54", failed("server", KEX)) is None


def test_a_huge_offer_is_cut() -> None:
    f = failed("client", KEX, own={KEX: ["a"]}, peer={KEX: ["n" * 100] * 500})
    text = line("SSH-2.0-AsyncSSH_2.24.1", f)
    assert text is not None and len(text) == NATIVE_CHARS


def test_hostile_names_are_escaped_in_the_summary_line() -> None:
    [record] = capture_records(str(ROOT / "captures" / "plink-mac-fail.pcap"))
    hostile = '\x1b]0;pwned\x07"\u202e'
    client = dict(record.rejections["client"])
    client["native"] = f'Selected key exchange algorithm "{hostile}"'
    evil = dataclasses.replace(
        record,
        client_banner="SSH-2.0-PuTTY_\x1b[2J",
        rejections={**record.rejections, "client": client},
    )
    words = native_words(evil, "client")
    assert words is not None and hostile in words[1]
    out = io.StringIO()
    SummarySink(out).update(evil, final=True)
    shown = out.getvalue()
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert "client (PuTTY_\\x1b[2J): Selected key exchange algorithm" in shown


def test_the_summary_shows_putty_words_under_openssh_words() -> None:
    [record] = capture_records(str(ROOT / "captures" / "plink-mac-fail.pcap"))
    out = io.StringIO()
    SummarySink(out).update(record, final=True)
    assert (
        '    client (PuTTY_Release_0.78): Selected client-to-server MAC "umac-128@openssh.com" '
        "does not correspond to any supported algorithm"
    ) in out.getvalue().splitlines()
