"""Output types: executions, steps, scenarios and events, mapped from domain values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from runwire.domain import agents, artifacts, calls, models, queries
from runwire.domain.access import Permission
from runwire.domain.runners import RunnerPresence
from runwire.domain.trace import build_trace
from runwire.errors import NotFound
from runwire.events import hub
from runwire.graphql.fanout.sharing import SharedSource
from runwire.graphql.schema.auth import authorized
from runwire.graphql.schema.context import Info, core
from runwire.graphql.schema.trace import Span, Trace

ExecutionStatus = strawberry.enum(models.ExecutionStatus, name="ExecutionStatus")
StepStatus = strawberry.enum(models.StepStatus, name="StepStatus")
ExecutionMode = strawberry.enum(models.ExecutionMode, name="ExecutionMode")
TriggerType = strawberry.enum(
    models.TriggerType,
    name="TriggerType",
    description="What started an execution: startExecution (API), startBatch (BATCH),"
    " startSuiteRun (SUITE), retryFailedCases (RETRY) or a schedule (SCHEDULE); what started"
    " a suite run: startSuiteRun (API) or a schedule (SCHEDULE).",
)
OutputLimit = strawberry.enum(
    models.OutputLimit,
    name="OutputLimit",
    description="An output budget: bytes per step attempt, per execution, or a line rate.",
)


@strawberry.enum
class EventType(Enum):
    EXECUTION_STATUS = "EXECUTION_STATUS"
    STEP_STATUS = "STEP_STATUS"
    OUTPUT = "OUTPUT"
    OUTPUT_TRUNCATED = "OUTPUT_TRUNCATED"
    SPAN = "SPAN"
    AGENT_ENTRY = "AGENT_ENTRY"
    USAGE = "USAGE"
    CALL = "CALL"


AgentEntryType = strawberry.enum(
    agents.EntryType,
    name="AgentEntryType",
    description="What an agent transcript entry is: its start, assistant text, a tool call, the"
    " tool's result, the final result, or a line of a shape Runwire does not know (kept raw).",
)


CallEventType = strawberry.enum(
    calls.CallEventType,
    name="CallEventType",
    description="A moment of a `call` step's phone call: its setup (DIALING, RINGING,"
    " ANSWERED), what the far end said (PROMPT), what we sent (DTMF_SENT, SPEECH_SENT), an"
    " `expect` that held (MATCHED), a listen that heard nothing (NO_INPUT), and its end"
    " (TRANSFERRED, HUNG_UP, FAILED).",
)


@strawberry.type
class ScenarioRef:
    name: str
    version: int


@strawberry.type(description="One input of a scenario's signature, for rendering a form.")
class ScenarioInput:
    name: str
    type: str
    required: bool
    default: JSON | None
    description: str | None
    enum: list[JSON] | None


@strawberry.type(description="One version of a named scenario.")
class Scenario:
    name: str
    version: int
    description: str
    created_at: datetime
    definition: JSON

    @strawberry.field
    def inputs(self) -> list[ScenarioInput]:
        definition: dict[str, Any] = self.definition  # type: ignore[assignment]
        specs = definition.get("inputs") or {}
        return [
            ScenarioInput(
                name=name,
                type=str(spec.get("type")),
                required=bool(spec.get("required", "default" not in spec)),
                default=spec.get("default"),
                description=spec.get("description"),
                enum=spec.get("enum"),
            )
            for name, spec in specs.items()
        ]

    @classmethod
    def of(cls, scenario: models.ScenarioVersion) -> Scenario:
        return cls(
            name=scenario.name,
            version=scenario.version,
            description=scenario.description,
            created_at=scenario.created_at,
            definition=JSON(dict(scenario.definition)),
        )


@strawberry.type(description="One checked assertion of a step's `expect:` (or its kind's default).")
class AssertionResult:
    assertion: str = strawberry.field(
        description="exit_code, status, output_contains, output_matches, json or latency_ms_below."
    )
    path: str | None = strawberry.field(description="The JSONPath, for a json assertion.")
    expected: JSON | None
    actual: JSON | None = strawberry.field(
        description="What the step showed; texts are cut to their start and end."
    )
    passed: bool
    message: str | None = strawberry.field(description="Why it failed; null when it passed.")


def assertion_results(records: Iterable[Mapping[str, Any]]) -> list[AssertionResult]:
    """From stored records; a missing key reads as null, so records of any age map."""
    return [
        AssertionResult(
            assertion=str(record.get("assertion")),
            path=record.get("path"),
            expected=record.get("expected"),
            actual=record.get("actual"),
            passed=bool(record.get("passed")),
            message=record.get("message"),
        )
        for record in records
    ]


@strawberry.type(
    description="A file a step attempt kept: a call's recording, a transcript, a report."
)
class Artifact:
    id: strawberry.ID
    name: str = strawberry.field(description="Unique per attempt; the download's file name.")
    media_type: str
    bytes: int = strawberry.field(description="The content's size.")
    created_at: datetime = strawberry.field(description="When it was last stored.")
    url: str = strawberry.field(
        description="Where to GET the content (a path on this server): it carries a ticket for"
        " this artifact alone, valid for 5 minutes; ask again for a fresh one."
    )

    @classmethod
    def of(cls, artifact: artifacts.Artifact, ticket: str) -> Artifact:
        return cls(
            id=strawberry.ID(artifact.id),
            name=artifact.name,
            media_type=artifact.media_type,
            bytes=artifact.bytes,
            created_at=artifact.created_at,
            url=artifacts.download_path(artifact.id, ticket),
        )


@strawberry.type(description="One attempt of one step, or a step that has not run yet (PENDING).")
class StepRun:
    key: str
    kind: str
    status: StepStatus  # type: ignore[valid-type]
    attempt: int
    position: int
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    exit_code: int | None
    output: JSON | None
    error: str | None
    assertions: list[AssertionResult] = strawberry.field(
        description="The assertions checked on this attempt, failed or not; empty until it ends."
    )
    usage: UsageTotals = strawberry.field(
        description="What this attempt's model calls and agent runs consumed; kept up to date"
        " while it runs (calls 0 when it reported none)."
    )
    execution_id: strawberry.Private[str]

    @strawberry.field(
        description="The files this attempt kept (RUNWIRE_ARTIFACT_RETENTION_DAYS long), by name."
    )
    async def artifacts(self, info: Info) -> list[Artifact]:
        actor = authorized(info, Permission.EXECUTION_READ)
        if self.attempt == 0:
            return []  # not run yet
        found = core(info)
        stored = await found.store.artifacts.artifacts(self.execution_id, self.key, self.attempt)
        return [
            Artifact.of(artifact, found.authenticator.issue_artifact_ticket(actor, artifact.id)[0])
            for artifact in stored
            # The step run was reached through an execution of the caller's workspace; this
            # keeps it so should that ever change.
            if artifact.workspace_id == actor.workspace_id
        ]


@strawberry.interface(description="A change in an execution; seq is 1, 2, 3, … with no gaps.")
class ExecutionEvent:
    seq: int
    at: datetime
    type: EventType
    step_key: str | None
    attempt: int | None


@strawberry.type
class ExecutionStatusChanged(ExecutionEvent):
    # Distinct names from StepStatusChanged's, so one selection can ask for both without aliases.
    execution_status: ExecutionStatus  # type: ignore[valid-type]
    error: str | None
    reason: str | None


@strawberry.type
class StepStatusChanged(ExecutionEvent):
    step_status: StepStatus  # type: ignore[valid-type]
    kind: str | None
    exit_code: int | None
    error: str | None
    output: JSON | None
    retry_in_seconds: float | None = strawberry.field(
        description="Set on a failed attempt that will be retried automatically after this delay."
    )
    reason: str | None = strawberry.field(
        description="Why an operator's action changed the step (retry requested, skipped)."
    )


@strawberry.type
class OutputChunk(ExecutionEvent):
    stream: str
    text: str


@strawberry.type(
    description="A step's output went over a budget: it is dropped from here (`final` false), or"
    " the attempt ended and these are the totals dropped (`final` true)."
)
class OutputTruncated(ExecutionEvent):
    limit: OutputLimit  # type: ignore[valid-type]
    allowed: float = strawberry.field(
        description="The budget: bytes, or lines per second for LINE_RATE."
    )
    # Float: GraphQL's Int is 32 bits, and a flood drops more than 2 GiB in under a minute.
    dropped_bytes: float = strawberry.field(description="Bytes dropped so far (a whole number).")
    dropped_lines: float = strawberry.field(description="Line breaks dropped so far.")
    final: bool
    message: str


@strawberry.type(description="A step reported a finished sub-operation: a span of the trace.")
class SpanReported(ExecutionEvent):
    span: Span


@strawberry.type(
    description="One entry of an agent's transcript, typed, so a client renders it without"
    " parsing text. Which fields are set depends on `entry`: TOOL_CALL has tool, callId and"
    " data.input; TOOL_RESULT has callId, text and isError; RESULT has text, isError and data"
    " (outcome, turns, duration_ms); UNKNOWN has data.raw."
)
class AgentEntryReported(ExecutionEvent):
    entry: AgentEntryType  # type: ignore[valid-type]
    text: str | None
    tool: str | None
    call_id: str | None
    is_error: bool
    data: JSON | None


@strawberry.type(
    description="One moment of a `call` step's phone call, typed; which fields are set depends"
    " on `call`. PROMPT: transcript, confidence, audioStartedMs, audioEndedMs, latencyMs (from"
    " our last input's end to the prompt's start), intent. DTMF_SENT: digits, method."
    " SPEECH_SENT: text. MATCHED: matched, intent. TRANSFERRED: target. HUNG_UP: by (US or"
    " FAR_END), cause. FAILED: sipStatus, reason. Times are ms from the answer."
)
class CallEventReported(ExecutionEvent):
    call: CallEventType  # type: ignore[valid-type]
    action: int | None = strawberry.field(description="The index of the script action.")
    at_ms: float | None
    transcript: str | None
    confidence: float | None
    audio_started_ms: float | None
    audio_ended_ms: float | None
    latency_ms: float | None
    digits: str | None
    method: str | None = strawberry.field(description="How digits went: rfc4733 or inband.")
    text: str | None
    matched: str | None
    intent: str | None
    by: str | None
    cause: str | None
    sip_status: int | None
    reason: str | None
    target: str | None = strawberry.field(
        description="Where the far end transferred the call (TRANSFERRED): a SIP URI."
    )


@strawberry.type(
    description="Usage summed: over a step attempt, a step's attempts, an execution, a batch or"
    " a metrics window."
)
class UsageTotals:
    calls: int = strawberry.field(description="Usage reports (model calls, agent runs) summed.")
    # Float: GraphQL's Int is 32 bits; these are whole numbers.
    tokens_input: float
    tokens_output: float
    tokens_cached: float
    tokens_reasoning: float
    cost_usd: float | None = strawberry.field(
        description="US dollars; null while any report in the sum has no price (see unpriced)."
    )
    unpriced: int = strawberry.field(description="Reports whose model has no price.")

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> UsageTotals:
        return cls(
            calls=int(data["calls"]),
            tokens_input=float(data["tokens_input"]),
            tokens_output=float(data["tokens_output"]),
            tokens_cached=float(data["tokens_cached"]),
            tokens_reasoning=float(data["tokens_reasoning"]),
            cost_usd=data.get("cost_usd"),
            unpriced=int(data["unpriced"]),
        )

    @classmethod
    def of_totals(cls, totals: agents.UsageTotals) -> UsageTotals:
        return cls(
            calls=totals.calls,
            tokens_input=float(totals.input),
            tokens_output=float(totals.output),
            tokens_cached=float(totals.cached),
            tokens_reasoning=float(totals.reasoning),
            cost_usd=totals.cost_known,
            unpriced=totals.unpriced,
        )


@strawberry.type(
    description="A model call or an agent run reported what it consumed; with the step's and"
    " the execution's totals so far, so a client shows live cost without adding anything up."
)
class UsageReported(ExecutionEvent):
    model: str | None
    # Float: GraphQL's Int is 32 bits; these are whole numbers.
    tokens_input: float
    tokens_output: float
    tokens_cached: float
    tokens_reasoning: float
    cost_usd: float | None = strawberry.field(
        description="US dollars; null when the model has no price (`unpriced` says why), never 0."
    )
    unpriced: str | None
    price_source: str | None = strawberry.field(
        description="Where the price came from: the price table's source and date, or the step."
    )
    ttft_ms: float | None = strawberry.field(description="Time to the first token.")
    duration_ms: float | None
    tokens_per_second: float | None = strawberry.field(
        description="Output tokens per second after the first token."
    )
    step_totals: UsageTotals
    execution_totals: UsageTotals


EVENT_TYPES = (
    ExecutionStatusChanged,
    StepStatusChanged,
    OutputChunk,
    OutputTruncated,
    SpanReported,
    AgentEntryReported,
    UsageReported,
    CallEventReported,
)


# Looked up, not converted, once per event: EnumType.__call__ showed in event delivery (P1).
_EVENT_TYPES = {kind: EventType(kind.value) for kind in models.EventType}


def event_of(event: models.Event) -> ExecutionEvent:
    common: dict[str, Any] = {
        "seq": event.seq,
        "at": event.at,
        "type": _EVENT_TYPES[event.type],
        "step_key": event.step_key,
        "attempt": event.attempt,
    }
    data = event.data
    if event.type is models.EventType.OUTPUT:
        return OutputChunk(stream=str(data["stream"]), text=str(data["text"]), **common)
    if event.type is models.EventType.OUTPUT_TRUNCATED:
        return OutputTruncated(
            limit=models.OutputLimit(data["limit"]),
            allowed=float(data["allowed"]),
            dropped_bytes=float(data["dropped_bytes"]),
            dropped_lines=float(data["dropped_lines"]),
            final=bool(data["final"]),
            message=str(data["message"]),
            **common,
        )
    if event.type is models.EventType.SPAN:
        return SpanReported(span=Span.reported(event), **common)
    if event.type is models.EventType.AGENT_ENTRY:
        return AgentEntryReported(
            entry=agents.EntryType(data["entry"]),
            text=data.get("text"),
            tool=data.get("tool"),
            call_id=data.get("call_id"),
            is_error=bool(data.get("is_error", False)),
            data=data.get("data"),
            **common,
        )
    if event.type is models.EventType.CALL:
        return CallEventReported(
            call=calls.CallEventType(data["call"]),
            action=data.get("action"),
            at_ms=data.get("at_ms"),
            transcript=data.get("transcript"),
            confidence=data.get("confidence"),
            audio_started_ms=data.get("audio_started_ms"),
            audio_ended_ms=data.get("audio_ended_ms"),
            latency_ms=data.get("latency_ms"),
            digits=data.get("digits"),
            method=data.get("method"),
            text=data.get("text"),
            matched=data.get("matched"),
            intent=data.get("intent"),
            by=data.get("by"),
            cause=data.get("cause"),
            sip_status=data.get("sip_status"),
            reason=data.get("reason"),
            target=data.get("target"),
            **common,
        )
    if event.type is models.EventType.USAGE:
        return UsageReported(
            model=data.get("model"),
            tokens_input=float(data["tokens_input"]),
            tokens_output=float(data["tokens_output"]),
            tokens_cached=float(data["tokens_cached"]),
            tokens_reasoning=float(data["tokens_reasoning"]),
            cost_usd=data.get("cost_usd"),
            unpriced=data.get("unpriced"),
            price_source=data.get("price_source"),
            ttft_ms=data.get("ttft_ms"),
            duration_ms=data.get("duration_ms"),
            tokens_per_second=data.get("tokens_per_second"),
            step_totals=UsageTotals.of(data["step_totals"]),
            execution_totals=UsageTotals.of(data["execution_totals"]),
            **common,
        )
    if event.type is models.EventType.STEP_STATUS:
        return StepStatusChanged(
            step_status=models.StepStatus(data["status"]),
            kind=data.get("kind"),
            exit_code=data.get("exit_code"),
            error=data.get("error"),
            output=data.get("output"),
            retry_in_seconds=data.get("retry_in"),
            reason=data.get("reason"),
            **common,
        )
    return ExecutionStatusChanged(
        execution_status=models.ExecutionStatus(data["status"]),
        error=data.get("error"),
        reason=data.get("reason"),
        **common,
    )


@strawberry.type(description="One message of a subscription: events in seq order.")
class ExecutionEventBatch(SharedSource):
    """Built once per live batch and yielded to every subscriber (see fanout/sharing.py)."""

    events: list[ExecutionEvent]
    last_seq: int


@strawberry.type(description="Audit: who did what to an execution, and why.")
class Activity:
    """One audited mutation: who did what, when, and the result's type."""

    action: str
    actor: str
    at: datetime
    result: str = strawberry.field(
        description="The mutation's result type (its success type or error type)."
    )
    execution_id: strawberry.ID | None
    detail: JSON

    @classmethod
    def of(cls, activity: models.Activity) -> Activity:
        return cls(
            action=activity.action,
            actor=activity.actor,
            at=activity.at,
            result=activity.result,
            execution_id=None
            if activity.execution_id is None
            else strawberry.ID(activity.execution_id),
            detail=JSON(dict(activity.detail)),
        )


@strawberry.type
class Execution:
    id: strawberry.ID
    name: str
    status: ExecutionStatus  # type: ignore[valid-type]
    scenario: ScenarioRef | None
    inputs: JSON
    labels: list[str]
    priority: int
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    error: str | None
    last_seq: int
    timeout_seconds: float | None
    grace_seconds: float | None
    definition: JSON
    mode: ExecutionMode  # type: ignore[valid-type]
    step_key: str | None = strawberry.field(
        description="The one step that modes STEP and STEP_IN_CONTEXT run."
    )
    upstream: JSON | None
    batch_id: strawberry.ID | None
    triggered_by: str = strawberry.field(
        description="Who started it: `token:<name>`, `user:<subject>`, `schedule:<id>`…"
    )
    trigger_type: TriggerType  # type: ignore[valid-type]
    idempotency_key: str | None
    concurrency_key: str | None = strawberry.field(
        description="Executions with the same key share the definition's concurrency limit."
    )
    usage: UsageTotals = strawberry.field(
        description="Tokens and cost over every step attempt, kept up to date as usage is"
        " reported (executionUpdates sends it live); the cost is null while any report has no"
        " price, never 0."
    )
    trace_id: str = strawberry.field(
        description=(
            "The W3C trace id (32 hex digits) of its spans: the caller's when started with a"
            " trace context (StartExecutionInput.traceContext or a traceparent header), else its"
            " own. Spans are exported with it over OTLP when the server is configured to."
        )
    )

    @strawberry.field(description="Every attempt of every step, then steps not yet run.")
    async def steps(self, info: Info) -> list[StepRun]:
        runs = await core(info).store.executions.steps(str(self.id))
        return steps_of(str(self.id), self.definition, runs, self.step_key)

    @strawberry.field(description="Stored events with seq > afterSeq, oldest first.")
    async def events(
        self,
        info: Info,
        after_seq: int = 0,
        first: Annotated[int, strawberry.argument(description="At most 1000.")] = 100,
    ) -> list[ExecutionEvent]:
        events = await core(info).store.events.events(
            str(self.id), after_seq, limit=max(0, min(first, 1000))
        )
        return [event_of(event) for event in events]

    @strawberry.field
    async def activities(self, info: Info) -> list[Activity]:
        workspace = authorized(info, Permission.EXECUTION_READ).workspace_id
        found = await core(info).store.audit.activities(workspace, execution_id=str(self.id))
        return [Activity.of(activity) for _, activity in reversed(found)]

    @strawberry.field(
        description=(
            "The execution as a tree of timed spans: the execution, each step attempt that ran,"
            " and what the steps reported (HTTP phases, …); with duration, token and cost totals."
        )
    )
    async def trace(self, info: Info) -> Trace:
        executions = core(info).store.executions
        # Read afresh, so the root's status and times match the step rows read with them.
        workspace = authorized(info, Permission.EXECUTION_READ).workspace_id
        execution = await executions.execution(str(self.id), workspace=workspace)
        if execution is None:
            raise NotFound(f"execution {self.id} not found")
        spans = await executions.spans(execution.id)
        return Trace.of(build_trace(execution, execution.steps, spans))

    @classmethod
    def of(cls, execution: models.Execution) -> Execution:
        scenario = None
        if execution.scenario_name is not None and execution.scenario_version is not None:
            scenario = ScenarioRef(name=execution.scenario_name, version=execution.scenario_version)
        return cls(
            id=strawberry.ID(execution.id),
            name=execution.name,
            status=execution.status,
            scenario=scenario,
            inputs=JSON(dict(execution.inputs)),
            labels=list(execution.labels),
            priority=execution.priority,
            queued_at=execution.queued_at,
            started_at=execution.started_at,
            finished_at=execution.finished_at,
            duration_ms=execution.duration_ms,
            error=execution.error,
            last_seq=execution.last_seq,
            timeout_seconds=execution.timeout_seconds,
            grace_seconds=execution.grace_seconds,
            definition=JSON(dict(execution.definition)),
            mode=execution.mode,
            step_key=execution.step_key,
            upstream=None if execution.upstream is None else JSON(dict(execution.upstream)),
            batch_id=None if execution.batch_id is None else strawberry.ID(execution.batch_id),
            triggered_by=execution.triggered_by,
            trigger_type=execution.trigger_type,
            idempotency_key=execution.idempotency_key,
            concurrency_key=execution.concurrency_key,
            usage=UsageTotals.of_totals(execution.usage),
            trace_id=execution.trace_id,
        )


def steps_of(
    execution_id: str, definition: Any, runs: Iterable[models.StepRun], only: str | None = None
) -> list[StepRun]:
    """Step attempts that ran, plus a PENDING entry for each defined step that has not.

    `only` is the step of a test-panel execution: the others never run, so they are not listed.
    """
    result = [
        StepRun(
            key=run.key,
            kind=run.kind,
            status=run.status,
            attempt=run.attempt,
            position=run.position,
            started_at=run.started_at,
            finished_at=run.finished_at,
            duration_ms=run.duration_ms,
            exit_code=run.exit_code,
            output=run.output,
            error=run.error,
            assertions=assertion_results(run.assertions),
            usage=UsageTotals.of_totals(run.usage),
            execution_id=execution_id,
        )
        for run in runs
    ]
    seen = {run.key for run in result}
    for position, step in enumerate(definition.get("steps") or []):
        if only is not None and step.get("key") != only:
            continue
        if step.get("key") not in seen:
            result.append(
                StepRun(
                    key=str(step.get("key")),
                    kind=str(step.get("kind")),
                    status=models.StepStatus.PENDING,
                    attempt=0,
                    position=position,
                    started_at=None,
                    finished_at=None,
                    duration_ms=None,
                    exit_code=None,
                    output=None,
                    error=None,
                    assertions=[],
                    usage=UsageTotals.of_totals(agents.UsageTotals()),
                    execution_id=execution_id,
                )
            )
    result.sort(key=lambda run: (run.position, run.attempt))
    return result


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class ExecutionEdge:
    cursor: str
    node: Execution


@strawberry.type
class ExecutionConnection:
    edges: list[ExecutionEdge]
    page_info: PageInfo


@strawberry.type(
    description="The workspace's queue, and whether a runner is alive to run it. Runners serve"
    " every workspace's queue, so the runner figures are the same in each."
)
class Queue:
    queued: int = strawberry.field(description="The workspace's QUEUED executions.")
    running: int = strawberry.field(
        description="The workspace's executions that hold a runner slot (RUNNING, PAUSING,"
        " STOPPING)."
    )
    slots: int = strawberry.field(
        description="Executions the process that answers runs at once (0 on an API replica"
        " without a runner); runnerSlots counts every alive runner's."
    )
    runners_alive: int = strawberry.field(
        description="Runners whose heartbeat is within their lease (in any process)."
    )
    runner_slots: int = strawberry.field(description="The slots of the alive runners, summed.")
    oldest_queued_age_seconds: float | None = strawberry.field(
        description="How long the workspace's oldest execution no runner has claimed has"
        " waited; null when none waits."
    )
    warning: str | None = strawberry.field(
        description="Set while the workspace's executions have waited longer than a lease and"
        " no runner is alive to claim them; says what to start. Null otherwise."
    )


@strawberry.type(
    name="Runner",
    description="A runner process, as it recorded itself at its last heartbeat. Only alive ones"
    " are listed: a runner that stopped cleanly leaves the list at once, one that was killed"
    " once its lease passes.",
)
class RunnerType:
    id: strawberry.ID = strawberry.field(
        description="Its lease owner: what executions it claimed record as their owner."
    )
    host: str
    pid: int
    started_at: datetime
    last_seen_at: datetime = strawberry.field(description="Its last heartbeat.")
    slots: int = strawberry.field(description="Executions it runs at once, at most.")
    busy: int = strawberry.field(description="Executions it ran at its last heartbeat.")

    @classmethod
    def of(cls, presence: RunnerPresence) -> RunnerType:
        return cls(
            id=strawberry.ID(presence.id),
            host=presence.host,
            pid=presence.pid,
            started_at=presence.started_at,
            last_seen_at=presence.last_seen_at,
            slots=presence.slots,
            busy=presence.busy,
        )


ExecutionUpdateKind = strawberry.enum(
    hub.UpdateKind,
    name="ExecutionUpdateKind",
    description=(
        "CHANGED: the execution changed to the update's status at its time, or, with the status"
        " it already had, its usage totals (execution.usage) changed: sent at most every half"
        " second per execution while usage streams in, never after it ended. CURRENT: restated"
        " as read at the update's time, because changes may have been missed (the server lost"
        " its event bus for a moment, or this subscriber fell behind)."
    ),
)


@strawberry.type(
    description=(
        "One message of the live list: an execution changed status or usage totals (or is"
        " restated). Apply updates of one execution in order of execution.lastSeq; a lower"
        " lastSeq than one already applied is stale."
    )
)
class ExecutionUpdate:
    execution: Execution = strawberry.field(
        description=(
            "The execution as stored right after the change; it may already be further along"
            " (its status newer than this update's) when changes follow quickly."
        )
    )
    status: ExecutionStatus = strawberry.field(  # type: ignore[valid-type]
        description="The status the execution changed to (CHANGED) or has (CURRENT)."
    )
    at: datetime = strawberry.field(
        description="When it changed to status (CHANGED), or when it was read (CURRENT, and"
        " CHANGED for a change of usage totals)."
    )
    kind: ExecutionUpdateKind  # type: ignore[valid-type]

    @classmethod
    def of(cls, update: hub.ExecutionUpdate) -> ExecutionUpdate:
        return cls(
            execution=Execution.of(update.execution),
            status=update.status,
            at=update.at,
            kind=update.kind,
        )


@strawberry.type(
    description="Executions of one scenario that are queued, running, paused or waiting now."
)
class ScenarioActiveCount:
    scenario: str | None = strawberry.field(
        description="The scenario's name; null for executions of inline definitions."
    )
    queued: int
    running: int = strawberry.field(description="RUNNING, STOPPING and PAUSING executions.")
    paused: int
    waiting: int = strawberry.field(description="WAITING for a review step's decision.")

    @classmethod
    def of(cls, counts: queries.ScenarioActiveCounts) -> ScenarioActiveCount:
        return cls(
            scenario=counts.scenario,
            queued=counts.queued,
            running=counts.running,
            paused=counts.paused,
            waiting=counts.waiting,
        )
