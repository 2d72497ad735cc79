"""Plain lists are completed exactly as graphql-core completes them, errors included."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from graphql import ExecutionResult, parse
from graphql.execution import execute_subscription_event
from strawberry.scalars import JSON
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from runwire.domain import models
from runwire.graphql.fanout.plain_lists import PlainListExecutor
from runwire.graphql.schema.build import build_schema
from runwire.graphql.schema.types import (
    EventType,
    ExecutionEventBatch,
    ExecutionStatusChanged,
    OutputChunk,
    SpanReported,
    StepStatusChanged,
    event_of,
)

SCHEMA = build_schema()._schema
AT = datetime(2026, 11, 21, 12, 30, tzinfo=UTC)


def mixed_batch() -> ExecutionEventBatch:
    common: dict[str, Any] = {"at": AT, "step_key": "emit", "attempt": 1}
    span = models.Event(
        execution_id="x",
        seq=5,
        at=AT,
        type=models.EventType.SPAN,
        step_key="emit",
        attempt=1,
        data={
            "span_id": "s1",
            "name": "GET",
            "kind": "http",
            "status": "SUCCEEDED",
            "started_at": AT.isoformat(),
            "finished_at": AT.isoformat(),
            "attributes": {"latency_ms": 3},
        },
    )
    events = [
        ExecutionStatusChanged(
            seq=1,
            type=EventType.EXECUTION_STATUS,
            execution_status=models.ExecutionStatus.RUNNING,
            error=None,
            reason=None,
            **{**common, "step_key": None, "attempt": None},
        ),
        StepStatusChanged(
            seq=2,
            type=EventType.STEP_STATUS,
            step_status=models.StepStatus.RUNNING,
            kind="shell",
            exit_code=None,
            error=None,
            output=None,
            retry_in_seconds=None,
            reason=None,
            **common,
        ),
        OutputChunk(seq=3, type=EventType.OUTPUT, stream="STDOUT", text='a "b"\n', **common),
        StepStatusChanged(
            seq=4,
            type=EventType.STEP_STATUS,
            step_status=models.StepStatus.FAILED,
            kind="shell",
            exit_code=2,
            error="exit 2",
            output=JSON({"exit_code": 2, "stdout": "x", "nested": [1, 2.5, None, {"k": True}]}),
            retry_in_seconds=0.5,
            reason="because",
            **common,
        ),
    ]
    events.append(event_of(span))  # its `span` is an object: that list goes the ordinary way
    return ExecutionEventBatch(events=events, last_seq=len(events))


DOCUMENTS = [
    "{ events { seq at type stepKey attempt } }",
    "{ events { __typename seq ... on OutputChunk { stream text } } }",
    """{ lastSeq events {
         seq
         ... on ExecutionStatusChanged { status: executionStatus error reason }
         ... on StepStatusChanged { stepStatus kind exitCode error output retryInSeconds reason }
         ... on OutputChunk { stream text }
       } }""",
    "{ first: events { n: seq } second: events { seq type } }",
    "{ events { ...Common ... on StepStatusChanged { ...Step } } }"
    " fragment Common on ExecutionEvent { seq at __typename }"
    " fragment Step on StepStatusChanged { output exitCode seq }",
    "{ events { seq ... on OutputChunk @include(if: $text) { text } } }",
    "{ events { seq text: __typename ... on OutputChunk { stream @skip(if: $text) } } }",
    "{ events { seq ... on SpanReported { span { name kind attributes } } } }",
    "{ events { seq seq type } }",
]


def subscription(selection: str) -> str:
    body, _, fragments = selection.partition(" fragment ")
    document = (
        "subscription($id: ID!, $text: Boolean! = true) {"
        f" executionEvents(executionId: $id) {body} }}"
    )
    return document + (f" fragment {fragments}" if fragments else "")


def complete(executor_class: type[Any], document: str, batch: object, text: bool) -> Any:
    executor = executor_class.build(
        SCHEMA, parse(document), raw_variable_values={"id": "x", "text": text}
    )
    assert not isinstance(executor, list), executor
    result = execute_subscription_event(executor.build_per_event_executor(batch))
    assert isinstance(result, ExecutionResult)
    return result.data, [(e.message, e.path) for e in result.errors or ()]


@pytest.mark.parametrize("selection", DOCUMENTS)
@pytest.mark.parametrize("text", [True, False])
def test_the_same_answer_as_graphql_core(selection: str, text: bool) -> None:
    document = subscription(selection)
    for _ in range(2):  # the second time from cached plans
        expected = complete(StrawberryGraphQLCoreExecutionContext, document, mixed_batch(), text)
        assert complete(PlainListExecutor, document, mixed_batch(), text) == expected
        assert expected[1] == []


def test_errors_are_graphql_cores_own() -> None:
    broken = mixed_batch()
    chunk = broken.events[2]
    assert isinstance(chunk, OutputChunk)
    chunk.text = None  # type: ignore[assignment]  # a non-null field the object fails to fill
    document = subscription("{ events { seq ... on OutputChunk { text } } }")
    expected = complete(StrawberryGraphQLCoreExecutionContext, document, broken, True)
    assert expected[1], "the stock executor reports the null"
    assert complete(PlainListExecutor, document, broken, True) == expected


class _CountingExecutor(PlainListExecutor):
    """Counts fields executed one by one: those the plan completes are not."""

    executed: list[str] = []  # noqa: RUF012 - a test's record

    def execute_field(self, parent_type: Any, *args: Any, **kwargs: Any) -> Any:
        self.executed.append(parent_type.name)
        return super().execute_field(parent_type, *args, **kwargs)


def test_plain_lists_skip_field_by_field_execution() -> None:
    document = subscription("{ events { seq ... on OutputChunk { text } } }")
    batch = mixed_batch()
    batch.events = [e for e in batch.events if not isinstance(e, SpanReported)]
    _CountingExecutor.executed = []
    complete(_CountingExecutor, document, batch, True)
    assert _CountingExecutor.executed == ["Subscription", "ExecutionEventBatch"]
    # Nested plain objects (a span) are planned too.
    _CountingExecutor.executed = []
    complete(_CountingExecutor, subscription(DOCUMENTS[7]), mixed_batch(), True)
    assert _CountingExecutor.executed == ["Subscription", "ExecutionEventBatch"]
    # A null in a non-null field sends the list the ordinary way, for graphql-core's error.
    broken = mixed_batch()
    broken.events[2].text = None  # type: ignore[attr-defined]
    _CountingExecutor.executed = []
    complete(_CountingExecutor, document, broken, True)
    assert "OutputChunk" in _CountingExecutor.executed


def test_times_are_each_events_own_whether_shared_or_not() -> None:
    later = datetime(2026, 11, 21, 12, 30, 0, 250, tzinfo=UTC)
    times = [AT, AT, later, AT, datetime(2026, 11, 21, 12, 30, tzinfo=UTC), later]
    events: list[Any] = [
        OutputChunk(
            seq=n,
            type=EventType.OUTPUT,
            stream="STDOUT",
            text=f"{n}\n",
            at=at,
            step_key="emit",
            attempt=1,
        )
        for n, at in enumerate(times, start=1)
    ]
    document = subscription("{ events { seq at } }")
    expected = complete(
        StrawberryGraphQLCoreExecutionContext,
        document,
        ExecutionEventBatch(events=events, last_seq=6),
        True,
    )
    for _ in range(2):
        batch = ExecutionEventBatch(events=events, last_seq=6)
        assert complete(PlainListExecutor, document, batch, True) == expected
    assert [event["at"] for event in expected[0]["executionEvents"]["events"]] == [
        at.isoformat() for at in times
    ]
