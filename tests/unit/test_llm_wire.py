"""Server-sent events and streamed replies put back together, in both dialects."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runwire.runner.steps.llm_wire import (
    AnthropicAssembler,
    OpenAIAssembler,
    ProviderError,
    SseEvent,
    SseParser,
    error_message,
    events_of,
)


def test_events_are_split_on_blank_lines_with_multi_line_data_joined() -> None:
    lines = [
        ": keep-alive",
        "event: message_start",
        'data: {"a":',
        "data: 1}",
        "",
        "",
        "data:no-space",
        "",
        "data: last, without its blank line",
    ]

    assert list(events_of(iter(lines))) == [
        SseEvent("message_start", '{"a":\n1}'),
        SseEvent(None, "no-space"),
        SseEvent(None, "last, without its blank line"),
    ]


def test_an_event_name_does_not_leak_into_the_next_event() -> None:
    parser = SseParser()
    assert parser.feed("event: ping") is None
    assert parser.feed("") is None  # no data: no event, and the name is dropped
    parser.feed("data: x")
    assert parser.feed("") == SseEvent(None, "x")


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> SseEvent:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return SseEvent(None, json.dumps({"model": "m-1", "choices": [choice], **extra}))


def test_openai_text_deltas_and_usage_make_one_reply() -> None:
    assembler = OpenAIAssembler()
    added = [
        assembler.feed(chunk({"role": "assistant", "content": ""})),
        assembler.feed(chunk({"content": "Hel"})),
        assembler.feed(chunk({"content": "lo"})),
        assembler.feed(chunk({}, "stop")),
    ]
    usage = {
        "prompt_tokens": 12,
        "completion_tokens": 2,
        "prompt_tokens_details": {"cached_tokens": 8},
        "completion_tokens_details": {"reasoning_tokens": 1},
    }
    assembler.feed(SseEvent(None, json.dumps({"choices": [], "usage": usage})))
    assert not assembler.done
    assembler.feed(SseEvent(None, "[DONE]"))

    reply = assembler.reply()
    assert added == ["", "Hel", "lo", ""]
    assert assembler.done
    assert (reply.text, reply.finish_reason, reply.model) == ("Hello", "stop", "m-1")
    assert (reply.input_tokens, reply.output_tokens) == (12, 2)
    assert (reply.cached_tokens, reply.reasoning_tokens) == (8, 1)
    assert reply.message == {"role": "assistant", "content": "Hello"}


def test_openai_tool_call_pieces_are_joined_by_index() -> None:
    assembler = OpenAIAssembler()
    first = {"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather"}}
    second = {"index": 1, "id": "call_b", "function": {"name": "lookup", "arguments": ""}}
    for delta in (
        {"tool_calls": [{**first, "function": {**first["function"], "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]},
        {"tool_calls": [second]},
        {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]},
        {"tool_calls": [{"index": 1, "function": {"arguments": "{not json"}}]},
    ):
        assert assembler.feed(chunk(delta)) == ""
    assembler.feed(chunk({}, "tool_calls"))

    reply = assembler.reply()
    assert [call.as_output() for call in reply.tool_calls] == [
        {
            "id": "call_a",
            "name": "get_weather",
            "arguments": {"city": "Paris"},
            "raw": '{"city": "Paris"}',
        },
        {"id": "call_b", "name": "lookup", "arguments": None, "raw": "{not json"},
    ]
    assert reply.finish_reason == "tool_calls"
    assert reply.message["tool_calls"][0] == {
        "id": "call_a",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    assert reply.input_tokens is None  # no usage chunk: usage unknown, not 0


def test_an_error_in_an_openai_stream_is_the_providers_message() -> None:
    with pytest.raises(ProviderError, match=r"^overloaded, try later$"):
        OpenAIAssembler().feed(SseEvent(None, '{"error": {"message": "overloaded, try later"}}'))
    with pytest.raises(ProviderError, match="not JSON in the stream"):
        OpenAIAssembler().feed(SseEvent(None, "{oops"))


def anthropic(kind: str, **data: Any) -> SseEvent:
    return SseEvent(kind, json.dumps({"type": kind, **data}))


def test_anthropic_blocks_text_and_tool_use_and_usage() -> None:
    assembler = AnthropicAssembler()
    usage = {"input_tokens": 10, "cache_read_input_tokens": 30, "output_tokens": 1}
    message = {"model": "claude-x", "usage": usage}
    events = [
        anthropic("message_start", message=message),
        anthropic("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        anthropic("content_block_delta", index=0, delta={"type": "text_delta", "text": "Let me "}),
        anthropic("content_block_delta", index=0, delta={"type": "text_delta", "text": "look."}),
        anthropic("content_block_stop", index=0),
        anthropic(
            "content_block_start",
            index=1,
            content_block={"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
        ),
        anthropic(
            "content_block_delta",
            index=1,
            delta={"type": "input_json_delta", "partial_json": '{"city": '},
        ),
        anthropic(
            "content_block_delta",
            index=1,
            delta={"type": "input_json_delta", "partial_json": '"Oslo"}'},
        ),
        anthropic("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 42}),
    ]
    added = [assembler.feed(event) for event in events]
    assert not assembler.done
    assembler.feed(anthropic("message_stop"))

    reply = assembler.reply()
    assert "".join(added) == "Let me look." == reply.text
    assert assembler.done
    assert [call.as_output() for call in reply.tool_calls] == [
        {
            "id": "toolu_1",
            "name": "get_weather",
            "arguments": {"city": "Oslo"},
            "raw": '{"city": "Oslo"}',
        }
    ]
    # Cached input is part of the input, as OpenAI counts it.
    assert (reply.input_tokens, reply.cached_tokens, reply.output_tokens) == (40, 30, 42)
    assert (reply.model, reply.finish_reason) == ("claude-x", "tool_use")
    assert reply.message["content"][1] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "get_weather",
        "input": {"city": "Oslo"},
    }


def test_an_anthropic_error_event_is_the_providers_message() -> None:
    error = {"type": "overloaded_error", "message": "Overloaded"}
    with pytest.raises(ProviderError, match=r"^Overloaded$"):
        AnthropicAssembler().feed(anthropic("error", error=error))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '{"error": {"message": "Invalid model", "type": "invalid_request_error"}}',
            "Invalid model",
        ),
        ('{"type": "error", "error": {"type": "x", "message": "Bad key"}}', "Bad key"),
        ('{"error": "plain"}', "plain"),
        ('{"detail": 1}', '{"detail": 1}'),
        ("<html>Bad Gateway</html>\n", "<html>Bad Gateway</html>"),
        ("", "(no message)"),
    ],
)
def test_error_bodies_give_the_providers_message(body: str, message: str) -> None:
    assert error_message(body) == message
