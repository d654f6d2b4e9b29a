"""The command line: the composition root that wires sources, the core and sinks together.

Each subcommand lives in `kexproxy.commands`; this module only builds the parser, so
``kexproxy --help`` stays fast (heavy imports such as scapy or textual happen inside
the command that needs them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from kexproxy import __version__, exitcodes
from kexproxy.commands import read as read_command

DESCRIPTION = """\
kexproxy shows, from the wire, why an SSH or TLS handshake fails: what each side offered,
which list had no match, which side gave up and how, in OpenSSH's (or OpenSSL's) own words.

  kexproxy read capture.pcap            one row per SSH or TLS connection in a capture
  kexproxy read --json capture.pcap     one JSON record per connection (schema kexproxy/session/1)
  tcpdump -i eth0 -U -s 0 -w - | kexproxy read -   records as handshakes finish, live
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kexproxy",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kexproxy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    read_command.register(sub)
    for name in ("proxy", "sniff", "sessions", "explain", "probe", "whatif", "tui", "logs"):
        module = _optional_command(name)
        if module is not None:
            module.register(sub)
    return parser


def _optional_command(name: str) -> ModuleType | None:
    """Commands that other parts of the tree provide; absent ones are simply not offered."""
    import importlib

    try:
        return importlib.import_module(f"kexproxy.commands.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"kexproxy.commands.{name}":
            return None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return exitcodes.BAD_INPUT
    try:
        result: int = args.run(args)
    except KeyboardInterrupt:
        print("kexproxy: interrupted", file=sys.stderr)
        return exitcodes.INTERRUPTED
    except BrokenPipeError:
        # `kexproxy read x.pcap | head` closes stdout early: not an error. Later writes and
        # the interpreter's last flush go to /dev/null instead of raising again.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return exitcodes.OK
    return result


if __name__ == "__main__":
    sys.exit(main())
