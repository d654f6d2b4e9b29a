"""``kexproxy whatif``: before changing a config, who would it break, and how many sessions is that.

The population is every client offer kexproxy has seen (captures, a store) or the default
offers of named releases; the change is applied to the server's offer with OpenSSH's list
arithmetic and each client is negotiated against the result (kexproxy/core/whatif.py). The
reverse (``--client-change`` against a population of servers) runs the same code with the
roles swapped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from kexproxy import exitcodes
from kexproxy.core.negotiation import Role
from kexproxy.core.openssh_lists import ListError
from kexproxy.core.record import SessionRecord
from kexproxy.core.textsafe import printable
from kexproxy.core.whatif import (
    EFFECTS,
    ChangeRefused,
    Group,
    Prediction,
    apply_changes,
    group_offers,
    kexinit_from_record,
    predict_groups,
    record_offers,
    release_side,
    tally,
)
from kexproxy.core.whatif_logged import (
    LOGGED_EFFECTS,
    LoggedGroup,
    LoggedPrediction,
    group_logged,
    logged_offers,
    logged_words,
    predict_logged_groups,
)

EPILOG = """\
examples:
  kexproxy whatif --clients week.pcap --server-from week.pcap \\
      --server-change 'KexAlgorithms mlkem768x25519-sha256,sntrup761x25519-sha512'
      every client seen in the capture against the server's recorded offer, made post-quantum only
  kexproxy whatif --store kexproxy.db --server-software OpenSSH_9.2 --server-change 'Ciphers -aes128-ctr'
  kexproxy whatif --client-software OpenSSH_7.4,PuTTY_0.70,dropbear_2022.83 \\
      --server-software OpenSSH_9.2 --server-change 'Ciphers aes256-gcm@openssh.com,chacha20-poly1305@openssh.com'
  kexproxy whatif --client-software OpenSSH_9.2 --servers hosts.pcap --client-change '-oKexAlgorithms=-diffie-hellman-group14-sha256'
      the reverse: one client's ssh -o option against every server in a capture
  kexproxy logs --store fleet.db /var/log/auth.log
  kexproxy whatif --store fleet.db --server bastion:22 --server-change 'KexAlgorithms +diffie-hellman-group14-sha1'
      clients known only from sshd's log: does the changed server now share a name with
      the one list sshd logged for each (their other lists are unknown)?

changes: one sshd_config line (or ssh -o option) per --server-change / --client-change, for
KexAlgorithms, Ciphers, MACs and HostKeyAlgorithms, applied to the side's current offer as
OpenSSH applies it: a plain list replaces it; +names appends, -names removes (patterns with *
and ? allowed), ^names puts names first; Ciphers, MACs and KexAlgorithms take patterns only
after '-', as OpenSSH does. A name the side's release cannot do, or a value its OpenSSH would
refuse, stops kexproxy with one line saying so. A server offers only the host key algorithms
of the keys it has (read off its offer; a release given by name has a stock install's keys).

population: client offers grouped by banner and HASSH (one group per distinct offer), with
the number of sessions each group had; releases given by name have no sessions (count -).

clients known only from a server's log (`kexproxy logs --store DB`, then --store DB): such
a record holds one list of the client's, the one sshd named, and no KEXINIT, so with a
--server-change they get a section of their own, grouped by that list and offer: passes
logged list (the changed server's list shares a name with it; the client's other lists are
unknown), still fails logged list, breaks logged list (the change removed the name it shared),
still passes logged list. They are never said to negotiate. Dropbear logs no offer: its
records are not counted.

outcome: breaks (negotiated before, fails after), still_fails, fixed, still_negotiates; a
failure names the list with no common algorithm and both sides' "Unable to negotiate" lines
as OpenSSH would log them (CLIENT and SERVER stand for the addresses).

--json: one line per group: {"client": {"software", "hassh"}, "count", "outcome",
"effect", "negotiated", "failures", "rejections"} ("server" instead of "client" with
--client-change against servers). A logged group's line has "source": "log", "outcome":
null, one of the logged effects, and "logged": {"list", "client_offer", "shared_before",
"shared_after", "removed"}.

exit status: 0 nothing breaks; 1 at least one group (or logged list) breaks; 2 bad
arguments, an unreadable input, or a change refused.
"""


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "whatif",
        help="predict who a config change breaks (from recorded or catalogued offers)",
        description="Predict which peers still negotiate after a KexAlgorithms, Ciphers, MACs "
        "or HostKeyAlgorithms change, and how many sessions break.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    clients = parser.add_argument_group("clients")
    clients.add_argument(
        "--clients",
        nargs="+",
        metavar="CAPTURE",
        default=[],
        help="client offers from capture files",
    )
    clients.add_argument(
        "--store",
        metavar="DB",
        help="client offers from a session store (also where IDs are looked up)",
    )
    clients.add_argument(
        "--client-software",
        metavar="LIST",
        help="comma-separated releases' default offers, e.g. OpenSSH_7.4,PuTTY_0.70",
    )
    clients.add_argument(
        "--client-from",
        metavar="CAPTURE|ID",
        help="one client: the offer recorded in a capture or a stored session",
    )
    servers = parser.add_argument_group("server")
    servers.add_argument(
        "--server-from",
        metavar="CAPTURE|ID",
        help="the server's offer recorded in a capture or a stored session",
    )
    servers.add_argument(
        "--server-software",
        metavar="LIST",
        help="a release's default offer (several, comma-separated, with --client-change)",
    )
    servers.add_argument(
        "--servers",
        nargs="+",
        metavar="CAPTURE",
        default=[],
        help="server offers from capture files (a population, for --client-change)",
    )
    servers.add_argument(
        "--server",
        metavar="HOST:PORT",
        help="the server's offer as `kexproxy probe` learns it now (bounded handshakes)",
    )
    changes = parser.add_argument_group("changes")
    changes.add_argument(
        "--server-change",
        action="append",
        default=[],
        metavar="LINE",
        help="an sshd_config line, e.g. 'Ciphers -aes128-cbc' (repeatable)",
    )
    changes.add_argument(
        "--client-change",
        action="append",
        default=[],
        metavar="OPTION",
        help="an ssh -o option, e.g. '-oKexAlgorithms=+diffie-hellman-group14-sha1'",
    )
    parser.add_argument("--json", action="store_true", help="one JSON line per group on stdout")
    parser.set_defaults(run=run)


class InputError(Exception):
    """An argument or input kexproxy cannot use; the message is one line for stderr."""


LoggedRows = list[tuple[LoggedGroup, LoggedPrediction]]


def run(args: argparse.Namespace) -> int:
    try:
        clients, servers, logged = _populations(args)
        if not args.server_change and not args.client_change:
            raise InputError("give a change: --server-change LINE or --client-change OPTION")
        rows = predict_groups(clients, servers, args.server_change, args.client_change)
        logged_rows = _logged_rows(logged, servers, args)
        if not clients and not logged_rows:
            raise InputError(
                "no client offers: give --clients, --store, --client-software or --client-from"
            )
    except (InputError, ChangeRefused, ListError) as exc:
        print(f"kexproxy whatif: {exc}", file=sys.stderr)
        return exitcodes.BAD_INPUT
    population: Role = "server" if len(clients) == 1 and len(servers) > 1 else "client"
    if args.json:
        for group, prediction in rows:
            sys.stdout.write(json.dumps(_json_line(group, prediction, population)) + "\n")
        for lgroup, lp in logged_rows:
            sys.stdout.write(json.dumps(_logged_json_line(lgroup, lp)) + "\n")
    else:
        if rows or not logged_rows:
            _table(rows, population, args)
        if logged_rows:
            _logged_table(logged_rows, args, after_other=bool(rows))
    broken = any(p.effect == "breaks" for _, p in rows) or any(
        p.effect == "breaks_logged_list" for _, p in logged_rows
    )
    return exitcodes.CHANGE_BREAKS if broken else exitcodes.OK


def _logged_rows(
    logged: list[LoggedGroup], servers: list[Group], args: argparse.Namespace
) -> LoggedRows:
    """The logged lists against the one server's change; a client change says nothing of them."""
    if not logged:
        return []
    if len(servers) != 1 or not args.server_change:
        print(
            f"kexproxy whatif: {sum(g.count for g in logged)} records from a server's log are "
            "left out: they hold only the client's failing list, which only a --server-change "
            "on one server can be predicted for",
            file=sys.stderr,
        )
        return []
    changed = apply_changes(servers[0].side, args.server_change, "server")
    return predict_logged_groups(logged, servers[0].kexinit, changed.kexinit)


def _populations(
    args: argparse.Namespace,
) -> tuple[list[Group], list[Group], list[LoggedGroup]]:
    clients: list[Group] = []
    logged: list[LoggedGroup] = []
    for path in args.clients:
        clients += group_offers(record_offers(_capture(path), "client"))
    if args.store and not (args.client_from or args.clients or args.client_software):
        stored = _store_records(args.store)
        clients += group_offers(record_offers(stored, "client"))
        logged = group_logged(logged_offers(stored))
    if args.client_software:
        clients += [_release(n, "client") for n in _names(args.client_software)]
    if args.client_from:
        clients.append(_one(args.client_from, args.store, "client"))
    servers: list[Group] = []
    for path in args.servers:
        servers += group_offers(record_offers(_capture(path), "server"))
    if args.server_software:
        servers += [_release(n, "server") for n in _names(args.server_software)]
    if args.server_from:
        servers.append(_one(args.server_from, args.store, "server"))
    if args.server:
        servers.append(_probed(args.server))
    if not clients and not logged:
        raise InputError(
            "no client offers: give --clients, --store, --client-software or --client-from"
        )
    if not servers:
        raise InputError(
            "no server offer: give --server-from, --server-software, --server or --servers"
        )
    if len(servers) > 1 and len(clients) > 1:
        raise InputError(
            f"{len(clients)} client groups and {len(servers)} servers: give one server "
            "(for --server-change) or one client (for --client-change against servers)"
        )
    return clients, servers, logged


def _probed(target: str) -> Group:
    """The server's offer as `kexproxy probe` learns it now (bounded handshakes, its defaults)."""
    from kexproxy.sources.proxy import parse_address
    from kexproxy.sources.ssh_probe import Unreachable, probe_ssh

    try:
        host, port = parse_address(target, default_host=None, default_port=None)
        report = probe_ssh(host, port)
    except (ValueError, Unreachable) as exc:
        raise InputError(f"--server {target}: {exc}") from None
    kexinit = kexinit_from_record(report.get("kexinit"))
    if kexinit is None:
        raise InputError(f"--server {target}: the server sent no KEXINIT")
    banner = report.get("banner")
    return Group(
        banner=banner if isinstance(banner, str) else None, hassh=None, count=0, kexinit=kexinit
    )


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _release(text: str, role: Role) -> Group:
    side = release_side(text, role)
    return Group(banner=side.banner, hassh=None, count=0, kexinit=side.kexinit)


def _capture(path: str) -> list[SessionRecord]:
    from kexproxy.pipeline import capture_records
    from kexproxy.sources.pcap import CaptureError

    try:
        return capture_records(path)
    except (CaptureError, OSError) as exc:
        raise InputError(f"{path}: {exc}") from None


def _store_records(path: str) -> list[SessionRecord]:
    from kexproxy.sinks.store import SessionStore, StoreError

    try:
        store = SessionStore.open(path, readonly=True)
        try:
            return [s.record for s in store.sessions() if s.final]
        finally:
            store.close()
    except StoreError as exc:
        raise InputError(str(exc)) from None


def _one(where: str, store: str | None, role: Role) -> Group:
    """The most common offer of `role` in a capture, or the one of a stored session."""
    if os.path.exists(where):
        groups = group_offers(record_offers(_capture(where), role))
        if not groups:
            raise InputError(f"{where}: no {role} KEXINIT in this capture")
        if len(groups) > 1:
            print(
                f"kexproxy whatif: {where} holds {len(groups)} {role} offers; using the most "
                f"common ({groups[0].count} sessions, {printable(groups[0].software)})",
                file=sys.stderr,
            )
        return groups[0]
    if store is None:
        raise InputError(f"{where}: no such file (a session id needs --store DB)")
    from kexproxy.sinks.store import SessionStore, StoreError

    try:
        opened = SessionStore.open(store, readonly=True)
        try:
            found = opened.find_one(where)
        finally:
            opened.close()
    except StoreError as exc:
        raise InputError(str(exc)) from None
    if isinstance(found, str):
        raise InputError(found)
    groups = group_offers(record_offers([found.record], role))
    if not groups:
        raise InputError(f"session {where}: no {role} KEXINIT recorded")
    return groups[0]


def _json_line(group: Group, p: Prediction, population: Role) -> dict[str, Any]:
    after = p.after
    return {
        population: {"software": group.software, "hassh": group.hassh},
        "count": group.count if group.hassh is not None or group.count else None,
        "outcome": "negotiated" if after.ok else "failed",
        "effect": p.effect,
        "negotiated": after.to_dict() if after.ok else None,
        "failures": [f.to_dict() for f in after.failures],
        "rejections": {k: (v.to_dict() if v else None) for k, v in after.rejections.items()},
    }


def _table(
    rows: list[tuple[Group, Prediction]], population: Role, args: argparse.Namespace
) -> None:
    changes = [*args.server_change, *args.client_change]
    sessions, groups = tally(rows, EFFECTS)
    out = sys.stdout
    out.write(f"change: {printable('; '.join(changes))}\n")
    total = sum(sessions.values())
    out.write(
        f"breaks {groups['breaks']} of {len(rows)} {population} groups"
        f" ({sessions['breaks']} of {total} recorded sessions);"
        f" {groups['still_fails']} already failing, {groups['fixed']} fixed\n\n"
    )
    header = ("EFFECT", "SESSIONS", population.upper(), "HASSH", "AFTER THE CHANGE")
    lines = [header]
    for group, p in rows:
        lines.append(
            (
                p.effect.replace("_", " "),
                str(group.count) if group.count else "-",
                printable(group.software or "(no banner)")[:40],
                (group.hassh or "-")[:12],
                _after(p),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    for line in lines:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(line[:4])]
        out.write("  ".join([*cells, line[4]]).rstrip() + "\n")


def _after(p: Prediction) -> str:
    """The outcome in a few words: the choices, or the first failing list and its reason."""
    after = p.after
    if after.ok:
        chosen = after.chosen
        return f"{chosen.get('kex')}, {chosen.get('host_key')}, {chosen.get('cipher_c2s')}"
    first = after.failures[0]
    rejection = after.rejections.get("server") or after.rejections.get("client")
    reason = rejection.reason if rejection else "no match"
    return printable(f"fails on {first.list}: {reason}")


def _logged_json_line(group: LoggedGroup, p: LoggedPrediction) -> dict[str, Any]:
    still_fails = p.after is None
    return {
        "client": {"software": None, "hassh": None},
        "source": "log",
        "count": group.count,
        "outcome": None,  # one list is known, never the whole handshake
        "effect": p.effect,
        "negotiated": None,
        "failures": (
            [
                {
                    "list": group.list,
                    "client_offer": list(group.offer),
                    "server_offer": list(p.server_after),
                }
            ]
            if still_fails
            else []
        ),
        "rejections": {"client": None, "server": None},
        "logged": {
            "list": group.list,
            "client_offer": list(group.offer),
            "shared_before": p.before,
            "shared_after": p.after,
            "removed": list(p.removed),
        },
    }


def _logged_table(rows: LoggedRows, args: argparse.Namespace, *, after_other: bool) -> None:
    """The logged clients' own section: one list each, so its own counts and words."""
    out = sys.stdout
    records, groups = tally(rows, LOGGED_EFFECTS)
    if after_other:
        out.write("\n")
    else:
        out.write(f"change: {printable('; '.join(args.server_change))}\n")
    out.write(
        "clients known only from a server's log (one list each, the one sshd named; "
        "their other lists are unknown):\n"
    )
    out.write(
        f"{groups['passes_logged_list']} of {len(rows)} logged groups"
        f" ({records['passes_logged_list']} of {sum(records.values())} log records) pass their"
        f" logged list after the change; {groups['still_fails_logged_list']} still fail on it,"
        f" {groups['breaks_logged_list']} newly broken,"
        f" {groups['still_passes_logged_list']} passed it already\n\n"
    )
    lines = [("EFFECT", "RECORDS", "LIST", "THEIR OFFER (AS LOGGED)", "AFTER THE CHANGE")]
    for group, p in rows:
        offer = ",".join(group.offer)
        lines.append(
            (
                p.effect.replace("_", " "),
                str(group.count),
                group.list,
                printable(offer if len(offer) <= 40 else offer[:39] + "…"),
                printable(logged_words(p)),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    for line in lines:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(line[:4])]
        out.write("  ".join([*cells, line[4]]).rstrip() + "\n")
