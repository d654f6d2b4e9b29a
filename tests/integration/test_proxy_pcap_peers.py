"""`proxy --pcap`: real ssh through the relay to sshd, each session's capture file read back.

The file the recorder wrote must give `kexproxy read` the live record's lists, outcome,
failures and host key, and tshark must dissect its KEXINITs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kexproxy.core.record import SessionRecord
from kexproxy.pipeline import capture_records
from tests.builders import assert_valid_record
from tests.peers import Sshd, run_ssh, tshark_count, tshark_kexinit_rows
from tests.sources.proxy_harness import RunningProxy, config

pytestmark = pytest.mark.peers


def handshake_facts(record: SessionRecord) -> dict[str, object]:
    """What a capture file of the session must give back exactly."""
    data = assert_valid_record(record)
    return {
        key: data[key]
        for key in ("client_kexinit", "server_kexinit", "negotiated", "outcome", "failures")
    } | {"host_key": data["host_key"], "banners": (record.client_banner, record.server_banner)}


@pytest.mark.parametrize(
    ("opts", "outcome"),
    [
        ((), "negotiated"),
        (("-oKexAlgorithms=diffie-hellman-group14-sha256",), "failed"),
    ],
    ids=["success", "kex-failure"],
)
def test_each_session_has_a_capture_that_reads_back_as_its_record(
    tmp_path: Path, opts: tuple[str, ...], outcome: str
) -> None:
    captures = tmp_path / "captures"
    captures.mkdir()
    with (
        Sshd(["KexAlgorithms curve25519-sha256"], host_keys=("ed25519",)) as sshd,
        RunningProxy(config(sshd.port, pcap_dir=str(captures))) as proxy,
    ):
        result = run_ssh(proxy.port, *opts, command="echo hello")
        (live,) = proxy.wait_finals(1)
    assert (result.returncode == 0) == (outcome == "negotiated"), result.stderr
    assert live.outcome == outcome
    assert live.capture is not None
    path = Path(live.capture)
    assert path.parent == captures
    assert [p.name for p in captures.iterdir()] == [path.name]
    (read_back,) = capture_records(str(path))
    assert handshake_facts(read_back) == handshake_facts(live)
    # The capture is between the real client and the real server, not the relay's sockets.
    assert read_back.client == live.client
    assert read_back.server == live.server == {"ip": "127.0.0.1", "port": sshd.port}
    if outcome == "negotiated":
        assert live.host_key is not None
    else:
        assert [f["list"] for f in live.failures] == ["kex_algorithms"]
    # Wireshark's dissector reads the file: both KEXINITs, from the port the server is on.
    assert tshark_count(path) >= 5
    kexinits = tshark_kexinit_rows(path, sshd.port)
    assert len(kexinits) == 2
