"""``kexproxy sniff``: every SSH and TLS handshake seen on a network interface, live, without a relay."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from kexproxy import exitcodes

if TYPE_CHECKING:
    from kexproxy.core.connection import ConnectionTracker
    from kexproxy.core.observer import Endpoint, InitiatorEvidence
    from kexproxy.core.record import SessionRecord
    from kexproxy.sources.sniff import SniffResult

EPILOG = """\
examples:
  kexproxy sniff -i eth0 --bpf 'tcp port 22'
      one line per SSH session on eth0 as it ends; records in ./kexproxy.db
  kexproxy sniff -i lo --json --no-store --count 3
      the JSON record of each of the next three sessions on loopback, then stop

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
    from kexproxy.sources.captures import Collector, session_id
    from kexproxy.sources.sniff import DropLedger, SniffError, drop_note, sniff_interface

    if not args.no_store:
        problem = store_problem(args.store)
        if problem is not None:
            _err(f"kexproxy: {problem} (--no-store to run without one)")
            return exitcodes.BAD_INPUT
    preload()  # before the first session, not while its frames wait in the kernel
    sinks: list[Sink] = []
    store = None if args.no_store else StoreSink(args.store, warn=_err)
    if store is not None:
        sinks.append(store)
    sinks.append(JsonLinesSink(sys.stdout) if args.json else SummarySink(sys.stdout))
    pipeline = Pipeline(sinks, stages=stages())
    drops = DropLedger()
    #: Session id -> the kernel timestamp of its first frame, for its drop note.
    first_seen: dict[str, float] = {}

    def noted(record: SessionRecord, *, final: bool) -> SessionRecord:
        first = first_seen.pop(record.id, None) if final else first_seen.get(record.id)
        dropped = 0 if first is None else drops.since(first, time.time())
        if not dropped:
            return record
        return dataclasses.replace(record, notes=[*record.notes, drop_note(dropped)])

    collector = Collector(
        f"live:{args.interface}", lambda record: pipeline.publish(noted(record, final=True))
    )

    def factory(
        a: Endpoint, b: Endpoint, initiator: InitiatorEvidence, flow_index: int, first_ts: float
    ) -> ConnectionTracker:
        first_seen[session_id(collector.capture, flow_index, a, b, first_ts)] = first_ts
        return collector.factory(a, b, initiator, flow_index, first_ts)

    def on_decided(tracker: ConnectionTracker) -> None:
        record = tracker.record()
        if record.outcome != "not_ssh":
            pipeline.publish(noted(record, final=False), final=False)

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
        result = sniff_interface(
            args.interface,
            factory,
            bpf=args.bpf,
            on_finished=collector.on_finished,
            on_decided=on_decided,
            should_stop=should_stop,
            ready=ready,
            drops=drops,
        )
    except SniffError as exc:
        pipeline.close()
        _err(f"kexproxy: {printable(str(exc))}")
        return exitcodes.BAD_INPUT
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stored = pipeline.close()
    _err(_last_line(pipeline, result, store is not None and stored, args))
    return exitcodes.OK


def _filter_text(bpf: str | None) -> str:
    from kexproxy.core.textsafe import printable

    return f" (filter {printable(bpf)!r})" if bpf else ""


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' * (count != 1)}"


def _last_line(pipeline: Any, result: SniffResult, stored: bool, args: argparse.Namespace) -> str:
    """Sessions, failures, frames and the kernel's drops: a gap is never silent."""
    from kexproxy.core.textsafe import printable
    from kexproxy.sinks.store import display_name
    from kexproxy.sources.captures import capture_notes

    for note in capture_notes(result.stats):
        _err(f"kexproxy: {printable(args.interface)}: {note}")
    drops = (
        f"{_plural(result.kernel_drops, 'frame')} dropped by the kernel (socket buffer full): "
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
    return (
        f"kexproxy: stopped; {_plural(pipeline.finished, 'session')} ended, "
        f"{pipeline.failed} failed to negotiate; {_plural(result.stats.frames, 'frame')} read, "
        f"{drops}{where}"
    )
