"""Building an execution's trace (tree and totals) from its step attempts and reported spans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runwire.domain.models import (
    Execution,
    ExecutionMode,
    ExecutionStatus,
    Span,
    StepRun,
    StepStatus,
)
from runwire.domain.trace import Trace, TraceSpan, build_trace

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def execution(**changes: Any) -> Execution:
    values: dict[str, Any] = {
        "id": "ex-1",
        "status": ExecutionStatus.SUCCEEDED,
        "definition": {"name": "checkout"},
        "inputs": {},
        "queued_at": at(-5),
        "started_at": at(0),
        "finished_at": at(1000),
        "duration_ms": 1000,
    }
    values.update(changes)
    return Execution(**values)


def step(
    key: str, attempt: int = 1, start: int | None = 0, end: int | None = 100, **changes: Any
) -> StepRun:
    values: dict[str, Any] = {
        "execution_id": "ex-1",
        "key": key,
        "kind": "shell",
        "attempt": attempt,
        "position": 0,
        "status": StepStatus.SUCCEEDED,
        "started_at": None if start is None else at(start),
        "finished_at": None if end is None else at(end),
    }
    values.update(changes)
    return StepRun(**values)


def span(
    span_id: str,
    step_key: str = "a",
    start: int = 10,
    end: int | None = 20,
    parent_id: str | None = None,
    attempt: int = 1,
    **attributes: Any,
) -> Span:
    return Span(
        execution_id="ex-1",
        span_id=span_id,
        parent_id=parent_id,
        step_key=step_key,
        attempt=attempt,
        name=f"op {span_id}",
        kind="http",
        status="SUCCEEDED",
        started_at=at(start),
        finished_at=None if end is None else at(end),
        attributes=attributes or None,
    )


def tree(trace: Trace) -> list[tuple[str, str | None]]:
    return [(node.id, node.parent_id) for node in trace.spans]


def by_id(trace: Trace) -> dict[str, TraceSpan]:
    return {node.id: node for node in trace.spans}


def test_root_then_each_step_attempt_then_its_spans_depth_first() -> None:
    steps = [
        step("a", 1, 0, 100, status=StepStatus.FAILED),
        step("a", 2, 150, 300, attributes={"latency_ms": 12.5, "status": 200}),
        step("b", 1, 300, 400, kind="http", position=1),
    ]
    spans = [
        span("s2", "a", 200, 250, attempt=2),
        span("s1", "a", 160, 200, attempt=2),
        span("s1-child", "a", 165, 170, parent_id="s1", attempt=2),
        span("b1", "b", 310, 390),
    ]
    trace = build_trace(execution(), steps, spans)

    assert tree(trace) == [
        ("ex-1", None),
        ("a#1", "ex-1"),
        ("a#2", "ex-1"),
        ("s1", "a#2"),
        ("s1-child", "s1"),
        ("s2", "a#2"),
        ("b#1", "ex-1"),
        ("b1", "b#1"),
    ]
    nodes = by_id(trace)
    root = nodes["ex-1"]
    assert (root.name, root.kind, root.status, root.attempt, root.duration_ms) == (
        "checkout",
        "execution",
        "SUCCEEDED",
        None,
        1000,
    )
    first, retry = nodes["a#1"], nodes["a#2"]
    assert (first.name, first.kind, first.status, first.attempt) == ("a", "shell", "FAILED", 1)
    assert (retry.attempt, retry.duration_ms) == (2, 150)
    assert retry.attributes == {"latency_ms": 12.5, "status": 200}
    child = nodes["s1-child"]
    assert (child.step_key, child.attempt, child.kind, child.duration_ms) == ("a", 2, "http", 5)
    assert trace.total_duration_ms == 1000


def test_steps_that_never_ran_have_no_span() -> None:
    steps = [step("a"), step("b", start=None, end=None, status=StepStatus.SKIPPED)]
    assert tree(build_trace(execution(), steps, [])) == [("ex-1", None), ("a#1", "ex-1")]


def test_a_queued_execution_is_a_lone_root_without_times() -> None:
    queued = execution(
        status=ExecutionStatus.QUEUED, started_at=None, finished_at=None, duration_ms=None
    )
    trace = build_trace(queued, [], [])
    assert tree(trace) == [("ex-1", None)]
    assert (trace.spans[0].started_at, trace.spans[0].duration_ms) == (None, None)
    assert (trace.total_duration_ms, trace.tokens, trace.cost_usd) == (None, None, None)


def test_running_parts_have_no_duration_yet() -> None:
    running = execution(status=ExecutionStatus.RUNNING, finished_at=None, duration_ms=None)
    trace = build_trace(
        running, [step("a", end=None, status=StepStatus.RUNNING)], [span("s", end=None)]
    )
    assert [node.duration_ms for node in trace.spans] == [None, None, None]
    assert trace.total_duration_ms is None


def test_total_duration_falls_back_to_start_and_end() -> None:
    # An execution that ended before duration_ms was recorded.
    trace = build_trace(execution(duration_ms=None, finished_at=at(750)), [], [])
    assert trace.total_duration_ms == 750


def test_a_test_panel_execution_shows_its_one_step() -> None:
    panel = execution(
        mode=ExecutionMode.STEP_IN_CONTEXT, step_key="b", definition={"name": "checkout"}
    )
    trace = build_trace(panel, [step("b", kind="http")], [span("p", "b")])
    assert tree(trace) == [("ex-1", None), ("b#1", "ex-1"), ("p", "b#1")]


def test_spans_with_an_unknown_or_cyclic_parent_hang_under_their_step() -> None:
    spans = [
        span("orphan", parent_id="gone"),
        span("x", parent_id="y", start=11),
        span("y", parent_id="x", start=12),
        span("self", parent_id="self", start=13),
        span("no-step", step_key="zzz", start=14),
        span("a#1", start=15),  # a reserved id: the step attempt's own span wins
    ]
    trace = build_trace(execution(), [step("a")], spans)
    parents = dict(tree(trace))
    assert len(trace.spans) == 7  # root, a#1 and every span but the impostor
    assert parents["a#1"] == "ex-1"
    assert parents["orphan"] == "a#1"
    assert parents["self"] == "a#1"
    assert (parents["x"], parents["y"]) == ("a#1", "x")  # the cycle is cut where it closes
    assert parents["no-step"] == "ex-1"
    # Every span is reachable from the root, parents listed before their children.
    listed: set[str] = set()
    for node_id, parent_id in tree(trace):
        assert parent_id is None or parent_id in listed
        listed.add(node_id)


def test_tokens_and_cost_are_summed_over_steps_and_spans() -> None:
    steps = [
        step("a", attributes={"tokens_input": 100, "tokens_output": 20, "cost_usd": 0.25}),
        step("b", start=100, end=200, attributes={"latency_ms": 3}),
    ]
    spans = [
        span("b-llm-1", "b", 110, 120, tokens_input=7, tokens_output=3, cost_usd=0.5),
        span("b-llm-2", "b", 130, 140, tokens_input=1, cost_usd=0.125),
    ]
    trace = build_trace(execution(), steps, spans)
    assert trace.tokens is not None
    assert (trace.tokens.input, trace.tokens.output, trace.tokens.total) == (108, 23, 131)
    assert trace.cost_usd == pytest.approx(0.875)


def test_a_figure_reported_above_covers_the_same_figure_below() -> None:
    # The step summed its calls' tokens itself; the calls' own figures are not added again.
    steps = [step("a", attributes={"tokens_input": 30})]
    spans = [
        span("call-1", tokens_input=10, tokens_output=4),
        span("call-2", start=20, end=30, tokens_input=20, tokens_output=6, cost_usd=0.01),
        span("tool", start=21, end=22, parent_id="call-2", cost_usd=0.02),
    ]
    trace = build_trace(execution(), steps, spans)
    assert trace.tokens is not None
    assert (trace.tokens.input, trace.tokens.output) == (30, 10)
    assert trace.cost_usd == pytest.approx(0.01)


def test_totals_are_null_when_nothing_reported_them() -> None:
    steps = [step("a", attributes={"latency_ms": 5, "status": 200})]
    trace = build_trace(execution(), steps, [span("s", tokens_input=True, cost_usd="free")])
    assert (trace.tokens, trace.cost_usd) == (None, None)


def test_only_one_side_of_tokens_known() -> None:
    trace = build_trace(execution(), [step("a", attributes={"tokens_output": 9.0})], [])
    assert trace.tokens is not None
    assert (trace.tokens.input, trace.tokens.output, trace.tokens.total) == (None, 9, 9)


def test_the_cost_is_unknown_when_any_model_call_had_no_price() -> None:
    steps = [
        StepRun(
            "ex-1",
            "a",
            "llm",
            1,
            0,
            StepStatus.SUCCEEDED,
            at(0),
            at(10),
            attributes={"tokens_input": 5, "cost_usd": 0.5, "usage_unpriced": 0},
        ),
        StepRun(
            "ex-1",
            "b",
            "llm",
            1,
            1,
            StepStatus.SUCCEEDED,
            at(10),
            at(20),
            attributes={"tokens_input": 5, "usage_priced_usd": 0.1, "usage_unpriced": 1},
        ),
    ]
    found = build_trace(execution(), steps, [])
    assert found.cost_usd is None
    assert found.tokens is not None
    assert found.tokens.input == 10
