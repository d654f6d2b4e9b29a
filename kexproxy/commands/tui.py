"""``kexproxy tui``: the dashboard over captures, a store another process writes, or a proxy it runs."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kexproxy import exitcodes

if TYPE_CHECKING:
    from kexproxy.pipeline import Stage

EPILOG = """\
three ways in:
  kexproxy tui captures/*.pcap
      read captures; sessions appear as they are found
  kexproxy tui --store sessions.db
      watch the store that a running `kexproxy proxy --store sessions.db` writes
  kexproxy tui --store postgresql://reader@db.example/kexproxy
      watch a PostgreSQL store that several proxies write (woken by LISTEN/NOTIFY)
  kexproxy tui --listen 127.0.0.1:2222 --upstream server:22 [--store sessions.db]
      run the proxy inside the dashboard: point ssh at port 2222 and watch
      (with --store, the sessions are also recorded there, as kexproxy proxy does)
  kexproxy tui --listen 0.0.0.0:2222 --transparent
      the same for connections redirected by iptables REDIRECT (see the README)
  kexproxy tui --listen 0.0.0.0:2222 --tproxy
      the same for connections steered by iptables TPROXY, the client's address kept
  kexproxy tui --interface eth0 --bpf 'tcp port 22'
      capture eth0 live, as kexproxy sniff does (root or CAP_NET_RAW); records also
      go to ./kexproxy.db unless --store FILE or --no-store says otherwise

--policy FILE judges captures and the built-in proxy's sessions (a watched store holds the
verdicts of the `kexproxy proxy --policy` that wrote it); the detail screen lists violations.

keys: / filter · enter detail · escape back · f follow · m mark · e export · ? help · q quit
filter: outcome:failed list:kex client:10.0.0.0/8 server:db1 software:PuTTY hassh:... !negates
"""


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "tui",
        help="a live dashboard of SSH and TLS handshakes (captures, a store, or a built-in proxy)",
        description="A terminal dashboard of SSH and TLS handshakes: how many fail, on which list, "
        "between whom, since when, and what to change.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help="pcap/pcapng capture files")
    parser.add_argument(
        "--store",
        metavar="FILE|URL",
        help="watch this session store (a SQLite file or a postgresql:// URL); with "
        "--listen, record into it",
    )
    parser.add_argument(
        "--listen", metavar="[HOST:]PORT", help="run the proxy on this address (host 127.0.0.1)"
    )
    parser.add_argument(
        "--upstream", metavar="HOST[:PORT]", help="the SSH server the proxy relays to (port 22)"
    )
    parser.add_argument(
        "--transparent",
        action="store_true",
        help="with --listen: relay each connection to its original destination (iptables REDIRECT)",
    )
    parser.add_argument(
        "--tproxy",
        action="store_true",
        help="with --listen: as --transparent, for iptables TPROXY, from the client's own address",
    )
    parser.add_argument(
        "--policy", metavar="FILE", help="policy (TOML, see policies/) to judge each session by"
    )
    _add_sniff_options(parser)
    parser.set_defaults(run=run)


#: Where `tui --interface` records when neither --store nor --no-store is given: sniff's own.
SNIFF_STORE = "kexproxy.db"


def _add_sniff_options(parser: Any) -> None:
    """`--interface`: the dashboard fed by a live capture, as `kexproxy sniff` makes it."""
    parser.add_argument(
        "-i",
        "--interface",
        metavar="IFACE",
        help="capture this interface live, as kexproxy sniff does (records into --store, "
        f"default ./{SNIFF_STORE})",
    )
    parser.add_argument(
        "--bpf", metavar="FILTER", help="with --interface: kernel capture filter (tcpdump syntax)"
    )
    parser.add_argument("--no-store", action="store_true", help="with --interface: keep no store")


def _run_sniffing(args: argparse.Namespace) -> int:
    """`tui --interface`: every check a line can still say (the store, the capture
    itself), then the dashboard over the live capture."""
    from kexproxy.core.textsafe import printable

    def fail(text: str) -> int:
        print(f"kexproxy tui: {printable(text)}", file=sys.stderr)
        return exitcodes.BAD_INPUT

    if args.files or args.listen is not None or args.upstream is not None or args.transparent:
        return fail("--interface is not used with capture files, --listen or --upstream")
    if args.no_store and args.store is not None:
        return fail("give --store FILE or --no-store, not both")
    steps: list[Stage] | None = None
    if args.policy:
        from kexproxy.pipeline import PolicyFileError, stages

        try:
            steps = stages(policy=args.policy)
        except PolicyFileError as exc:
            return fail(str(exc))
    store = None if args.no_store else (args.store or SNIFF_STORE)
    from kexproxy.sources.sniff import SniffError, open_socket

    # Opened once here and closed: no privilege, no such interface or a filter that does
    # not compile is one line on the terminal, not a notice inside the screen.
    problem = None
    try:
        sock, _bulk = open_socket(args.interface, args.bpf)
        sock.close()
    except SniffError as exc:
        problem = str(exc)
    if problem is None and store is not None:
        from kexproxy.sinks.store import store_problem

        problem = store_problem(store)
    problem = problem or terminal_problem()
    if problem is not None:
        return fail(problem)
    from kexproxy_tui.app import create_app
    from kexproxy_tui.sniff_feed import SniffFeed

    create_app(SniffFeed(args.interface, bpf=args.bpf, store=store, stages=steps)).run()
    return exitcodes.OK


def _before_the_screen(args: argparse.Namespace, proxied: bool) -> str | None:
    """What would only fail inside the full-screen app, checked while a line can still say it:
    the store to watch or to write, the port to listen on."""
    from kexproxy.sinks.store import SessionStore, StoreError

    if args.store is not None and not proxied:
        try:
            SessionStore.open(args.store, readonly=True).close()
        except StoreError as exc:
            return str(exc)
    if proxied:
        from kexproxy.sinks.store import store_problem
        from kexproxy.sources.proxy import parse_address

        if args.store is not None:
            problem = store_problem(args.store)
            if problem is not None:
                return problem
        try:
            host, port = parse_address(
                args.listen, default_host="::" if args.tproxy else "127.0.0.1", default_port=None
            )
        except ValueError as exc:
            return str(exc)
        if port:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((host, port))
                except OSError as exc:
                    return f"cannot listen on {args.listen}: {(exc.strerror or str(exc)).lower()}"
    return None


def terminal_problem() -> str | None:
    """Why the dashboard cannot run here, or None: it reads keys from stdin and draws on
    stdout, and without a terminal on both Textual spins without end instead of failing."""
    missing = [
        name
        for name, stream in (("stdin", sys.stdin), ("stdout", sys.stdout))
        if not _is_tty(stream)
    ]
    if not missing:
        return None
    return (
        f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not a terminal: "
        "the dashboard needs one (kexproxy read FILE prints the same sessions as text)"
    )


def _is_tty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):  # a closed stream
        return False


def run(args: argparse.Namespace) -> int:
    if args.interface is not None:
        return _run_sniffing(args)
    if args.bpf is not None or args.no_store:
        print("kexproxy tui: --bpf and --no-store go with --interface", file=sys.stderr)
        return exitcodes.BAD_INPUT
    proxied = args.listen is not None
    modes = sum([bool(args.files), args.store is not None and not proxied, proxied])
    relayed = args.upstream is not None or args.transparent or args.tproxy
    if args.tproxy and (args.upstream is not None or args.transparent):
        print("kexproxy tui: --tproxy takes neither --upstream nor --transparent", file=sys.stderr)
        return exitcodes.BAD_INPUT
    if args.upstream is not None and args.transparent:
        print("kexproxy tui: --upstream is not used with --transparent", file=sys.stderr)
        return exitcodes.BAD_INPUT
    if modes != 1 or proxied != relayed:
        print(
            "kexproxy tui: give capture files, or --store FILE, or --listen HOST:PORT "
            "with --upstream HOST:PORT (or --transparent)",
            file=sys.stderr,
        )
        return exitcodes.BAD_INPUT
    steps: list[Stage] | None = None
    if args.policy:
        if args.store is not None and not proxied:
            print(
                "kexproxy tui: a watched store holds the verdicts of the proxy that writes it: "
                "give --policy to that kexproxy proxy",
                file=sys.stderr,
            )
            return exitcodes.BAD_INPUT
        from kexproxy.pipeline import PolicyFileError, stages

        try:
            steps = stages(policy=args.policy)
        except PolicyFileError as exc:
            print(f"kexproxy tui: {exc}", file=sys.stderr)
            return exitcodes.BAD_INPUT
    if "-" in args.files:
        # The dashboard reads the keyboard from the terminal, so a capture cannot come on stdin.
        print(
            "kexproxy tui: cannot read a capture from stdin; use kexproxy read - instead",
            file=sys.stderr,
        )
        return exitcodes.BAD_INPUT
    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        for name in missing:
            print(f"kexproxy tui: {name}: no such file", file=sys.stderr)
        return exitcodes.BAD_INPUT
    from kexproxy.sinks.store import is_postgres_url

    postgres = args.store is not None and is_postgres_url(args.store)
    if args.store is not None and not proxied and not postgres and not Path(args.store).is_file():
        print(f"kexproxy tui: {args.store}: no such store", file=sys.stderr)
        return exitcodes.BAD_INPUT
    # The store first: a URL that cannot be used is one line even where no terminal is.
    problem = _before_the_screen(args, proxied) or terminal_problem()
    if problem is not None:
        print(f"kexproxy tui: {problem}", file=sys.stderr)
        return exitcodes.BAD_INPUT

    # The TUI is imported here and only here: the rest of kexproxy never needs Textual.
    from kexproxy_tui.app import create_app
    from kexproxy_tui.feeds import CaptureFeed, Feed

    feed: Feed
    if args.files:
        feed = CaptureFeed(args.files, stages=steps)
    elif postgres and not proxied:
        from kexproxy_tui.postgres_source import postgres_feed

        feed = postgres_feed(args.store)
    elif not proxied:
        from kexproxy_tui.adapters import store_feed

        feed = store_feed(args.store)
    else:
        from kexproxy_tui.adapters import proxy_feed

        try:
            feed = proxy_feed(
                args.listen, args.upstream, store=args.store, stages=steps, tproxy=args.tproxy
            )
        except ValueError as exc:
            print(f"kexproxy tui: {exc}", file=sys.stderr)
            return exitcodes.BAD_INPUT
    create_app(feed).run()
    return exitcodes.OK
