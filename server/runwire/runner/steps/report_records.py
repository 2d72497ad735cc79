"""The records a step's process writes to its report channel, one JSON object a line, checked.

`parse_record` turns one line into a value the runner already knows (a `Usage`, an `AgentEntry`)
or one of the two below, or raises `BadRecord` naming the problem. Fields a record does not know
are ignored, so a reporter written for a later Runwire still works here.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from runwire.domain.agents import AgentEntry, EntryType, Usage
from runwire.runner.spans import CANCELLED, FAILED, SUCCEEDED
from runwire.scenarios.limits import json_size_errors, unstorable_errors

RECORD_BYTES = 64 * 1024
"""The longest record line (newline excluded) the channel reads."""

MAX_TOKENS = 10**15
"""More tokens than any run reports; above it a count is a bug (and floats lose exactness)."""

MAX_DEPTH = 16
"""How deeply a record's free-form values (attributes, data, output values) may nest."""

# The span table's column widths: longer text would fail the whole write of the events.
_SPAN_NAME_CHARS = 200
_SPAN_KIND_CHARS = 50
_ID_CHARS = 64
_MODEL_CHARS = 200
_OUTPUT_NAME_CHARS = 64
_ARTIFACT_TEXT_CHARS = 200
_STATUSES = (SUCCEEDED, FAILED, CANCELLED)


class BadRecord(Exception):
    """A record the channel cannot use; `problem` is its class (for counting), str() says why."""

    def __init__(self, problem: str, reason: str) -> None:
        super().__init__(reason)
        self.problem = problem


TOO_LARGE = "too large"
NOT_JSON = "not JSON"
UNKNOWN_TYPE = "unknown type"
BAD_FIELD = "bad field"


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """A finished sub-operation; `id` and `parent_id` are the reporter's own names for spans."""

    name: str
    kind: str
    started_at: datetime
    finished_at: datetime
    status: str = SUCCEEDED
    attributes: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """A named output of the step, for downstream steps' templates."""

    name: str
    value: Any


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    """A file of the step attempt (domain/artifacts.py), its content in the record."""

    name: str
    media_type: str
    content: bytes


Record = Usage | SpanRecord | OutputRecord | AgentEntry | ArtifactRecord


def parse_record(line: bytes) -> Record:
    """The record one line holds (without its newline); BadRecord if it holds none."""
    if len(line) > RECORD_BYTES:
        raise BadRecord(TOO_LARGE, f"{len(line):,} bytes, over the {RECORD_BYTES:,}-byte limit")
    try:
        found = msgspec.json.decode(line)
    except (msgspec.DecodeError, RecursionError) as error:  # RecursionError: nested too deep
        raise BadRecord(NOT_JSON, str(error)) from None
    if not isinstance(found, dict):
        raise BadRecord(NOT_JSON, f"a JSON object is expected, not {_json_type(found)}")
    if errors := unstorable_errors(found, ""):
        raise BadRecord(BAD_FIELD, f"{errors[0].path or 'a key'}: {errors[0].message}")
    fields = _Fields(found)
    kind = found.get("type")
    parse = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parse is None:
        known = ", ".join(_PARSERS)
        raise BadRecord(UNKNOWN_TYPE, f"type {kind!r} is not one of {known}")
    return parse(fields)


class _Fields:
    """Typed reads of one record's fields, each failure a BadRecord naming the field."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def fail(self, name: str, message: str) -> BadRecord:
        return BadRecord(BAD_FIELD, f"{self.values.get('type')}.{name}: {message}")

    def tokens(self, name: str, required: bool = False) -> int:
        value = self.values.get(name)
        if value is None and not required:
            return 0
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_TOKENS:
            raise self.fail(name, f"must be a whole number from 0 to 10^15, not {_shown(value)}")
        return value

    def amount(self, name: str) -> float | None:
        value = self.values.get(name)
        if value is None:
            return None
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or value < 0
        ):
            raise self.fail(name, f"must be a finite number, 0 or more, not {_shown(value)}")
        return float(value)

    def text(self, name: str, limit: int, required: bool = False) -> str | None:
        value = self.values.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(name, f"must be a non-empty string, not {_shown(value)}")
        if len(value) > limit:
            raise self.fail(name, f"must be at most {limit} characters (got {len(value)})")
        return value

    def required_text(self, name: str, limit: int) -> str:
        found = self.text(name, limit, required=True)
        assert found is not None
        return found

    def json(self, name: str, mapping: bool) -> Any:
        value = self.values.get(name)
        if mapping and value is not None and not isinstance(value, dict):
            raise self.fail(name, f"must be an object, not {_json_type(value)}")
        if errors := json_size_errors(value, name, None, MAX_DEPTH):
            raise self.fail(name, errors[0].message)
        return value

    def moment(self, name: str) -> datetime:
        value = self.values.get(name)
        try:
            if isinstance(value, str):
                moment = datetime.fromisoformat(value)
                # A time without an offset is taken as UTC, as most tracing libraries write it.
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
                return moment.astimezone(UTC)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return datetime.fromtimestamp(value, UTC)
        except (ValueError, OverflowError, OSError):
            pass
        raise self.fail(
            name, f"must be an ISO 8601 time or epoch seconds, not {_shown(value)}"
        ) from None


def _usage(fields: _Fields) -> Usage:
    return Usage(
        model=fields.text("model", _MODEL_CHARS),
        input=fields.tokens("input_tokens", required=True),
        output=fields.tokens("output_tokens", required=True),
        cached=fields.tokens("cached_tokens"),
        reasoning=fields.tokens("reasoning_tokens"),
        cost_usd=fields.amount("cost_usd"),
        ttft_ms=fields.amount("ttft_ms"),
        duration_ms=fields.amount("duration_ms"),
    )


def _span(fields: _Fields) -> SpanRecord:
    started, finished = fields.moment("started_at"), fields.moment("finished_at")
    if finished < started:
        raise fields.fail("finished_at", "is before started_at")
    status = fields.values.get("status", SUCCEEDED)
    if not isinstance(status, str) or status.upper() not in _STATUSES:
        raise fields.fail("status", f"must be one of {', '.join(_STATUSES)}, not {_shown(status)}")
    return SpanRecord(
        name=fields.required_text("name", _SPAN_NAME_CHARS),
        kind=fields.required_text("kind", _SPAN_KIND_CHARS),
        started_at=started,
        finished_at=finished,
        status=status.upper(),
        attributes=fields.json("attributes", mapping=True) or {},
        id=fields.text("id", _ID_CHARS),
        parent_id=fields.text("parent_id", _ID_CHARS),
    )


def _output(fields: _Fields) -> OutputRecord:
    name = fields.required_text("name", _OUTPUT_NAME_CHARS)
    if not (name[0].isascii() and (name[0].isalpha() or name[0] == "_")) or not all(
        char.isascii() and (char.isalnum() or char == "_") for char in name
    ):
        raise fields.fail("name", f"must be letters, digits and _ (not first a digit): {name!r}")
    if "value" not in fields.values:
        raise fields.fail("value", "is required (null is a value)")
    return OutputRecord(name, fields.json("value", mapping=False))


def _entry(fields: _Fields) -> AgentEntry:
    kind = fields.values.get("entry")
    if not isinstance(kind, str) or kind not in EntryType.__members__:
        names = ", ".join(EntryType.__members__)
        raise fields.fail("entry", f"must be one of {names}, not {_shown(kind)}")
    text = fields.values.get("text")
    if text is not None and not isinstance(text, str):
        raise fields.fail("text", f"must be a string, not {_json_type(text)}")
    is_error = fields.values.get("is_error", False)
    if not isinstance(is_error, bool):
        raise fields.fail("is_error", f"must be true or false, not {_shown(is_error)}")
    return AgentEntry(
        type=EntryType(kind),
        text=text,
        tool=fields.text("tool", _SPAN_NAME_CHARS),
        call_id=fields.text("call_id", _ID_CHARS * 4),
        is_error=is_error,
        data=fields.json("data", mapping=True) or {},
    )


def _artifact(fields: _Fields) -> ArtifactRecord:
    # Name and media type are checked where every artifact is (StepContext.artifact).
    name = fields.required_text("name", _ARTIFACT_TEXT_CHARS)
    media_type = fields.text("media_type", _ARTIFACT_TEXT_CHARS)
    text, encoded = fields.values.get("text"), fields.values.get("content_base64")
    if (text is None) == (encoded is None):
        raise fields.fail("text", "give the content as text or as content_base64 (one of them)")
    if text is not None:
        if not isinstance(text, str):
            raise fields.fail("text", f"must be a string, not {_json_type(text)}")
        return ArtifactRecord(name, media_type or "text/plain; charset=utf-8", text.encode())
    if not isinstance(encoded, str):
        raise fields.fail("content_base64", f"must be a string, not {_json_type(encoded)}")
    try:
        content = base64.b64decode(encoded, validate=True)
    except binascii.Error as error:
        raise fields.fail("content_base64", f"is not base64: {error}") from None
    return ArtifactRecord(name, media_type or "application/octet-stream", content)


_PARSERS: dict[str, Callable[[_Fields], Record]] = {
    "usage": _usage,
    "span": _span,
    "output": _output,
    "entry": _entry,
    "artifact": _artifact,
}


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def _shown(value: Any) -> str:
    """The value as the record had it, cut short: enough to find it in the reporter's code."""
    text = "null" if value is None else msgspec.json.encode(value).decode(errors="replace")
    return text if len(text) <= 40 else f"{text[:40]}…"
