"""Each TOML data file has its compiled JSON twin, and the twin says exactly what the TOML says."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from kexproxy.core.data import compiled_name, load_toml

DATA = Path(__file__).resolve().parents[2] / "kexproxy" / "core" / "data"


def test_every_toml_has_a_current_compiled_twin_equal_to_it() -> None:
    tomls = sorted(DATA.rglob("*.toml"))
    assert len(tomls) >= 15
    names = set()
    for toml in tomls:
        raw = toml.read_bytes()
        twin = DATA / "compiled" / compiled_name(raw)
        assert twin.exists(), f"{toml.name} changed: run `python -m kexproxy.core.data`"
        assert json.loads(twin.read_text("utf-8")) == tomllib.loads(raw.decode()), toml.name
        names.add(twin.name)
    stale = {p.name for p in (DATA / "compiled").glob("*.json")} - names
    assert not stale, "stale compiled files: run `python -m kexproxy.core.data`"


def test_an_edited_toml_without_its_twin_is_parsed_itself(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from kexproxy.core import data

    (tmp_path / "compiled").mkdir()
    (tmp_path / "x.toml").write_text('a = [1, 2]\nb = "c"\n')
    monkeypatch.setattr(data.resources, "files", lambda _package: tmp_path)
    assert load_toml("x.toml") == {"a": [1, 2], "b": "c"}
    (tmp_path / "compiled" / compiled_name((tmp_path / "x.toml").read_bytes())).write_text(
        '{"a": [1, 2], "b": "from the twin"}'
    )
    assert load_toml("x.toml")["b"] == "from the twin"
