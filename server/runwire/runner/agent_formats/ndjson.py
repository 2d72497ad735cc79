"""Runwire's generic agent transcript: one JSON object per line, `type` saying what it is.

    {"type": "init", "session_id"?, "model"?, "tools"?: [names], ...}
    {"type": "text", "text", "reasoning"?: bool}
    {"type": "tool_call", "tool", "call_id"?, "input"?: any}
    {"type": "tool_result", "call_id"?, "output"?: text or any, "is_error"?: bool}
    {"type": "usage", "model"?, "input_tokens", "output_tokens", "cached_input_tokens"?,
     "reasoning_tokens"?, "cost_usd"?, "duration_ms"?, "ttft_ms"?}
    {"type": "result", "text"?, "is_error"?: bool, "outcome"?, "turns"?, "duration_ms"?,
     "session_id"?, "usage"?: {the fields of a usage record}}

docs/agent-steps.md is the reference. Fields beyond these are kept in the entry's data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runwire.domain.agents import AgentEntry, EntryType, Usage
from runwire.runner.agent_formats.common import (
    Parsed,
    compact,
    count,
    number,
    string,
    text_of,
    unknown,
    whole,
)

_USAGE_FIELDS = frozenset(
    {
        "model",
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "reasoning_tokens",
        "cost_usd",
        "duration_ms",
        "ttft_ms",
    }
)


def parse(record: Mapping[str, Any]) -> Parsed:
    kind = record.get("type")
    rest = {key: value for key, value in record.items() if key != "type"}
    if kind == "init":
        return Parsed((AgentEntry(EntryType.INIT, data=rest),))
    if kind == "text":
        flags = {"reasoning": True} if record.get("reasoning") is True else {}
        entry = AgentEntry(EntryType.ASSISTANT_TEXT, text=text_of(record.get("text")), data=flags)
        return Parsed((entry,))
    if kind == "tool_call":
        tool = string(record.get("tool"))
        if tool is None:
            return unknown(record, "tool_call without a tool name")
        data = {"input": record.get("input")}
        call = AgentEntry(EntryType.TOOL_CALL, tool=tool, call_id=_id(record), data=data)
        return Parsed((call,))
    if kind == "tool_result":
        entry = AgentEntry(
            EntryType.TOOL_RESULT,
            text=text_of(record.get("output")),
            call_id=_id(record),
            is_error=record.get("is_error") is True,
        )
        return Parsed((entry,))
    if kind == "usage":
        return Parsed(usage=_usage(record))
    if kind == "result":
        return _result(record)
    return unknown(record, f"unknown record type {kind!r}")


def _id(record: Mapping[str, Any]) -> str | None:
    found = record.get("call_id")
    return str(found) if isinstance(found, str | int) and not isinstance(found, bool) else None


def _usage(fields: Mapping[str, Any]) -> Usage:
    return Usage(
        model=string(fields.get("model")),
        input=count(fields.get("input_tokens")),
        output=count(fields.get("output_tokens")),
        cached=count(fields.get("cached_input_tokens")),
        reasoning=count(fields.get("reasoning_tokens")),
        cost_usd=number(fields.get("cost_usd")),
        duration_ms=number(fields.get("duration_ms")),
        ttft_ms=number(fields.get("ttft_ms")),
    )


def _result(record: Mapping[str, Any]) -> Parsed:
    is_error = record.get("is_error") is True
    raw = record.get("usage")
    usage = _usage(raw) if isinstance(raw, Mapping) else None
    data = compact(
        {
            "outcome": string(record.get("outcome")) or ("error" if is_error else "success"),
            "turns": whole(record.get("turns")),
            "duration_ms": number(record.get("duration_ms")),
            "session_id": string(record.get("session_id")),
            "cost_usd": None if usage is None else usage.cost_usd,
            "usage": {k: v for k, v in raw.items() if k in _USAGE_FIELDS}
            if isinstance(raw, Mapping)
            else None,
        }
    )
    entry = AgentEntry(
        EntryType.RESULT, text=string(record.get("text")), is_error=is_error, data=data
    )
    return Parsed((entry,), usage=usage)
