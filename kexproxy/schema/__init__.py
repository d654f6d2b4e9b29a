"""The JSON Schema of the session record, shipped in the package so tools can validate output."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def session_record_schema() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("session-record.schema.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data
