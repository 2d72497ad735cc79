"""The values the API returns: executions, steps, events, traces, history pages, live updates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class ExecutionStatus(StrEnum):
    """Where an execution is; the value is the GraphQL enum name."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    PAUSING = "PAUSING"
    PAUSED = "PAUSED"
    WAITING = "WAITING"  # for a review step's decision: `reviews()`, `submit_review()`
    STOPPING = "STOPPING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def is_terminal(self) -> bool:
        """The execution has ended (a retried step may still start it again)."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {
        ExecutionStatus.SUCCEEDED,
        ExecutionStatus.FAILED,
        ExecutionStatus.CANCELLED,
        ExecutionStatus.TIMED_OUT,
    }
)


class StepStatus(StrEnum):
    """Where one attempt of a step is."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    WAITING = "WAITING"  # a review step, until its review is decided (or times out)
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"
    SKIPPED = "SKIPPED"


class ExecutionMode(StrEnum):
    """FULL runs the definition; STEP and STEP_IN_CONTEXT run only one step."""

    FULL = "FULL"
    STEP = "STEP"
    STEP_IN_CONTEXT = "STEP_IN_CONTEXT"


class UpdateKind(StrEnum):
    """CHANGED: a status change, or (the same status) a change of usage totals; CURRENT: restated
    because changes may have been missed."""

    CHANGED = "CHANGED"
    CURRENT = "CURRENT"


@dataclass(frozen=True, slots=True)
class ScenarioInput:
    """One input a scenario takes (`rw run NAME --input NAME=VALUE`), or one field of a review's
    form (`rw review ID STEP DECISION --value NAME=VALUE`): both are typed alike. `enum`, when
    set, lists the values it accepts."""

    name: str
    type: str
    required: bool
    default: Any
    description: str | None
    enum: tuple[Any, ...] | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    """The latest version of a saved scenario, as `scenarios()` lists it."""

    name: str
    version: int
    description: str
    inputs: tuple[ScenarioInput, ...]


@dataclass(frozen=True, slots=True)
class ScenarioRef:
    """The saved scenario (name and version) an execution runs."""

    name: str
    version: int


@dataclass(frozen=True, slots=True)
class AssertionResult:
    """One checked assertion of a step attempt."""

    assertion: str
    path: str | None
    expected: Any
    actual: Any
    passed: bool
    message: str | None


@dataclass(frozen=True, slots=True)
class Artifact:
    """A file a step attempt kept; `RunwireClient.download(artifact)` reads its content.

    `url` is a path on the server with a ticket valid for 5 minutes: get the execution again
    for a fresh one.
    """

    id: str
    name: str
    media_type: str
    bytes: int
    created_at: datetime
    url: str


@dataclass(frozen=True, slots=True)
class StepRun:
    """One attempt of one step, or a step that has not run yet (PENDING, attempt 0)."""

    key: str
    kind: str
    status: StepStatus
    attempt: int
    position: int
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    exit_code: int | None
    output: Any
    error: str | None
    assertions: tuple[AssertionResult, ...]
    artifacts: tuple[Artifact, ...] = ()


@dataclass(frozen=True, slots=True)
class Execution:
    """An execution as the server stored it; `steps` is filled only by `get`."""

    id: str
    name: str
    status: ExecutionStatus
    scenario: ScenarioRef | None
    inputs: dict[str, Any]
    labels: tuple[str, ...]
    priority: int
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    error: str | None
    last_seq: int
    mode: ExecutionMode
    step_key: str | None
    batch_id: str | None
    triggered_by: str
    idempotency_key: str | None
    steps: tuple[StepRun, ...] = ()


class ReviewStatus(StrEnum):
    """Where a review is: PENDING waits for a decision; the others are closed."""

    PENDING = "PENDING"
    DECIDED = "DECIDED"
    TIMED_OUT = "TIMED_OUT"  # closed by the step's timeout, as its on_timeout says
    CANCELLED = "CANCELLED"  # closed unanswered: the execution was stopped or the step skipped


@dataclass(frozen=True, slots=True)
class Review:
    """One attempt of a review step: what reviewers are asked and the form they fill in, and,
    once closed, what was decided, by whom (`system:review-timeout` for a timeout) and when.

    `execution` is the execution it belongs to (without its steps); `shown_steps` the latest
    attempts of the steps it shows reviewers, with their outputs and artifacts. `expires_at`
    None: it waits until decided.
    """

    execution_id: str
    step_key: str
    attempt: int
    status: ReviewStatus
    title: str
    instructions: str
    decisions: tuple[str, ...]
    fail_on: tuple[str, ...]
    on_timeout: str
    form: tuple[ScenarioInput, ...]
    requested_at: datetime
    expires_at: datetime | None
    decision: str | None
    values: dict[str, Any] | None
    comment: str | None
    decided_by: str | None
    decided_at: datetime | None
    execution: Execution | None
    shown_steps: tuple[StepRun, ...] = ()


@dataclass(frozen=True, slots=True)
class ReviewUpdate:
    """An execution started or stopped waiting for a review: `reviews` are its reviews of the
    subscribed status now (empty once none is left), to replace what a list shows for it."""

    execution_id: str
    reviews: tuple[Review, ...]


@dataclass(frozen=True, slots=True)
class QueueHealth:
    """The workspace's queue and whether a runner is alive to claim it (runners serve every
    workspace); `warning` is set while work has waited a lease with no runner alive."""

    queued: int
    runners_alive: int
    oldest_queued_age_seconds: float | None
    warning: str | None


@dataclass(frozen=True, slots=True)
class ExecutionFilter:
    """Which executions history and live updates show; every given field must match."""

    statuses: Sequence[ExecutionStatus] | None = None
    scenario: str | None = None
    label: str | None = None
    queued_after: datetime | None = None
    queued_before: datetime | None = None
    search: str | None = None
    batch: str | None = None
    triggered_by: str | None = None
    min_duration_ms: int | None = None
    max_duration_ms: int | None = None

    def to_variables(self) -> dict[str, Any]:
        """The GraphQL `ExecutionFilter` input; fields left out are not sent."""
        given: dict[str, Any] = {
            "statuses": None if self.statuses is None else [str(s) for s in self.statuses],
            "scenario": self.scenario,
            "label": self.label,
            "queuedAfter": None if self.queued_after is None else self.queued_after.isoformat(),
            "queuedBefore": None if self.queued_before is None else self.queued_before.isoformat(),
            "search": self.search,
            "batch": self.batch,
            "triggeredBy": self.triggered_by,
            "minDurationMs": self.min_duration_ms,
            "maxDurationMs": self.max_duration_ms,
        }
        return {name: value for name, value in given.items() if value is not None}


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One keyset page of history, newest first; pass `end_cursor` as `after` for the next."""

    executions: tuple[Execution, ...]
    has_next_page: bool
    end_cursor: str | None


@dataclass(frozen=True, slots=True)
class Span:
    """One node of a trace: the execution, a step attempt, or a step's sub-operation."""

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
    attributes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens summed over a trace; a side nothing reported is None."""

    input: int | None
    output: int | None
    total: int


@dataclass(frozen=True, slots=True)
class Trace:
    """An execution as a tree of timed spans (parents before children), with totals."""

    execution_id: str
    status: ExecutionStatus
    spans: tuple[Span, ...]
    total_duration_ms: int | None
    tokens: TokenUsage | None
    cost: float | None


@dataclass(frozen=True, slots=True)
class ExecutionUpdate:
    """One message of the live list: an execution changed status or usage (or is restated)."""

    kind: UpdateKind
    status: ExecutionStatus
    at: datetime
    execution: Execution


# Events: one class per kind, so callers tell them apart with isinstance or `match`. The
# common fields come first in each (keyword-only), the kind's own after them.


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionStatusChanged:
    """The execution changed status; the one to a terminal status is the last event."""

    seq: int
    at: datetime
    step_key: str | None
    attempt: int | None
    status: ExecutionStatus
    error: str | None
    reason: str | None

    @property
    def terminal(self) -> bool:
        """This is the execution's terminal event: follow() yields nothing after it."""
        return self.status.is_terminal


@dataclass(frozen=True, slots=True, kw_only=True)
class StepStatusChanged:
    """A step attempt changed status."""

    seq: int
    at: datetime
    step_key: str | None
    attempt: int | None
    status: StepStatus
    kind: str | None
    exit_code: int | None
    error: str | None
    output: Any
    retry_in_seconds: float | None
    reason: str | None

    @property
    def terminal(self) -> bool:
        """Never: only an execution status ends the stream."""
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputChunk:
    """Output of a step: one or more lines of one stream ("stdout" or "stderr")."""

    seq: int
    at: datetime
    step_key: str | None
    attempt: int | None
    stream: str
    text: str

    @property
    def terminal(self) -> bool:
        """Never: only an execution status ends the stream."""
        return False


class OutputLimit(StrEnum):
    """Which output budget a step went over."""

    STEP_BYTES = "STEP_BYTES"
    EXECUTION_BYTES = "EXECUTION_BYTES"
    LINE_RATE = "LINE_RATE"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputTruncated:
    """A step's output went over a budget: dropped from here on (`final` False), or the attempt
    ended and these are the totals dropped (`final` True)."""

    seq: int
    at: datetime
    step_key: str | None
    attempt: int | None
    limit: OutputLimit
    allowed: float  # bytes, or lines per second for LINE_RATE
    dropped_bytes: int
    dropped_lines: int
    final: bool
    message: str

    @property
    def terminal(self) -> bool:
        """Never: only an execution status ends the stream."""
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class SpanReported:
    """A step reported a finished sub-operation (an HTTP phase, an LLM or tool call)."""

    seq: int
    at: datetime
    step_key: str | None
    attempt: int | None
    span: Span

    @property
    def terminal(self) -> bool:
        """Never: only an execution status ends the stream."""
        return False


class AgentEntryType(StrEnum):
    """What an agent transcript entry is."""

    INIT = "INIT"
    ASSISTANT_TEXT = "ASSISTANT_TEXT"
    TOOL_CALL = "TOOL_CALL"
    TOOL_RESULT = "TOOL_RESULT"
    RESULT = "RESULT"
    UNKNOWN = "UNKNOWN"  # a line of a shape the server does not know, kept in data["raw"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentEntryReported:
    """One typed entry of an agent's transcript; which fields are set depends on `entry`.

    INIT: `data` has the session, model and tools. ASSISTANT_TEXT: `text`. TOOL_CALL: `tool`,
    `call_id`, `data["input"]`. TOOL_RESULT: `call_id`, `text` (the tool's output), `is_error`.
    RESULT: `text` (the final answer), `is_error`, `data` (outcome, turns, duration_ms).
    UNKNOWN: `data["raw"]`. `entry` is a plain str when the server names a kind of entry this
    client does not know yet.
    """

    seq: int
    at: datetime
    step_key: str | None
    attempt: int | None
    entry: AgentEntryType | str
    text: str | None
    tool: str | None
    call_id: str | None
    is_error: bool
    data: dict[str, Any] | None

    @property
    def terminal(self) -> bool:
        """Never: only an execution status ends the stream."""
        return False


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Usage summed over a step's attempts or a whole execution.

    `cost_usd` is None while any report in the sum has no price (`unpriced` counts them): a
    partial sum is never shown as the cost.
    """

    calls: int
    tokens_input: int
    tokens_output: int
    tokens_cached: int
    tokens_reasoning: int
    cost_usd: float | None
    unpriced: int

    @property
    def tokens(self) -> int:
        """Input and output tokens (cached and reasoning ones are counted in these)."""
        return self.tokens_input + self.tokens_output


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageReported:
    """A model call or agent run reported what it consumed, with the step's and execution's
    totals so far. `cost_usd` is None when the model has no price (`unpriced` says why)."""

    seq: int
    at: datetime
    step_key: str | None
    attempt: int | None
    model: str | None
    tokens_input: int
    tokens_output: int
    tokens_cached: int
    tokens_reasoning: int
    cost_usd: float | None
    unpriced: str | None
    price_source: str | None
    ttft_ms: float | None
    duration_ms: float | None
    tokens_per_second: float | None
    step_totals: UsageTotals
    execution_totals: UsageTotals

    @property
    def terminal(self) -> bool:
        """Never: only an execution status ends the stream."""
        return False


class CallEventType(StrEnum):
    """A moment of a `call` step's phone call."""

    DIALING = "DIALING"
    RINGING = "RINGING"
    ANSWERED = "ANSWERED"
    PROMPT = "PROMPT"
    DTMF_SENT = "DTMF_SENT"
    SPEECH_SENT = "SPEECH_SENT"
    MATCHED = "MATCHED"
    NO_INPUT = "NO_INPUT"
    TRANSFERRED = "TRANSFERRED"
    HUNG_UP = "HUNG_UP"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEventReported:
    """One moment of a phone call; which fields are set depends on `call`.

    PROMPT: transcript, confidence, audio_started_ms, audio_ended_ms, latency_ms, intent.
    DTMF_SENT: digits, method. SPEECH_SENT: text. MATCHED: matched, intent. TRANSFERRED: target.
    HUNG_UP: by (US or FAR_END), cause. FAILED: sip_status, reason. Times are ms from the answer.
    `call` is a plain str when the server names a moment this client does not know yet.
    """

    seq: int
    at: datetime
    step_key: str | None
    attempt: int | None
    call: CallEventType | str
    action: int | None = None
    at_ms: float | None = None
    transcript: str | None = None
    confidence: float | None = None
    audio_started_ms: float | None = None
    audio_ended_ms: float | None = None
    latency_ms: float | None = None
    digits: str | None = None
    method: str | None = None
    text: str | None = None
    matched: str | None = None
    intent: str | None = None
    by: str | None = None
    cause: str | None = None
    sip_status: int | None = None
    reason: str | None = None
    target: str | None = None

    @property
    def terminal(self) -> bool:
        """Never: only an execution status ends the stream."""
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownEvent:
    """An event of a type this client does not know (the server is newer): its common fields,
    its GraphQL `typename` and its `type`, so a consumer can skip it or show that it came."""

    seq: int
    at: datetime
    step_key: str | None
    attempt: int | None
    typename: str
    type: str | None

    @property
    def terminal(self) -> bool:
        """Never: the terminal event is an ExecutionStatusChanged, a type every client knows."""
        return False


Event = (
    ExecutionStatusChanged
    | StepStatusChanged
    | OutputChunk
    | OutputTruncated
    | SpanReported
    | AgentEntryReported
    | UsageReported
    | CallEventReported
    | UnknownEvent
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SuiteCaseResult:
    """One case of a suite run, over its repeats; `status` is PENDING, PASSED, FAILED or
    FLAKY, `pass_rate` passed over ended repeats (None until one ended)."""

    name: str
    status: str
    passed: int
    failed: int
    pending: int
    pass_rate: float | None
    duration_p50_ms: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SuiteRun:
    """Every case of a suite run `repeat` times as one batch; results as they stood."""

    id: str
    suite: str
    suite_version: int
    repeat: int
    batch_id: str
    total: int
    ended: int
    complete: bool
    pass_rate: float | None
    passed_cases: int
    failed_cases: int
    flaky_cases: int
    pending_cases: int
    cases: tuple[SuiteCaseResult, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SuiteCaseComparison:
    """One case of a comparison: REGRESSED, FIXED, UNCHANGED_PASS, UNCHANGED_FAIL, FLAKY, NEW,
    REMOVED or PENDING."""

    name: str
    change: str
    base_pass_rate: float | None
    head_pass_rate: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SuiteComparison:
    """Each case of the head run against the base run, and the one-line verdict."""

    base_run_id: str
    head_run_id: str
    verdict: str
    regressed: bool
    cases: tuple[SuiteCaseComparison, ...]
