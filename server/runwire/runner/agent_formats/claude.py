"""Claude Code's `--output-format stream-json` (with `--verbose`), one JSON object per line.

    {"type": "system", "subtype": "init", "session_id", "model", "tools", "cwd", ...}
    {"type": "assistant", "message": {"model", "content": [text | tool_use | thinking blocks]}}
    {"type": "user", "message": {"content": [tool_result blocks]}}
    {"type": "stream_event", "event": {...}}      with --include-partial-messages
    {"type": "result", "subtype": "success" | "error_max_turns" | "error_during_execution" | ...,
     "is_error", "result", "num_turns", "duration_ms", "total_cost_usd", "usage", "modelUsage"}

Per-message usage on assistant messages is not reported: the result's usage covers the run, and
reporting both would count the tokens twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runwire.domain.agents import AgentEntry, EntryType, Usage
from runwire.runner.agent_formats.common import (
    NOTHING,
    Parsed,
    compact,
    count,
    number,
    string,
    text_of,
    unknown,
    whole,
)


def parse(record: Mapping[str, Any]) -> Parsed:
    kind = record.get("type")
    if kind == "system" and record.get("subtype") == "init":
        return _init(record)
    if kind == "assistant":
        return _assistant(record)
    if kind == "user":
        return _user(record)
    if kind == "result":
        return _result(record)
    if kind == "stream_event":
        return _partial(record)
    return unknown(record, f"unknown record type {kind!r}")


def _init(record: Mapping[str, Any]) -> Parsed:
    tools = record.get("tools")
    data = compact(
        {
            "session_id": string(record.get("session_id")),
            "model": string(record.get("model")),
            "tools": list(tools) if isinstance(tools, list) else None,
            "cwd": string(record.get("cwd")),
            "permission_mode": string(record.get("permissionMode")),
            "version": string(record.get("claude_code_version")),
        }
    )
    return Parsed((AgentEntry(EntryType.INIT, data=data),))


def _blocks(record: Mapping[str, Any]) -> list[Any]:
    message = record.get("message")
    content = message.get("content") if isinstance(message, Mapping) else None
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise ValueError("message.content is neither text nor a list of blocks")
    return content


def _assistant(record: Mapping[str, Any]) -> Parsed:
    parent = string(record.get("parent_tool_use_id"))
    extra = {"parent_tool_use_id": parent} if parent else {}
    entries: list[AgentEntry] = []
    unknowns = 0
    for block in _blocks(record):
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text":
            entries.append(
                AgentEntry(EntryType.ASSISTANT_TEXT, text=text_of(block["text"]), data=extra)
            )
        elif kind == "thinking":
            text = text_of(block.get("thinking"))
            entries.append(
                AgentEntry(EntryType.ASSISTANT_TEXT, text=text, data={**extra, "reasoning": True})
            )
        elif kind == "tool_use":
            entries.append(
                AgentEntry(
                    EntryType.TOOL_CALL,
                    tool=str(block["name"]),
                    call_id=string(block.get("id")),
                    data={**extra, "input": block.get("input")},
                )
            )
        else:
            unknowns += 1
            entries.append(
                AgentEntry(
                    EntryType.UNKNOWN,
                    data={"raw": block, "reason": f"unknown assistant block {kind!r}"},
                )
            )
    return Parsed(tuple(entries), unknown=unknowns)


def _user(record: Mapping[str, Any]) -> Parsed:
    entries: list[AgentEntry] = []
    unknowns = 0
    for block in _blocks(record):
        if isinstance(block, Mapping) and block.get("type") == "tool_result":
            entries.append(
                AgentEntry(
                    EntryType.TOOL_RESULT,
                    text=text_of(block.get("content")),
                    call_id=string(block.get("tool_use_id")),
                    is_error=block.get("is_error") is True,
                )
            )
        else:
            # The prompt, or text a hook added: not an entry type of its own; kept raw.
            unknowns += 1
            entries.append(
                AgentEntry(EntryType.UNKNOWN, data={"raw": block, "reason": "user block"})
            )
    return Parsed(tuple(entries), unknown=unknowns)


def _result(record: Mapping[str, Any]) -> Parsed:
    outcome = string(record.get("subtype")) or "success"
    is_error = record.get("is_error") is True or outcome.startswith("error")
    text = string(record.get("result"))
    if text is None and is_error:
        errors = record.get("errors")
        if isinstance(errors, list) and errors:
            text = "; ".join(text_of(error) for error in errors)
    raw_usage = record.get("usage")
    usage_data = raw_usage if isinstance(raw_usage, Mapping) else {}
    cost = number(record.get("total_cost_usd"))
    duration = number(record.get("duration_ms"))
    usage = None
    if usage_data or cost is not None:
        cached = count(usage_data.get("cache_read_input_tokens"))
        written = count(usage_data.get("cache_creation_input_tokens"))
        # Anthropic counts cache reads and writes apart from input_tokens; Runwire's input counts
        # every input token, of which `cached` were read from the cache.
        usage = Usage(
            model=_model(record),
            input=count(usage_data.get("input_tokens")) + cached + written,
            output=count(usage_data.get("output_tokens")),
            cached=cached,
            cost_usd=cost,
            duration_ms=duration,
        )
    data = compact(
        {
            "outcome": outcome,
            "turns": whole(record.get("num_turns")),
            "duration_ms": duration,
            "duration_api_ms": number(record.get("duration_api_ms")),
            "session_id": string(record.get("session_id")),
            "cost_usd": cost,
            "usage": dict(usage_data) or None,
        }
    )
    entry = AgentEntry(EntryType.RESULT, text=text, is_error=is_error, data=data)
    return Parsed((entry,), usage=usage)


def _model(record: Mapping[str, Any]) -> str | None:
    """The model of the run: the one `modelUsage` names, or the one that used most output."""
    models = record.get("modelUsage")
    if not isinstance(models, Mapping) or not models:
        return None
    if len(models) == 1:
        return str(next(iter(models)))

    def output_of(name: Any) -> int:
        used = models[name]
        return count(used.get("outputTokens")) if isinstance(used, Mapping) else 0

    return str(max(models, key=output_of))


def _partial(record: Mapping[str, Any]) -> Parsed:
    """A streamed piece of a message: text deltas stream as output; the whole message follows."""
    event = record.get("event")
    if not isinstance(event, Mapping):
        return unknown(record, "stream_event without an event")
    delta = event.get("delta")
    if (
        event.get("type") == "content_block_delta"
        and isinstance(delta, Mapping)
        and delta.get("type") == "text_delta"
        and isinstance(delta.get("text"), str)
    ):
        return Parsed(output=delta["text"])
    return NOTHING
