"""Parsing the report channel's records: each type, and every way a record can be unusable."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from runwire.domain.agents import AgentEntry, EntryType, Usage
from runwire.runner.steps.report_records import (
    BAD_FIELD,
    NOT_JSON,
    RECORD_BYTES,
    TOO_LARGE,
    UNKNOWN_TYPE,
    ArtifactRecord,
    BadRecord,
    OutputRecord,
    SpanRecord,
    parse_record,
)


def parse(record: Any) -> Any:
    return parse_record(json.dumps(record).encode())


def refused(record: Any) -> BadRecord:
    line = record if isinstance(record, bytes) else json.dumps(record).encode()
    with pytest.raises(BadRecord) as caught:
        parse_record(line)
    return caught.value


def test_usage_with_every_field() -> None:
    found = parse(
        {
            "type": "usage",
            "model": "runwire-fake-1",
            "input_tokens": 1200,
            "output_tokens": 300,
            "cached_tokens": 200,
            "reasoning_tokens": 50,
            "cost_usd": 0.0123,
            "ttft_ms": 210.5,
            "duration_ms": 1500,
            "later_field": "ignored",
        }
    )
    assert found == Usage("runwire-fake-1", 1200, 300, 200, 50, 0.0123, 210.5, 1500.0)


def test_usage_with_only_the_token_counts() -> None:
    found = parse({"type": "usage", "input_tokens": 0, "output_tokens": 7})
    assert found == Usage(None, 0, 7)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"output_tokens": 1}, "usage.input_tokens"),
        ({"input_tokens": -1, "output_tokens": 1}, "usage.input_tokens"),
        ({"input_tokens": 1.5, "output_tokens": 1}, "usage.input_tokens"),
        ({"input_tokens": True, "output_tokens": 1}, "usage.input_tokens"),
        ({"input_tokens": "3", "output_tokens": 1}, "usage.input_tokens"),
        ({"input_tokens": 1, "output_tokens": 10**16}, "usage.output_tokens"),
        ({"input_tokens": 1, "output_tokens": 1, "cached_tokens": -2}, "usage.cached_tokens"),
        ({"input_tokens": 1, "output_tokens": 1, "cost_usd": -0.01}, "usage.cost_usd"),
        ({"input_tokens": 1, "output_tokens": 1, "cost_usd": "0.1"}, "usage.cost_usd"),
        ({"input_tokens": 1, "output_tokens": 1, "ttft_ms": False}, "usage.ttft_ms"),
        ({"input_tokens": 1, "output_tokens": 1, "model": ""}, "usage.model"),
        ({"input_tokens": 1, "output_tokens": 1, "model": 4}, "usage.model"),
    ],
)
def test_a_bad_usage_field_is_named(fields: dict[str, Any], named: str) -> None:
    bad = refused({"type": "usage", **fields})
    assert bad.problem == BAD_FIELD
    assert str(bad).startswith(f"{named}: ")


def test_a_number_json_cannot_hold_is_no_json() -> None:
    # A number too large for a double, or Python's NaN/Infinity, which are not JSON.
    for cost in (b"1e999", b"NaN", b"Infinity"):
        line = b'{"type":"usage","input_tokens":1,"output_tokens":1,"cost_usd":%s}' % cost
        assert refused(line).problem == NOT_JSON


def test_span_with_iso_times_ids_and_attributes() -> None:
    found = parse(
        {
            "type": "span",
            "name": "retrieve",
            "kind": "tool",
            "started_at": "2026-12-01T10:00:00+01:00",
            "finished_at": "2026-12-01T09:00:00.250Z",
            "status": "failed",
            "attributes": {"hits": 3},
            "id": "s2",
            "parent_id": "s1",
        }
    )
    assert found == SpanRecord(
        "retrieve",
        "tool",
        datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        datetime(2026, 12, 1, 9, 0, 0, 250000, tzinfo=UTC),
        "FAILED",
        {"hits": 3},
        "s2",
        "s1",
    )


def test_span_with_epoch_seconds_and_a_time_without_offset_as_utc() -> None:
    found = parse(
        {
            "type": "span",
            "name": "n",
            "kind": "k",
            "started_at": 1_800_000_000.5,
            "finished_at": "2027-01-15T08:00:01",
        }
    )
    assert isinstance(found, SpanRecord)
    assert found.started_at == datetime.fromtimestamp(1_800_000_000.5, UTC)
    assert found.finished_at == datetime(2027, 1, 15, 8, 0, 1, tzinfo=UTC)
    assert (found.status, found.attributes, found.id, found.parent_id) == (
        "SUCCEEDED",
        {},
        None,
        None,
    )


SPAN = {"type": "span", "name": "n", "kind": "k", "started_at": 10, "finished_at": 20}


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"name": None}, "span.name"),
        ({"kind": ""}, "span.kind"),
        ({"name": "x" * 201}, "span.name"),
        ({"kind": "x" * 51}, "span.kind"),
        ({"started_at": "yesterday"}, "span.started_at"),
        ({"started_at": 1e300}, "span.started_at"),
        ({"started_at": True}, "span.started_at"),
        ({"finished_at": 5}, "span.finished_at"),
        ({"status": "OK"}, "span.status"),
        ({"attributes": [1, 2]}, "span.attributes"),
        ({"attributes": {"deep": json.loads("[" * 40 + "]" * 40)}}, "span.attributes"),
        ({"id": "x" * 65}, "span.id"),
        ({"parent_id": 3}, "span.parent_id"),
    ],
)
def test_a_bad_span_field_is_named(fields: dict[str, Any], named: str) -> None:
    bad = refused({**SPAN, **fields})
    assert bad.problem == BAD_FIELD
    assert str(bad).startswith(f"{named}: ")


def test_output_of_any_json_value_null_included() -> None:
    assert parse({"type": "output", "name": "version", "value": "1.2"}) == OutputRecord(
        "version", "1.2"
    )
    assert parse({"type": "output", "name": "_n2", "value": None}) == OutputRecord("_n2", None)
    assert parse({"type": "output", "name": "m", "value": {"a": [1]}}) == OutputRecord(
        "m", {"a": [1]}
    )


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"value": 1}, "output.name"),
        ({"name": "2fast", "value": 1}, "output.name"),
        ({"name": "a-b", "value": 1}, "output.name"),
        ({"name": "é", "value": 1}, "output.name"),
        ({"name": "x" * 65, "value": 1}, "output.name"),
        ({"name": "ok"}, "output.value"),
    ],
)
def test_a_bad_output_field_is_named(fields: dict[str, Any], named: str) -> None:
    bad = refused({"type": "output", **fields})
    assert bad.problem == BAD_FIELD
    assert str(bad).startswith(f"{named}: ")


def test_artifact_of_text_or_of_base64_content() -> None:
    assert parse({"type": "artifact", "name": "t.txt", "text": "héllo"}) == ArtifactRecord(
        "t.txt", "text/plain; charset=utf-8", "héllo".encode()
    )
    assert parse(
        {"type": "artifact", "name": "a.wav", "media_type": "audio/wav", "content_base64": "AAH/"}
    ) == ArtifactRecord("a.wav", "audio/wav", b"\x00\x01\xff")
    assert parse({"type": "artifact", "name": "b", "content_base64": ""}) == ArtifactRecord(
        "b", "application/octet-stream", b""
    )


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"text": "x"}, "artifact.name"),
        ({"name": "a"}, "artifact.text"),
        ({"name": "a", "text": "x", "content_base64": "AA=="}, "artifact.text"),
        ({"name": "a", "text": 3}, "artifact.text"),
        ({"name": "a", "content_base64": "not base64!"}, "artifact.content_base64"),
        ({"name": "a", "text": "x", "media_type": 5}, "artifact.media_type"),
    ],
)
def test_a_bad_artifact_field_is_named(fields: dict[str, Any], named: str) -> None:
    bad = refused({"type": "artifact", **fields})
    assert bad.problem == BAD_FIELD
    assert str(bad).startswith(f"{named}: ")


def test_entry_of_each_typed_field() -> None:
    found = parse(
        {
            "type": "entry",
            "entry": "TOOL_RESULT",
            "call_id": "c1",
            "text": "3 files",
            "is_error": True,
            "data": {"exit": 1},
        }
    )
    assert found == AgentEntry(
        EntryType.TOOL_RESULT, text="3 files", call_id="c1", is_error=True, data={"exit": 1}
    )
    call = parse({"type": "entry", "entry": "TOOL_CALL", "tool": "grep", "data": {"input": {}}})
    assert call == AgentEntry(EntryType.TOOL_CALL, tool="grep", data={"input": {}})


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({}, "entry.entry"),
        ({"entry": "tool_call"}, "entry.entry"),
        ({"entry": "TOOL_CALL", "text": 3}, "entry.text"),
        ({"entry": "TOOL_CALL", "is_error": "yes"}, "entry.is_error"),
        ({"entry": "TOOL_CALL", "data": "x"}, "entry.data"),
        ({"entry": "TOOL_CALL", "tool": ""}, "entry.tool"),
    ],
)
def test_a_bad_entry_field_is_named(fields: dict[str, Any], named: str) -> None:
    bad = refused({"type": "entry", **fields})
    assert bad.problem == BAD_FIELD
    assert str(bad).startswith(f"{named}: ")


def test_unusable_lines_each_say_why() -> None:
    assert refused(b"not json").problem == NOT_JSON
    assert refused(b'{"type": "usage"').problem == NOT_JSON
    assert refused(b"\xff\xfe").problem == NOT_JSON
    assert refused(b"[" * 100_000 + b"]" * 100_000).problem == TOO_LARGE
    assert refused(b"[" * 20_000 + b"]" * 20_000).problem == NOT_JSON  # nested too deep
    assert str(refused(b"[1]")) == "a JSON object is expected, not an array"
    unknown = refused({"type": "metrics"})
    assert (unknown.problem, str(unknown)) == (
        UNKNOWN_TYPE,
        "type 'metrics' is not one of usage, span, output, entry, artifact",
    )
    assert refused({"name": "no type"}).problem == UNKNOWN_TYPE
    big = refused({"type": "output", "name": "x", "value": "y" * RECORD_BYTES})
    assert big.problem == TOO_LARGE
    assert "over the 65,536-byte limit" in str(big)


def test_text_no_database_can_store_is_refused_where_it_is() -> None:
    bad = refused({"type": "output", "name": "x", "value": {"k": "a\u0000b"}})
    assert (bad.problem, str(bad)) == (
        BAD_FIELD,
        "value.k: must not contain a NUL character (\\u0000)",
    )
    # msgspec itself refuses a lone surrogate escape.
    assert refused(b'{"type":"span","name":"\\ud800"}').problem == NOT_JSON
