"""graphql-core's internals as compat/graphql_core.py uses them, on the installed version.

Each test runs the real executors (Strawberry's schema, graphql-core's execution) and checks that
the shortcut the assumption enables is really taken: a broken assumption would rarely fail a
subscription, it would silently complete every value the slow way.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import strawberry
from graphql import parse, validate
from graphql.execution import Executor
from strawberry.extensions import ParserCache, SchemaExtension
from strawberry.types import ExecutionResult
from tests.support.contract import Contract

from runwire.graphql.fanout.compat.graphql_core import set_field_comparison_budget
from runwire.graphql.fanout.plain_lists import PlainListExecutor
from runwire.graphql.fanout.sharing import SharedCompletion, SharingExecutor
from runwire.graphql.schema.build import DOCUMENT_CACHE_SIZE, DocumentLimits
from runwire.graphql.schema.types import EVENT_TYPES, EventType, ExecutionEventBatch, OutputChunk

GRAPHQL_CORE = Contract("graphql-core", "graphql_core")
AT = datetime(2026, 11, 21, tzinfo=UTC)


def batch(*texts: str) -> ExecutionEventBatch:
    events = [
        OutputChunk(
            seq=seq, at=AT, type=EventType.OUTPUT, step_key="s", attempt=1, stream="STDOUT", text=t
        )
        for seq, t in enumerate(texts, start=1)
    ]
    return ExecutionEventBatch(events=list(events), last_seq=len(texts))


def schema_yielding(
    payload: Callable[[], ExecutionEventBatch], *extensions: Callable[[], SchemaExtension]
) -> strawberry.Schema:
    """A schema whose one subscription yields `payload()` once, executed as the server's is."""

    @strawberry.type
    class Query:
        ok: bool = True

    @strawberry.type
    class Subscription:
        @strawberry.subscription
        async def batches(self) -> AsyncGenerator[ExecutionEventBatch, None]:
            yield payload()

    return strawberry.Schema(
        query=Query,
        subscription=Subscription,
        types=list(EVENT_TYPES),
        # Subscribers sending one text share its parsed document, as on the server.
        extensions=[lambda: ParserCache(maxsize=DOCUMENT_CACHE_SIZE), *extensions],
        execution_context_class=SharingExecutor,
    )


async def deliver(
    schema: strawberry.Schema, document: str, variables: dict[str, Any] | None = None
) -> ExecutionResult:
    """What one subscriber is sent of the subscription's one value."""
    stream = await schema.subscribe(document, variable_values=variables)
    assert not isinstance(stream, ExecutionResult), stream
    (result,) = [result async for result in stream]
    return result


FOLLOW = "subscription { batches { lastSeq events { seq ... on OutputChunk { text } } } }"


def test_the_executors_override_complete_value_as_graphql_core_defines_it() -> None:
    with GRAPHQL_CORE.holds(
        "Executor.complete_value(return_type, field_details_list, info, path, result,"
        " position_context) is the hook the executors override"
    ):
        expected = list(inspect.signature(Executor.complete_value).parameters)
        for executor in (PlainListExecutor, SharingExecutor):
            assert list(inspect.signature(executor.complete_value).parameters) == expected


async def test_a_second_subscriber_is_given_the_first_ones_completion() -> None:
    shared = batch("a\n", "b\n")
    schema = schema_yielding(lambda: shared)
    first, second = await deliver(schema, FOLLOW), await deliver(schema, FOLLOW)
    with GRAPHQL_CORE.holds(
        "complete_value sees the subscription's root value with a FieldDetailsList whose node is"
        " the document's field node, so its memoised completion is found again"
    ):
        assert first.errors is None
        assert second.errors is None
        assert first.data is not None
        assert second.data is not None
        assert isinstance(first.data["batches"], SharedCompletion)
        assert second.data["batches"] is first.data["batches"]
        assert first.data["batches"] == {
            "lastSeq": 2,
            "events": [{"seq": 1, "text": "a\n"}, {"seq": 2, "text": "b\n"}],
        }


async def test_lists_of_plain_objects_are_completed_by_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    planned: list[object] = []
    plain = PlainListExecutor._complete_plain_list

    def spy(self: PlainListExecutor, *args: Any) -> Any:
        completed = plain(self, *args)
        planned.append(completed)
        return completed

    monkeypatch.setattr(PlainListExecutor, "_complete_plain_list", spy)
    document = "subscription($t: Boolean!) { batches { events { seq ...F } } }"
    fragment = " fragment F on OutputChunk { text @include(if: $t) stream }"
    result = await deliver(schema_yielding(lambda: batch("a\n")), document + fragment, {"t": False})
    with GRAPHQL_CORE.holds(
        "complete_value is given each list, and collect_subfields(object_type, details) returns"
        " the fields to complete (grouped_field_set, fragments and @include applied)"
    ):
        assert result.errors is None
        assert planned == [[{"seq": 1, "stream": "STDOUT"}]]


async def test_a_completion_with_a_field_error_is_not_shared() -> None:
    broken = batch("a\n")
    # A nullable field that cannot be represented: the completion stays a dict, with an error.
    broken.events[0].step_key = {"not": "a string"}  # type: ignore[union-attr]
    document = "subscription { batches { lastSeq events { seq stepKey } } }"
    result = await deliver(schema_yielding(lambda: broken), document)
    with GRAPHQL_CORE.holds(
        "collected_errors.errors grows while complete_value runs, as a field error is raised"
    ):
        assert result.errors is not None
        assert not broken.completions, "a completion with an error was memoised"


async def test_a_selection_using_variables_in_a_fragment_is_not_shared() -> None:
    shared = batch("a\n")
    document = (
        "subscription($t: Boolean!) { batches { ...F } }"
        " fragment F on ExecutionEventBatch { lastSeq @include(if: $t) }"
    )
    result = await deliver(schema_yielding(lambda: shared), document, {"t": True})
    with GRAPHQL_CORE.holds("fragment_definitions maps the executed document's fragments"):
        assert result.errors is None
        assert result.data == {"batches": {"lastSeq": 1}}
        assert not shared.completions, "a selection depending on a variable was memoised"


async def test_middleware_sees_every_field_of_a_plain_list() -> None:
    resolved: list[str] = []

    class Watch(SchemaExtension):
        def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
            resolved.append(info.field_name)
            return _next(root, info, *args, **kwargs)

    schema = schema_yielding(lambda: batch("a\n", "b\n"), Watch)
    result = await deliver(schema, "subscription { batches { events { seq } } }")
    with GRAPHQL_CORE.holds("middleware_manager.middlewares holds the execution's middleware"):
        assert result.errors is None
        assert resolved.count("seq") == 2, resolved


def test_the_field_comparison_budget_bounds_validation() -> None:
    schema = schema_yielding(lambda: batch())._schema
    document = parse("subscription { " + " ".join(["batches { lastSeq }"] * 50) + " }")
    with GRAPHQL_CORE.holds(
        "overlapping_fields_can_be_merged.MAX_COMPLEXITY_BUDGET is read as each validation starts"
    ):
        try:
            set_field_comparison_budget(10)
            errors = validate(schema, document)
        finally:
            set_field_comparison_budget(DocumentLimits().field_comparison_budget)
        assert [e.message for e in errors] == ["Validation aborted."], errors
        assert validate(schema, document) == []
