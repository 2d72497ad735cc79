"""The wire side of the `llm` step: server-sent events, and a streamed reply put back together.

Two dialects: OpenAI's Chat Completions (`chat.completion.chunk` objects, `data: [DONE]` at the
end, usage in a last chunk with no choices when `stream_options.include_usage` asks for it) and
Anthropic's Messages API (named events: message_start, content_block_start/delta/stop,
message_delta with the output usage, message_stop). No I/O here: the step feeds lines in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

OPENAI = "openai"
ANTHROPIC = "anthropic"
DIALECTS = (OPENAI, ANTHROPIC)


class ProviderError(Exception):
    """The provider reported an error inside the stream (its own message)."""


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One server-sent event: its `event:` name (None when unnamed) and its joined `data:`."""

    event: str | None
    data: str


class SseParser:
    """Lines of a `text/event-stream` in, events out (the WHATWG rules the providers use)."""

    def __init__(self) -> None:
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> SseEvent | None:
        """One line without its line break; an event when this (blank) line ends one."""
        if not line:
            if not self._data:
                self._event = None
                return None
            event = SseEvent(self._event, "\n".join(self._data))
            self._event, self._data = None, []
            return event
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None

    def end(self) -> SseEvent | None:
        """The stream ended: an event left without its blank line still counts."""
        return self.feed("")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for; `arguments` parsed when the JSON parses, else None."""

    id: str
    name: str
    arguments: Any
    raw: str

    def as_output(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments, "raw": self.raw}


@dataclass(frozen=True, slots=True)
class Reply:
    """A model's reply as it streamed in so far (all of it once `done`)."""

    text: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str | None
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    message: Mapping[str, Any] = field(default_factory=dict)
    """The reply as an assistant message of its dialect, to put in a later call's `messages`."""

    def as_output(self) -> dict[str, Any]:
        usage = None
        if self.input_tokens is not None or self.output_tokens is not None:
            usage = {
                "input_tokens": self.input_tokens or 0,
                "output_tokens": self.output_tokens or 0,
                "cached_tokens": self.cached_tokens,
                "reasoning_tokens": self.reasoning_tokens,
            }
        return {
            "text": self.text,
            "tool_calls": [call.as_output() for call in self.tool_calls],
            "finish_reason": self.finish_reason,
            "model": self.model,
            "usage": usage,
            "message": dict(self.message),
        }


class Assembler(Protocol):
    """Puts one dialect's stream back together."""

    done: bool

    def feed(self, event: SseEvent) -> str:
        """Take one event; the text it added (empty if none). ProviderError for an error event."""
        ...

    def reply(self) -> Reply: ...


def assembler(dialect: str) -> Assembler:
    return AnthropicAssembler() if dialect == ANTHROPIC else OpenAIAssembler()


def parse_arguments(raw: str) -> Any:
    """A tool call's arguments as JSON, or None when they are not (yet) valid JSON."""
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        return None


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def finished(self) -> ToolCall:
        raw = "".join(self.arguments)
        return ToolCall(self.id, self.name, parse_arguments(raw), raw)


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error_message(data: Any) -> str:
    """The message of an `{"error": {...}}` body (both dialects), else the body as text."""
    if isinstance(data, Mapping):
        error = data.get("error")
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if isinstance(data.get("message"), str):
            return str(data["message"])
    return json.dumps(data)[:500]


def error_message(body: str) -> str:
    """A provider's error response body as its own message."""
    try:
        return _error_message(json.loads(body))
    except ValueError:
        return body.strip()[:500] or "(no message)"


def _json(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise ProviderError(f"not JSON in the stream: {data[:200]!r}") from None


class OpenAIAssembler:
    """Chat Completions chunks: `choices[0].delta` carries content and tool-call pieces by index."""

    def __init__(self) -> None:
        self.done = False
        self._text: list[str] = []
        self._calls: dict[int, _PartialCall] = {}
        self._finish: str | None = None
        self._model: str | None = None
        self._usage: Mapping[str, Any] | None = None

    def feed(self, event: SseEvent) -> str:
        if event.data.strip() == "[DONE]":
            self.done = True
            return ""
        chunk = _json(event.data)
        if not isinstance(chunk, Mapping):
            return ""
        if "error" in chunk:
            raise ProviderError(_error_message(chunk))
        if isinstance(chunk.get("model"), str):
            self._model = chunk["model"]
        if isinstance(chunk.get("usage"), Mapping):
            self._usage = chunk["usage"]
        added = ""
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue  # n > 1 is not asked for; only the first choice is the reply
            if isinstance(choice.get("finish_reason"), str):
                self._finish = choice["finish_reason"]
            delta = choice.get("delta")
            if not isinstance(delta, Mapping):
                continue
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._text.append(content)
                added += content
            for piece in delta.get("tool_calls") or ():
                if isinstance(piece, Mapping):
                    self._tool_call_piece(piece)
        return added

    def _tool_call_piece(self, piece: Mapping[str, Any]) -> None:
        index = _whole(piece.get("index"))
        call = self._calls.setdefault(len(self._calls) if index is None else index, _PartialCall())
        if isinstance(piece.get("id"), str):
            call.id = piece["id"]
        function = piece.get("function")
        if isinstance(function, Mapping):
            if isinstance(function.get("name"), str):
                call.name += function["name"]
            if isinstance(function.get("arguments"), str):
                call.arguments.append(function["arguments"])

    def reply(self) -> Reply:
        calls = tuple(self._calls[index].finished() for index in sorted(self._calls))
        usage = self._usage or {}
        prompt_details = usage.get("prompt_tokens_details")
        completion_details = usage.get("completion_tokens_details")
        text = "".join(self._text)
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.raw},
                }
                for call in calls
            ]
        return Reply(
            text=text,
            tool_calls=calls,
            finish_reason=self._finish,
            model=self._model,
            input_tokens=_whole(usage.get("prompt_tokens")),
            output_tokens=_whole(usage.get("completion_tokens")),
            cached_tokens=_detail(prompt_details, "cached_tokens"),
            reasoning_tokens=_detail(completion_details, "reasoning_tokens"),
            message=message,
        )


def _detail(details: Any, name: str) -> int:
    return (_whole(details.get(name)) or 0) if isinstance(details, Mapping) else 0


class AnthropicAssembler:
    """Messages API events: content blocks (text, tool_use) built from their deltas by index."""

    def __init__(self) -> None:
        self.done = False
        self._blocks: dict[int, dict[str, Any]] = {}
        self._finish: str | None = None
        self._model: str | None = None
        self._input: int | None = None
        self._output: int | None = None
        self._cached = 0

    def feed(self, event: SseEvent) -> str:
        data = _json(event.data)
        if not isinstance(data, Mapping):
            return ""
        kind = data.get("type", event.event)
        if kind == "error":
            raise ProviderError(_error_message(data))
        if kind == "message_start":
            message = data.get("message")
            if isinstance(message, Mapping):
                if isinstance(message.get("model"), str):
                    self._model = message["model"]
                self._read_usage(message.get("usage"))
        elif kind == "content_block_start":
            block = data.get("content_block")
            index = _whole(data.get("index"))
            if isinstance(block, Mapping) and index is not None:
                self._blocks[index] = {
                    "type": block.get("type"),
                    "id": block.get("id", ""),
                    "name": block.get("name", ""),
                    "text": [str(block.get("text") or "")],
                    "json": [],
                }
        elif kind == "content_block_delta":
            return self._delta(data)
        elif kind == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, Mapping) and isinstance(delta.get("stop_reason"), str):
                self._finish = delta["stop_reason"]
            self._read_usage(data.get("usage"))
        elif kind == "message_stop":
            self.done = True
        return ""

    def _delta(self, data: Mapping[str, Any]) -> str:
        index = _whole(data.get("index"))
        delta = data.get("delta")
        if index is None or not isinstance(delta, Mapping):
            return ""
        block = self._blocks.setdefault(
            index, {"type": "text", "id": "", "name": "", "text": [], "json": []}
        )
        if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
            block["text"].append(delta["text"])
            return str(delta["text"])
        if delta.get("type") == "input_json_delta" and isinstance(delta.get("partial_json"), str):
            block["json"].append(delta["partial_json"])
        return ""

    def _read_usage(self, usage: Any) -> None:
        if not isinstance(usage, Mapping):
            return
        # message_start has the input (and a first output count); message_delta the final output.
        cache_read = _whole(usage.get("cache_read_input_tokens")) or 0
        cache_write = _whole(usage.get("cache_creation_input_tokens")) or 0
        if (tokens := _whole(usage.get("input_tokens"))) is not None:
            # Anthropic counts cached input apart; Runwire's `input` includes it (as OpenAI's).
            self._input = tokens + cache_read + cache_write
            self._cached = cache_read
        if (tokens := _whole(usage.get("output_tokens"))) is not None:
            self._output = tokens

    def reply(self) -> Reply:
        texts: list[str] = []
        calls: list[ToolCall] = []
        content: list[dict[str, Any]] = []
        for index in sorted(self._blocks):
            block = self._blocks[index]
            if block["type"] == "tool_use":
                raw = "".join(block["json"])
                call = ToolCall(str(block["id"]), str(block["name"]), parse_arguments(raw), raw)
                calls.append(call)
                content.append(
                    {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
                )
            elif block["type"] == "text":
                text = "".join(block["text"])
                texts.append(text)
                content.append({"type": "text", "text": text})
        return Reply(
            text="".join(texts),
            tool_calls=tuple(calls),
            finish_reason=self._finish,
            model=self._model,
            input_tokens=self._input,
            output_tokens=self._output,
            cached_tokens=self._cached,
            message={"role": "assistant", "content": content},
        )


def events_of(lines: Iterator[str]) -> Iterator[SseEvent]:
    """Every event in `lines` (for tests and for bodies read whole)."""
    parser = SseParser()
    for line in lines:
        if (event := parser.feed(line)) is not None:
            yield event
    if (event := parser.end()) is not None:
        yield event
