"""Capture files: formats, gzip, pipes, clocks, and damaged or hostile files.

Each damaged file must give everything readable before the damage, then one `CaptureError`
line (exit 2 in the commands), never another exception.
"""

from __future__ import annotations

import gzip
import io
import struct
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexproxy.core.netframes import Endpoint
from kexproxy.sources import capfile, pcap
from tests.core.frames import (
    ETHERNET,
    LOOP,
    NULL,
    RAW,
    SLL2,
    frame,
    ipv4,
    tcp_header,
)
from tests.sources.captures import (
    C_BANNER,
    PUBLIC,
    S_BANNER,
    Conversation,
    epb,
    idb,
    pcap_bytes,
    pcapng_block,
    pcapng_bytes,
    public,
    run,
    shb,
    ssh_conversation,
    write,
)


def test_pcapng_with_a_pcap_name() -> None:
    result = public("ndpi-ssh.pcap")
    assert result.stats is not None
    assert result.stats.format == "pcapng"
    assert len(result.finished) == 2


def test_nanosecond_pcap() -> None:
    result = public("zeek-http-get-to-ssh-server.pcap")
    assert result.stats is not None
    assert result.stats.format == "pcap (nanosecond)"
    (rec,) = result.finished
    assert rec.first_ts > 1e9
    assert rec.closes == [("b", "rst")]


def test_gzip_stdin_and_open_files_read_the_same(tmp_path: Path) -> None:
    name = "zeek-ssh-sshguess.pcap"
    raw = (PUBLIC / name).read_bytes()
    gz = write(tmp_path, "x.pcap.gz", gzip.compress(raw))
    plain = public(name)
    variants = [
        run(gz),
        run("-", stdin=io.BytesIO(raw)),
        run("-", stdin=io.BytesIO(gzip.compress(raw))),
    ]
    with open(PUBLIC / name, "rb") as handle:
        variants.append(run(handle))
    for other in variants:
        assert other.error is None
        assert [(r.a, r.b, r.initiator, r.first_ts, r.data, r.closes) for r in other.finished] == [
            (r.a, r.b, r.initiator, r.first_ts, r.data, r.closes) for r in plain.finished
        ]
    assert variants[0].stats is not None
    assert variants[0].stats.format == "pcap+gzip"


def test_progress_reports_bytes_of_the_file() -> None:
    result = public("zeek-ssh-ssh_kex_mlkem.pcap")
    size = (PUBLIC / "zeek-ssh-ssh_kex_mlkem.pcap").stat().st_size
    assert result.progress[-1] == (size, size)
    assert len(result.progress) == 1 + 3763 // pcap.PROGRESS_EVERY
    assert all(done <= size for done, _ in result.progress)


def test_synthetic_conversation_in_every_format(tmp_path: Path) -> None:
    conv = ssh_conversation().close()
    payloads = [
        conv.pcap(),
        conv.pcap(nano=True, endian=">"),
        pcapng_bytes(conv.frames),
        pcapng_bytes(conv.frames, endian=">"),
        gzip.compress(pcapng_bytes(conv.frames)),
    ]
    for i, blob in enumerate(payloads):
        result = run(write(tmp_path, f"c{i}.cap", blob))
        assert result.error is None, result.error
        (rec,) = result.finished
        assert rec.initiator == "syn"
        assert (rec.a, rec.b) == (Endpoint("10.0.0.1", 40000), Endpoint("10.0.0.2", 22))
        assert bytes(rec.data["a"]).startswith(C_BANNER)
        assert bytes(rec.data["b"]).startswith(S_BANNER)
        assert rec.closes == [("a", "fin"), ("b", "fin")]
        assert rec.first_ts == pytest.approx(conv.frames[0][0], abs=1e-6)


@pytest.mark.parametrize("link", [NULL, LOOP, SLL2, RAW, ETHERNET])
def test_loopback_super_frames_are_read_whole(tmp_path: Path, link: int) -> None:
    """Loopback captures carry frames far above 65,535 bytes (scapy's readers cut them)."""
    big = bytes(range(256)) * 1000  # 256,000 bytes
    conv = Conversation(("::1", 50000), ("::1", 22), link=link).handshake()
    conv.packet("s", S_BANNER).packet("c", C_BANNER + big).close()
    path = write(tmp_path, "lo.pcap", conv.pcap())
    result = run(path)
    (rec,) = result.finished
    assert bytes(rec.data["a"]) == C_BANNER + big
    assert rec.gaps == []
    v4 = Conversation(("127.0.0.1", 50000), ("127.0.0.1", 22), link=link).handshake()
    v4.packet("c", C_BANNER)
    packet = ipv4("127.0.0.1", "127.0.0.1", 6, tcp_header(50000, 22, v4.next["c"]) + big, total=0)
    v4.frames.append((v4.t + 1, frame(link, packet), len(frame(link, packet))))
    (rec,) = run(write(tmp_path, "lo4.pcap", v4.pcap())).finished
    assert bytes(rec.data["a"]) == C_BANNER + big


def test_why_not_scapys_reader_it_still_cuts_big_frames(tmp_path: Path) -> None:
    """The README's reason for this reader, checked against the installed scapy: the day
    this fails, scapy reads loopback captures whole and the README's paragraph is stale."""
    import logging

    from scapy.utils import RawPcapReader

    big = bytes(range(256)) * 1000
    conv = Conversation(("127.0.0.1", 50000), ("127.0.0.1", 22)).handshake()
    conv.packet("c", C_BANNER + big).close()
    path = write(tmp_path, "lo.pcap", conv.pcap())
    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)  # its "truncated" warning
    with RawPcapReader(str(path)) as reader:
        sizes = [len(data) for data, _meta in reader]
    assert max(sizes) == 65535
    (rec,) = run(path).finished
    assert bytes(rec.data["a"]) == C_BANNER + big


def test_snaplen_cut_with_an_honest_wire_length_of_65535(tmp_path: Path) -> None:
    """What a reader capped at 65,535 bytes would deliver: the rest must be a gap."""
    conv = Conversation(("127.0.0.1", 1), ("127.0.0.1", 22), link=NULL).handshake()
    conv.packet("c", C_BANNER + b"y" * 100_000, keep=65535).close()
    (rec,) = run(write(tmp_path, "snap.pcap", conv.pcap(snaplen=65535))).finished
    assert rec.data["a"] == b""
    assert rec.gaps and rec.gaps[0][0] == "a"


def test_caplen_above_snaplen_is_still_decoded(tmp_path: Path) -> None:
    conv = ssh_conversation().close()
    (rec,) = run(write(tmp_path, "s.pcap", conv.pcap(snaplen=64))).finished
    assert bytes(rec.data["a"]).startswith(C_BANNER)


# -- hand-made captures: damaged files -----------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    result = run(str(tmp_path / "nope.pcap"))
    assert result.error is not None
    assert str(result.error) == f"{tmp_path / 'nope.pcap'}: no such file or directory"


def test_directory(tmp_path: Path) -> None:
    result = run(str(tmp_path))
    assert result.error is not None
    assert str(result.error).startswith(f"{tmp_path}: is a directory")


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"<!DOCTYPE html>", "not a pcap or pcapng file (starts with 3c 21 44 4f)"),
        (b"", "empty file (not a pcap or pcapng file)"),
        (b"\xd4\xc3", "not a pcap or pcapng file (starts with d4 c3)"),
        (
            gzip.compress(b"hello world", mtime=0),
            "not a pcap or pcapng file inside gzip (starts with 68 65 6c 6c)",
        ),
        (gzip.compress(b"", mtime=0), "gzip file holds no capture"),
        (b"\x1f\x8b\x08\x00garbage-not-deflate", "corrupt or truncated gzip data"),
        (b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00", "truncated pcap file header"),
        (
            b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x01\x02\x03\x04" + b"\0" * 16,
            "corrupt pcapng section header",
        ),
    ],
)
def test_not_a_capture(tmp_path: Path, blob: bytes, message: str) -> None:
    path = write(tmp_path, "bad.pcap", blob)
    result = run(path)
    assert result.error is not None
    assert str(result.error).startswith(f"{path}: {message}")
    assert "\n" not in str(result.error)


def test_stdin_label() -> None:
    result = run("-", stdin=io.BytesIO(b"garbage!"))
    assert result.error is not None
    assert str(result.error) == "stdin: not a pcap or pcapng file (starts with 67 61 72 62)"


@pytest.mark.parametrize("cut", [10, 5, 1])
def test_truncated_pcap_delivers_everything_then_raises(tmp_path: Path, cut: int) -> None:
    first = ssh_conversation().close()
    second = ssh_conversation(("10.0.0.9", 40000)).packet("c", b"z" * 100)
    blob = pcap_bytes(first.frames + second.frames)[:-cut]
    result = run(write(tmp_path, "trunc.pcap", blob))
    assert result.error is not None
    assert "truncated capture" in str(result.error)
    assert [r.flow_index for r in result.finished] == [0, 1]
    assert bytes(result.finished[1].data["a"]).startswith(C_BANNER)
    assert result.stats is not None
    assert result.stats.frames == len(first.frames) + len(second.frames) - 1


def test_truncated_record_header(tmp_path: Path) -> None:
    blob = ssh_conversation().pcap() + b"\x01\x02\x03"
    result = run(write(tmp_path, "hdr.pcap", blob))
    assert result.error is not None
    assert "record header of record" in str(result.error)
    assert len(result.finished) == 1


def test_truncated_gzip_delivers_everything_then_raises(tmp_path: Path) -> None:
    blob = gzip.compress(ssh_conversation().close().pcap() * 1)
    result = run(write(tmp_path, "t.pcap.gz", blob[:-12]))
    assert result.error is not None
    assert "gzip" in str(result.error) or "truncated" in str(result.error)


def test_absurd_caplen_is_corrupt(tmp_path: Path) -> None:
    blob = (
        ssh_conversation().pcap() + struct.pack("<IIII", 1, 0, 0xFFFFFFF0, 0xFFFFFFF0) + b"x" * 100
    )
    result = run(write(tmp_path, "huge.pcap", blob))
    assert result.error is not None
    assert "claims 4294967280 captured bytes" in str(result.error)
    assert len(result.finished) == 1


def test_unsupported_link_type(tmp_path: Path) -> None:
    result = run(write(tmp_path, "usb.pcap", pcap_bytes([(1.0, b"\0" * 64, 64)], link=189)))
    assert result.error is None
    assert result.stats is not None
    assert result.stats.unsupported_link_frames == 1
    assert result.stats.link_types == {189}


def test_pcapng_blocks_sections_and_clocks(tmp_path: Path) -> None:
    conv = ssh_conversation()
    f = conv.frames
    blob = b"".join(
        [
            shb(),
            pcapng_block(0x0BAD, b"custom block, skipped"),
            idb(ETHERNET, tsresol=9),  # nanoseconds
            idb(ETHERNET, tsresol=0x80 | 20, tsoffset=100),  # 2^-20 seconds, +100 s
            epb(f[0][1], round(f[0][0] * 1e9)),
            epb(f[1][1], round((f[1][0] - 100) * (1 << 20)), ifid=1),
            epb(f[2][1], 0, ifid=7),  # no such interface: counted, skipped
            pcapng_block(5, b"\0" * 8),  # interface statistics: skipped
            shb(">"),  # a new section in the other byte order forgets the interfaces
            idb(ETHERNET, endian=">"),
            pcapng_block(3, struct.pack(">I", len(f[2][1])) + f[2][1], ">"),  # simple packet
            pcapng_block(
                2,
                struct.pack(">HHQII", 0, 0, round(f[3][0] * 1e6), len(f[3][1]), len(f[3][1]))
                + f[3][1],
                ">",
            ),
            *[epb(data, round(ts * 1e6), endian=">") for ts, data, _ in f[4:]],
        ]
    )
    result = run(write(tmp_path, "ng.pcapng", blob))
    assert result.error is None, result.error
    (rec,) = result.finished
    assert rec.first_ts == pytest.approx(f[0][0], abs=1e-6)
    assert bytes(rec.data["a"]).startswith(C_BANNER)
    assert bytes(rec.data["b"]).startswith(S_BANNER)
    assert result.stats is not None
    assert result.stats.malformed_frames == 1
    assert rec.calls[0][2] == pytest.approx(
        f[3][0], abs=1e-4
    )  # banner time from the SPB's neighbour


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (lambda blob: blob[:-3], "truncated capture: the file ends inside the block"),
        (
            lambda blob: blob + b"\x06\0\0\0",
            "truncated capture: the file ends inside the block header",
        ),
        (lambda blob: blob + struct.pack("<II", 6, 13) + b"\0" * 8, "corrupt pcapng block"),
        (
            lambda blob: blob + struct.pack("<II", 6, 16) + b"\0" * 4 + struct.pack("<I", 20),
            "corrupt pcapng block",
        ),
    ],
)
def test_damaged_pcapng(tmp_path: Path, tail: Any, message: str) -> None:
    blob = pcapng_bytes(ssh_conversation().close().frames)
    result = run(write(tmp_path, "bad.pcapng", tail(blob)))
    assert result.error is not None
    assert message in str(result.error)
    assert len(result.finished) == 1


def damaged_bases() -> dict[str, bytes]:
    conv = ssh_conversation(link=RAW).packet("s", b"k" * 500).close()
    return {
        "pcap": conv.pcap(),
        "pcapng": pcapng_bytes(conv.frames, link=RAW),
        "gzip": gzip.compress(conv.pcap()),
    }


DAMAGED_BASES = damaged_bases()


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from(sorted(DAMAGED_BASES)),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=12),
    cut=st.integers(0, 4000),
)
def test_damaged_files_raise_only_capture_error(
    base: str, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(DAMAGED_BASES[base])
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    result = run("-", stdin=io.BytesIO(bytes(data[:cut])))
    if result.error is not None:
        assert "\n" not in str(result.error)
        assert str(result.error).startswith("stdin: ")
    # Every connection made was handed on, error or not.
    assert {id(r) for r in result.finished} == {id(r) for r in result.made}


def test_records_and_blocks_spanning_read_chunks(tmp_path: Path) -> None:
    conv = Conversation(link=RAW).handshake()
    sizes = [70_000, 200_000, 1, 150_000, 33_333, 250_000, 99_999] * 5
    payload = b""
    for i, size in enumerate(sizes):
        chunk = bytes([i]) * size
        payload += chunk
        conv.packet("c", chunk)
    blobs = [conv.pcap(), pcapng_bytes(conv.frames, link=RAW)]
    assert all(len(blob) > 3 * capfile.READ_CHUNK for blob in blobs)
    for i, blob in enumerate(blobs):
        (rec,) = run(write(tmp_path, f"big{i}", blob)).finished
        assert bytes(rec.data["a"]) == payload


class FailingStream(io.BytesIO):
    """Reads a few bytes, then fails like a disk or a network file system can."""

    def read1(self, n: int | None = -1) -> bytes:
        if self.tell() > 100:
            raise OSError(5, "Input/output error")
        return super().read1(50 if n is None or n < 0 else min(n, 50))


def test_read_errors_are_capture_errors() -> None:
    result = run(FailingStream(ssh_conversation().pcap()))
    assert result.error is not None
    assert str(result.error) == "stream: read error (Input/output error)"


def test_obsolete_packet_block_with_an_unknown_interface(tmp_path: Path) -> None:
    conv = ssh_conversation()
    bad = pcapng_block(2, struct.pack("<HHQII", 3, 0, 0, 4, 4) + b"abcd")
    blob = (
        pcapng_bytes(conv.frames[:3])
        + bad
        + b"".join(epb(data, round(ts * 1e6)) for ts, data, _ in conv.frames[3:])
    )
    result = run(write(tmp_path, "pb.pcapng", blob))
    (rec,) = result.finished
    assert bytes(rec.data["a"]).startswith(C_BANNER)


def test_pcapng_timestamps_beyond_any_date_are_replaced(tmp_path: Path) -> None:
    conv = ssh_conversation()
    f = conv.frames
    blob = b"".join(
        [
            shb(),
            idb(ETHERNET),
            epb(f[0][1], round(f[0][0] * 1e6)),
            epb(f[1][1], (1 << 64) - 1),  # year 586,524: corrupt
            *[epb(data, round(ts * 1e6)) for ts, data, _ in f[2:]],
        ]
    )
    result = run(write(tmp_path, "clock.pcapng", blob))
    assert result.stats is not None
    assert result.stats.bad_timestamps == 1
    (rec,) = result.finished
    assert bytes(rec.data["b"]).startswith(S_BANNER)
    assert max(c[2] for c in rec.calls) < 2e9


# -- options and fields that claim more than their block holds -----------------------------


def idb_with_options(options: bytes) -> bytes:
    return pcapng_block(1, struct.pack("<HHI", ETHERNET, 0, 0) + options)


@pytest.mark.parametrize(
    "options",
    [
        struct.pack("<HH", 14, 8),  # if_tsoffset with no value: the block ends (issue 9)
        struct.pack("<HH", 14, 8) + b"\0" * 4,  # half its value
        struct.pack("<HH", 9, 1),  # if_tsresol with no value
        struct.pack("<HH", 2, 400) + b"name",  # if_name claiming 400 bytes
    ],
    ids=["tsoffset-at-the-end", "tsoffset-cut", "tsresol-at-the-end", "long-name"],
)
def test_an_interface_option_past_its_block_is_one_capture_error(
    tmp_path: Path, options: bytes
) -> None:
    conv = ssh_conversation().close()
    good = pcapng_bytes(conv.frames)
    # The bad interface comes last, or with packets after it: either way `buf` goes on
    # past the block, or ends right at it.
    for blob in (good + idb_with_options(options), good + idb_with_options(options) + good[28:]):
        result = run(write(tmp_path, "idb.pcapng", blob))
        assert result.error is not None
        block = 2 + len(conv.frames) + 1  # after the section, interface and packets
        assert str(result.error).endswith(
            f"corrupt pcapng interface block {block} (an option runs past the end of the block)"
        )
        assert not result.error.internal
        assert len(result.finished) == 1


def test_options_that_fit_their_block_are_read(tmp_path: Path) -> None:
    conv = ssh_conversation()
    options = struct.pack("<HH", 2, 3) + b"eth\0" + struct.pack("<HH", 14, 8)
    options += struct.pack("<q", 100)  # the last option, no end-of-options marker
    blob = shb() + idb_with_options(options)
    blob += b"".join(epb(data, round((ts - 100) * 1e6)) for ts, data, _ in conv.frames)
    result = run(write(tmp_path, "ok.pcapng", blob))
    assert result.error is None
    (rec,) = result.finished
    assert rec.first_ts == pytest.approx(conv.frames[0][0], abs=1e-6)


def test_an_unforeseen_exception_in_the_mapped_reader_is_one_flagged_capture_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain pcap file named by its path is mapped and read in place; a failure there is
    the same one flagged line, after the records before it were delivered."""
    conv = ssh_conversation().close()

    class Faulty:
        def __init__(self, fmt: str) -> None:
            self.real = struct.Struct(fmt)
            self.calls = 0

        def unpack_from(self, buf: Any, offset: int = 0) -> tuple[Any, ...]:
            self.calls += 1
            if self.calls == 3:
                raise struct.error("unpack requires a buffer of 16 bytes\nsecond line")
            return self.real.unpack_from(buf, offset)

    fake = types.SimpleNamespace(
        Struct=lambda fmt: Faulty(fmt) if fmt.endswith("IIII") else struct.Struct(fmt),
        unpack=struct.unpack,
        error=struct.error,
    )
    monkeypatch.setattr(capfile, "struct", fake)
    result = run(write(tmp_path, "bug.pcap", conv.pcap()))
    assert result.error is not None and result.error.internal
    message = str(result.error)
    assert "\n" not in message
    assert "unreadable record 3" in message and "error: unpack requires" in message


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_an_unforeseen_exception_in_the_reader_is_one_flagged_capture_error(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conv = ssh_conversation().close()
    blob = conv.pcap() if kind == "pcap" else pcapng_bytes(conv.frames)
    real = capfile.CaptureInput._refill

    def refill(self: capfile.CaptureInput, buf: bytes, pos: int, need: int) -> bytes:
        if buf:
            raise struct.error("unpack requires a buffer of 16 bytes\nsecond line")
        return real(self, buf, pos, need)

    monkeypatch.setattr(capfile, "READ_CHUNK", 64)  # so that the reader refills often
    monkeypatch.setattr(capfile.CaptureInput, "_refill", refill)
    # An open file is read as a stream (a path to a plain pcap is mapped: the next test).
    with open(write(tmp_path, "bug.cap", blob), "rb") as handle:
        result = run(handle)
    assert result.error is not None
    assert result.error.internal
    message = str(result.error)
    assert "\n" not in message
    assert "unreadable record" in message and "error: unpack requires" in message
    assert "kexproxy bug" in message


def test_a_mapped_file_and_the_same_file_as_a_stream_give_the_same_calls() -> None:
    """A path to a plain pcap is read in place (mmap), an open file as a stream: every
    observer call, its bytes and its timestamp are the same either way."""
    root = Path(__file__).resolve().parents[2] / "captures"
    for name in ("openssh-dh-gex.pcap", "tls-tls13-hello-retry-success.pcap"):
        mapped = run(str(root / name))
        with open(root / name, "rb") as handle:
            assert capfile.CaptureInput(handle, None)._map() is None  # never mapped
            handle.seek(0)
            streamed = run(handle)
        assert mapped.error is None and streamed.error is None
        assert len(mapped.finished) == len(streamed.finished) > 0
        for one, other in zip(mapped.finished, streamed.finished, strict=True):
            assert one.calls == other.calls
            assert one.data == other.data and one.counted == other.counted
        assert mapped.stats is not None and streamed.stats is not None
        assert mapped.stats.frames == streamed.stats.frames
