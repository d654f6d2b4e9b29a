"""``kexproxy whatif`` end to end on the bundled captures and catalogued releases."""

from __future__ import annotations

import json

import pytest

from kexproxy import exitcodes
from kexproxy.cli import main

CAPTURES = "captures"


def test_json_lines_name_who_breaks(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        [
            "whatif", "--json",
            "--client-software", "OpenSSH_9.2,PuTTY_0.70",
            "--server-software", "OpenSSH_9.2",
            "--server-change", "KexAlgorithms sntrup761x25519-sha512@openssh.com",
        ]
    )  # fmt: skip
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == exitcodes.CHANGE_BREAKS
    by_software = {line["client"]["software"]: line for line in lines}
    putty = by_software["PuTTY_Release_0.70"]
    assert putty["effect"] == "breaks" and putty["outcome"] == "failed"
    assert putty["failures"][0]["list"] == "kex_algorithms"
    assert putty["rejections"]["client"]["their_offer"] == ["sntrup761x25519-sha512@openssh.com"]
    assert by_software["OpenSSH_9.2"]["negotiated"]["kex"] == "sntrup761x25519-sha512@openssh.com"


def test_table_leads_with_breaks_and_counts_sessions(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        [
            "whatif",
            "--clients", f"{CAPTURES}/dropbear-server-success.pcap", f"{CAPTURES}/openssh-success.pcap",
            "--server-from", f"{CAPTURES}/openssh-success.pcap",
            "--server-change", "Ciphers aes256-gcm@openssh.com",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines()[4:] if line]
    assert out.startswith("change: Ciphers aes256-gcm@openssh.com\n")
    assert status in (exitcodes.OK, exitcodes.CHANGE_BREAKS)
    effects = [row.split("  ")[0].strip() for row in rows]
    order = ["breaks", "still fails", "fixed", "still negotiates"]
    assert effects == sorted(effects, key=order.index)


def test_a_name_the_release_cannot_do_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        [
            "whatif", "--client-software", "OpenSSH_9.2", "--server-software", "OpenSSH_9.2",
            "--server-change", "KexAlgorithms +mlkem768x25519-sha256",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == exitcodes.BAD_INPUT
    assert err == (
        "kexproxy whatif: KexAlgorithms +mlkem768x25519-sha256: refused: OpenSSH 9.2 cannot do "
        "mlkem768x25519-sha256 (OpenSSH has it from 9.9)\n"
    )


def test_an_unreachable_server_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.peers.base import free_port

    port = free_port()  # nothing listens there
    status = main(["whatif", "--server", f"127.0.0.1:{port}", "--client-software",
                   "OpenSSH_9.2", "--server-change", "Ciphers -aes128-ctr"])  # fmt: skip
    assert status == exitcodes.BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith(f"kexproxy whatif: --server 127.0.0.1:{port}: cannot connect")
    assert err.count("\n") == 1


@pytest.mark.peers
def test_a_probed_server_is_the_server(capsys: pytest.CaptureFixture[str]) -> None:
    """--server probes a real sshd now; removing its ciphers but one breaks a client that
    offers only another, and the offer used is the one the probe saw."""
    from tests.peers.servers import Sshd

    with Sshd(host_keys=("ed25519",)) as sshd:
        status = main(["whatif", "--server", f"127.0.0.1:{sshd.port}", "--client-software",
                       "OpenSSH_9.2,PuTTY_0.70", "--server-change",
                       "Ciphers aes256-gcm@openssh.com", "--json"])  # fmt: skip
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == exitcodes.CHANGE_BREAKS
    by_software = {line["client"]["software"]: line for line in lines}
    assert by_software["OpenSSH_9.2"]["outcome"] == "negotiated"
    assert by_software["OpenSSH_9.2"]["negotiated"]["cipher_c2s"] == "aes256-gcm@openssh.com"
    putty = by_software["PuTTY_Release_0.70"]
    assert putty["outcome"] == "failed"
    assert {f["list"] for f in putty["failures"]} >= {"encryption_algorithms_client_to_server"}
