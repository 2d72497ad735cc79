"""Values that describe what to read: history filters, pages and queue counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar, overload

from runwire.domain.agents import UsageTotals
from runwire.domain.models import EXECUTION_TERMINAL, Execution, ExecutionStatus, TriggerType
from runwire.errors import FieldError, Invalid

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ExecutionFilter:
    """History filters: always one workspace; every other given field must match too."""

    workspace: str
    statuses: tuple[ExecutionStatus, ...] = ()
    scenario: str | None = None
    label: str | None = None
    queued_after: datetime | None = None
    queued_before: datetime | None = None
    # Case-insensitive substring of the name, a label or the error; matched literally.
    search: str | None = None
    batch: str | None = None
    triggered_by: str | None = None
    # What started it: any of these (a schedule's fires, retries, the API …).
    trigger_types: tuple[TriggerType, ...] = ()
    # Inclusive bounds; executions without a duration (not finished) never match them.
    min_duration_ms: int | None = None
    max_duration_ms: int | None = None

    def __post_init__(self) -> None:
        errors: list[FieldError] = []
        if self.search is not None and len(self.search) > MAX_SEARCH:
            errors.append(FieldError("search", f"at most {MAX_SEARCH} characters"))
        for path, bound in (
            ("min_duration_ms", self.min_duration_ms),
            ("max_duration_ms", self.max_duration_ms),
        ):
            if bound is not None and bound < 0:
                errors.append(FieldError(path, "must not be negative"))
        if (
            self.min_duration_ms is not None
            and self.max_duration_ms is not None
            and self.min_duration_ms > self.max_duration_ms
        ):
            errors.append(FieldError("max_duration_ms", "must not be below the minimum duration"))
        if errors:
            raise Invalid(errors)
        # SQLite compares timestamps as text, so every bound must be in UTC like the stored ones.
        object.__setattr__(self, "queued_after", as_utc(self.queued_after, "queued_after"))
        object.__setattr__(self, "queued_before", as_utc(self.queued_before, "queued_before"))


@dataclass(frozen=True, slots=True)
class Cursor:
    """A keyset position in newest-first history: (queued_at, id) of the last row seen."""

    queued_at: datetime
    id: str


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    has_next: bool


@dataclass(frozen=True, slots=True)
class QueueCounts:
    queued: int
    running: int
    slots: int


MAX_SEARCH = 200
MAX_METRICS_WINDOW = timedelta(days=366)
MAX_METRICS_LABELS = 20
# Percentiles reported by ExecutionMetrics, in percent.
PERCENTILES = (50, 95)


@dataclass(frozen=True, slots=True)
class MetricsQuery:
    """Which executions to measure: those that finished in [since, until), optionally narrowed.

    Constructing one validates it, so a MetricsQuery that exists is a window the database can
    answer quickly.
    """

    workspace: str
    since: datetime
    until: datetime
    scenario: str | None = None
    # Every label must be on the execution.
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        since, until = as_utc(self.since, "since"), as_utc(self.until, "until")
        errors: list[FieldError] = []
        if until <= since:
            errors.append(FieldError("until", "must be later than since"))
        elif until - since > MAX_METRICS_WINDOW:
            errors.append(
                FieldError("until", f"at most {MAX_METRICS_WINDOW.days} days after since")
            )
        if len(set(self.labels)) > MAX_METRICS_LABELS:
            errors.append(FieldError("labels", f"at most {MAX_METRICS_LABELS} labels"))
        if errors:
            raise Invalid(errors)
        object.__setattr__(self, "since", since)
        object.__setattr__(self, "until", until)
        object.__setattr__(self, "labels", tuple(sorted(set(self.labels))))


@dataclass(frozen=True, slots=True)
class ExecutionMetrics:
    """What the executions that finished in a window add up to.

    Percentiles are nearest-rank over the executions with a stored duration: the p-th percentile
    of N durations is the ceil(p * N / 100)-th smallest, so it is always a measured duration.
    """

    query: MetricsQuery
    # Every terminal status, zeros included.
    counts: Mapping[ExecutionStatus, int]
    measured: int
    percentiles_ms: Mapping[int, int | None]
    max_ms: int | None
    # Tokens and cost over the same executions.
    usage: UsageTotals = field(default_factory=UsageTotals)
    # The `call` step attempts of the same executions; None when there were none.
    calls: CallMetrics | None = None

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    @property
    def success_rate(self) -> float | None:
        """Succeeded over all finished (cancelled and timed out count as not succeeded)."""
        finished = self.finished
        return self.counts[ExecutionStatus.SUCCEEDED] / finished if finished else None

    @property
    def throughput_per_minute(self) -> float:
        """Finished executions per minute of the whole window."""
        minutes = (self.query.until - self.query.since).total_seconds() / 60
        return self.finished / minutes


@dataclass(frozen=True, slots=True)
class Distribution:
    """Nearest-rank percentiles, minimum and maximum of some measured values."""

    count: int = 0
    p50: float | None = None
    p95: float | None = None
    min: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution:
        ordered = sorted(values)
        if not ordered:
            return cls()
        n = len(ordered)
        return cls(
            n,
            ordered[nearest_rank(50, n) - 1],
            ordered[nearest_rank(95, n) - 1],
            ordered[0],
            ordered[-1],
        )


@dataclass(frozen=True, slots=True)
class CallMetrics:
    """What the `call` step attempts of a window's executions measured (runner/steps/call.py)."""

    attempts: int
    answered: int
    time_to_answer_ms: Distribution
    time_to_first_prompt_ms: Distribution
    turn_latency_ms: Distribution
    """Each turn's: from our input's end (or the answer) to the far end's next audio."""
    duration_ms: Distribution
    confidence: Distribution
    """Each recognized prompt's."""

    @classmethod
    def of(cls, attributes: Iterable[Mapping[str, Any]]) -> CallMetrics:
        """From the call attempts' stored attributes (`call_*`, see CallStep)."""
        found = list(attributes)

        def values(name: str) -> list[float]:
            picked: list[float] = []
            for item in found:
                value = item.get(name)
                for one in value if isinstance(value, list) else [value]:
                    if isinstance(one, int | float) and not isinstance(one, bool):
                        picked.append(float(one))
            return picked

        return cls(
            attempts=len(found),
            answered=sum(1 for item in found if "call_time_to_answer_ms" in item),
            time_to_answer_ms=Distribution.of(values("call_time_to_answer_ms")),
            time_to_first_prompt_ms=Distribution.of(values("call_time_to_first_prompt_ms")),
            turn_latency_ms=Distribution.of(values("call_turn_latency_ms")),
            duration_ms=Distribution.of(values("call_duration_ms")),
            confidence=Distribution.of(values("call_confidences")),
        )


def nearest_rank(percent: int, count: int) -> int:
    """The 1-based rank of the percent-th percentile of count values: ceil(percent * count / 100).

    Integer arithmetic, so every database and every client computes the same rank.
    """
    return -(-percent * count // 100)


def terminal_statuses() -> tuple[ExecutionStatus, ...]:
    """The terminal statuses in declaration order, so counts list in a stable order."""
    return tuple(status for status in ExecutionStatus if status in EXECUTION_TERMINAL)


@overload
def as_utc(value: datetime, path: str = ...) -> datetime: ...
@overload
def as_utc(value: None, path: str = ...) -> None: ...
@overload
def as_utc(value: datetime | None, path: str = ...) -> datetime | None: ...


def as_utc(value: datetime | None, path: str = "") -> datetime | None:
    """The same instant in UTC; a time without an offset is taken to be UTC already.

    An instant UTC cannot represent (year 1 with a positive offset) is invalid at `path`.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise Invalid([FieldError(path, "out of the representable range of times")]) from None


def matches(where: ExecutionFilter, execution: Execution) -> bool:
    """Whether `execution` passes every given field, as the history query would select it.

    The live list filters in memory with this, so a filter field added to the SQL of history
    belongs here too.
    """
    if execution.workspace_id != where.workspace:
        return False
    if where.statuses and execution.status not in where.statuses:
        return False
    if where.scenario is not None and execution.scenario_name != where.scenario:
        return False
    if where.label is not None and where.label not in execution.labels:
        return False
    queued_at = as_utc(execution.queued_at)
    if where.queued_after is not None and queued_at < where.queued_after:
        return False
    if where.queued_before is not None and queued_at >= where.queued_before:
        return False
    if where.search:
        needle = where.search.lower()
        texts = (execution.name, execution.error or "", *execution.labels)
        if not any(needle in text.lower() for text in texts):
            return False
    if where.batch is not None and execution.batch_id != where.batch:
        return False
    if where.triggered_by is not None and execution.triggered_by != where.triggered_by:
        return False
    if where.trigger_types and execution.trigger_type not in where.trigger_types:
        return False
    duration = execution.duration_ms
    if where.min_duration_ms is not None and (duration is None or duration < where.min_duration_ms):
        return False
    return where.max_duration_ms is None or (
        duration is not None and duration <= where.max_duration_ms
    )


@dataclass(frozen=True, slots=True)
class ScenarioActiveCounts:
    """Executions of one scenario (None: inline definitions) queued, running, paused and
    waiting for a review."""

    scenario: str | None
    queued: int
    # RUNNING, STOPPING and PAUSING: each still holds a runner slot.
    running: int
    paused: int
    waiting: int = 0
