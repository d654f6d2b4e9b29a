"""Captures on loopback with tcpdump, and what tshark decodes of them, to compare kexproxy with."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.peers.base import (
    BANNER_FIELDS,
    KEXINIT_FIELDS,
    LOOPBACK,
    PeerError,
    _skip_or_fail,
    kill_tree,
    run_command,
    which_or_skip,
)

# ---------------------------------------------------------------------------------------
# Capturing


class Tcpdump:
    """Capture TCP port ``port`` on loopback into ``path`` (pcap) with tcpdump, for the duration of a with-block.

    Yields only once tcpdump says "listening on", so no early packet is missed; on exit
    waits until the file stops growing (the last FIN/ACKs), stops tcpdump with SIGINT so it
    flushes, and raises PeerError if it could not capture. ``--immediate-mode`` matters:
    without it libpcap's TPACKET_V3 ring hands packets over only when a block fills or a
    one-second timeout expires, so a short capture stopped early holds nothing ("4 packets
    received by filter, 0 packets captured"). Snaplen 0 keeps whole packets
    (loopback's MTU is 65536); ``-Z root`` keeps tcpdump from dropping to the tcpdump user,
    who could not write into a private temp dir. ``bpf`` replaces the default filter (port
    ``port`` on 127.0.0.1), e.g. to capture two servers in one file; ``buffer_kib`` is
    tcpdump's ``-B``, the kernel buffer a capture of bulk traffic needs so as not to drop.
    """

    def __init__(
        self,
        path: str | Path,
        port: int,
        *,
        interface: str = "lo",
        start_timeout: float = 10.0,
        settle: float = 0.3,
        max_settle: float = 3.0,
        bpf: str | None = None,
        buffer_kib: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.port = port
        self.bpf = bpf if bpf is not None else f"tcp port {port} and host {LOOPBACK}"
        self.buffer_kib = buffer_kib
        self.interface = interface
        self.start_timeout = start_timeout
        self.settle = settle
        self.max_settle = max_settle
        self.argv: list[str] = []
        self.stderr_text = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._err_dir: str | None = None

    def __enter__(self) -> Self:
        tcpdump = which_or_skip("tcpdump")
        if os.geteuid() != 0:
            _skip_or_fail("tcpdump on lo needs root")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        self._err_dir = tempfile.mkdtemp(prefix="kexproxy-tcpdump-")
        err_path = Path(self._err_dir) / "stderr"
        self.argv = [
            tcpdump,
            "-i",
            self.interface,
            "-U",
            "--immediate-mode",
            "-n",
            "-s",
            "0",
            "-Z",
            "root",
            *(["-B", str(self.buffer_kib)] if self.buffer_kib is not None else []),
            "-w",
            str(self.path),
            self.bpf,
        ]
        with open(err_path, "wb") as err:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + self.start_timeout
            while "listening on" not in err_path.read_text(errors="replace"):
                if self._proc.poll() is not None:
                    raise PeerError(
                        f"tcpdump exited with {self._proc.returncode}: {err_path.read_text()}"
                    )
                if time.monotonic() > deadline:
                    raise PeerError(
                        f"tcpdump not capturing after {self.start_timeout}s: {err_path.read_text()}"
                    )
                time.sleep(0.02)
        except BaseException:
            self._finish()
            raise
        return self

    def _wait_quiet(self) -> None:
        """Wait until the capture file has not grown for ``settle`` seconds (at most ``max_settle``)."""
        deadline = time.monotonic() + self.max_settle
        last_size = -1
        last_change = time.monotonic()
        while time.monotonic() < deadline:
            size = self.path.stat().st_size if self.path.exists() else 0
            now = time.monotonic()
            if size != last_size:
                last_size, last_change = size, now
            elif now - last_change >= self.settle:
                return
            time.sleep(0.02)

    def _finish(self) -> None:
        """Stop tcpdump with SIGINT (it flushes and prints its counts), kill it if it hangs, remove temp files."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                kill_tree(proc, signal.SIGKILL)
        if self._err_dir is not None:
            with contextlib.suppress(OSError):
                self.stderr_text = (Path(self._err_dir) / "stderr").read_text(errors="replace")
            shutil.rmtree(self._err_dir, ignore_errors=True)
            self._err_dir = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self._wait_quiet()
        finally:
            self._finish()

    @property
    def packets_captured(self) -> int | None:
        """The "N packets captured" count tcpdump printed on exit, or None before exit."""
        match = re.search(r"(\d+) packets? captured", self.stderr_text)
        return int(match.group(1)) if match else None

    @property
    def packets_dropped(self) -> int | None:
        """The "N packets dropped by kernel" count tcpdump printed on exit, or None before exit."""
        match = re.search(r"(\d+) packets? dropped by kernel", self.stderr_text)
        return int(match.group(1)) if match else None


def tshark_fields(
    pcap: str | Path,
    port: int | None,
    display_filter: str,
    fields: Sequence[str],
    *,
    occurrence: str = "f",
    timeout: float = 60.0,
) -> list[dict[str, str]]:
    """Return one dict per packet matching ``display_filter``, keyed by ``fields`` ('' if absent).

    ``port`` is decoded as SSH (``-d tcp.port==N,ssh``) because tshark only knows ports 22
    and 29418; pass None for those. ``occurrence`` is tshark's ``-E occurrence=``: "f"
    (first, the default, as in docs/ssh-facts.md) or "a" (all, comma-separated), needed
    when one segment carries several SSH messages (dbclient sends banner, KEXINIT and a
    guessed key exchange packet together).
    """
    tshark = which_or_skip("tshark")
    argv = [tshark, "-n", "-r", str(pcap)]
    if port is not None and port not in (22, 29418):
        argv += ["-d", f"tcp.port=={port},ssh"]
    argv += [
        "-Y",
        display_filter,
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        f"occurrence={occurrence}",
    ]
    argv += ["-E", "aggregator=,"]
    for name in fields:
        argv += ["-e", name]
    result = run_command(argv, timeout=timeout)
    if result.returncode != 0:
        raise PeerError(f"tshark failed ({result.returncode}): {result.stderr}")
    rows = []
    for line in result.stdout.splitlines():
        if not line:
            continue
        values = line.split("|")
        if len(values) != len(fields):
            raise PeerError(
                f"tshark row has {len(values)} fields, expected {len(fields)}: {line!r}"
            )
        rows.append(dict(zip(fields, values, strict=True)))
    return rows


def tshark_kexinit_rows(pcap: str | Path, port: int | None) -> list[dict[str, str]]:
    """Return one dict per KEXINIT (message 20) with KEXINIT_FIELDS, the cross-check command of docs/ssh-facts.md."""
    return tshark_fields(pcap, port, "ssh.message_code == 20", KEXINIT_FIELDS)


def tshark_banner_rows(pcap: str | Path, port: int | None) -> list[dict[str, str]]:
    """Return one dict per SSH identification string tshark decodes, with BANNER_FIELDS."""
    return tshark_fields(pcap, port, "ssh.protocol", BANNER_FIELDS)


def tshark_message_codes(pcap: str | Path, port: int | None) -> list[dict[str, str]]:
    """Return one row per plaintext SSH message tshark decodes (frame.number, tcp.stream, tcp.srcport, ssh.direction, ssh.message_code).

    Several messages in one segment give several rows with the same frame number, so a
    guessed key exchange packet after a KEXINIT, or a DISCONNECT (1), is not missed.
    """
    fields = ("frame.number", "tcp.stream", "tcp.srcport", "ssh.direction", "ssh.message_code")
    rows = []
    for raw in tshark_fields(pcap, port, "ssh.message_code", fields, occurrence="a"):
        direction = raw["ssh.direction"].split(",")[0]
        for code in raw["ssh.message_code"].split(","):
            rows.append({**raw, "ssh.direction": direction, "ssh.message_code": code})
    return rows


def tshark_disconnect_rows(pcap: str | Path, port: int | None) -> list[dict[str, str]]:
    """Return each plaintext SSH_MSG_DISCONNECT with keys tcp.stream, tcp.srcport, ssh.direction, reason, description.

    tshark 4.0 leaves a DISCONNECT sent during key exchange undissected (it shows only
    ``ssh.payload``), so reason code and description are decoded here from the payload
    (uint32 reason, string description, string language) when tshark gives none.
    """
    fields = (
        "tcp.stream",
        "tcp.srcport",
        "ssh.direction",
        "ssh.disconnect_reason",
        "ssh.disconnect_description",
        "ssh.payload",
    )
    rows = []
    for raw in tshark_fields(pcap, port, "ssh.message_code == 1", fields):
        reason, description = raw["ssh.disconnect_reason"], raw["ssh.disconnect_description"]
        if not reason and raw["ssh.payload"]:
            reason, description = _decode_disconnect_payload(raw["ssh.payload"])
        rows.append(
            {
                "tcp.stream": raw["tcp.stream"],
                "tcp.srcport": raw["tcp.srcport"],
                "ssh.direction": raw["ssh.direction"],
                "reason": reason,
                "description": description,
            }
        )
    return rows


def _decode_disconnect_payload(payload_hex: str) -> tuple[str, str]:
    """Decode a DISCONNECT payload (hex, after the message code) into (reason code, description)."""
    data = bytes.fromhex(payload_hex.replace(":", ""))
    if len(data) < 8:
        return "", ""
    reason = int.from_bytes(data[0:4], "big")
    length = int.from_bytes(data[4:8], "big")
    return str(reason), data[8 : 8 + length].decode("utf-8", "replace")


#: Fields of tshark_summary's single pass, after the KEXINIT fields.
_SUMMARY_EXTRA = (
    "frame.number",
    "tcp.flags.syn",
    "tcp.flags.ack",
    "ssh.protocol",
    "ssh.message_code",
    "ssh.disconnect_reason",
    "ssh.disconnect_description",
    "ssh.payload",
)


def tshark_summary(pcap: str | Path, port: int | None, *, timeout: float = 60.0) -> dict[str, Any]:
    """Return everything the other tshark helpers give, from one tshark run over ``pcap``.

    Keys: "packets" (count), "syns" (client SYNs as (srcport, dstport) string pairs),
    "banners", "kexinits", "message_codes", "disconnects", with the same rows as
    tshark_banner_rows, tshark_kexinit_rows, tshark_message_codes and
    tshark_disconnect_rows. One process instead of six matters when many captures are
    checked on a loaded machine; it also cross-checks those helpers.
    """
    fields = (*KEXINIT_FIELDS, *_SUMMARY_EXTRA)
    tshark = which_or_skip("tshark")
    argv = [tshark, "-n", "-r", str(pcap)]
    if port is not None and port not in (22, 29418):
        argv += ["-d", f"tcp.port=={port},ssh"]
    argv += ["-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=;"]
    for name in fields:
        argv += ["-e", name]
    result = run_command(argv, timeout=timeout)
    if result.returncode != 0:
        raise PeerError(f"tshark failed ({result.returncode}): {result.stderr}")
    summary: dict[str, Any] = {
        "packets": 0,
        "syns": [],
        "banners": [],
        "kexinits": [],
        "message_codes": [],
        "disconnects": [],
    }
    for line in result.stdout.splitlines():
        if not line:
            continue
        values = line.split("|")
        if len(values) != len(fields):
            raise PeerError(
                f"tshark row has {len(values)} fields, expected {len(fields)}: {line!r}"
            )
        row = {name: value.split(";")[0] for name, value in zip(fields, values, strict=True)}
        codes = [c for c in values[fields.index("ssh.message_code")].split(";") if c]
        summary["packets"] += 1
        if row["tcp.flags.syn"] in ("1", "True") and row["tcp.flags.ack"] in ("0", "False"):
            summary["syns"].append((row["tcp.srcport"], row["tcp.dstport"]))
        if row["ssh.protocol"]:
            summary["banners"].append({name: row[name] for name in BANNER_FIELDS})
        if "20" in codes:
            summary["kexinits"].append({name: row[name] for name in KEXINIT_FIELDS})
        for code in codes:
            summary["message_codes"].append(
                {
                    "frame.number": row["frame.number"],
                    "tcp.stream": row["tcp.stream"],
                    "tcp.srcport": row["tcp.srcport"],
                    "ssh.direction": row["ssh.direction"],
                    "ssh.message_code": code,
                }
            )
        if "1" in codes:
            reason, description = row["ssh.disconnect_reason"], row["ssh.disconnect_description"]
            if not reason and row["ssh.payload"]:
                reason, description = _decode_disconnect_payload(row["ssh.payload"])
            summary["disconnects"].append(
                {
                    "tcp.stream": row["tcp.stream"],
                    "tcp.srcport": row["tcp.srcport"],
                    "ssh.direction": row["ssh.direction"],
                    "reason": reason,
                    "description": description,
                }
            )
    return summary


def tshark_count(pcap: str | Path, display_filter: str = "", *, timeout: float = 60.0) -> int:
    """Return the number of packets in ``pcap`` matching ``display_filter``; tshark failing to read raises, which doubles as a validity check."""
    tshark = which_or_skip("tshark")
    argv = [tshark, "-n", "-r", str(pcap), "-T", "fields", "-e", "frame.number"]
    if display_filter:
        argv[4:4] = ["-Y", display_filter]
    result = run_command(argv, timeout=timeout)
    if result.returncode != 0:
        raise PeerError(f"tshark cannot read {pcap}: {result.stderr}")
    return sum(1 for line in result.stdout.splitlines() if line.strip())


def tool_version(argv: Sequence[str]) -> str:
    """Return the first non-empty line a ``--version``-style command prints (stdout or stderr), for capture metadata."""
    result = run_command(argv, timeout=10)
    for line in (result.stdout + "\n" + result.stderr).splitlines():
        if line.strip() and "Running as user" not in line:
            return line.strip()
    return ""


@contextlib.contextmanager
def capturing(path: str | Path, port: int, **kwargs: Any) -> Iterator[Tcpdump]:
    """Shorthand for ``with Tcpdump(path, port) as capture``, for symmetry with the other context managers."""
    with Tcpdump(path, port, **kwargs) as capture:
        yield capture


@contextlib.contextmanager
def one_shot_server(payload: bytes) -> Iterator[int]:
    """A TCP server on 127.0.0.1 for one connection: it sends `payload` (a hand-made, malformed
    or hostile peer's bytes), then reads until the other side closes. Yields the port."""
    listener = socket.create_server((LOOPBACK, 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        listener.settimeout(20)
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            conn.sendall(payload)
            try:
                while conn.recv(65536):
                    pass
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()
        thread.join(5)
