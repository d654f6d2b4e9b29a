"""The report `kexproxy explain` prints of one record, laid out with Rich.

The report puts the two offers side by side per name-list with the chosen entry and the
names the other side lacks marked, quotes each side's rejection in OpenSSH's words, lists
the fixes with what they cost, and ends with the security verdicts. Everything comes from
the record's ``diagnosis`` (computed in the core); this module only lays it out, escaping
every string that came from the wire.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from kexproxy.core.lists import DIRECTIONAL_PAIRS, NEGOTIATED, NameList
from kexproxy.core.record import JSONDict, SessionRecord
from kexproxy.core.textsafe import printable
from kexproxy.present import STEP_LABEL, list_label
from kexproxy.present_tls import name_grade

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.text import Text

#: Names shown per side of a list; a fuzzer's 1000-name list would bury the report.
MAX_SHOWN = 40
#: Characters of one unbroken run (a banner, a name, an option line) shown before it is cut:
#: room for any real algorithm name or ssh -o option, not for a 7,000-character banner
#: quoted in three places. The JSON (--json) always keeps the whole value.
MAX_RUN = 300
#: Characters of one line shown before it is cut: OpenSSH's own rejection line (at most
#: 1021 characters, some escaped) fits whole.
MAX_LINE = 1500
GRADE_STYLE = {
    "strong": "bold green",
    "good": "green",
    "weak": "yellow",
    "broken": "bold red",
    "unknown": "magenta",
    "marker": "dim italic",
}
#: The styles of present_tls's tones.
TONE_STYLE = {"bad": "bold red", "warn": "yellow", "muted": "dim", "plain": ""}


# -- the report ------------------------------------------------------------------------------


def _t(text: object, style: str = "", *, run: int = MAX_RUN) -> Text:
    """Wire text made safe: every control shown as an escape (a newline too: a stranger's
    text must not forge lines of the report), long runs cut (`_cut`); a Text is never
    parsed as markup."""
    from rich.text import Text

    return Text(_cut(printable(str(text)), run), style=style)


def _cut(shown: str, run: int = MAX_RUN) -> str:
    """`shown` with each unbroken run over `run` characters, and the whole over `MAX_LINE`,
    cut where the report can afford it, saying how long it was and where the rest is."""
    if len(shown) > run:
        shown = re.sub(rf"\S{{{run + 1},}}", lambda m: _shortened(m.group(), run), shown)
    if len(shown) > MAX_LINE:
        shown = _shortened(shown, MAX_LINE, " in all")
    return shown


def _shortened(text: str, keep: int, scope: str = "") -> str:
    return f"{text[:keep]}... ({len(text):,} characters{scope}; the full value is in --json)"


def _block(text: str, prefix: str = "", style: str = "") -> Text:
    """One of our own multi-line forms (an ssh_config block), line by line, each made safe."""
    from rich.text import Text

    return Text("\n".join(prefix + _cut(printable(line)) for line in text.split("\n")), style=style)


def report(record: SessionRecord, index: int) -> list[RenderableType]:
    """The renderables explaining one record, top to bottom."""
    from rich.rule import Rule

    from kexproxy.present import endpoint
    from kexproxy.sinks.console import OUTCOME_STYLE

    diagnosis = record.diagnosis or {}
    title = _t(f"#{index} {endpoint(record.client)} -> {endpoint(record.server)}  ", "bold")
    title.append(record.outcome, style=OUTCOME_STYLE.get(record.outcome, ""))
    parts: list[RenderableType] = [Rule(title)]
    parts.append(
        _t(f"capture {record.capture or '-'}   id {record.id}   started {record.started}", "dim")
    )
    if record.protocol == "tls":
        return parts + _tls_report(record, diagnosis)
    for role in ("client", "server"):
        banner = record.client_banner if role == "client" else record.server_banner
        line = _t(f"{role} banner: ", "bold")
        logged = record.server_software if role == "server" else None
        line.append_text(_t(banner or (f"(none; its log shows {logged})" if logged else "(none)")))
        parts.append(line)
    if record.failures or diagnosis.get("recipes") or diagnosis.get("real_fix"):
        parts += _recipes(diagnosis)
    if record.client_kexinit or record.server_kexinit:
        parts.append(_offers_table(record))
    parts += _rejections(record)
    if record.failures:
        parts += _fixes(diagnosis)
    parts += _verdicts(record, diagnosis)
    for note in record.notes:
        parts.append(_t(f"note: {note}", "dim"))
    return parts


def _names_text(names: list[str], other: set[str], chosen: str | None, rfc_list: str) -> Text:
    from rich.text import Text

    from kexproxy.core.catalogue import catalogue

    cat = catalogue()
    text = Text()
    for i, name in enumerate(names[:MAX_SHOWN]):
        if i:
            text.append("\n")
        algorithm = cat.lookup_in_list(name, rfc_list)
        grade = "unknown" if algorithm is None else (algorithm.grade or "marker")
        style = GRADE_STYLE[grade]
        if name == chosen:
            text.append_text(_t(f"[{name}]", f"{style} bold reverse"))
        elif name not in other and grade != "marker":
            text.append_text(_t(f"{name}*", f"{style} dim"))
        else:
            text.append_text(_t(name, style))
    if len(names) > MAX_SHOWN:
        text.append(f"\n... {len(names) - MAX_SHOWN} more", style="dim")
    if not names:
        text.append("(empty)", style="dim")
    return text


def _chosen(negotiated: JSONDict, entry: NameList) -> Any:
    """The name chosen for a list, if any: the language lists have none to look up."""
    return negotiated.get(entry.field) if entry.field else None


def _offers_table(record: SessionRecord) -> RenderableType:
    from rich.table import Table

    client = record.client_kexinit or {}
    server = record.server_kexinit or {}
    negotiated = record.negotiated or {}
    failing = set(record.failing_lists)
    table = Table(
        title=_t("offers: [chosen], name* = the other side lacks it, colour = grade", "italic"),
        show_lines=True,
        expand=True,
    )
    table.add_column("list", style="bold", no_wrap=True)
    table.add_column("client offers", ratio=2, overflow="fold")
    table.add_column("server offers", ratio=2, overflow="fold")
    table.add_column("chosen", ratio=1, min_width=10, overflow="fold")
    rows: list[tuple[str, NameList]] = [(n.label, n) for n in NEGOTIATED if n.direction == "both"]
    # A pair of lists is one row when both directions carry the same names on both sides.
    for c2s, s2c, kind in DIRECTIONAL_PAIRS:
        same = client.get(c2s.rfc) == client.get(s2c.rfc)
        same = same and server.get(c2s.rfc) == server.get(s2c.rfc)
        same = same and _chosen(negotiated, c2s) == _chosen(negotiated, s2c)
        same = same and ((c2s.rfc in failing) == (s2c.rfc in failing))
        if same:
            rows.append((kind.label, c2s))
        else:
            rows += [(c2s.label, c2s), (s2c.label, s2c)]
    for label, entry in rows:
        rfc = entry.rfc
        c_names = [n for n in client.get(rfc, []) if isinstance(n, str)]
        s_names = [n for n in server.get(rfc, []) if isinstance(n, str)]
        chosen = _chosen(negotiated, entry)
        if rfc in failing:
            chosen_text = _t("no match", "bold red")
        elif chosen is None:
            chosen_text = _t("-", "dim")
        else:
            chosen_text = _t(chosen, "bold")
        table.add_row(
            label,
            _names_text(c_names, set(s_names), chosen, rfc),
            _names_text(s_names, set(c_names), chosen, rfc),
            chosen_text,
        )
    return table


def _rejections(record: SessionRecord) -> list[RenderableType]:
    from kexproxy.present import native_words

    out: list[RenderableType] = []
    for role in ("client", "server"):
        rejection = record.rejections.get(role)
        if rejection:
            line = _t(f"{role} rejects: ", "bold red")
            line.append_text(_t(rejection["message"], run=MAX_LINE))
            out.append(line)
            words = native_words(record, role)
            if words is not None:
                native = _t(f"{role} ({words[0]}) says: ", "bold red")
                native.append_text(_t(words[1], run=MAX_LINE))
                out.append(native)
    evidence = record.evidence
    if record.outcome in ("failed", "aborted") and evidence.get("first_close"):
        out.append(
            _t(f"closed first by the {evidence['first_close']} ({evidence.get('how')})", "dim")
        )
    for dis in evidence.get("disconnects", []):
        out.append(
            _t(f"DISCONNECT from the {dis['sender']}: {dis['reason']}: {dis['description']}", "dim")
        )
    if evidence.get("banner_error"):
        out.append(_t(f"refused before the banner: {evidence['banner_error']}", "red"))
    return out


def _recipes(diagnosis: JSONDict) -> list[RenderableType]:
    """Each recipe as a block: a heading naming the side and its software, then the steps.

    Not a table: the steps are what the engineer copies, so each is printed whole on its
    own lines (never folded into a narrow column, never cut at 80 columns).
    """
    from rich.rule import Rule

    from kexproxy.present import recipe_heading

    out: list[RenderableType] = [
        Rule(_t("what to change: each recipe alone fixes it, strongest first", "bold"), style="dim")
    ]
    recipes: list[JSONDict] = diagnosis.get("recipes") or []
    notes: list[str] = []
    for recipe in recipes:
        grade = str(recipe.get("grade"))
        head = _t(f"{recipe.get('rank')}. {recipe_heading(recipe)}", "bold")
        head.append_text(_t(f"  [{grade}]", GRADE_STYLE.get(grade, "")))
        out.append(head)
        for step in recipe.get("steps") or []:
            if recipe.get("command") and step.get("kind") in ("ssh_option", "dbclient_option"):
                continue  # the command below carries them, ready to run
            label = STEP_LABEL.get(str(step.get("kind")), str(step.get("kind")))
            out.append(_t(f"   {step.get('side')}, {label}:", "dim"))
            out.append(_block(str(step.get("text")), "     "))
        if recipe.get("command"):
            out.append(_t("   client, run:", "dim"))
            out.append(_block(str(recipe["command"]), "     "))
        persist = recipe.get("persist")
        if isinstance(persist, dict):
            out.append(_t("   or keep it for this server in ~/.ssh/config:", "dim"))
            out.append(_block(str(persist.get("text")), "     "))
        for warning in recipe.get("warnings") or []:
            out.append(_t(f"   ! {warning}", "yellow"))
        if recipe.get("scope"):
            out.append(_t(f"   reach: {recipe['scope']}", "dim"))
        notes += [n for n in recipe.get("notes") or [] if n not in notes]
    for note in notes:
        out.append(_t(note, "dim"))
    if not recipes:
        out.append(_t("no recipe: the sides share nothing either could add", "bold red"))
    for advice in diagnosis.get("real_fix") or []:
        out.append(_t(advice, "bold"))
    return out


def _fixes(diagnosis: JSONDict) -> list[RenderableType]:
    """Per failing list, the names each side could add, ranked: the detail under the recipes."""
    from rich.rule import Rule

    fixes: list[JSONDict] = diagnosis.get("fixes") or []
    if not fixes:
        return []
    out: list[RenderableType] = [
        Rule(
            _t("per list: names each side could add (the other side offers them)", "bold"),
            style="dim",
        )
    ]
    for fix in fixes:
        grade = str(fix.get("grade"))
        style = GRADE_STYLE.get(grade, "")
        head = _t(f"{list_label(str(fix.get('list')))} #{fix.get('rank')}: {fix['side']} adds ")
        head.append_text(_t(str(fix["add"]), f"{style} bold"))
        head.append_text(
            _t(f"  {grade}" + (", post-quantum" if fix.get("post_quantum") else ""), style)
        )
        if fix.get("reason"):
            head.append_text(_t(f"  ({fix['reason']})", "dim"))
        out.append(head)
    return out


def _verdicts(record: SessionRecord, diagnosis: JSONDict) -> list[RenderableType]:
    from rich.rule import Rule

    out: list[RenderableType] = [Rule(_t("security verdicts", "bold"), style="dim")]
    grade = diagnosis.get("grade")
    line = _t("negotiated set: ", "bold")
    line.append_text(
        _t(
            grade or "not graded (nothing complete was negotiated)",
            GRADE_STYLE.get(grade or "", ""),
        )
    )
    out.append(line)
    for reason in diagnosis.get("reasons") or []:
        out.append(_t(f"  - {reason}"))
    terrapin = diagnosis.get("terrapin") or {}
    exposed = terrapin.get("exposed")
    word = "exposed" if exposed else "not exposed" if exposed is False else "n/a"
    out.append(
        _labelled("Terrapin", f"{word}: {terrapin.get('reason')}", "bold red" if exposed else "")
    )
    pq = diagnosis.get("post_quantum") or {}
    pq_word = (
        "yes" if pq.get("post_quantum") else "no" if pq.get("post_quantum") is False else "n/a"
    )
    out.append(_labelled("post-quantum kex", f"{pq_word}: {pq.get('reason')}", ""))
    warns = pq.get("openssh_warning")
    if isinstance(warns, bool):  # None: no OpenSSH client would have got this far
        word = "would warn" if warns else "no warning"
        out.append(
            _labelled(
                "OpenSSH 10.1+ client",
                f"{word}: {pq.get('openssh_warning_reason')}",
                "yellow" if warns else "",
            )
        )
        if warns and pq.get("openssh_warning_text"):
            out.append(_block(str(pq["openssh_warning_text"]), "    "))
    for key, label in (("host_key_size", "host key"), ("dh_gex", "DH group exchange")):
        verdict = diagnosis.get(key)
        if verdict:
            text = f"{verdict.get('grade') or 'n/a'}: {verdict.get('reason')}"
            request = verdict.get("request")
            if isinstance(request, dict):
                text += f" (client asked min {request.get('min')}, n {request.get('n')}, max {request.get('max')})"
            for note in verdict.get("notes") or []:
                text += f"; {note}"
            out.append(_labelled(label, text, GRADE_STYLE.get(str(verdict.get("grade")), "")))
    hints = diagnosis.get("version_hint") or {}
    for role in ("client", "server"):
        hint = hints.get(role)
        if hint:
            out.append(_labelled(f"{role} lists", hint.get("text", ""), ""))
    if hints.get("caveat"):
        out.append(_t(f"  (version hints: {hints['caveat']})", "dim"))
    unknown = diagnosis.get("unknown") or {}
    for role in ("client", "server"):
        names = unknown.get(role) or []
        if names:
            out.append(_labelled(f"unknown to the catalogue ({role})", ", ".join(names), "magenta"))
    policy = record.policy
    if policy:
        if not policy.get("evaluated"):
            out.append(
                _labelled(
                    f"policy {policy.get('name')}", f"not evaluated: {policy.get('reason')}", "dim"
                )
            )
        elif policy.get("compliant"):
            out.append(_labelled(f"policy {policy.get('name')}", "compliant", "green"))
        else:
            out.append(_labelled(f"policy {policy.get('name')}", "violated", "bold red"))
            for violation in policy.get("violations", []):
                out.append(_t(f"  - {violation['message']}", "red"))
    return out


def _labelled(label: str, text: str, style: str) -> Text:
    line = _t(f"{label}: ", "bold")
    line.append_text(_t(text, style))
    return line


# -- a TLS record ----------------------------------------------------------------------------


def _tls_report(record: SessionRecord, diagnosis: JSONDict) -> list[RenderableType]:
    """A TLS handshake: the hellos, the recipes, the offers beside the choices, then the
    alerts, the rejection, the evidence and the facts (present_tls words them all)."""
    from rich.rule import Rule

    from kexproxy import present_tls as tls

    parts: list[RenderableType] = [
        _labelled("client", tls.client_line(record), ""),
        _labelled("server", tls.server_line(record), ""),
    ]
    if record.failures or diagnosis.get("recipes") or diagnosis.get("real_fix"):
        parts += _recipes(diagnosis)
    if record.client_hello:
        parts.append(_tls_offers(record))
    for line, tone in tls.event_lines(record):
        parts.append(_t(line, TONE_STYLE[tone], run=MAX_LINE))
    for title, rows in tls.fact_sections(record):
        parts.append(Rule(_t(title, "bold"), style="dim"))
        parts += [_labelled(label, value, "") for label, value in rows]
    parts.append(Rule(_t("security verdicts", "bold"), style="dim"))
    grade = diagnosis.get("grade")
    shown = grade or "not graded (nothing complete was negotiated)"
    parts.append(_labelled("negotiated set", shown, GRADE_STYLE.get(grade or "", "")))
    parts += [_t(f"  - {reason}") for reason in diagnosis.get("reasons") or []]
    for label, grade, why in tls.part_rows(diagnosis):
        parts.append(_labelled(f"  {label}", f"{grade}: {why}", GRADE_STYLE.get(grade, "")))
    pq = tls.post_quantum_line(diagnosis)
    if pq:
        parts.append(_labelled("post-quantum key exchange", pq, ""))
    return parts + [_t(f"note: {note}", "dim") for note in record.notes]


def _tls_offers(record: SessionRecord) -> RenderableType:
    from rich.table import Table
    from rich.text import Text

    from kexproxy.present_tls import offer_rows

    table = Table(
        title=_t("offers: [chosen], colour = grade, 'refused' = the list a side refused", "italic"),
        show_lines=True,
        expand=True,
    )
    table.add_column("list", style="bold", no_wrap=True)
    table.add_column("client offers", ratio=3, overflow="fold")
    table.add_column("server chose", ratio=2, min_width=10, overflow="fold")
    for row in offer_rows(record):
        names = Text()
        for i, name in enumerate(row.client[:MAX_SHOWN]):
            style = GRADE_STYLE.get(name_grade(row.graded_as, name) or "", "")
            names.append("\n" if i else "")
            shown = (
                _t(f"[{name}]", f"{style} bold reverse") if name == row.chosen else _t(name, style)
            )
            names.append_text(shown)
        if len(row.client) > MAX_SHOWN:
            names.append(f"\n... {len(row.client) - MAX_SHOWN} more", style="dim")
        if not row.client:
            names.append("(none)", style="dim")
        if row.refused:
            choice = _t("refused", "bold red")
        elif row.chosen is None:
            choice = _t("-", "dim")
        else:
            grade = name_grade(row.graded_as, row.chosen) or ""
            choice = _t(row.chosen, f"{GRADE_STYLE.get(grade, '')} bold")
        table.add_row(row.label, names, choice)
    return table
