"""Output types of an execution's trace, mapped from runwire.domain.trace."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from runwire.domain import models, trace


@strawberry.type(
    description=(
        "One node of a trace: the execution (the root), a step attempt (parent: the root), or a"
        " sub-operation a step reported (an HTTP phase, an LLM or tool call)."
    )
)
class Span:
    id: strawberry.ID
    parent_id: strawberry.ID | None = strawberry.field(description="Null only for the root.")
    name: str = strawberry.field(
        description="The scenario's name (root), the step's key, or the operation's name."
    )
    kind: str = strawberry.field(
        description="`execution` (root), the step's kind, or the operation's kind (`http`, …)."
    )
    status: str = strawberry.field(
        description=(
            "An ExecutionStatus (root) or StepStatus (step attempt); SUCCEEDED, FAILED or"
            " CANCELLED for an operation."
        )
    )
    started_at: datetime | None = strawberry.field(
        description="Null only for a root that has not started."
    )
    finished_at: datetime | None
    duration_ms: int | None = strawberry.field(description="Null until it finishes.")
    step_key: str | None = strawberry.field(description="Its step; null for the root.")
    attempt: int | None = strawberry.field(description="The step's attempt; null for the root.")
    attributes: JSON = strawberry.field(
        description=(
            "What was reported: e.g. latency_ms and status of an HTTP step, host and port of a"
            " connect, tokens_input, tokens_output and cost_usd of an LLM call."
        )
    )

    @classmethod
    def reported(cls, event: models.Event) -> Span:
        """The span a SPAN event carries (data from runner.spans.span_event_data)."""
        assert event.step_key is not None  # the repository refuses SPAN events without them
        assert event.attempt is not None
        data = event.data
        started_at = datetime.fromisoformat(str(data["started_at"]))
        finished_at = data.get("finished_at")
        finished = None if finished_at is None else datetime.fromisoformat(str(finished_at))
        parent_id = data.get("parent_id") or trace.step_span_id(event.step_key, event.attempt)
        return cls(
            id=strawberry.ID(str(data["span_id"])),
            parent_id=strawberry.ID(str(parent_id)),
            name=str(data.get("name", "")),
            kind=str(data.get("kind", "")),
            status=str(data.get("status", "")),
            started_at=started_at,
            finished_at=finished,
            duration_ms=models.duration_between(started_at, finished),
            step_key=event.step_key,
            attempt=event.attempt,
            attributes=JSON(dict(data.get("attributes") or {})),
        )

    @classmethod
    def of(cls, span: trace.TraceSpan) -> Span:
        return cls(
            id=strawberry.ID(span.id),
            parent_id=None if span.parent_id is None else strawberry.ID(span.parent_id),
            name=span.name,
            kind=span.kind,
            status=span.status,
            started_at=span.started_at,
            finished_at=span.finished_at,
            duration_ms=span.duration_ms,
            step_key=span.step_key,
            attempt=span.attempt,
            attributes=JSON(dict(span.attributes)),
        )


@strawberry.type(description="Tokens summed over the trace; a side nothing reported is null.")
class TokenUsage:
    input: int | None
    output: int | None
    total: int


@strawberry.type(description="An execution as a tree of timed spans, with totals.")
class Trace:
    trace_id: str = strawberry.field(description="As Execution.traceId.")
    spans: list[Span] = strawberry.field(
        description="Parents before children, depth first; siblings in order of start."
    )
    total_duration_ms: int | None = strawberry.field(
        description="The execution's wall time, pauses included; null until it ends."
    )
    tokens: TokenUsage | None = strawberry.field(
        description=(
            "From tokens_input and tokens_output attributes; a figure reported by a span counts"
            " for everything beneath it. Null when nothing reported tokens."
        )
    )
    cost: float | None = strawberry.field(
        description="US dollars, from cost_usd attributes, summed alike; null when none reported,"
        " and null when any model call of the execution had no price (never a partial sum)."
    )

    @classmethod
    def of(cls, found: trace.Trace) -> Trace:
        tokens = None
        if found.tokens is not None:
            tokens = TokenUsage(
                input=found.tokens.input, output=found.tokens.output, total=found.tokens.total
            )
        return cls(
            trace_id=found.trace_id,
            spans=[Span.of(span) for span in found.spans],
            total_duration_ms=found.total_duration_ms,
            tokens=tokens,
            cost=found.cost_usd,
        )
