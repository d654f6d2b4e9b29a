"""Rich renderables for a TLS session's detail: the client's offer beside the server's choice,
the alerts and rejection, the certificate and fingerprints, the graded parts.

The words come from `kexproxy.present_tls`, as `explain` prints them; every string from the
wire (SNI, ALPN, certificate names) goes through `render.lit`, never through markup.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.style import Style
from rich.table import Table
from rich.text import Text

from kexproxy import present_tls
from kexproxy.core.record import SessionRecord
from kexproxy_tui.palette import GRADE_ROLE, Palette, Role
from kexproxy_tui.render import CHOSEN, MARKER, MAX_OFFER_ROWS, facts_table, lit

#: The palette role of each of present_tls's tones.
TONE_ROLE: dict[str, Role] = {"bad": "bad", "warn": "warn", "muted": "muted", "plain": "plain"}


def _grade_style(grade: str | None, palette: Palette) -> Style:
    if grade == "marker":
        return palette["muted"]
    return palette[GRADE_ROLE.get(str(grade), "plain")]


def offers_legend(palette: Palette) -> Text:
    return Text.assemble(
        (CHOSEN, palette["chosen"]),
        " the server's choice   ",
        (MARKER, palette["muted"]),
        " signalling value, never chosen   colour = grade",
    )


def offers(record: SessionRecord, palette: Palette) -> RenderableType:
    """The ClientHello list by list: the client's offer on the left, the server's choice on
    the right (or that it refused the list)."""
    rows = present_tls.offer_rows(record)
    if not record.client_hello:
        return Text("no ClientHello seen", palette["muted"])
    parts: list[RenderableType] = [offers_legend(palette)]
    blank = Text("")
    for row in rows:
        title = Text()
        title.append(row.label, "bold")
        if row.refused:
            title.append("  refused", palette["bad"])
        table = Table(
            box=None,
            expand=True,
            show_header=True,
            header_style=palette["muted"],
            padding=(0, 1, 0, 0),
            pad_edge=False,
        )
        table.add_column("", width=1, no_wrap=True)
        table.add_column(f"client offers ({len(row.client)})", ratio=1, overflow="fold")
        table.add_column("server chose", ratio=1, overflow="fold")
        choice = _choice(row, palette)
        for i, name in enumerate(row.client[:MAX_OFFER_ROWS]):
            grade = present_tls.name_grade(row.graded_as, name)
            mark = Text(" ")
            if name == row.chosen:
                mark = Text(CHOSEN, palette["chosen"])
            elif grade == "marker":
                mark = Text(MARKER, palette["muted"])
            table.add_row(
                mark, lit(name, _grade_style(grade, palette)), choice if i == 0 else blank
            )
        if len(row.client) > MAX_OFFER_ROWS:
            more = f"… {len(row.client) - MAX_OFFER_ROWS} more, not shown (the export has them all)"
            table.add_row(blank, Text(more, palette["muted"]), blank)
        if not row.client:
            table.add_row(blank, Text("(none)", palette["muted"]), choice)
        parts.extend([blank, title, table])
    return Group(*parts)


def _choice(row: present_tls.OfferRow, palette: Palette) -> Text:
    if row.refused:
        return Text("refused", palette["bad"])
    if row.chosen is None:
        return Text("-", palette["muted"])
    grade = present_tls.name_grade(row.graded_as, row.chosen)
    return lit(row.chosen, _grade_style(grade, palette) + Style(bold=True))


def events(record: SessionRecord, palette: Palette) -> Text:
    """The HelloRetryRequest, the alerts, the rejection and how sure, who closed first."""
    out = Text(end="")
    lines = present_tls.event_lines(record)
    for i, (line, tone) in enumerate(lines):
        if i:
            out.append("\n")
        out.append_text(lit(line, palette[TONE_ROLE[tone]]))
    if not lines:
        out.append("no alert, no rejection", palette["muted"])
    return out


def facts(record: SessionRecord, palette: Palette) -> Table:
    """The certificate, JA3/JA3S/JA4, bytes and notes."""
    rows: list[tuple[str, Text]] = []
    for title, found in present_tls.fact_sections(record):
        prefix = "cert " if title.startswith("certificate") else ""
        rows += [(prefix + label, lit(value)) for label, value in found]
    if record.certificate is None:
        rows.insert(0, ("certificate", Text("not seen in clear", palette["muted"])))
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


def verdicts(diagnosis: dict[str, Any], palette: Palette) -> Table | None:
    """Each graded part of the negotiated set and the post-quantum verdict."""
    rows: list[tuple[str, Text]] = [
        (label, lit(f"{grade}: {why}", _grade_style(grade, palette)))
        for label, grade, why in present_tls.part_rows(diagnosis)
    ]
    pq = present_tls.post_quantum_line(diagnosis)
    if pq:
        rows.append(("post-quantum", lit(pq)))
    return facts_table(rows, palette) if rows else None
