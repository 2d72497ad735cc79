"""From the JSON the canonical operations return to the client's typed values."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from runwire_client.errors import UnexpectedResponseError
from runwire_client.models import (
    AgentEntryReported,
    AgentEntryType,
    Artifact,
    AssertionResult,
    CallEventReported,
    CallEventType,
    Event,
    Execution,
    ExecutionMode,
    ExecutionStatus,
    ExecutionStatusChanged,
    ExecutionUpdate,
    HistoryPage,
    OutputChunk,
    OutputLimit,
    OutputTruncated,
    Review,
    ReviewStatus,
    ReviewUpdate,
    Scenario,
    ScenarioInput,
    ScenarioRef,
    Span,
    SpanReported,
    StepRun,
    StepStatus,
    StepStatusChanged,
    SuiteCaseComparison,
    SuiteCaseResult,
    SuiteComparison,
    SuiteRun,
    TokenUsage,
    Trace,
    UnknownEvent,
    UpdateKind,
    UsageReported,
    UsageTotals,
)

T = TypeVar("T")
Data = Mapping[str, Any]


def decoded(decode: Callable[[Data], T], data: Data) -> T:
    """`decode(data)`, with a reply this client cannot read reported as one typed error."""
    try:
        return decode(data)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise UnexpectedResponseError(
            f"could not read the server's reply ({type(error).__name__}: {error});"
            " is the client older than the server's schema?"
        ) from error


def scenario(data: Data) -> Scenario:
    return Scenario(
        name=str(data["name"]),
        version=int(data["version"]),
        description=str(data["description"]),
        inputs=tuple(scenario_input(item) for item in data["inputs"]),
    )


def scenario_input(data: Data) -> ScenarioInput:
    """A scenario's input, or a review form's field (the schema types both as ScenarioInput)."""
    accepted = data.get("enum")
    return ScenarioInput(
        name=str(data["name"]),
        type=str(data["type"]),
        required=bool(data["required"]),
        default=data.get("default"),
        description=data.get("description"),
        enum=None if accepted is None else tuple(accepted),
    )


def review(data: Data) -> Review:
    found = data.get("execution")
    values = data.get("values")
    return Review(
        execution_id=str(data["executionId"]),
        step_key=str(data["stepKey"]),
        attempt=int(data["attempt"]),
        status=ReviewStatus(data["status"]),
        title=str(data["title"]),
        instructions=str(data["instructions"]),
        decisions=tuple(str(decision) for decision in data["decisions"]),
        fail_on=tuple(str(decision) for decision in data["failOn"]),
        on_timeout=str(data["onTimeout"]),
        form=tuple(scenario_input(item) for item in data["form"]),
        requested_at=_time(data["requestedAt"]),
        expires_at=_optional_time(data.get("expiresAt")),
        decision=data.get("decision"),
        values=None if values is None else dict(values),
        comment=data.get("comment"),
        decided_by=data.get("decidedBy"),
        decided_at=_optional_time(data.get("decidedAt")),
        execution=None if found is None else execution(found),
        shown_steps=tuple(step_run(step) for step in data.get("shownSteps") or ()),
    )


def review_update(data: Data) -> ReviewUpdate:
    return ReviewUpdate(
        execution_id=str(data["executionId"]),
        reviews=tuple(review(item) for item in data["reviews"]),
    )


def execution(data: Data) -> Execution:
    scenario = data.get("scenario")
    return Execution(
        id=str(data["id"]),
        name=str(data["name"]),
        status=ExecutionStatus(data["status"]),
        scenario=None
        if scenario is None
        else ScenarioRef(name=str(scenario["name"]), version=int(scenario["version"])),
        inputs=dict(data["inputs"]),
        labels=tuple(str(label) for label in data["labels"]),
        priority=int(data["priority"]),
        queued_at=_time(data["queuedAt"]),
        started_at=_optional_time(data.get("startedAt")),
        finished_at=_optional_time(data.get("finishedAt")),
        duration_ms=data.get("durationMs"),
        error=data.get("error"),
        last_seq=int(data["lastSeq"]),
        mode=ExecutionMode(data["mode"]),
        step_key=data.get("stepKey"),
        batch_id=None if data.get("batchId") is None else str(data["batchId"]),
        triggered_by=str(data["triggeredBy"]),
        idempotency_key=data.get("idempotencyKey"),
        steps=tuple(step_run(step) for step in data.get("steps") or ()),
    )


def step_run(data: Data) -> StepRun:
    return StepRun(
        key=str(data["key"]),
        kind=str(data["kind"]),
        status=StepStatus(data["status"]),
        attempt=int(data["attempt"]),
        position=int(data["position"]),
        started_at=_optional_time(data.get("startedAt")),
        finished_at=_optional_time(data.get("finishedAt")),
        duration_ms=data.get("durationMs"),
        exit_code=data.get("exitCode"),
        output=data.get("output"),
        error=data.get("error"),
        assertions=tuple(
            AssertionResult(
                assertion=str(item["assertion"]),
                path=item.get("path"),
                expected=item.get("expected"),
                actual=item.get("actual"),
                passed=bool(item["passed"]),
                message=item.get("message"),
            )
            for item in data.get("assertions") or ()
        ),
        artifacts=tuple(
            Artifact(
                id=str(item["id"]),
                name=str(item["name"]),
                media_type=str(item["mediaType"]),
                bytes=int(item["bytes"]),
                created_at=_time(item["createdAt"]),
                url=str(item["url"]),
            )
            for item in data.get("artifacts") or ()
        ),
    )


def history_page(data: Data) -> HistoryPage:
    info = data["pageInfo"]
    return HistoryPage(
        executions=tuple(execution(edge["node"]) for edge in data["edges"]),
        has_next_page=bool(info["hasNextPage"]),
        end_cursor=info.get("endCursor"),
    )


def span(data: Data) -> Span:
    return Span(
        id=str(data["id"]),
        parent_id=None if data.get("parentId") is None else str(data["parentId"]),
        name=str(data["name"]),
        kind=str(data["kind"]),
        status=str(data["status"]),
        started_at=_optional_time(data.get("startedAt")),
        finished_at=_optional_time(data.get("finishedAt")),
        duration_ms=data.get("durationMs"),
        step_key=data.get("stepKey"),
        attempt=data.get("attempt"),
        attributes=dict(data.get("attributes") or {}),
    )


def trace(data: Data) -> Trace:
    found = data["trace"]
    tokens = found.get("tokens")
    return Trace(
        execution_id=str(data["id"]),
        status=ExecutionStatus(data["status"]),
        spans=tuple(span(item) for item in found["spans"]),
        total_duration_ms=found.get("totalDurationMs"),
        tokens=None
        if tokens is None
        else TokenUsage(
            input=tokens.get("input"), output=tokens.get("output"), total=tokens["total"]
        ),
        cost=found.get("cost"),
    )


def event(data: Data) -> Event:
    common: dict[str, Any] = {
        "seq": int(data["seq"]),
        "at": _time(data["at"]),
        "step_key": data.get("stepKey"),
        "attempt": data.get("attempt"),
    }
    typename = data["__typename"]
    if typename == "OutputChunk":
        return OutputChunk(stream=str(data["stream"]), text=str(data["text"]), **common)
    if typename == "StepStatusChanged":
        return StepStatusChanged(
            status=StepStatus(data["stepStatus"]),
            kind=data.get("kind"),
            exit_code=data.get("exitCode"),
            error=data.get("error"),
            output=data.get("output"),
            retry_in_seconds=data.get("retryInSeconds"),
            reason=data.get("reason"),
            **common,
        )
    if typename == "ExecutionStatusChanged":
        return ExecutionStatusChanged(
            status=ExecutionStatus(data["executionStatus"]),
            error=data.get("error"),
            reason=data.get("reason"),
            **common,
        )
    if typename == "OutputTruncated":
        return OutputTruncated(
            limit=OutputLimit(data["limit"]),
            allowed=float(data["allowed"]),
            dropped_bytes=int(data["droppedBytes"]),
            dropped_lines=int(data["droppedLines"]),
            final=bool(data["final"]),
            message=str(data["message"]),
            **common,
        )
    if typename == "SpanReported":
        return SpanReported(span=span(data["span"]), **common)
    if typename == "AgentEntryReported":
        return agent_entry(data, common)
    if typename == "UsageReported":
        return usage(data, common)
    if typename == "CallEventReported":
        return call_event(data, common)
    # A server newer than this client sends types it does not know: keep following.
    return UnknownEvent(typename=str(typename), type=data.get("type"), **common)


def agent_entry(data: Data, common: dict[str, Any]) -> AgentEntryReported:
    entry = str(data["entry"])
    details = data.get("data")
    return AgentEntryReported(
        entry=AgentEntryType(entry) if entry in AgentEntryType.__members__ else entry,
        text=data.get("entryText"),  # aliased in the operation: see FollowExecutionEvents
        tool=data.get("tool"),
        call_id=data.get("callId"),
        is_error=bool(data["isError"]),
        data=None if details is None else dict(details),
        **common,
    )


def call_event(data: Data, common: dict[str, Any]) -> CallEventReported:
    moment = str(data["call"])
    return CallEventReported(
        call=CallEventType(moment) if moment in CallEventType.__members__ else moment,
        action=data.get("action"),
        at_ms=_optional_float(data.get("atMs")),
        transcript=data.get("transcript"),
        confidence=_optional_float(data.get("confidence")),
        audio_started_ms=_optional_float(data.get("audioStartedMs")),
        audio_ended_ms=_optional_float(data.get("audioEndedMs")),
        latency_ms=_optional_float(data.get("latencyMs")),
        digits=data.get("digits"),
        method=data.get("method"),
        text=data.get("callText"),  # aliased in the operation: see FollowExecutionEvents
        matched=data.get("matched"),
        intent=data.get("intent"),
        by=data.get("by"),
        cause=data.get("cause"),
        sip_status=data.get("sipStatus"),
        reason=data.get("reason"),
        target=data.get("target"),
        **common,
    )


def usage(data: Data, common: dict[str, Any]) -> UsageReported:
    return UsageReported(
        model=data.get("model"),
        tokens_input=_whole(data["tokensInput"]),
        tokens_output=_whole(data["tokensOutput"]),
        tokens_cached=_whole(data["tokensCached"]),
        tokens_reasoning=_whole(data["tokensReasoning"]),
        cost_usd=_optional_float(data.get("costUsd")),
        unpriced=data.get("unpriced"),
        price_source=data.get("priceSource"),
        ttft_ms=_optional_float(data.get("ttftMs")),
        duration_ms=_optional_float(data.get("durationMs")),
        tokens_per_second=_optional_float(data.get("tokensPerSecond")),
        step_totals=usage_totals(data["stepTotals"]),
        execution_totals=usage_totals(data["executionTotals"]),
        **common,
    )


def usage_totals(data: Data) -> UsageTotals:
    return UsageTotals(
        calls=int(data["calls"]),
        tokens_input=_whole(data["tokensInput"]),
        tokens_output=_whole(data["tokensOutput"]),
        tokens_cached=_whole(data["tokensCached"]),
        tokens_reasoning=_whole(data["tokensReasoning"]),
        cost_usd=_optional_float(data.get("costUsd")),
        unpriced=int(data["unpriced"]),
    )


def event_batch(data: Data) -> list[Event]:
    """The events of one FollowExecutionEvents message, in seq order."""
    return [event(item) for item in data["events"]]


def execution_update(data: Data) -> ExecutionUpdate:
    return ExecutionUpdate(
        kind=UpdateKind(data["kind"]),
        status=ExecutionStatus(data["status"]),
        at=_time(data["at"]),
        execution=execution(data["execution"]),
    )


def _whole(value: Any) -> int:
    """A token count: the schema sends Float (GraphQL's Int is 32 bits), the value is whole."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return int(value)


def _optional_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"expected a DateTime string, got {type(value).__name__}")
    return datetime.fromisoformat(value)


def _optional_time(value: Any) -> datetime | None:
    return None if value is None else _time(value)


def suite_run(data: Data) -> SuiteRun:
    return SuiteRun(
        id=str(data["id"]),
        suite=str(data["suite"]),
        suite_version=int(data["suiteVersion"]),
        repeat=int(data["repeat"]),
        batch_id=str(data["batchId"]),
        total=int(data["total"]),
        ended=int(data["ended"]),
        complete=bool(data["complete"]),
        pass_rate=_optional_float(data.get("passRate")),
        passed_cases=int(data["passedCases"]),
        failed_cases=int(data["failedCases"]),
        flaky_cases=int(data["flakyCases"]),
        pending_cases=int(data["pendingCases"]),
        cases=tuple(
            SuiteCaseResult(
                name=str(case["name"]),
                status=str(case["status"]),
                passed=int(case["passed"]),
                failed=int(case["failed"]),
                pending=int(case["pending"]),
                pass_rate=_optional_float(case.get("passRate")),
                duration_p50_ms=_optional_float(case.get("durationP50Ms")),
            )
            for case in data["cases"]
        ),
    )


def suite_comparison(data: Data) -> SuiteComparison:
    return SuiteComparison(
        base_run_id=str(data["base"]["id"]),
        head_run_id=str(data["head"]["id"]),
        verdict=str(data["verdict"]),
        regressed=bool(data["regressed"]),
        cases=tuple(
            SuiteCaseComparison(
                name=str(case["name"]),
                change=str(case["change"]),
                base_pass_rate=_optional_float(case.get("basePassRate")),
                head_pass_rate=_optional_float(case.get("headPassRate")),
            )
            for case in data["cases"]
        ),
    )
