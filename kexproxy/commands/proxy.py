"""``kexproxy proxy``: a transparent relay in front of SSH (or TLS) servers that records every handshake."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kexproxy import exitcodes
from kexproxy.core.diagnosis import preload

if TYPE_CHECKING:
    from kexproxy.core.record import SessionRecord
    from kexproxy.pipeline import Pipeline
    from kexproxy.sinks.store import StoreSink

EPILOG = """\
examples:
  kexproxy proxy --listen 2222 --upstream server.example:22
      relay 127.0.0.1:2222 to the server; point ssh at -p 2222 127.0.0.1
  kexproxy proxy --listen 2222 --upstream 10.0.0.5 --json | jq .outcome
      also print each record as one JSON line when its session ends
  kexproxy proxy --transparent --listen 0.0.0.0:2222
      serve connections redirected by iptables REDIRECT; each goes to its original
      destination, so one proxy covers many servers (see the README)
  kexproxy proxy --tproxy --listen '[::]:2222'
      serve connections (IPv4 and IPv6) steered by an iptables TPROXY rule on a router; each leaves
      for its original destination from the client's own address, so sshd logs and
      penalises the real client (root or CAP_NET_ADMIN; recipe in the README)
  kexproxy proxy --listen 2222 --upstream 10.0.0.5 --store postgresql://kx@db/fleet
      record into a PostgreSQL database that other proxies share (password from
      PGPASSWORD or ~/.pgpass; a lost connection is retried, unstored records counted)

The relay passes every byte on unchanged and at once; it reads a copy of the handshake,
then, once both sides are past NEWKEYS, moves bytes in the kernel (splice). Records go to
the store (--store: a SQLite file, default ./kexproxy.db, or a postgresql:// URL) when a
connection is accepted (outcome in_progress), as soon as its handshake's outcome is known,
and again when the session ends: `kexproxy sessions` lists them.

Through the relay the client sees the proxy's listen address as its peer and the server
sees the proxy's upstream-side address: each rejection message in a record names the peer
as that side saw it, so it is the line the real client printed and the real sshd logged.
With --tproxy both sides see each other, as if no proxy were there.

Except with --tproxy, sshd sees every relayed client as the proxy's address: with OpenSSH
9.8 and later, exempt it from PerSourcePenalties (PerSourcePenaltyExemptList 127.0.0.1 in
sshd_config), and size MaxStartups for all clients together.

SIGINT or SIGTERM stops the proxy: open sessions are recorded as ended by the shutdown,
the store is flushed, and the exit status is 0. Exit status 2: bad arguments, or the
listen address cannot be used.
"""


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "proxy",
        help="relay SSH or TLS connections and record every handshake",
        description="Relay TCP connections to an SSH (or TLS) server and record every handshake.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--listen",
        required=True,
        metavar="[HOST:]PORT",
        help="address to listen on (host defaults to 127.0.0.1, or to :: with --tproxy, which "
        "needs a wildcard address; port 0 picks a free one)",
    )
    parser.add_argument(
        "--upstream",
        metavar="HOST[:PORT]",
        help="the server to relay to (port defaults to 22); not used with --transparent or --tproxy",
    )
    parser.add_argument(
        "--transparent",
        action="store_true",
        help="relay each connection to its original destination (iptables REDIRECT)",
    )
    parser.add_argument(
        "--tproxy",
        action="store_true",
        help="relay each connection steered here by iptables TPROXY to its original "
        "destination, from the client's own address (root or CAP_NET_ADMIN)",
    )
    parser.add_argument(
        "--store",
        default="kexproxy.db",
        metavar="FILE|URL",
        help="session store: a SQLite file (default ./kexproxy.db, created with mode 0600) or "
        "a postgresql://user@host:port/db URL shared by several proxies",
    )
    parser.add_argument("--no-store", action="store_true", help="keep no store")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print each record as one JSON line on stdout when its session ends",
    )
    parser.add_argument(
        "--pcap",
        metavar="DIR",
        help="write each session's handshake (both directions until inspection stops) to a "
        "capture file in DIR, created if missing; the record names its file",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="without --json: no line per session on stdout"
    )
    parser.add_argument(
        "--policy",
        metavar="FILE",
        help="policy (TOML, see policies/) to judge each handshake by; the verdict goes "
        "into each record and a violation is named on its line",
    )
    parser.add_argument(
        "--handshake-timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="stop inspecting and record a timeout when a handshake takes longer (default 30)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="give up on an upstream that does not answer (default 10)",
    )
    parser.add_argument(
        "--probe-failures",
        action="store_true",
        help="when a TLS handshake fails on the server's side, ask the upstream (and nothing "
        "else) which list it refused: the client's own offer with one list widened at a "
        "time, at most 5 handshakes a second and 200 per upstream, cached per offer; the "
        "session's final record then names the list with certain: true (it is published "
        "a few seconds later; relaying is never delayed)",
    )
    parser.add_argument(
        "--no-splice", action="store_true", help=argparse.SUPPRESS
    )  # for measurements: the copy path instead of splice
    parser.add_argument("--no-uvloop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--recorder", choices=("process", "thread"), default="process", help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--record-delay", type=float, default=None, help=argparse.SUPPRESS
    )  # for measurements: how long record items gather on the relay's loop  # for measurements: records made in a thread of the relay's process
    parser.set_defaults(run=run)


def _nothing() -> None:
    return None


def _publisher(
    pipeline: Pipeline, probe_failures: bool
) -> tuple[Callable[[SessionRecord, bool], None], Callable[[], object]]:
    """The pipeline's publish, behind the failure prober when ``--probe-failures``; and how to close it."""
    if not probe_failures:
        return pipeline.publish, _nothing
    from kexproxy.sources.tls_failure_probe import FailureProber

    prober = FailureProber(pipeline.publish, warn=_err)
    return prober.publish, prober.close


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from kexproxy import present
    from kexproxy.core.observer import Endpoint
    from kexproxy.pipeline import Pipeline, PolicyFileError, stages
    from kexproxy.sinks.background import BackgroundSink
    from kexproxy.sinks.base import Sink
    from kexproxy.sinks.jsonl import JsonLinesSink
    from kexproxy.sinks.store import StoreSink, display_name, store_problem
    from kexproxy.sinks.summary import SummarySink
    from kexproxy.sources.proxy import ProxyConfig, parse_address, resolve, run_proxy
    from kexproxy.sources.proxy_record import InThreadRecorder, Recorder, RecorderItem
    from kexproxy.worker_process import ChildWorker

    try:
        # A TPROXY rule hands connections to a listener that matches their destination:
        # only a wildcard address matches them all.
        default_host = "::" if args.tproxy else "127.0.0.1"
        listen = parse_address(args.listen, default_host=default_host, default_port=None)
        upstream = None
        if args.transparent and args.tproxy:
            _err("kexproxy: --transparent (REDIRECT) and --tproxy (TPROXY) exclude each other")
            return exitcodes.BAD_INPUT
        if args.transparent or args.tproxy:
            if args.upstream:
                mode = "--tproxy" if args.tproxy else "--transparent"
                _err(f"kexproxy: --upstream is not used with {mode}")
                return exitcodes.BAD_INPUT
        elif not args.upstream:
            _err("kexproxy: give --upstream HOST[:PORT], or --transparent, or --tproxy")
            return exitcodes.BAD_INPUT
        else:
            upstream = parse_address(args.upstream, default_host=None, default_port=22)
            if upstream[1] == 0:
                raise ValueError(f"{args.upstream!r}: the upstream needs a port from 1 to 65535")
    except ValueError as exc:
        _err(f"kexproxy: {exc}")
        return exitcodes.BAD_INPUT
    if upstream is not None:
        try:
            resolve(*upstream)
        except OSError as exc:
            _err(f"kexproxy: cannot resolve the upstream {upstream[0]}: {exc.strerror or exc}")
            return exitcodes.BAD_INPUT

    try:
        steps = stages(policy=args.policy)
    except PolicyFileError as exc:
        _err(f"kexproxy: {exc}")
        return exitcodes.BAD_INPUT

    config = ProxyConfig(
        listen=listen,
        upstream=upstream,
        transparent=args.transparent,
        tproxy=args.tproxy,
        handshake_timeout=args.handshake_timeout,
        connect_timeout=args.connect_timeout,
        splice=not args.no_splice,
        pcap_dir=args.pcap,
    )
    if args.pcap is not None:
        try:
            os.makedirs(args.pcap, exist_ok=True)
        except OSError as exc:
            _err(f"kexproxy: cannot use {args.pcap} for capture files: {exc.strerror or exc}")
            return exitcodes.BAD_INPUT
    if not args.no_store:
        problem = store_problem(args.store)
        if problem is not None:
            _err(f"kexproxy: {problem} (--no-store to run without one)")
            return exitcodes.BAD_INPUT

    def outputs() -> tuple[Pipeline, StoreSink | None]:
        preload()  # before the first session, not on the first failed handshake
        sinks: list[Sink] = []
        store = None if args.no_store else StoreSink(args.store, warn=_err)
        if store is not None:
            sinks.append(store)
        if args.json:
            sinks.append(BackgroundSink(JsonLinesSink(sys.stdout), warn=_err, name="JSON"))
        elif not args.quiet:
            sinks.append(BackgroundSink(SummarySink(sys.stdout), warn=_err, name="summary"))
        return Pipeline(sinks, stages=steps), store

    def setup() -> tuple[Callable[[RecorderItem], None], Callable[[], Tally]]:
        """Runs in the recording process: the pipeline and its sinks live there."""
        pipeline, store = outputs()
        publish, close_prober = _publisher(pipeline, args.probe_failures)
        recorder = Recorder(publish, warn=_err, capture_dir=args.pcap)

        def handle(item: RecorderItem) -> None:
            try:
                recorder.handle(item)
            except Exception as exc:  # a record is lost, never the others
                _err(f"kexproxy: could not finish a session's record: {exc!r}")

        def finish() -> Tally:
            close_prober()
            pipeline.close()
            return Tally.of(pipeline, store)

        return handle, finish

    def ready(address: Endpoint) -> None:
        target = (
            "each connection's original destination from the client's own address"
            if args.tproxy
            else "each connection's original destination"
            if args.transparent
            else (present.address(*upstream) if upstream else "?")
        )
        where = "no store" if args.no_store else f"store {display_name(args.store)}"
        host = present.address(address.ip, address.port)
        _err(f"kexproxy: listening on {host}, relaying to {target}; {where}")

    tally: Tally | None
    lost = 0
    pipeline, store = None, None
    recorder: Any
    close_prober: Callable[[], object] = _nothing
    if args.recorder == "thread":
        pipeline, store = outputs()
        publish, close_prober = _publisher(pipeline, args.probe_failures)
        recorder = InThreadRecorder(publish, warn=_err, capture_dir=args.pcap)
    else:
        # The recording process runs on CPU time the relay does not want: on a busy machine a
        # record comes a little later (queued, never lost below the queue's bound), while a
        # relayed connection never waits for one. Measured: the recording process at nice 10
        # took setup p99 to about 3 ms, SCHED_IDLE kept it near 1 ms.
        recorder = ChildWorker(setup, name="recording", warn=_err, idle=True)
    try:
        run_proxy(config, recorder=recorder, ready=ready, use_uvloop=not args.no_uvloop, warn=_err)
    except OSError as exc:
        _err(f"kexproxy: cannot listen on {args.listen}: {exc.strerror or exc}")
        recorder.close()
        return exitcodes.BAD_INPUT
    if pipeline is not None:
        recorder.close()
        close_prober()
        pipeline.close()
        tally = Tally.of(pipeline, store)
    else:
        tally = recorder.close()
        lost = recorder.lost
    _err(_last_line(tally, lost, None if args.no_store else display_name(args.store)))
    return exitcodes.OK


@dataclass(frozen=True, slots=True)
class Tally:
    """What the recording side tells the last line: sessions, failures, the store's state."""

    finished: int
    failed: int
    unstored: int
    store_healthy: bool

    @classmethod
    def of(cls, pipeline: Pipeline, store: StoreSink | None) -> Tally:
        return cls(
            finished=pipeline.finished,
            failed=pipeline.failed,
            unstored=store.unstored if store is not None else 0,
            store_healthy=store.healthy if store is not None else True,
        )


def _last_line(tally: Tally | None, lost: int, store: str | None) -> str:
    """One line that never claims what is not true: sessions, failures, where records are."""
    from kexproxy.present import plural

    if tally is None:
        return "kexproxy: stopped; the recording process failed, so records may be missing"
    where = ""
    unstored = tally.unstored + lost
    if lost:
        where = f"; {plural(lost, 'record')} could not be made (the recorder fell behind)"
    if store is not None:
        if unstored:
            where += f"; {plural(unstored, 'record')} could not be stored in {store}"
        elif tally.store_healthy:
            where += f"; records in {store}"
        else:
            where += f"; the store {store} could not be written (see above)"
    return (
        f"kexproxy: stopped; {plural(tally.finished, 'session')} ended, "
        f"{tally.failed} failed to negotiate{where}"
    )
