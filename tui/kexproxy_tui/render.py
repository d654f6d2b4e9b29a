"""Rich renderables for the detail screen: the offers side by side, the timeline, the facts.

Everything from the wire goes through `printable` into `Text` objects, never through
markup, so a banner such as ``SSH-2.0-[bold red]x[/]`` shows exactly those characters.
Pure (Rich only), so the detail screen and the tests render the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.style import Style
from rich.table import Table
from rich.text import Text

from kexproxy.core.lists import LISTS, MARKERS
from kexproxy.core.negotiation import IMPLICIT_MAC
from kexproxy.core.record import SessionRecord, parse_rfc3339
from kexproxy.core.textsafe import printable
from kexproxy.present import STEP_LABEL, endpoint, recipe_heading, software, summary
from kexproxy.present_tls import client_line, server_line
from kexproxy_tui.palette import GRADE_ROLE, Palette
from kexproxy_tui.recipes import IN_COMMAND, PROSE, strings

#: Entries shown per list and side; a hostile KEXINIT can hold thousands (see the export).
MAX_OFFER_ROWS = 60
#: Widest a recipe line's label grows ("server, localoptions.h (Dropbear's build)" is 41):
#: a damaged record's step could name a side of any length.
MAX_LABEL = 42

CHOSEN = "●"
MISSING = "✗"
MARKER = "◦"
COMMON = " "


def lit(text: str | None, style: Any = "") -> Text:
    """Untrusted text as a literal Text: controls made visible, markup never parsed."""
    return Text(printable(text), style=style, end="")


def heading(text: str, palette: Palette) -> Text:
    return Text(text, style=palette["heading"], end="")


def overview(record: SessionRecord, palette: Palette) -> Text:
    """Who talked to whom, how it ended and when, in a few lines."""
    out = Text(end="")
    out.append("client ", palette["muted"])
    out.append_text(lit(endpoint(record.client), "bold"))
    out.append("  →  server ", palette["muted"])
    out.append_text(lit(endpoint(record.server), "bold"))
    out.append("\n")
    out.append(record.outcome, palette.outcome(record.outcome))
    line = summary(record)
    if line:
        out.append("  ")
        out.append_text(lit(line, palette.outcome(record.outcome)))
    out.append("\n")
    out.append("client ", palette["muted"])
    tls = record.protocol == "tls"
    out.append_text(lit(client_line(record) if tls else record.client_banner or "(no banner)"))
    out.append("\nserver ", palette["muted"])
    out.append_text(lit(server_line(record) if tls else record.server_banner or "(no banner)"))
    out.append("\n")
    out.append(f"{_when(record.started)} → {_when(record.ended)} UTC", palette["muted"])
    out.append("\n")
    out.append_text(lit(f"{record.source} {record.capture or ''}".strip(), palette["muted"]))
    out.append("  ·  id ", palette["muted"])
    out.append_text(lit(record.id, palette["muted"]))
    return out


def _when(stamp: str | None) -> str:
    return f"{stamp[:10]} {stamp[11:26]}" if stamp and len(stamp) >= 26 else (stamp or "-")


def rejections(record: SessionRecord, palette: Palette) -> Text:
    """Each side's "Unable to negotiate" message as it would print it, then how it ended."""
    out = Text(end="")
    lines = 0
    for role in ("client", "server"):
        rejection = (record.rejections or {}).get(role)
        if rejection:
            if lines:
                out.append("\n")
            out.append(f"{role}: ", "bold")
            out.append_text(lit(str(rejection.get("message", "")), palette["bad"]))
            lines += 1
    evidence = record.evidence or {}
    if evidence.get("first_close"):
        out.append("\n" if lines else "")
        out.append(
            f"closed first by the {evidence['first_close']} ({evidence.get('how') or '?'})",
            palette["muted"],
        )
        lines += 1
    for dis in evidence.get("disconnects") or []:
        out.append("\n" if lines else "")
        out.append(
            f"DISCONNECT from the {dis.get('sender')}: {dis.get('reason')}: ", palette["warn"]
        )
        out.append_text(lit(str(dis.get("description", ""))))
        lines += 1
    if evidence.get("banner_error"):
        out.append("\n" if lines else "")
        out.append("refused instead of a banner: ", palette["warn"])
        out.append_text(lit(str(evidence["banner_error"])))
        lines += 1
    if not lines:
        out.append("no rejection: neither side gave up on the offers", palette["muted"])
    return out


def _entry(name: str, other: set[str], chosen: str | None, palette: Palette) -> tuple[Text, Text]:
    """A name and its mark: chosen, a marker, missing on the other side, or common."""
    if chosen is not None and name == chosen:
        return Text(CHOSEN, palette["chosen"]), lit(name, palette["chosen"])
    if name in MARKERS:
        return Text(MARKER, palette["muted"]), lit(name, palette["muted"])
    if name not in other:
        return Text(MISSING, palette["warn"]), lit(name)
    return Text(COMMON), lit(name)


def offers_legend(palette: Palette) -> Text:
    return Text.assemble(
        (CHOSEN, palette["chosen"]),
        " chosen   ",
        (MISSING, palette["warn"]),
        " the other side does not offer it   ",
        (MARKER, palette["muted"]),
        " marker, never chosen",
    )


def offers(record: SessionRecord, palette: Palette) -> RenderableType:
    """The two KEXINITs list by list: client on the left, server on the right."""
    ck = record.client_kexinit or {}
    sk = record.server_kexinit or {}
    if not ck and not sk:
        return Text("no KEXINIT seen from either side", palette["muted"])
    negotiated = record.negotiated or {}
    failing = set(record.failing_lists)
    parts: list[RenderableType] = [offers_legend(palette)]
    blank = Text("")
    for entry in LISTS:
        rfc, field = entry.rfc, entry.field
        client = [str(x) for x in ck.get(rfc) or []]
        server = [str(x) for x in sk.get(rfc) or []]
        if field is None and not client and not server:
            continue
        chosen = negotiated.get(field) if field else None
        title = Text()
        title.append(rfc, "bold")
        if rfc in failing:
            title.append("  no match", palette["bad"])
        elif chosen == IMPLICIT_MAC:
            title.append("  not negotiated: the cipher is AEAD", palette["muted"])
        elif chosen:
            title.append("  chosen ", palette["muted"])
            title.append_text(lit(str(chosen), palette["chosen"]))
        table = Table(
            box=None,
            expand=True,
            show_header=True,
            header_style=palette["muted"],
            padding=(0, 1, 0, 0),
            pad_edge=False,
        )
        table.add_column("", width=1, no_wrap=True)
        table.add_column(f"client ({len(client)})", ratio=1, overflow="fold")
        table.add_column("", width=1, no_wrap=True)
        table.add_column(f"server ({len(server)})", ratio=1, overflow="fold")
        cset, sset = set(client), set(server)
        rows = max(len(client), len(server))
        for i in range(min(rows, MAX_OFFER_ROWS)):
            left = _entry(client[i], sset, chosen, palette) if i < len(client) else (blank, blank)
            right = _entry(server[i], cset, chosen, palette) if i < len(server) else (blank, blank)
            table.add_row(*left, *right)
        if rows > MAX_OFFER_ROWS:
            more = "… {} more, not shown (the export has them all)"
            table.add_row(
                blank,
                Text(more.format(max(0, len(client) - MAX_OFFER_ROWS)), palette["muted"]),
                blank,
                Text(more.format(max(0, len(server) - MAX_OFFER_ROWS)), palette["muted"]),
            )
        if not rows:
            table.add_row(
                blank, Text("(empty)", palette["muted"]), blank, Text("(empty)", palette["muted"])
            )
        parts.extend([blank, title, table])
    return Group(*parts)


def facts_table(rows: list[tuple[str, Text]], palette: Palette) -> Table:
    """Label and value per line; a long value wraps under itself, not under the label."""
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(style=palette["muted"], no_wrap=True)
    table.add_column(ratio=1, overflow="fold")
    for label, value in rows:
        table.add_row(label, value)
    return table


def timeline(record: SessionRecord, palette: Palette) -> RenderableType:
    """The evidence in order: banners, KEXINITs, KEX messages, NEWKEYS, DISCONNECT, FIN/RST."""
    events = record.timeline or []
    if not events:
        return Text("no timeline in this record", palette["muted"], end="")
    start = _first_time(events)
    table = Table(
        box=None, expand=True, show_header=True, header_style=palette["muted"], pad_edge=False
    )
    table.add_column("+seconds", justify="right", no_wrap=True)
    table.add_column("from", no_wrap=True)
    table.add_column("event", no_wrap=True, overflow="fold")
    table.add_column("detail", ratio=1, overflow="fold")
    for event in events:
        at = event.get("at")
        offset = "?"
        if at and start is not None:
            try:
                offset = f"{parse_rfc3339(at) - start:+.6f}"
            except ValueError:
                offset = "?"
        who = str(event.get("from") or "-")
        name = str(event.get("event", ""))
        style = palette["bad"] if name in ("RST", "SSH_MSG_DISCONNECT") else ""
        table.add_row(
            Text(offset, palette["muted"]),
            Text(who, palette["accent"] if who == "server" else ""),
            lit(name, style),
            lit(event.get("detail")),
        )
    return table


def _first_time(events: Iterable[dict[str, Any]]) -> float | None:
    for event in events:
        at = event.get("at")
        if at:
            try:
                return parse_rfc3339(at)
            except ValueError:
                continue
    return None


def facts(record: SessionRecord, palette: Palette) -> Table:
    """Host key, HASSH, strict KEX, bytes and notes."""
    rows: list[tuple[str, Text]] = []
    host_key = record.host_key
    if host_key:
        value = lit(str(host_key.get("algorithm", "?")))
        if host_key.get("bits"):
            value.append(f" {host_key['bits']} bits")
        value.append("  ")
        value.append_text(lit(str(host_key.get("sha256", ""))))
    else:
        value = Text("not seen", palette["muted"])
    rows.append(("host key", value))
    hassh = lit(record.hassh or "-")
    hassh.append(f"  {printable(software(record.client_banner))}", palette["muted"])
    rows.append(("HASSH", hassh))
    server_hassh = lit(record.hassh_server or "-")
    server_hassh.append(f"  {printable(software(record.server_banner))}", palette["muted"])
    rows.append(("HASSHServer", server_hassh))
    strict = record.strict_kex or {}
    rows.append(
        (
            "strict KEX",
            Text(
                f"client {'yes' if strict.get('client') else 'no'}, "
                f"server {'yes' if strict.get('server') else 'no'}"
            ),
        )
    )
    counted = record.bytes or {}
    rows.append(
        (
            "bytes",
            Text(f"{counted.get('c2s', 0)} client→server, {counted.get('s2c', 0)} server→client"),
        )
    )
    for note in record.notes or []:
        rows.append(("note", lit(note)))
    return facts_table(rows, palette)


def _grade_style(grade: object, palette: Palette) -> Style:
    return palette[GRADE_ROLE.get(str(grade), "muted")]


def diagnosis_summary(diagnosis: dict[str, Any], palette: Palette) -> Text:
    """The grade of what was negotiated and why, and any "upgrade the other side" advice."""
    out = Text(end="")
    grade = diagnosis.get("grade")
    out.append("grade ", palette["muted"])
    out.append(
        str(grade) if grade else "none (nothing was negotiated)", _grade_style(grade, palette)
    )
    for reason in diagnosis.get("reasons") or []:
        out.append("\n• ")
        out.append_text(lit(str(reason)))
    for advice in diagnosis.get("real_fix") or []:
        out.append("\n⚠ ", palette["warn"])
        out.append_text(lit(str(advice), palette["warn"]))
    return out


def policy_verdict(record: SessionRecord, palette: Palette) -> Text | None:
    """The policy's word on the session, when one judged it: each violation on its line."""
    policy = record.policy
    if not isinstance(policy, dict):
        return None
    out = Text(end="")
    out.append_text(lit(f"policy {policy.get('name', '?')}: ", "bold"))
    if not policy.get("evaluated"):
        out.append_text(lit(f"not evaluated ({policy.get('reason')})", palette["muted"]))
    elif policy.get("compliant"):
        out.append("compliant", _grade_style("good", palette))
    else:
        out.append("violated", _grade_style("broken", palette))
        for violation in policy.get("violations") or []:
            if isinstance(violation, dict):
                out.append("\n• ")
                out.append_text(lit(str(violation.get("message")), _grade_style("weak", palette)))
    return out


def diagnosis_verdicts(diagnosis: dict[str, Any], palette: Palette) -> Table | None:
    """Terrapin, post-quantum, host key and group sizes, the version hint, unknown names."""
    rows: list[tuple[str, Text]] = []

    def add(label: str, verdict: Any, grade: object = None) -> None:
        if not isinstance(verdict, dict) or not verdict.get("reason"):
            return
        value = lit(str(verdict["reason"]), _grade_style(grade, palette) if grade else "")
        for note in verdict.get("notes") or []:
            value.append("\n")
            value.append_text(lit(str(note), palette["muted"]))
        rows.append((label, value))

    terrapin = diagnosis.get("terrapin")
    if isinstance(terrapin, dict):
        add("Terrapin", terrapin, "weak" if terrapin.get("exposed") else "good")
    pq = diagnosis.get("post_quantum")
    if isinstance(pq, dict):
        add("post-quantum", pq, "strong" if pq.get("post_quantum") else None)
        warns = pq.get("openssh_warning")
        if isinstance(warns, bool):  # None: no OpenSSH client would have got this far
            why = pq.get("openssh_warning_reason")
            said = f"would warn: {why}" if warns else str(why)
            add("OpenSSH 10.1+", {"reason": said}, "weak" if warns else None)
    host_key = diagnosis.get("host_key_size")
    add("host key size", host_key, (host_key or {}).get("grade"))
    gex = diagnosis.get("dh_gex")
    add("DH group", gex, (gex or {}).get("grade"))
    hint = diagnosis.get("version_hint")
    if isinstance(hint, dict):
        for role in ("client", "server"):
            side = hint.get(role)
            if isinstance(side, dict) and side.get("text"):
                caveat = {"reason": side["text"], "notes": []}
                add(f"{role} version", caveat)
        if hint.get("caveat") and rows:
            rows.append(("", lit(f"({hint['caveat']})", palette["muted"])))
    unknown = diagnosis.get("unknown")
    if isinstance(unknown, dict):
        for role in ("client", "server"):
            names = unknown.get(role) or []
            if names:
                add(
                    "unknown names",
                    {"reason": f"{role}: " + ", ".join(str(n) for n in names)},
                    "weak",
                )
    return facts_table(rows, palette) if rows else None


def recipe_prompts(recipes: Sequence[dict[str, Any]], palette: Palette) -> list[RenderableType]:
    """Each recipe as an option: its numbered heading and grade, then the steps, the
    warnings and the reach, labelled in one column for the whole list, a long value
    wrapping under itself."""
    rows = [_recipe_rows(recipe, palette) for recipe in recipes]
    width = max((label.cell_len for found in rows for label, _value in found), default=1)
    out: list[RenderableType] = []
    for number, (recipe, found) in enumerate(zip(recipes, rows, strict=True), 1):
        grade = recipe.get("grade")
        head = lit(f"{recipe.get('rank') or number}. {recipe_heading(recipe)}", "bold")
        head.append(f" ({printable(str(grade))})", _grade_style(grade, palette))
        head.end = "\n"
        table = Table.grid(padding=(0, 1), expand=True)
        table.add_column(width=1)  # the steps stand in from the heading
        table.add_column(style=palette["muted"], width=min(width, MAX_LABEL), overflow="fold")
        table.add_column(ratio=1, overflow="fold")
        for label, value in found:
            table.add_row("", label, value)
        out.append(Group(head, table))
    return out


def _recipe_rows(recipe: dict[str, Any], palette: Palette) -> list[tuple[Text, Text]]:
    """Label and value of each line under a recipe's heading; labels are Text too, since a
    plain string in a table cell would be read as markup."""
    rows: list[tuple[Text, Text]] = []
    command = recipe.get("command")
    for step in recipe.get("steps") or []:
        kind = step.get("kind")
        if command and kind in IN_COMMAND:
            continue  # the command below carries it, ready to run
        # A note or an upgrade says in its own words what to do; other kinds name the place.
        label = STEP_LABEL.get(str(kind), str(kind))
        where = f"{step.get('side')}" if kind in PROSE else f"{step.get('side')}, {label}"
        rows.append((lit(where), _lines(str(step.get("text")), palette["accent"])))
    if command:
        rows.append((Text("client, run"), _lines(str(command), palette["accent"])))
    for warning in strings(recipe.get("warnings")):
        rows.append((Text("⚠", palette["warn"]), lit(str(warning), palette["warn"])))
    if recipe.get("scope"):
        rows.append((Text("reach"), lit(str(recipe["scope"]), palette["muted"])))
    return rows


def _lines(text: str, style: Style) -> Text:
    """Untrusted text of several lines (a Host block): each line literal, the breaks kept."""
    return Text("\n", end="").join(lit(line, style) for line in text.split("\n"))
