"""The session record: its JSON form, timestamps, and the schema it must satisfy."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexproxy.core.diagnosis import diagnosed
from kexproxy.core.record import OUTCOMES, SCHEMA, SessionRecord, parse_rfc3339, rfc3339
from tests.builders import (
    Transcript,
    assert_valid_record,
    client_offer,
    ident,
    kexinit,
    offer,
    schema_errors,
)


def test_rfc3339_is_utc_with_microseconds() -> None:
    assert rfc3339(0.0) == "1970-01-01T00:00:00.000000Z"
    assert rfc3339(1_700_000_000.25) == "2023-11-14T22:13:20.250000Z"
    assert rfc3339(None) is None


@pytest.mark.parametrize("ts", [1e20, -1e20, float("inf"), float("nan")])
def test_a_timestamp_that_is_no_date_is_null(ts: float) -> None:
    assert rfc3339(ts) is None


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=4_000_000_000 * 10**6))
def test_parse_rfc3339_inverts_rfc3339(micros: int) -> None:
    ts = micros / 10**6
    text = rfc3339(ts)
    assert text is not None
    assert abs(parse_rfc3339(text) - ts) < 1e-5
    assert rfc3339(parse_rfc3339(text)) == text


def _record() -> SessionRecord:
    t = Transcript()
    t.server(ident() + kexinit(offer())).client(ident() + kexinit(client_offer(ciphers=["x"])))
    return diagnosed(t.tracker.record())


def test_to_dict_leads_with_the_schema_and_omits_absent_extras() -> None:
    record = _record()
    data = record.to_dict()
    assert next(iter(data)) == "schema" and data["schema"] == SCHEMA
    assert "policy" not in data
    assert record.failing_lists == [f["list"] for f in record.failures]
    assert record.failing_lists[0] == "encryption_algorithms_server_to_client"
    assert_valid_record(record)


def test_from_dict_round_trips_through_json_and_ignores_unknown_fields() -> None:
    record = _record()
    data: dict[str, Any] = json.loads(json.dumps(record.to_dict()))
    data["field_added_later"] = {"x": 1}
    assert SessionRecord.from_dict(data) == record


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("outcome",), "maybe"),
        (("schema",), "kexproxy/session/2"),
        (("client", "port"), 70000),
        (("started",), "yesterday"),
        (("source",), "tap"),
        (("failures",), "none"),
    ],
)
def test_the_schema_refuses_what_the_contract_forbids(path: tuple[str, ...], value: Any) -> None:
    data = json.loads(json.dumps(_record().to_dict()))
    assert schema_errors(data) == []
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert schema_errors(data)


def test_the_schema_requires_the_documented_fields() -> None:
    data = json.loads(json.dumps(_record().to_dict()))
    for field in ("evidence", "rejections", "notes", "outcome", "bytes"):
        missing = {k: v for k, v in data.items() if k != field}
        assert any(field in e for e in schema_errors(missing)), field


def test_outcomes_are_the_documented_six() -> None:
    """Five for a session that ended, and in_progress for the proxy's first live row."""
    assert OUTCOMES == ("negotiated", "failed", "aborted", "incomplete", "not_ssh", "in_progress")
