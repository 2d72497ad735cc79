"""A live batch's selection is completed once per document, and only when that is sound."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from graphql import ExecutionResult, parse
from graphql.execution import execute_subscription_event

from runwire.graphql.fanout.sharing import (
    SharedCompletion,
    SharingExecutor,
    encode_message,
    encode_next_message,
)
from runwire.graphql.schema.build import build_schema
from runwire.graphql.schema.types import EventType, ExecutionEventBatch, OutputChunk

SCHEMA = build_schema()._schema
FOLLOW = """
subscription Follow($id: ID!, $after: Int!) {
  executionEvents(executionId: $id, afterSeq: $after) {
    lastSeq
    events { seq type ... on OutputChunk { text } }
  }
}
"""


def batch(*texts: str) -> ExecutionEventBatch:
    at = datetime(2026, 11, 21, tzinfo=UTC)
    events = [
        OutputChunk(
            seq=seq,
            at=at,
            type=EventType.OUTPUT,
            step_key="emit",
            attempt=1,
            stream="STDOUT",
            text=text,
        )
        for seq, text in enumerate(texts, start=1)
    ]
    return ExecutionEventBatch(events=list(events), last_seq=len(texts))


def deliver(document: str, variables: dict[str, Any], payload: object) -> ExecutionResult:
    """What one subscriber's per-event execution makes of `payload`."""
    executor = SharingExecutor.build(SCHEMA, parse(document), raw_variable_values=variables)
    assert not isinstance(executor, list), executor
    result = execute_subscription_event(executor.build_per_event_executor(payload))
    assert isinstance(result, ExecutionResult)
    return result


def test_subscribers_of_one_document_share_one_completion() -> None:
    document = parse(FOLLOW)
    shared = batch("a\n", "b\n")
    results = []
    for after in (0, 5, -1):  # the field's own arguments do not change what is completed
        executor = SharingExecutor.build(
            SCHEMA, document, raw_variable_values={"id": "x", "after": after}
        )
        assert not isinstance(executor, list), executor
        result = execute_subscription_event(executor.build_per_event_executor(shared))
        assert isinstance(result, ExecutionResult)
        assert result.errors is None
        results.append(result.data)
    completions = [data["executionEvents"] for data in results if data]
    assert isinstance(completions[0], SharedCompletion)
    assert completions[1] is completions[0]
    assert completions[2] is completions[0]
    assert completions[0] == {
        "lastSeq": 2,
        "events": [
            {"seq": 1, "type": "OUTPUT", "text": "a\n"},
            {"seq": 2, "type": "OUTPUT", "text": "b\n"},
        ],
    }


def test_each_document_gets_its_own_selection_of_a_shared_batch() -> None:
    shared = batch("a\n")
    variables = {"id": "x", "after": 0}
    full = deliver(FOLLOW, variables, shared)
    narrow = deliver(
        "subscription($id: ID!) { e: executionEvents(executionId: $id) { lastSeq } }",
        {"id": "x"},
        shared,
    )
    assert narrow.data == {"e": {"lastSeq": 1}}
    assert full.data is not None
    assert full.data["executionEvents"]["events"][0]["text"] == "a\n"


def test_a_selection_that_uses_variables_is_completed_per_subscriber() -> None:
    document = """
    subscription($id: ID!, $text: Boolean!) {
      executionEvents(executionId: $id) {
        events { seq ... on OutputChunk { text @include(if: $text) } }
      }
    }
    """
    shared = batch("a\n")
    with_text = deliver(document, {"id": "x", "text": True}, shared)
    without = deliver(document, {"id": "x", "text": False}, shared)
    assert with_text.data == {"executionEvents": {"events": [{"seq": 1, "text": "a\n"}]}}
    assert without.data == {"executionEvents": {"events": [{"seq": 1}]}}
    assert not isinstance(without.data["executionEvents"], SharedCompletion)


def test_variables_inside_a_fragment_also_prevent_sharing() -> None:
    document = """
    subscription($id: ID!, $text: Boolean!) { executionEvents(executionId: $id) { ...Events } }
    fragment Events on ExecutionEventBatch {
      events { seq ... on OutputChunk { text @skip(if: $text) } }
    }
    """
    shared = batch("a\n")
    skipped = deliver(document, {"id": "x", "text": True}, shared)
    kept = deliver(document, {"id": "x", "text": False}, shared)
    assert skipped.data == {"executionEvents": {"events": [{"seq": 1}]}}
    assert kept.data == {"executionEvents": {"events": [{"seq": 1, "text": "a\n"}]}}


def test_a_value_built_per_subscriber_is_not_memoised() -> None:
    first = deliver(FOLLOW, {"id": "x", "after": 0}, batch("a\n"))
    second = deliver(FOLLOW, {"id": "x", "after": 0}, batch("b\n"))
    assert first.data is not None
    assert second.data is not None
    assert first.data["executionEvents"] is not second.data["executionEvents"]
    assert second.data["executionEvents"]["events"][0]["text"] == "b\n"


def test_the_shared_message_is_the_json_strawberry_would_send() -> None:
    result = deliver(FOLLOW, {"id": "x", "after": 0}, batch('quote " and ünïcode\n'))
    message = {"id": "op-7", "type": "next", "payload": {"data": result.data}}
    encoded = encode_next_message(message)
    assert encoded is not None
    assert json.loads(encoded) == json.loads(json.dumps(message))
    # Anything else is left to the ordinary encoder.
    assert encode_next_message({"id": "1", "type": "complete"}) is None
    assert encode_next_message({**message, "payload": {"data": {"x": {}}}}) is None
    errors = {**message, "payload": {"data": result.data, "errors": [{"message": "m"}]}}
    assert encode_next_message(errors) is None


def test_other_messages_are_encoded_as_the_json_module_would_read_them() -> None:
    page = {"data": {"executions": {"edges": [{"cursor": "abc", "node": {"id": "1", "x": 1.5}}]}}}
    assert json.loads(encode_message(page)) == page
    # What msgspec refuses (a lone surrogate) is still written, by the json module.
    lone = {"data": {"text": "\ud800"}}
    assert json.loads(encode_message(lone)) == lone
    shared = {
        "id": "7",
        "type": "next",
        "payload": {"data": {"executionEvents": SharedCompletion({"lastSeq": 3})}},
    }
    assert encode_message(shared) == encode_next_message(shared)
