"""The tables of `read` and `sessions`: nothing cut off at any width, strangers' text inert."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from kexproxy.commands.sessions import sessions_table as stored_table
from kexproxy.core.record import SessionRecord
from kexproxy.pipeline import capture_records
from kexproxy.present import summary, verdict_line
from kexproxy.sinks.console import SOFTWARE_MIN_WIDTH, sessions_table
from kexproxy.sinks.store import StoredSession

CAPTURES = Path(__file__).resolve().parents[2] / "captures"


@pytest.fixture(scope="module")
def records() -> list[SessionRecord]:
    out: list[SessionRecord] = []
    for path in sorted(CAPTURES.glob("*.pcap")):
        out += capture_records(str(path))
    return out


def render(table: object, width: int) -> list[str]:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, highlight=False).print(table)
    return buffer.getvalue().splitlines()


def detail_column(lines: list[str]) -> list[str]:
    """The text of the last column, row by row (rows are separated by blank lines)."""
    header = next(line for line in lines if "detail / verdict" in line)
    start = header.index("detail / verdict")
    body = lines[lines.index(header) + 2 :]
    rows: list[str] = []
    current: str | None = None
    for line in body:
        if not line.strip():
            if current is not None:
                rows.append(current)
            current = None
            continue
        current = (current or "") + line[start:].strip()
    if current is not None:
        rows.append(current)
    return rows


def squeezed(text: str) -> str:
    return "".join(text.split())


@pytest.mark.parametrize("width", [60, 79, 80, 100, 160])
def test_the_read_table_folds_and_never_crops(records: list[SessionRecord], width: int) -> None:
    lines = render(sessions_table(records, width=width), width)
    assert all(len(line) <= width for line in lines)
    shown = detail_column(lines)
    assert len(shown) == len(records)
    for record, text in zip(records, shown, strict=True):
        assert squeezed(text) == squeezed(summary(record) + verdict_line(record))
    everything = "\n".join(lines)
    for record in records:
        assert f"{record.client['ip']}:{record.client['port']}" in everything
    assert any("software" in line for line in lines[:5]) == (width >= SOFTWARE_MIN_WIDTH)


@pytest.mark.parametrize("width", [80, 99, 100, 120, 160])
def test_no_algorithm_name_is_split_from_80_columns(
    records: list[SessionRecord], width: int
) -> None:
    """A name folded across two lines reads as two names and cannot be searched for."""
    everything = "\n".join(render(sessions_table(records, width=width), width))
    lines = everything.splitlines()
    names = {  # what the detail shows of a working session: its kex and cipher
        str((record.negotiated or {}).get(key))
        for record in records
        for key in ("kex", "cipher_c2s")
        if (record.negotiated or {}).get(key)
    }
    for record in records:  # the top recipe's names: the verdict shows that one
        if record.protocol == "tls":
            continue  # TLS verdicts count long names ("add 4 cipher suites"): test_tls_*
        recipes = (record.diagnosis or {}).get("recipes") or [{}]
        names |= {str(add.get("name")) for add in recipes[0].get("adds") or []}
    assert "diffie-hellman-group-exchange-sha256" in names
    assert "sntrup761x25519-sha512@openssh.com" in names
    for name in names:
        shown = sum(line.count(name) for line in lines)
        assert shown >= 1, (name, width)


@pytest.mark.parametrize("width", [80, 99, 100, 160])
def test_the_sessions_table_folds_and_never_crops(records: list[SessionRecord], width: int) -> None:
    rows = [StoredSession(record=r, final=i % 2 == 0) for i, r in enumerate(records)]
    lines = render(stored_table(rows, width=width), width)
    assert all(len(line) <= width for line in lines)
    shown = detail_column(lines)
    assert len(shown) == len(records)
    for record, text in zip(records, shown, strict=True):
        assert squeezed(text) == squeezed(summary(record) + verdict_line(record))
    everything = "".join(lines)
    assert all(r.id in everything for r in records)
    assert everything.count("(live)") == len(records) // 2
    assert any("software" in line for line in lines[:5]) == (width >= 100)


def test_every_outcome_has_a_style_and_is_in_the_schema() -> None:
    """A new outcome (in_progress was one) is styled everywhere and valid in records."""
    from kexproxy.core.record import OUTCOMES
    from kexproxy.schema import session_record_schema
    from kexproxy.sinks.console import OUTCOME_STYLE

    assert set(OUTCOME_STYLE) == set(OUTCOMES)
    assert session_record_schema()["properties"]["outcome"]["enum"] == list(OUTCOMES)
