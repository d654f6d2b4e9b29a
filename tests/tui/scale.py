"""10,000 real-looking sessions for the scale test: the real pipeline over real captures,
then copies with other ids, client addresses, ports and start times."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from kexproxy.core.record import SessionRecord, parse_rfc3339, rfc3339
from kexproxy.pipeline import capture_records

from .conftest import CAPTURES, DASHBOARD_PCAP, PUBLIC


def seed_records() -> list[SessionRecord]:
    """Every SSH session in the bundled captures (public, captures/, the dashboard's own)."""
    paths = [
        DASHBOARD_PCAP,
        *sorted(CAPTURES.glob("*.pcap")),
        *sorted(p for p in PUBLIC.glob("*.pcap*") if "ssh" in p.name),
    ]
    out: list[SessionRecord] = []
    for path in paths:
        out.extend(capture_records(str(path)))
    return out


def many(
    seed: list[SessionRecord], count: int, *, start: float = 1_790_000_000.0
) -> list[SessionRecord]:
    """`count` sessions cycling through `seed`, one every 0.25 s, each from its own client."""
    out: list[SessionRecord] = []
    for i in range(count):
        base = seed[i % len(seed)]
        began = start + i * 0.25
        length = 0.0
        if base.started and base.ended:
            length = max(0.0, parse_rfc3339(base.ended) - parse_rfc3339(base.started))
        out.append(
            replace(
                base,
                id=f"{base.id[:8]}{i:08x}",
                client={
                    "ip": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
                    "port": 1024 + i % 60000,
                },
                started=rfc3339(began),
                ended=rfc3339(began + length),
            )
        )
    return out


def write_store(path: Path, records: list[SessionRecord]) -> None:
    from kexproxy.sinks.store import SessionStore, row_of

    store = SessionStore.open(path)
    try:
        store.put_rows([row_of(r, final=True) for r in records])
    finally:
        store.close()
