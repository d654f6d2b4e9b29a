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


def test_server_probe_is_a_clear_hook(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["whatif", "--server", "127.0.0.1:22", "--client-software", "OpenSSH_9.2",
                   "--server-change", "Ciphers -aes128-ctr"])  # fmt: skip
    assert status == exitcodes.BAD_INPUT
    assert "needs the SSH probe" in capsys.readouterr().err
