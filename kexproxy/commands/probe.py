"""``kexproxy probe``: what a server accepts, learnt with a few bounded handshakes (SSH or TLS).

A server that refuses sends no offer, so "who refused which list" needs the server's lists
from somewhere: this asks for them. SSH (the default) reads the server's banner and KEXINIT
and each host key (kexproxy/core/sshprobe.py, kexproxy/sources/ssh_probe.py, text in
kexproxy/present_ssh_probe.py); ``--listen`` is the client audit; ``--tls`` asks one
ClientHello variant at a time (kexproxy/core/tls/probing.py, kexproxy/sources/tls_probe.py).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import sys
import threading
from typing import Any

from kexproxy import exitcodes

EPILOG = """\
examples:
  kexproxy probe 127.0.0.1:22
      the server's banner and KEXINIT (every list, each name graded), every host key
      (type, bits, SHA256 fingerprint as ssh-keygen -l prints it), strict KEX and
      ext-info, a Terrapin verdict and a version hint
  kexproxy probe 10.0.0.5:22 --json | jq '.host_keys'
  kexproxy probe --listen 127.0.0.1:2222 --store clients.db
      the client audit: every client that connects has its banner and KEXINIT recorded
      in the store (kexproxy sessions clients.db), then is told goodbye
  kexproxy probe 127.0.0.1:8443 --tls
      versions, cipher suites per version (in the server's order when it has one), groups,
      signature schemes and the certificate chain, each name with its grade
  kexproxy probe mail.example:465 --tls --json | jq '.cipher_suites["TLS 1.2"]'
  kexproxy probe 10.0.0.5:443 --tls --sni www.example --rate 2 --max-handshakes 80

SSH, how: one connection sends kexproxy's banner and a KEXINIT offering every name kexproxy
knows and reads the server's; then one connection per host key algorithm the server offers
completes the server's half of a key exchange (curve25519, ECDH or DH group 14, as
ssh-keyscan does) to read that host key. Every connection ends with SSH_MSG_DISCONNECT "by
application"; authentication is never attempted. About five handshakes for OpenSSH.

probe --listen [HOST:]PORT: a server (default host 127.0.0.1) that sends an ordinary banner
and KEXINIT, reads each client's, says goodbye (DISCONNECT) and writes the client's session
record to --store (source "probe"); at most --max-clients at once, --client-timeout seconds
each; until interrupted, or --count clients.

TLS, how: one ClientHello per connection, each offering everything kexproxy knows but the list
being learnt; the server's answer names its choice, which is removed and asked again until
the server refuses. TLS 1.3 groups are learnt from HelloRetryRequests (an empty key share),
TLS 1.2 groups and schemes from the ServerKeyExchange, TLS 1.3 schemes one at a time. No
handshake is ever completed: kexproxy hangs up after the server's first flight. A full probe
of a default OpenSSL server takes about 65 handshakes.

bounds (SSH and TLS): one connection at a time to HOST:PORT only; at most --rate connections a second
(default 5, at most 20), --max-handshakes in all (default 200), --timeout seconds for each
answer (default 5). A server that stops answering, or answers with something that is not
SSH or TLS, ends the probe with what was learnt and a note saying why.

exit status: 0 probed (SSH: the server sent its KEXINIT; TLS: it accepted at least one
version); 1 probed, but no KEXINIT (one line on stderr says why) or no TLS version accepted;
2 bad arguments, or HOST:PORT unreachable.
"""

#: Where progress lines go: stderr, and only when it is a terminal (stdout is data).
_PROGRESS_WIDTH = 78


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "probe",
        help="ask a server what it accepts (SSH; TLS with --tls); --listen audits clients",
        description="Probe a server with bounded handshakes and report what it accepts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "target", metavar="HOST:PORT", nargs="?", help="the server ([V6]:PORT for IPv6)"
    )
    parser.add_argument("--tls", action="store_true", help="probe TLS instead of SSH")
    parser.add_argument(
        "--listen",
        metavar="[HOST:]PORT",
        help="SSH client audit: serve on this address and record each client's offer",
    )
    parser.add_argument(
        "--store",
        default="kexproxy.db",
        metavar="FILE|URL",
        help="--listen: the session store, a SQLite file (default ./kexproxy.db) or a "
        "postgresql:// URL",
    )
    parser.add_argument(
        "--max-clients",
        type=int,
        default=16,
        metavar="N",
        help="--listen: clients served at once (default 16, max 256)",
    )
    parser.add_argument(
        "--client-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="--listen: seconds a client has to send its KEXINIT (default 10)",
    )
    parser.add_argument(
        "--count",
        type=int,
        metavar="N",
        help="--listen: stop after N clients (default: until interrupted)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument(
        "--sni",
        metavar="NAME",
        help="the server_name to send (default: HOST when it is a name, none for an address)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=5.0,
        metavar="N",
        help="connections a second (default 5, max 20)",
    )
    parser.add_argument(
        "--max-handshakes",
        type=int,
        default=200,
        metavar="N",
        help="connections in all (default 200)",
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, metavar="S", help="seconds per answer (default 5)"
    )
    parser.set_defaults(run=run)


def _fail(message: str) -> int:
    print(f"kexproxy probe: {message}", file=sys.stderr)
    return exitcodes.BAD_INPUT


def default_server_name(host: str) -> str | None:
    """HOST when it is a name; None for an address (RFC 6066 3: literal addresses are not sent)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None


def run(args: argparse.Namespace) -> int:
    from kexproxy.sources.proxy import parse_address
    from kexproxy.sources.tls_probe import ProbeLimits, Unreachable, probe_tls

    if args.listen is not None:
        if args.tls or args.target is not None:
            return _fail("--listen takes no HOST:PORT and no --tls (it audits SSH clients)")
        return run_listen(args)
    if args.target is None:
        return _fail("HOST:PORT is required (or --listen [HOST:]PORT)")
    try:
        host, port = parse_address(args.target, default_host=None, default_port=None)
        limits = ProbeLimits(
            rate=args.rate, max_handshakes=args.max_handshakes, timeout=args.timeout
        )
    except ValueError as exc:
        return _fail(str(exc))
    if not args.tls:
        return run_ssh(args, host, port)
    server_name = args.sni if args.sni is not None else default_server_name(host)
    progress = _progress if sys.stderr.isatty() else None
    try:
        report = probe_tls(host, port, server_name=server_name, limits=limits, progress=progress)
    except Unreachable as exc:
        return _fail(str(exc))
    finally:
        if progress is not None:
            sys.stderr.write("\r" + " " * _PROGRESS_WIDTH + "\r")
    if args.json:
        print(json.dumps(report))
    else:
        print(summary(report))
    return exitcodes.OK if report["versions"] else exitcodes.NOTHING_ACCEPTED


def _note(message: str) -> None:
    print(f"kexproxy probe: {message}", file=sys.stderr)


def _ssh_progress(count: int, purpose: str) -> None:
    line = f"handshake {count}: {purpose}"
    sys.stderr.write("\r" + line[:_PROGRESS_WIDTH].ljust(_PROGRESS_WIDTH))
    sys.stderr.flush()


def run_ssh(args: argparse.Namespace, host: str, port: int) -> int:
    """Probes an SSH server; exit 1 (one line on stderr) when it never showed a KEXINIT."""
    from kexproxy.present_ssh_probe import summary as ssh_summary
    from kexproxy.sources.ssh_probe import ProbeLimits, Unreachable, probe_ssh

    try:
        limits = ProbeLimits(
            rate=args.rate, max_handshakes=args.max_handshakes, timeout=args.timeout
        )
    except ValueError as exc:
        return _fail(str(exc))
    progress = _ssh_progress if sys.stderr.isatty() else None
    try:
        report = probe_ssh(host, port, limits=limits, progress=progress)
    except Unreachable as exc:
        return _fail(str(exc))
    finally:
        if progress is not None:
            sys.stderr.write("\r" + " " * _PROGRESS_WIDTH + "\r")
    answered = report["kexinit"] is not None
    if args.json:
        print(json.dumps(report))
    elif answered:
        print(ssh_summary(report))
    if not answered:
        from kexproxy.core.textsafe import printable

        why = report["notes"][0] if report["notes"] else "no answer"
        _note(f"{report['target']}: {printable(str(why))}")
        return exitcodes.NOTHING_ACCEPTED
    return exitcodes.OK


def run_listen(args: argparse.Namespace) -> int:
    """Serves the client audit until interrupted (or --count clients), each record to the store."""
    from kexproxy.pipeline import Pipeline, stages
    from kexproxy.sinks.jsonl import JsonLinesSink
    from kexproxy.sinks.store import StoreSink, display_name, store_problem
    from kexproxy.sources.proxy import parse_address
    from kexproxy.sources.ssh_probe import ClientAudit, ListenLimits

    try:
        host, port = parse_address(args.listen, default_host="127.0.0.1", default_port=None)
        limits = ListenLimits(
            max_clients=args.max_clients, timeout=args.client_timeout, count=args.count
        )
    except ValueError as exc:
        return _fail(str(exc))
    problem = store_problem(args.store)
    if problem is not None:
        return _fail(problem)
    store = StoreSink(args.store, warn=_note)
    sinks: list[Any] = [store]
    if args.json:
        sinks.append(JsonLinesSink(sys.stdout))
    pipeline = Pipeline(sinks, stages=stages())
    try:
        audit = ClientAudit(host, port, on_record=pipeline.publish, limits=limits)
    except OSError as exc:
        pipeline.close()
        return _fail(f"cannot listen on {args.listen}: {exc.strerror or exc}")
    bound = audit.address
    _note(f"listening on {bound[0]}:{bound[1]}; client records go to {display_name(args.store)}")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda _sig, _frame: audit.stop())
    try:
        audit.serve()
    except KeyboardInterrupt:
        audit.stop()
    finally:
        pipeline.close()
    _note(
        f"{audit.served} clients recorded in {display_name(args.store)}"
        + (f"; {audit.refused} refused (--max-clients)" if audit.refused else "")
    )
    return exitcodes.OK


def _progress(count: int, spec: Any) -> None:
    line = f"handshake {count}: {spec.purpose}"
    sys.stderr.write("\r" + line[:_PROGRESS_WIDTH].ljust(_PROGRESS_WIDTH))
    sys.stderr.flush()


def _graded(list_name: str, names: list[str]) -> list[str]:
    from kexproxy.core.tls.grades import grade

    lines = []
    for name in names:
        g = grade(list_name, name)
        lines.append(f"    {name:<48} {g.grade if g is not None else 'ungraded'}")
    return lines


def summary(report: dict[str, Any]) -> str:
    """The report for people: each list with the grade of each name, then the chain and notes."""
    from kexproxy.core.textsafe import printable

    out = [f"TLS probe of {report['target']} ({report['handshakes']} handshakes)"]
    if report["server_name"]:
        out.append(f"  server_name sent: {printable(str(report['server_name']))}")
    out.append("  versions:")
    out += _graded("versions", report["versions"]) or ["    none accepted"]
    for version, suites in report["cipher_suites"].items():
        out.append(f"  cipher suites, {version}:")
        out += _graded("cipher_suites", suites) or ["    none found"]
    out.append("  groups:")
    out += _graded("supported_groups", report["supported_groups"]) or ["    none found"]
    out.append("  signature schemes:")
    out += _graded("signature_algorithms", report["signature_algorithms"]) or ["    none found"]
    for n, cert in enumerate(report["certificates"]):
        out.append(f"  certificate {n}: {printable(str(cert.get('subject')))}")
        out.append(
            f"    issuer {printable(str(cert.get('issuer')))}; {cert.get('key_type')} "
            f"{cert.get('bits')} bits; valid {cert.get('not_before')} to {cert.get('not_after')}"
        )
        out.append(f"    sha256 {cert.get('sha256')}")
    for note in report["notes"]:
        out.append(f"  note: {printable(str(note))}")
    return "\n".join(out)
