"""Writes the compiled JSON twin of every TOML data file (see the package docstring)."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

from kexproxy.core.data import compiled_name


def main() -> int:
    folder = Path(__file__).resolve().parent
    out = folder / "compiled"
    out.mkdir(exist_ok=True)
    wanted = set()
    for toml in sorted(folder.rglob("*.toml")):
        raw = toml.read_bytes()
        name = compiled_name(raw)
        wanted.add(name)
        text = json.dumps(tomllib.loads(raw.decode("utf-8")), ensure_ascii=False, sort_keys=True)
        (out / name).write_text(text + "\n", encoding="utf-8")
    for stale in out.glob("*.json"):
        if stale.name not in wanted:
            stale.unlink()
    print(f"{len(wanted)} compiled data files in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
