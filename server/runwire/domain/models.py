"""Executions, step runs and events as plain frozen values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from runwire.domain.agents import UsageTotals
from runwire.domain.trace_context import TraceContext, trace_id_of


class ExecutionStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    # Pause takes effect at the next step boundary: PAUSING until then, PAUSED after.
    PAUSING = "PAUSING"
    PAUSED = "PAUSED"
    # Nothing can run until a person decides a `review` step: held by no runner, like PAUSED.
    WAITING = "WAITING"
    STOPPING = "STOPPING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def is_terminal(self) -> bool:
        return self in EXECUTION_TERMINAL


EXECUTION_TERMINAL = frozenset(
    {
        ExecutionStatus.SUCCEEDED,
        ExecutionStatus.FAILED,
        ExecutionStatus.CANCELLED,
        ExecutionStatus.TIMED_OUT,
    }
)


class StepStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    # A `review` step waiting for its decision (submitReview, or its timeout).
    WAITING = "WAITING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"
    SKIPPED = "SKIPPED"

    @property
    def is_terminal(self) -> bool:
        return self not in (StepStatus.PENDING, StepStatus.RUNNING, StepStatus.WAITING)


class EventType(StrEnum):
    EXECUTION_STATUS = "EXECUTION_STATUS"
    STEP_STATUS = "STEP_STATUS"
    OUTPUT = "OUTPUT"
    OUTPUT_TRUNCATED = "OUTPUT_TRUNCATED"
    SPAN = "SPAN"
    # An agent's transcript entry (domain/agents.AgentEntry.event_data).
    AGENT_ENTRY = "AGENT_ENTRY"
    # A model call's or agent run's tokens and cost, with the step's and execution's totals.
    USAGE = "USAGE"
    # A moment of a `call` step's phone call (domain/calls.CallEvent.event_data).
    CALL = "CALL"


class ExecutionMode(StrEnum):
    """FULL runs the definition; the test-panel modes run one step."""

    FULL = "FULL"
    STEP = "STEP"
    STEP_IN_CONTEXT = "STEP_IN_CONTEXT"


class TriggerType(StrEnum):
    """What started an execution or a suite run (its `triggeredBy` says who).

    A suite run is API or SCHEDULE; its executions are SUITE (or RETRY), and carry the run's
    `triggeredBy`.
    """

    API = "API"  # startExecution, startSuiteRun (the CLI and clients call them too)
    BATCH = "BATCH"  # startBatch
    SUITE = "SUITE"  # a case of a suite run
    RETRY = "RETRY"  # retryFailedCases: a suite case started again
    SCHEDULE = "SCHEDULE"  # a schedule's fire or runScheduleNow


class OutputStream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"
    LOG = "log"


class OutputLimit(StrEnum):
    """Which output budget a step went over (see runner/output_budget.py)."""

    STEP_BYTES = "STEP_BYTES"
    EXECUTION_BYTES = "EXECUTION_BYTES"
    LINE_RATE = "LINE_RATE"


@dataclass(frozen=True, slots=True)
class Event:
    """One change in an execution; `seq` is 1, 2, 3, … per execution with no gaps."""

    execution_id: str
    seq: int
    at: datetime
    type: EventType
    data: Mapping[str, Any]
    step_key: str | None = None
    attempt: int | None = None

    @property
    def is_terminal(self) -> bool:
        return (
            self.type is EventType.EXECUTION_STATUS
            and ExecutionStatus(self.data["status"]).is_terminal
        )


@dataclass(frozen=True, slots=True)
class EventDraft:
    """An event before it has a seq: the writer that holds the execution numbers it."""

    type: EventType
    data: Mapping[str, Any]
    step_key: str | None = None
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class ScenarioVersion:
    """One saved version of a named scenario; editing creates the next version."""

    name: str
    version: int
    description: str
    definition: Mapping[str, Any]
    created_at: datetime
    workspace_id: str = ""


@dataclass(frozen=True, slots=True)
class StepRun:
    """One attempt of one step."""

    execution_id: str
    key: str
    kind: str
    attempt: int
    position: int
    status: StepStatus
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    output: Any = None
    error: str | None = None
    assertions: tuple[Mapping[str, Any], ...] = ()
    attributes: Mapping[str, Any] | None = None
    # What its model calls and agent runs consumed so far: kept up to date while it runs.
    usage: UsageTotals = field(default_factory=UsageTotals)

    @property
    def duration_ms(self) -> int | None:
        return duration_between(self.started_at, self.finished_at)


@dataclass(frozen=True, slots=True)
class Span:
    """A sub-operation one step attempt reported."""

    execution_id: str
    span_id: str
    parent_id: str | None
    step_key: str
    attempt: int
    name: str
    kind: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    attributes: Mapping[str, Any] | None

    @property
    def duration_ms(self) -> int | None:
        return duration_between(self.started_at, self.finished_at)


@dataclass(frozen=True, slots=True)
class Batch:
    """Executions started together; at most `concurrency` of them run at once."""

    id: str
    name: str
    scenario_name: str | None
    concurrency: int
    total: int
    created_at: datetime
    created_by: str
    stopped_at: datetime | None = None
    workspace_id: str = ""


@dataclass(frozen=True, slots=True)
class SuiteVersion:
    """One saved version of a named suite; editing creates the next version."""

    name: str
    version: int
    description: str
    tags: tuple[str, ...]
    definition: Mapping[str, Any]
    created_at: datetime
    created_by: str = ""
    workspace_id: str = ""


@dataclass(frozen=True, slots=True)
class SuiteRunCase:
    """One case as a suite run was asked to run it."""

    name: str
    scenario: str | None
    expected_status: str


@dataclass(frozen=True, slots=True)
class SuiteRun:
    """Every case of one suite version, run `repeat` times as the executions of one batch."""

    id: str
    suite_name: str
    suite_version: int
    batch_id: str
    repeat: int
    concurrency: int
    labels: tuple[str, ...]
    inputs: Mapping[str, Any]
    cases: tuple[SuiteRunCase, ...]
    created_at: datetime
    created_by: str
    workspace_id: str = ""
    # Starting again with this key returns this run (a schedule's fire uses its fire key).
    idempotency_key: str | None = None
    trigger_type: TriggerType = TriggerType.API  # API (startSuiteRun) or SCHEDULE


@dataclass(frozen=True, slots=True)
class SuiteRunMember:
    """Which case (by index and name), repeat (1..N) and attempt of a run an execution is."""

    execution_id: str
    run_id: str
    case_index: int
    case_name: str
    repeat: int
    attempt: int
    expected_status: str


@dataclass(frozen=True, slots=True)
class RepeatOutcome:
    """One execution of a suite run as it stands: its status, duration and usage."""

    member: SuiteRunMember
    status: ExecutionStatus
    duration_ms: int | None
    usage: UsageTotals = field(default_factory=UsageTotals)


@dataclass(frozen=True, slots=True)
class StepFailure:
    """A step attempt that failed or timed out, with the assertions of it that failed."""

    execution_id: str
    step_key: str
    attempt: int
    status: StepStatus
    error: str | None
    assertions: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class CallFigures:
    """What one `call` step attempt measured: each turn's latency and each recognition's
    confidence."""

    execution_id: str
    turn_latencies_ms: tuple[float, ...] = ()
    confidences: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class SuiteRunTotals:
    """A run summed over the latest attempt of each repeat: what a trend charts."""

    run_id: str
    total: int
    ended: int
    passed: int
    duration_ms_sum: int
    durations: int
    usage: UsageTotals = field(default_factory=UsageTotals)


@dataclass(frozen=True, slots=True)
class SuiteBaseline:
    """A run set as its suite's baseline, by whom and when."""

    suite_name: str
    run_id: str
    set_at: datetime
    set_by: str
    workspace_id: str = ""


@dataclass(frozen=True, slots=True)
class Execution:
    id: str
    status: ExecutionStatus
    definition: Mapping[str, Any]
    inputs: Mapping[str, Any]
    queued_at: datetime
    scenario_name: str | None = None
    scenario_version: int | None = None
    labels: tuple[str, ...] = ()
    priority: int = 0
    timeout_seconds: float | None = None
    grace_seconds: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    last_seq: int = 0
    owner: str | None = None
    lease_generation: int = 0
    steps: tuple[StepRun, ...] = field(default=())
    mode: ExecutionMode = ExecutionMode.FULL
    step_key: str | None = None
    upstream: Mapping[str, Any] | None = None
    idempotency_key: str | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    batch_id: str | None = None
    batch_limit: int | None = None
    triggered_by: str = ""
    trigger_type: TriggerType = TriggerType.API
    # Wall time from the first start to the end, pauses included; set when it ends.
    duration_ms: int | None = None
    workspace_id: str = ""
    # Summed over every step attempt as usage is reported, so lists read it from the row.
    usage: UsageTotals = field(default_factory=UsageTotals)
    # The caller's trace this execution continues (W3C trace context), if it was started in one.
    trace_context: TraceContext | None = None

    @property
    def name(self) -> str:
        return str(self.definition.get("name") or self.scenario_name or "")

    @property
    def trace_id(self) -> str:
        """The trace its spans belong to: the caller's, or one of its own."""
        return trace_id_of(self.id, self.trace_context)

    @property
    def lease(self) -> Lease | None:
        """The runner's hold on it, if a runner owns it."""
        return None if self.owner is None else Lease(self.owner, self.lease_generation)

    def latest_attempts(self) -> dict[str, StepRun]:
        """The most recent attempt of each step that has one (needs `steps` loaded)."""
        latest: dict[str, StepRun] = {}
        for run in self.steps:
            if run.key not in latest or run.attempt > latest[run.key].attempt:
                latest[run.key] = run
        return latest


@dataclass(frozen=True, slots=True)
class Lease:
    """A runner's hold on an execution: its owner name and the generation (fencing token).

    Each claim or takeover of an execution gives it a new generation; a write that states an
    older one is refused, so a runner that lost its lease cannot write over its successor.
    """

    owner: str
    generation: int


@dataclass(frozen=True, slots=True)
class Activity:
    """An audit record: who did what, to which execution, when, and with what result."""

    action: str
    actor: str
    execution_id: str | None
    at: datetime
    detail: Mapping[str, Any]
    result: str = ""
    workspace_id: str = ""


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """What may be shown about a secret: never its value."""

    name: str
    created_at: datetime
    updated_at: datetime
    updated_by: str


def duration_between(start: datetime | None, end: datetime | None) -> int | None:
    """Whole milliseconds from start to end, or None if either is unknown."""
    if start is None or end is None:
        return None
    return int((end - start).total_seconds() * 1000)
