"""The record's fields as a table for those who ingest JSON lines (a SIEM, a script): name,
type, when present, meaning, all read from the JSON Schema, so the README's table
(`python -m kexproxy.schema`) cannot drift from what is validated.

Each top-level property carries `description` and `x-present` (an annotation keyword, which
validators ignore): `always` (every record, null where it does not apply), `tls` (TLS records
only), `policy` (with --policy only), `log` (records from server logs only). Where a
property's shape depends on the protocol (the `allOf` branches), its type is the union.
"""

from __future__ import annotations

import json
from typing import Any, Final

from kexproxy.schema import session_record_schema

PRESENT: Final = {
    "always": "always",
    "tls": "TLS records",
    "policy": "with `--policy`",
    "log": "`log` records",
}


def type_text(prop: dict[str, Any]) -> str:
    """A short type: `string | null`, `"a" | "b"`, `array of object`, `object | null`."""
    if "const" in prop:
        return json.dumps(prop["const"])
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    if "anyOf" in prop:
        return " | ".join(dict.fromkeys(type_text(p) for p in prop["anyOf"]))
    kinds = prop.get("type")
    if kinds is None:
        return "object"
    names = [kinds] if isinstance(kinds, str) else list(kinds)
    out = []
    for name in names:
        if name == "array" and isinstance(prop.get("items"), dict):
            out.append(f"array of {type_text(prop['items'])}")
        else:
            out.append(name)
    return " | ".join(out)


def field_rows(schema: dict[str, Any] | None = None) -> list[tuple[str, str, str, str]]:
    """(field, type, present, meaning) for every top-level property, in the schema's order."""
    schema = session_record_schema() if schema is None else schema
    branches = [b for cond in schema.get("allOf", []) for b in (cond.get("then"), cond.get("else"))]
    rows = []
    for name, prop in schema["properties"].items():
        shapes = [b["properties"][name] for b in branches if b and name in b.get("properties", {})]
        kind = (
            " | ".join(dict.fromkeys(type_text(s) for s in shapes))
            if shapes and not ({"type", "anyOf", "enum", "const"} & prop.keys())
            else type_text(prop)
        )
        present = PRESENT[prop["x-present"]]
        meaning = " ".join(str(prop.get("description", "")).split())
        rows.append((name, kind, present, meaning))
    return rows


def markdown_table(schema: dict[str, Any] | None = None) -> str:
    """The rows as a Markdown table, `|` escaped inside cells."""
    lines = ["| field | type | present | meaning |", "|---|---|---|---|"]
    for row in field_rows(schema):
        cells = [f"`{row[0]}`", *row[1:]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
