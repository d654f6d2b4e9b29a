"""The README's field table for JSON-lines consumers: generated from the schema, and its
"present" column held to the records kexproxy really writes (every bundled capture, SSH and
TLS, and a record from an sshd log line)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from kexproxy.schema import session_record_schema
from kexproxy.schema.fields import PRESENT, markdown_table

REPO = Path(__file__).resolve().parents[1]
LOG_LINE = (
    "Dec  7 10:00:01 web1 sshd[1234]: Unable to negotiate with 127.0.0.1 port 50022: no "
    "matching key exchange method found. Their offer: diffie-hellman-group1-sha1 [preauth]\n"
)


def _records(*argv: str, stdin: str | None = None) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "kexproxy", *argv, "--json"],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.split("\n") if line]


def test_the_readme_holds_the_generated_table() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- fields:begin -->\n", 1)[1].split("<!-- fields:end -->", 1)[0]
    assert block == markdown_table(), "regenerate it: python -m kexproxy.schema"


def test_every_field_says_what_it_is_and_when_it_is_there() -> None:
    for name, prop in session_record_schema()["properties"].items():
        assert prop.get("description", "").strip(), name
        assert prop.get("x-present") in PRESENT, name


def test_the_present_column_is_what_real_records_hold() -> None:
    captures = sorted(str(p.relative_to(REPO)) for p in (REPO / "captures").glob("*.pcap"))
    records = _records("read", *captures) + _records("logs", "-", stdin=LOG_LINE)
    protocols = {r["protocol"] for r in records}
    assert protocols == {"ssh", "tls"} and any(r["source"] == "log" for r in records)
    props = session_record_schema()["properties"]
    for record in records:
        assert set(record) <= set(props), set(record) - set(props)
        for name, prop in props.items():
            when = prop["x-present"]
            where = f"{name} in {record['id']}"
            if when == "always":
                assert name in record, where
            elif when == "tls":
                assert (name in record) == (record["protocol"] == "tls"), where
            elif when == "log":
                assert name not in record or record["source"] == "log", where
            else:
                assert name not in record, where  # --policy was not given
    logged = [r for r in records if r["source"] == "log"]
    assert all(r["server_host"] == "web1" for r in logged)
