"""An execution's trace: a root span, a span per step attempt, and what the steps reported.

Token and cost totals come from the `tokens_input`, `tokens_output` and `cost_usd` attributes of
step attempts and their spans. A figure reported by a span is taken to include the figures of
everything below it (a step that reports the tokens of its run has summed its LLM calls), so for
each figure the outermost report in a branch counts and the ones beneath it are not added again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runwire.domain.models import Execution, Span, StepRun, duration_between

TOKENS_INPUT = "tokens_input"
TOKENS_OUTPUT = "tokens_output"
COST_USD = "cost_usd"
# Model calls of a step attempt that could not be priced: the trace's cost is then unknown (None)
# rather than the sum of what was priced, which would read as the whole cost.
USAGE_UNPRICED = "usage_unpriced"


@dataclass(frozen=True, slots=True)
class TraceSpan:
    """One node of the trace; `attempt` and `step_key` are None only for the root."""

    id: str
    parent_id: str | None
    name: str
    kind: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    step_key: str | None
    attempt: int | None
    attributes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens summed over the trace; a side nothing reported is None."""

    input: int | None
    output: int | None

    @property
    def total(self) -> int:
        return (self.input or 0) + (self.output or 0)


@dataclass(frozen=True, slots=True)
class Trace:
    """Spans parents first (depth first, siblings by start); totals None when nothing reported."""

    trace_id: str
    spans: tuple[TraceSpan, ...]
    total_duration_ms: int | None
    tokens: TokenUsage | None
    cost_usd: float | None


def step_span_id(key: str, attempt: int) -> str:
    """Step keys are letters, digits, '_' and '-', so '#' cannot make two of these collide."""
    return f"{key}#{attempt}"


def build_trace(execution: Execution, steps: Iterable[StepRun], spans: Iterable[Span]) -> Trace:
    """The trace of `execution` from its step attempts and reported spans, as stored now."""
    duration = execution.duration_ms
    if duration is None:
        duration = duration_between(execution.started_at, execution.finished_at)
    root = TraceSpan(
        id=execution.id,
        parent_id=None,
        name=execution.name or "execution",
        kind="execution",
        status=execution.status.value,
        started_at=execution.started_at,
        finished_at=execution.finished_at,
        duration_ms=duration,
        step_key=None,
        attempt=None,
        attributes={},
    )
    nodes = [root]
    # A step that never started (skipped, or outside a test-panel run) did not happen: no span.
    for step in steps:
        if step.started_at is None:
            continue
        nodes.append(
            TraceSpan(
                id=step_span_id(step.key, step.attempt),
                parent_id=root.id,
                name=step.key,
                kind=step.kind,
                status=step.status.value,
                started_at=step.started_at,
                finished_at=step.finished_at,
                duration_ms=step.duration_ms,
                step_key=step.key,
                attempt=step.attempt,
                attributes=dict(step.attributes or {}),
            )
        )
    step_ids = {node.id for node in nodes[1:]}
    # A reported span reusing the root's or a step attempt's id would make two nodes of one id.
    reserved = step_ids | {root.id}
    reported = [span for span in spans if span.span_id not in reserved]
    known = reserved | {span.span_id for span in reported}
    parents: dict[str, str] = {}
    for span in reported:
        parent = span.parent_id
        if parent is None or parent not in known:
            parent = _home(span, step_ids, root.id)
        parents[span.span_id] = parent
    _break_cycles(parents, {span.span_id: span for span in reported}, step_ids, root.id)
    for span in reported:
        nodes.append(
            TraceSpan(
                id=span.span_id,
                parent_id=parents[span.span_id],
                name=span.name,
                kind=span.kind,
                status=span.status,
                started_at=span.started_at,
                finished_at=span.finished_at,
                duration_ms=span.duration_ms,
                step_key=span.step_key,
                attempt=span.attempt,
                attributes=dict(span.attributes or {}),
            )
        )
    ordered = _depth_first(nodes)
    parent_of = {node.id: node.parent_id for node in ordered}
    tokens_input = _outermost_sum(ordered, parent_of, TOKENS_INPUT)
    tokens_output = _outermost_sum(ordered, parent_of, TOKENS_OUTPUT)
    tokens = None
    if tokens_input is not None or tokens_output is not None:
        tokens = TokenUsage(input=_count(tokens_input), output=_count(tokens_output))
    return Trace(
        trace_id=execution.trace_id,
        spans=tuple(ordered),
        total_duration_ms=duration,
        tokens=tokens,
        cost_usd=None if _any_unpriced(ordered) else _outermost_sum(ordered, parent_of, COST_USD),
    )


def _home(span: Span, step_ids: set[str], root_id: str) -> str:
    """Where a span without a usable parent hangs: its step attempt, else the root."""
    step_id = step_span_id(span.step_key, span.attempt)
    return step_id if step_id in step_ids else root_id


def _break_cycles(
    parents: dict[str, str], spans: Mapping[str, Span], step_ids: set[str], root_id: str
) -> None:
    """Rehome a span whose reported parents lead back to itself, so every span reaches the root."""
    for start in list(parents):
        path: set[str] = set()
        current = start
        while current in parents:  # step attempts and the root are not in `parents`: the top
            if current in path:
                parents[current] = _home(spans[current], step_ids, root_id)
                break
            path.add(current)
            current = parents[current]


def _depth_first(nodes: list[TraceSpan]) -> list[TraceSpan]:
    """The root, then each child's subtree in turn, siblings ordered by start."""
    children: dict[str | None, list[TraceSpan]] = {}
    for node in nodes:
        children.setdefault(node.parent_id, []).append(node)
    for siblings in children.values():
        siblings.sort(key=_start_order)
    ordered: list[TraceSpan] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        node = stack.pop()
        ordered.append(node)
        stack.extend(reversed(children.get(node.id, [])))
    return ordered


def _start_order(node: TraceSpan) -> tuple[bool, float, str]:
    """Not yet started last; otherwise by start, then id for a stable order."""
    started = 0.0 if node.started_at is None else node.started_at.timestamp()
    return (node.started_at is None, started, node.id)


def _outermost_sum(
    ordered: list[TraceSpan], parent_of: Mapping[str, str | None], key: str
) -> float | None:
    """Sum `key` over spans with no ancestor reporting it; None if no span reported it."""
    reporting = {node.id for node in ordered if _number(node.attributes.get(key)) is not None}
    values: list[float] = []
    for node in ordered:
        value = _number(node.attributes.get(key))
        if value is None:
            continue
        ancestor = parent_of.get(node.id)
        while ancestor is not None and ancestor not in reporting:
            ancestor = parent_of.get(ancestor)
        if ancestor is None:
            values.append(value)
    return math.fsum(values) if values else None


def _any_unpriced(ordered: list[TraceSpan]) -> bool:
    return any((_number(node.attributes.get(USAGE_UNPRICED)) or 0) > 0 for node in ordered)


def _count(value: float | None) -> int | None:
    return None if value is None else round(value)


def _number(value: Any) -> float | None:
    """A reported figure, or None for anything that is not a finite number (bools included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
