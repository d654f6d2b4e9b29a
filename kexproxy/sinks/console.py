"""The human view: a Rich table of sessions and, for failures, each side's message."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from kexproxy.core.record import OUTCOMES, SessionRecord
from kexproxy.core.textsafe import printable
from kexproxy.present import (
    endpoint,
    kind_label,
    native_words,
    side_label,
    software_name,
    summary,
    verdict_line,
)

OUTCOME_STYLE = {
    "negotiated": "green",
    "failed": "bold red",
    "aborted": "yellow",
    "incomplete": "dim",
    "not_ssh": "dim",
    "in_progress": "cyan",
}


class _Console(Console):
    """A Console whose broken pipe (``kexproxy read x.pcap | head``) is no error of ours.

    Rich's own handler exits with status 1, which scripts read as "policy violation"; this
    raises BrokenPipeError for the command line to end quietly with the status it has.
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def stdout_console() -> Console:
    """The console for reports on stdout: no guessing colours for numbers or paths."""
    return _Console(highlight=False)


def stderr_console() -> Console:
    return _Console(stderr=True)


def safe(text: str | None) -> str:
    """Untrusted text for Rich: controls made visible, then markup escaped."""
    return escape(printable(text))


#: Verdict colours: the grade of the negotiated set, or a policy violation.
VERDICT_STYLE = {
    "strong": "bold green",
    "good": "green",
    "weak": "yellow",
    "broken": "bold red",
    "violation": "bold red",
}


def grade_of(record: SessionRecord) -> str:
    if record.policy and record.policy.get("compliant") is False:
        return "violation"
    return str((record.diagnosis or {}).get("grade") or "")


#: Below this many columns the software column goes (`explain` has it).
SOFTWARE_MIN_WIDTH = 80
#: The software column's width, and below `WIDE` columns its narrower width
#: (``OpenSSH_9.2p1`` whole, longer names end in "…"): there, the detail needs the cells
#: to hold the longest algorithm name (``diffie-hellman-group-exchange-sha256``, 36) whole,
#: as Rich narrows the widest column first and folds a name wider than its column.
SOFTWARE_WIDTH, SOFTWARE_WIDTH_NARROW = 32, 13
WIDE = 100


def sessions_table(
    records: list[SessionRecord], title: str | None = None, *, width: int = 200
) -> Table:
    """One row per connection, two lines each, readable in 80 columns.

    The endpoints and software are stacked (client over server) rather than side by side;
    banner comments are left to `explain` and the JSON; nothing is ever cut off, only folded,
    and from 80 columns on (IPv4 addresses) no algorithm name is folded either.
    """
    software = width >= SOFTWARE_MIN_WIDTH
    table = stacked_table(
        "#",
        title=title,
        software=software,
        software_width=SOFTWARE_WIDTH if width >= WIDE else SOFTWARE_WIDTH_NARROW,
    )
    for index, record in enumerate(records, 1):
        table.add_row(
            str(index),
            *stacked_cells(record, software=software),
            end_section=index < len(records),
        )
    return table


def stacked_table(
    *first: str,
    title: str | None = None,
    software: bool = True,
    software_width: int = SOFTWARE_WIDTH,
) -> Table:
    """A sessions table of two-line rows: the `first` columns, then the `stacked_cells` ones.

    Every column may fold, so that a narrow terminal folds text instead of cropping it.
    """
    from rich import box

    table = Table(
        title=escape(title) if title else None,
        expand=False,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        padding=0,  # the box's one-space column rule is gap enough, and gives names room
    )
    for header in first:
        table.add_column(header, overflow="fold", justify="right" if header == "#" else "left")
    table.add_column("client\n→ server", overflow="fold")
    if software:
        table.add_column("software", max_width=software_width, overflow="ellipsis", no_wrap=True)
    table.add_column("outcome", overflow="fold")
    # Text wraps between words, so a name is split only when it is wider than the whole
    # column (see SOFTWARE_WIDTH_NARROW); splitting it still beats cutting it off.
    table.add_column("detail / verdict", overflow="fold", ratio=1)
    return table


def stacked_cells(
    record: SessionRecord, *, live: bool = False, software: bool = True
) -> tuple[Text, ...]:
    """Endpoints, software, outcome, and the detail over the verdict; strangers' text escaped."""
    detail = Text(printable(summary(record)))
    verdict = verdict_line(record)
    if verdict:
        if detail:
            detail.append("\n")
        detail.append(printable(verdict), style=VERDICT_STYLE.get(grade_of(record), ""))
    outcome = Text(printable(record.outcome), style=OUTCOME_STYLE.get(record.outcome, ""))
    if live:
        outcome.append(" (live)", style="bold")
    # The header says "client → server": an arrow in every cell would take the two cells
    # the longest algorithm name needs in 80 columns.
    endpoints = Text(f"{printable(endpoint(record.client))}\n{printable(endpoint(record.server))}")
    if not software:
        return (endpoints, outcome, detail)
    software_cell = Text(
        f"{printable(side_label(record, 'client'))}\n{printable(side_label(record, 'server'))}"
    )
    return (endpoints, software_cell, outcome, detail)


def print_messages(console: Console, records: list[SessionRecord]) -> None:
    """Each failure's rejection messages as the real client and sshd would print them."""
    for index, record in enumerate(records, 1):
        lines: list[Text] = []
        for role in ("client", "server"):
            rejection = record.rejections.get(role)
            if rejection:
                sure = rejection.get("certain", True)
                lines.append(
                    Text.assemble(
                        (f"  {role}: ", "bold"),
                        printable(rejection["message"]),
                        ("" if sure else " (inferred: the wire does not name the list)", "dim"),
                    )
                )
                words = native_words(record, role)
                if words is not None:
                    lines.append(
                        Text.assemble(
                            (f"  {role} ({printable(words[0])}): ", "bold"), printable(words[1])
                        )
                    )
        for violation in (record.policy or {}).get("violations", []):
            lines.append(Text(f"  policy: {printable(violation['message'])}", style="red"))
        evidence = record.evidence
        if record.outcome in ("failed", "aborted") and evidence.get("first_close"):
            how = evidence.get("how")
            lines.append(
                Text(f"  closed first by the {evidence['first_close']} ({how})", style="dim")
            )
        for alert in record.alerts:
            if alert.get("level") == "fatal" or alert.get("encrypted"):
                said = "an encrypted alert" if alert.get("encrypted") else alert.get("description")
                heard = (
                    f"; the peer's OpenSSL prints {alert['message']}"
                    if alert.get("message")
                    else ""
                )
                lines.append(
                    Text(
                        f"  alert from the {alert.get('from')}: {printable(str(said))}{printable(heard)}",
                        style="dim",
                    )
                )
        for dis in evidence.get("disconnects", []):
            lines.append(
                Text(
                    f"  DISCONNECT from the {dis['sender']}: {dis['reason']}: "
                    f"{printable(dis['description'])}",
                    style="dim",
                )
            )
        if lines:
            console.print(
                Text(
                    f"#{index} {printable(endpoint(record.client))} -> "
                    f"{printable(endpoint(record.server))}",
                    style="bold",
                )
            )
            for line in lines:
                # Unwrapped, so that a message can be copied whole and grepped.
                console.print(line, soft_wrap=True)


def print_totals(
    console: Console, records: list[SessionRecord], *, files: int, ssh_only: bool = True
) -> None:
    """The whole run at a glance: outcomes, failing lists, and who fails, most first."""
    from collections import Counter

    from rich.rule import Rule

    outcomes = Counter(r.outcome for r in records)
    kinds = Counter(
        kind
        for r in records
        for kind in dict.fromkeys(kind_label(name) for name in r.failing_lists)
    )
    troubled = [r for r in records if r.outcome in ("failed", "aborted")]
    clients = Counter(_who(r, "client") for r in troubled)
    servers = Counter(_who(r, "server") for r in troubled)
    protocols = sorted({r.protocol.upper() for r in records}) or ["SSH"]
    what = f"{' and '.join(protocols)} connections" if ssh_only else "connections"
    where = f"{files} capture{'s' * (files != 1)}"
    if len(records) == 1:
        what = what[:-1]  # "1 TLS connection"
    console.print(Rule(Text(f"{len(records)} {what} in {where}", "bold")))
    line = Text()
    for outcome in OUTCOMES:
        if outcomes[outcome]:
            line.append(", " if line else "")
            line.append(f"{outcomes[outcome]} {outcome}", style=OUTCOME_STYLE.get(outcome, ""))
    console.print(line)
    for label, counter in (
        ("failing lists", kinds),
        ("failed or aborted, by client", clients),
        ("failed or aborted, by server", servers),
    ):
        if counter:
            text = ", ".join(f"{name} {count}" for name, count in counter.most_common(8))
            more = len(counter) - 8
            text += f", +{more} more" if more > 0 else ""
            console.print(Text.assemble((f"{label}: ", "bold"), text))


def _who(record: SessionRecord, role: str) -> str:
    if record.protocol == "tls":
        return printable(side_label(record, role))
    banner = record.client_banner if role == "client" else record.server_banner
    return printable(software_name(banner)) if banner else "(no banner)"
