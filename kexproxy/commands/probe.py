"""``kexproxy probe HOST:PORT --tls``: what a TLS server accepts, learnt with a few bounded handshakes.

A server that refuses sends no offer, so "who refused which list" needs the server's lists
from somewhere: this asks for them, one ClientHello variant at a time (the questions are in
kexproxy/core/tls/probing.py, the I/O in kexproxy/sources/tls_probe.py). The SSH probe is a
later issue (13) and will join this command as its default protocol.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from typing import Any

from kexproxy import exitcodes

EPILOG = """\
examples:
  kexproxy probe 127.0.0.1:8443 --tls
      versions, cipher suites per version (in the server's order when it has one), groups,
      signature schemes and the certificate chain, each name with its grade
  kexproxy probe mail.example:465 --tls --json | jq '.cipher_suites["TLS 1.2"]'
  kexproxy probe 10.0.0.5:443 --tls --sni www.example --rate 2 --max-handshakes 80

how: one ClientHello per connection, each offering everything kexproxy knows but the list
being learnt; the server's answer names its choice, which is removed and asked again until
the server refuses. TLS 1.3 groups are learnt from HelloRetryRequests (an empty key share),
TLS 1.2 groups and schemes from the ServerKeyExchange, TLS 1.3 schemes one at a time. No
handshake is ever completed: kexproxy hangs up after the server's first flight. A full probe
of a default OpenSSL server takes about 65 handshakes.

bounds: one connection at a time to HOST:PORT only; at most --rate connections a second
(default 5, at most 20), --max-handshakes in all (default 200), --timeout seconds for each
answer (default 5). A server that stops answering, or answers with something that is not
TLS, ends the probe with what was learnt and a note saying why.

exit status: 0 probed (the server accepted at least one version); 1 probed, but the server
accepted no version kexproxy offered; 2 bad arguments, or HOST:PORT unreachable.
"""

#: Where progress lines go: stderr, and only when it is a terminal (stdout is data).
_PROGRESS_WIDTH = 78


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "probe",
        help="ask a server what it accepts (TLS: --tls)",
        description="Probe a server with bounded handshakes and report what it accepts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", metavar="HOST:PORT", help="the server ([V6]:PORT for IPv6)")
    parser.add_argument(
        "--tls", action="store_true", help="probe TLS (SSH probing is not built yet)"
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

    if not args.tls:
        return _fail("SSH probing is not built yet (issue 13); use --tls to probe TLS")
    try:
        host, port = parse_address(args.target, default_host=None, default_port=None)
        limits = ProbeLimits(
            rate=args.rate, max_handshakes=args.max_handshakes, timeout=args.timeout
        )
    except ValueError as exc:
        return _fail(str(exc))
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
