"""Where the time went: execution counts, success rate, durations and throughput in a window."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from runwire.domain import queries
from runwire.domain.access import Permission
from runwire.graphql.schema.auth import authorized
from runwire.graphql.schema.context import Info, core
from runwire.graphql.schema.types import ExecutionStatus, UsageTotals

_SCOPE = "Executions that finished (finishedAt) in [since, until)"


@strawberry.type(description="How many finished executions ended in one status.")
class StatusCount:
    status: ExecutionStatus  # type: ignore[valid-type]
    count: int


@strawberry.type(
    description="Nearest-rank percentiles, minimum and maximum of measured values; null when"
    " none was measured."
)
class Distribution:
    count: int
    p50: float | None
    p95: float | None
    min: float | None
    max: float | None

    @classmethod
    def of(cls, found: queries.Distribution) -> Distribution:
        return cls(count=found.count, p50=found.p50, p95=found.p95, min=found.min, max=found.max)


@strawberry.type(
    description="What the `call` step attempts of the executions measured: time to answer and"
    " to the first prompt's audio, each turn's latency (from our input's end to the far end's"
    " next audio), the answered calls' durations (ms) and each prompt's recognition confidence."
)
class CallMetrics:
    attempts: int = strawberry.field(description="Call step attempts (the latest 10000 at most).")
    answered: int
    time_to_answer_ms: Distribution
    time_to_first_prompt_ms: Distribution
    turn_latency_ms: Distribution
    duration_ms: Distribution
    confidence: Distribution

    @classmethod
    def of(cls, found: queries.CallMetrics) -> CallMetrics:
        return cls(
            attempts=found.attempts,
            answered=found.answered,
            time_to_answer_ms=Distribution.of(found.time_to_answer_ms),
            time_to_first_prompt_ms=Distribution.of(found.time_to_first_prompt_ms),
            turn_latency_ms=Distribution.of(found.turn_latency_ms),
            duration_ms=Distribution.of(found.duration_ms),
            confidence=Distribution.of(found.confidence),
        )


@strawberry.type(
    description=(
        f"{_SCOPE}, computed in the database. Percentiles are nearest-rank over the executions"
        " with a stored duration: the p-th percentile of N durations is the ceil(p*N/100)-th"
        " smallest, always one measured duration, the same on every database."
    )
)
class ExecutionMetrics:
    since: datetime
    until: datetime
    counts: list[StatusCount] = strawberry.field(
        description=f"{_SCOPE}, by terminal status; every terminal status is listed, zeros too."
    )
    finished: int = strawberry.field(description=f"{_SCOPE}: how many.")
    success_rate: float | None = strawberry.field(
        description="SUCCEEDED / finished, 0..1 (cancelled and timed out count against it);"
        " null when nothing finished."
    )
    throughput_per_minute: float = strawberry.field(
        description="finished / the window's length in minutes."
    )
    measured: int = strawberry.field(
        description="Finished executions with a stored duration: the percentiles' population."
    )
    p50_duration_ms: int | None = strawberry.field(
        description="Nearest-rank median duration in ms; null when nothing was measured."
    )
    p95_duration_ms: int | None = strawberry.field(
        description="Nearest-rank 95th percentile duration in ms; null when nothing was measured."
    )
    max_duration_ms: int | None = strawberry.field(
        description="Longest duration in ms; null when nothing was measured."
    )
    usage: UsageTotals = strawberry.field(
        description=f"{_SCOPE}: their tokens and cost summed; the cost is null while any"
        " report has no price."
    )
    calls: CallMetrics | None = strawberry.field(
        description=f"{_SCOPE}: their `call` steps' figures; null when they placed no call."
    )

    @classmethod
    def of(cls, found: queries.ExecutionMetrics) -> ExecutionMetrics:
        return cls(
            since=found.query.since,
            until=found.query.until,
            counts=[StatusCount(status=status, count=n) for status, n in found.counts.items()],
            finished=found.finished,
            success_rate=found.success_rate,
            throughput_per_minute=found.throughput_per_minute,
            measured=found.measured,
            p50_duration_ms=found.percentiles_ms[50],
            p95_duration_ms=found.percentiles_ms[95],
            max_duration_ms=found.max_ms,
            usage=UsageTotals.of_totals(found.usage),
            calls=None if found.calls is None else CallMetrics.of(found.calls),
        )


async def execution_metrics(
    info: Info,
    since: Annotated[
        datetime, strawberry.argument(description="Inclusive; without an offset, UTC.")
    ],
    until: Annotated[
        datetime,
        strawberry.argument(
            description="Exclusive; later than since and at most"
            f" {queries.MAX_METRICS_WINDOW.days} days after it."
        ),
    ],
    scenario: str | None = None,
    labels: Annotated[
        list[str] | None,
        strawberry.argument(
            description="Every label must be on the execution"
            f" (at most {queries.MAX_METRICS_LABELS})."
        ),
    ] = None,
) -> ExecutionMetrics:
    actor = authorized(info, Permission.EXECUTION_READ)
    query = queries.MetricsQuery(
        workspace=actor.workspace_id,
        since=since,
        until=until,
        scenario=scenario,
        labels=tuple(labels or ()),
    )
    return ExecutionMetrics.of(await core(info).store.metrics.execution_metrics(query))
