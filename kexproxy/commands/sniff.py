"""``kexproxy sniff``: every SSH and TLS handshake seen on a network interface, live, without a relay."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from kexproxy import exitcodes

if TYPE_CHECKING:
    from kexproxy.sources.sniff import SniffResult
    from kexproxy.sources.sniff_records import SessionFrames

EPILOG = """\
examples:
  kexproxy sniff -i eth0 --bpf 'tcp port 22'
      one line per SSH session on eth0 as it ends; records in ./kexproxy.db
  kexproxy sniff -i lo --json --no-store --count 3
      the JSON record of each of the next three sessions on loopback, then stop
  kexproxy sniff -i eth0 --bpf 'tcp port 22' --pcap captures/
      also one pcap per session in captures/, its frames as sniffed until the
      handshake is inspected (kexproxy read or Wireshark open it); the record's
      `capture` names the file

Capture goes through a packet socket (scapy's, with the BPF filter in the kernel): root or
CAP_NET_RAW is needed, tcpdump is not. Frames go through the same decoding, reassembly and
tracker as `kexproxy read`, so a session's record is the one `read` makes of a capture of
it. Records go to the store (--store, default ./kexproxy.db) as soon as a handshake is
decided and again when its session ends; --json prints each record when its session ends.

SIGINT or SIGTERM (or --count, --duration) stops the capture: sessions still open are
recorded as they stand, and the last line on stderr counts sessions, failures and the
frames the kernel dropped (its socket buffer full). Exit status 2: bad arguments, no
privilege to capture, no such interface, or a filter that does not compile.
"""


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "sniff",
        help="capture an interface live and record every SSH and TLS handshake on it",
        description="Capture an interface and record every SSH and TLS handshake seen on it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-i", "--interface", required=True, metavar="IFACE")
    parser.add_argument(
        "--bpf", metavar="FILTER", help="kernel capture filter, tcpdump syntax (e.g. 'tcp port 22')"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print each record as one JSON line on stdout when its session ends",
    )
    store = parser.add_mutually_exclusive_group()
    store.add_argument(
        "--store",
        default="kexproxy.db",
        metavar="FILE|URL",
        help="session store: a SQLite file (default ./kexproxy.db, created with mode 0600) or "
        "a postgresql://user@host:port/db URL shared by several sniffers and proxies",
    )
    store.add_argument("--no-store", action="store_true", help="keep no store")
    parser.add_argument(
        "--pcap",
        metavar="DIR",
        help="write each session's handshake frames as DIR/kexproxy-ID.pcap (the record names it)",
    )
    parser.add_argument(
        "--count",
        type=_positive_int,
        metavar="N",
        help="stop once N SSH or TLS sessions have ended",
    )
    parser.add_argument(
        "--duration", type=_seconds, metavar="S", help="stop after S seconds of capture"
    )
    parser.set_defaults(run=run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from kexproxy.core.diagnosis import preload
    from kexproxy.core.textsafe import printable
    from kexproxy.pipeline import Pipeline, stages
    from kexproxy.sinks.base import Sink
    from kexproxy.sinks.jsonl import JsonLinesSink
    from kexproxy.sinks.store import StoreSink, display_name, store_problem
    from kexproxy.sinks.summary import SummarySink
    from kexproxy.sources.sniff import SniffError
    from kexproxy.sources.sniff_records import SessionFrames, SniffRecords

    if not args.no_store:
        problem = store_problem(args.store)
        if problem is not None:
            _err(f"kexproxy: {problem} (--no-store to run without one)")
            return exitcodes.BAD_INPUT
    captures = None
    if args.pcap is not None:
        try:
            os.makedirs(args.pcap, exist_ok=True)
        except OSError as exc:
            _err(
                f"kexproxy: cannot use {printable(args.pcap)} for capture files: "
                f"{exc.strerror or exc}"
            )
            return exitcodes.BAD_INPUT
        captures = SessionFrames(args.pcap)
    preload()  # before the first session, not while its frames wait in the kernel
    sinks: list[Sink] = []
    store = None if args.no_store else StoreSink(args.store, warn=_err)
    if store is not None:
        sinks.append(store)
    sinks.append(JsonLinesSink(sys.stdout) if args.json else SummarySink(sys.stdout))
    pipeline = Pipeline(sinks, stages=stages())
    sniffed = SniffRecords(
        args.interface,
        lambda record, final: pipeline.publish(record, final=final),
        warn=lambda text: _err(printable(text)),
        frames=captures,
    )

    stopping: list[str] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signal.Signals(signum).name)

    deadline = None if args.duration is None else time.monotonic() + args.duration

    def should_stop() -> bool:
        if stopping or (args.count is not None and pipeline.finished >= args.count):
            return True
        return deadline is not None and time.monotonic() >= deadline

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    interface = printable(args.interface)
    where = "no store" if args.no_store else f"store {printable(display_name(args.store))}"

    def ready() -> None:
        _err(f"kexproxy: capturing on {interface}{_filter_text(args.bpf)}; {where}")

    try:
        result = sniffed.run(bpf=args.bpf, should_stop=should_stop, ready=ready)
    except SniffError as exc:
        pipeline.close()
        _err(f"kexproxy: {printable(str(exc))}")
        return exitcodes.BAD_INPUT
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stored = pipeline.close()
    _err(_last_line(pipeline, result, store is not None and stored, args, captures))
    return exitcodes.OK


def _filter_text(bpf: str | None) -> str:
    from kexproxy.core.textsafe import printable

    return f" (filter {printable(bpf)!r})" if bpf else ""


def _last_line(
    pipeline: Any,
    result: SniffResult,
    stored: bool,
    args: argparse.Namespace,
    captures: SessionFrames | None,
) -> str:
    """Sessions, failures, frames and the kernel's drops: a gap is never silent."""
    from kexproxy.core.textsafe import printable
    from kexproxy.present import plural
    from kexproxy.sinks.store import display_name
    from kexproxy.sources.captures import capture_notes

    for note in capture_notes(result.stats):
        _err(f"kexproxy: {printable(args.interface)}: {note}")
    drops = (
        f"{plural(result.kernel_drops, 'frame')} dropped by the kernel (socket buffer full): "
        "sessions then may be incomplete"
        if result.kernel_drops
        else "no frames dropped by the kernel"
    )
    where = ""
    if not args.no_store:
        where = (
            f"; records in {printable(display_name(args.store))}"
            if stored
            else f"; some records could not be stored in {printable(display_name(args.store))}"
        )
    if captures is not None:
        where += f"; {plural(captures.written, 'capture file')} in {printable(captures.directory)}"
        if captures.failed:
            where += f", {captures.failed} could not be written"
    return (
        f"kexproxy: stopped; {plural(pipeline.finished, 'session')} ended, "
        f"{pipeline.failed} failed to negotiate; {plural(result.stats.frames, 'frame')} read, "
        f"{drops}{where}"
    )
