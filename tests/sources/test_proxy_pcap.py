"""A relayed session's capture file: segments, sequence numbers and flags, read back by `read`."""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import TCP
from scapy.utils import rdpcap

from kexproxy.core.observer import Endpoint
from kexproxy.core.record import SessionRecord
from kexproxy.pipeline import capture_records
from kexproxy.sources.proxy_pcap import MSS, capture_name, write_capture
from kexproxy.sources.proxy_record import Recorder, RecordJob
from kexproxy.sources.proxy_tape import Tape, TapeChunk, TapeClose
from tests.builders import client_offer, ident, kexinit, server_offer
from tests.sources.test_proxy_record import _relay, _tracker

CLIENT, SERVER = Endpoint("127.0.0.1", 50000), Endpoint("127.0.0.1", 2222)
CLIENT_HELLO = ident("OpenSSH_9.6") + kexinit(client_offer()) + b"\x00" * 3000
SERVER_HELLO = ident("OpenSSH_9.2p1") + kexinit(server_offer())


def _tape(*events: TapeChunk | TapeClose, client: Endpoint = CLIENT) -> Tape:
    return Tape(
        session_id="0123456789abcdef", client=client, server=SERVER, opened=100.0,
        events=events, dropped=0,
    )  # fmt: skip


def test_segments_follow_the_bytes_with_a_handshake_first_and_the_closes_last(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.pcap"
    server_sent = len(SERVER_HELLO) + 500  # 500 bytes forwarded after inspection stopped
    write_capture(
        _tape(
            TapeChunk("b", 100.1, SERVER_HELLO),
            TapeChunk("a", 100.2, CLIENT_HELLO),
            TapeClose("a", 100.3, "fin", len(CLIENT_HELLO)),
            TapeClose("b", 100.3, "rst", server_sent),
        ),
        path,
    )
    packets = rdpcap(str(path))
    tcp = [p[TCP] for p in packets]
    assert [str(t.flags) for t in tcp[:3]] == ["S", "SA", "A"]
    client_isn, server_isn = tcp[0].seq, tcp[1].seq
    assert tcp[1].ack == client_isn + 1 and tcp[2].ack == server_isn + 1
    client_data = [t for t in tcp[3:] if t.sport == CLIENT.port and bytes(t.payload)]
    assert all(len(t.payload) <= MSS for t in client_data)
    assert len(client_data) == -(-len(CLIENT_HELLO) // MSS)
    assert b"".join(bytes(t.payload) for t in client_data) == CLIENT_HELLO
    assert [t.seq - client_isn - 1 for t in client_data] == [
        i * MSS for i in range(len(client_data))
    ]
    fin, rst = tcp[-2], tcp[-1]
    assert (str(fin.flags), fin.seq) == ("FA", client_isn + 1 + len(CLIENT_HELLO))
    assert (str(rst.flags), rst.seq) == ("R", server_isn + 1 + server_sent)
    times = [float(p.time) for p in packets]
    assert times == sorted(times) and len(set(times)) == len(times)
    (record,) = capture_records(str(path))
    assert record.client == {"ip": CLIENT.ip, "port": CLIENT.port}
    assert record.server_banner == "SSH-2.0-OpenSSH_9.2p1"
    assert record.client_kexinit is not None and record.server_kexinit is not None
    assert (record.outcome, record.failures) == ("aborted", [])


def test_an_ipv6_session_is_written_over_ipv6(tmp_path: Path) -> None:
    path = tmp_path / "v6.pcap"
    client = Endpoint("::1", 50001)
    write_capture(_tape(TapeChunk("b", 100.1, SERVER_HELLO), client=client), path)
    packets = rdpcap(str(path))
    assert packets[0]["IPv6"].src == "::1"
    # The IPv4 server of an IPv6 client: one connection has one family.
    assert packets[0]["IPv6"].dst == "::ffff:127.0.0.1"
    assert packets[-1][TCP].sport == SERVER.port


def test_the_recorder_writes_a_final_jobs_capture_and_names_it(tmp_path: Path) -> None:
    published: list[SessionRecord] = []
    recorder = Recorder(lambda r, f: published.append(r), warn=print, capture_dir=str(tmp_path))
    tape = _tape(TapeChunk("b", 100.1, SERVER_HELLO))
    recorder.handle(
        RecordJob(tracker=_tracker("openssh-kex-fail.pcap"), final=True, relay=_relay("w"),
                  tape=tape)
    )  # fmt: skip
    (record,) = published
    assert record.capture == str(tmp_path / capture_name(record.id))
    assert Path(record.capture).stat().st_size > 0


def test_a_capture_that_cannot_be_written_is_a_note_and_a_warning(tmp_path: Path) -> None:
    published: list[SessionRecord] = []
    warnings: list[str] = []
    missing = str(tmp_path / "missing")
    recorder = Recorder(lambda r, f: published.append(r), warn=warnings.append,
                        capture_dir=missing)  # fmt: skip
    recorder.handle(
        RecordJob(tracker=_tracker("openssh-kex-fail.pcap"), final=True, relay=_relay("x"),
                  tape=_tape(TapeChunk("b", 100.1, SERVER_HELLO)))
    )  # fmt: skip
    (record,) = published
    assert record.capture == "openssh-kex-fail.pcap"  # the tracker's own, not a new file
    assert record.notes[-1].startswith(f"the capture file {missing}/")
    assert "could not write" in warnings[0]


def test_a_cut_tape_is_noted_in_the_record(tmp_path: Path) -> None:
    published: list[SessionRecord] = []
    recorder = Recorder(lambda r, f: published.append(r), warn=print, capture_dir=str(tmp_path))
    tape = Tape(session_id="c", client=CLIENT, server=SERVER, opened=1.0, events=(), dropped=77)
    recorder.handle(
        RecordJob(tracker=_tracker("openssh-kex-fail.pcap"), final=True, relay=_relay("c"),
                  tape=tape)
    )  # fmt: skip
    assert "77 bytes" in published[0].notes[-1]
