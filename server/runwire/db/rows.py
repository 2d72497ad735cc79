"""Rows to domain values and values to column text: the one place stored shapes are read.

JSON columns come back as text on both databases (Runwire reads them raw), so every reader of a
row decodes them here, the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from runwire.db.engine import optional_stored_datetime, stored_datetime
from runwire.domain.agents import UsageTotals
from runwire.domain.models import (
    Activity,
    Batch,
    CallFigures,
    Event,
    EventType,
    Execution,
    ExecutionMode,
    ExecutionStatus,
    RepeatOutcome,
    ScenarioVersion,
    Span,
    StepFailure,
    StepRun,
    StepStatus,
    SuiteBaseline,
    SuiteRun,
    SuiteRunCase,
    SuiteRunMember,
    SuiteVersion,
    TriggerType,
)
from runwire.domain.trace_context import stored_trace_context

_encode_json = msgspec.json.Encoder(enc_hook=str).encode
_decode_json = msgspec.json.Decoder().decode


def dump(value: Any) -> str:
    """JSON text for a column or an event's data."""
    # Every event's data goes through here on the hot path: msgspec is far faster than json.
    # Types neither knows become their str(); what msgspec refuses (a lone surrogate) json
    # writes as an escape.
    try:
        return _encode_json(value).decode()
    except (UnicodeEncodeError, msgspec.EncodeError):
        return json.dumps(value, separators=(",", ":"), default=str)


def canonical(value: Any) -> str:
    """One text per JSON value whatever its key order: what makes two definitions equal."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def load(value: Any) -> Any:
    """A JSON column's value; a value the driver already decoded is returned as it is."""
    if not isinstance(value, str | bytes):
        return value
    # A history page carries four JSON columns per row, so msgspec decodes them. The texts it
    # refuses and json reads (NaN, lone surrogates, overflowing floats: `dump` can write them)
    # fall back to json, so every value reads as it always did.
    try:
        return _decode_json(value)
    except msgspec.MsgspecError:
        return json.loads(value)


def queued_execution_values(
    execution: Execution, last_seq: int, fingerprint: str | None
) -> tuple[object, ...]:
    """A new execution's runwire_execution values, id to batch_limit in column order (the
    statements that insert one add the labels, first event, trace context and trigger)."""
    return (
        execution.id,
        execution.workspace_id,
        execution.name[:100],
        execution.status.value,
        execution.scenario_name,
        execution.scenario_version,
        dump(execution.definition),
        dump(execution.inputs),
        dump(list(execution.labels)),
        execution.priority,
        execution.timeout_seconds,
        execution.grace_seconds,
        execution.queued_at,
        last_seq,
        execution.triggered_by[:200],
        execution.mode.value,
        execution.step_key,
        None if execution.upstream is None else dump(execution.upstream),
        execution.idempotency_key,
        fingerprint,
        execution.concurrency_key,
        execution.concurrency_limit,
        execution.batch_id,
        execution.batch_limit,
    )


def trace_columns(execution: Execution) -> tuple[str | None, str | None]:
    """trace_parent and trace_state: the caller's trace context, if it gave one."""
    caller = execution.trace_context
    return (None, None) if caller is None else (caller.traceparent, caller.state)


def scenario_of(row: Mapping[str, Any]) -> ScenarioVersion:
    return ScenarioVersion(
        name=row["name"],
        version=row["version"],
        description=row["description"],
        definition=load(row["definition"]),
        created_at=stored_datetime(row["created_at"]),
        workspace_id=row["workspace_id"],
    )


def suite_of(row: Mapping[str, Any]) -> SuiteVersion:
    return SuiteVersion(
        name=row["name"],
        version=row["version"],
        description=row["description"],
        tags=tuple(load(row["tags"])),
        definition=load(row["definition"]),
        created_at=stored_datetime(row["created_at"]),
        created_by=row["created_by"],
        workspace_id=row["workspace_id"],
    )


def suite_run_of(row: Mapping[str, Any]) -> SuiteRun:
    return SuiteRun(
        id=row["id"],
        suite_name=row["suite_name"],
        suite_version=row["suite_version"],
        batch_id=row["batch_id"],
        repeat=row["repeat"],
        concurrency=row["concurrency"],
        labels=tuple(load(row["labels"])),
        inputs=load(row["inputs"]),
        cases=tuple(
            SuiteRunCase(case["name"], case.get("scenario"), case["expected_status"])
            for case in load(row["cases"])
        ),
        created_at=stored_datetime(row["created_at"]),
        created_by=row["created_by"],
        workspace_id=row["workspace_id"],
        idempotency_key=row["idempotency_key"],
        trigger_type=TriggerType(row["trigger_type"]),
    )


def suite_run_cases_text(cases: Iterable[SuiteRunCase]) -> str:
    """The `cases` column of a suite run."""
    return dump(
        [
            {"name": case.name, "scenario": case.scenario, "expected_status": case.expected_status}
            for case in cases
        ]
    )


def suite_baseline_of(row: Mapping[str, Any]) -> SuiteBaseline:
    return SuiteBaseline(
        suite_name=row["suite_name"],
        run_id=row["run_id"],
        set_at=stored_datetime(row["set_at"]),
        set_by=row["set_by"],
        workspace_id=row["workspace_id"],
    )


def repeat_outcome_of(row: Mapping[str, Any]) -> RepeatOutcome:
    """A member row joined with its execution's status, duration and usage columns."""
    return RepeatOutcome(
        member=SuiteRunMember(
            execution_id=row["execution_id"],
            run_id=row["run_id"],
            case_index=row["case_index"],
            case_name=row["case_name"],
            repeat=row["repeat"],
            attempt=row["attempt"],
            expected_status=row["expected_status"],
        ),
        status=ExecutionStatus(row["status"]),
        duration_ms=row["duration_ms"],
        usage=usage_of(row),
    )


def call_figures_of(row: Mapping[str, Any]) -> CallFigures:
    """A call step attempt's figures from its attributes (see runner/steps/call.py)."""
    attributes = load(row["attributes"]) or {}

    def numbers(key: str) -> tuple[float, ...]:
        values = attributes.get(key)
        if not isinstance(values, list):
            return ()
        return tuple(
            float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)
        )

    return CallFigures(
        row["execution_id"], numbers("call_turn_latency_ms"), numbers("call_confidences")
    )


def step_failure_of(row: Mapping[str, Any]) -> StepFailure:
    records = load(row["assertions"]) or []
    return StepFailure(
        execution_id=row["execution_id"],
        step_key=row["key"],
        attempt=row["attempt"],
        status=StepStatus(row["status"]),
        error=row["error"],
        assertions=tuple(record for record in records if not record.get("passed")),
    )


def execution_of(row: Mapping[str, Any], steps: Iterable[StepRun] = ()) -> Execution:
    return Execution(
        id=row["id"],
        workspace_id=row["workspace_id"],
        status=ExecutionStatus(row["status"]),
        definition=load(row["definition"]),
        inputs=load(row["inputs"]),
        queued_at=stored_datetime(row["queued_at"]),
        scenario_name=row["scenario_name"],
        scenario_version=row["scenario_version"],
        labels=tuple(load(row["labels"]) or ()),
        priority=row["priority"],
        timeout_seconds=row["timeout_seconds"],
        grace_seconds=row["grace_seconds"],
        started_at=optional_stored_datetime(row["started_at"]),
        finished_at=optional_stored_datetime(row["finished_at"]),
        error=row["error"],
        last_seq=row["last_seq"],
        owner=row["owner"],
        lease_generation=row["lease_generation"],
        steps=tuple(steps),
        mode=ExecutionMode(row["mode"]),
        step_key=row["step_key"],
        upstream=load(row["upstream"]),
        idempotency_key=row["idempotency_key"],
        concurrency_key=row["concurrency_key"],
        concurrency_limit=row["concurrency_limit"],
        batch_id=row["batch_id"],
        batch_limit=row["batch_limit"],
        triggered_by=row["created_by"],
        trigger_type=TriggerType(row["trigger_type"]),
        duration_ms=row["duration_ms"],
        usage=usage_of(row),
        trace_context=stored_trace_context(row["trace_parent"], row["trace_state"]),
    )


def step_run_of(row: Mapping[str, Any]) -> StepRun:
    return StepRun(
        execution_id=row["execution_id"],
        key=row["key"],
        kind=row["kind"],
        attempt=row["attempt"],
        position=row["position"],
        status=StepStatus(row["status"]),
        started_at=optional_stored_datetime(row["started_at"]),
        finished_at=optional_stored_datetime(row["finished_at"]),
        exit_code=row["exit_code"],
        output=load(row["output"]),
        error=row["error"],
        assertions=tuple(load(row["assertions"]) or ()),
        attributes=load(row["attributes"]),
        usage=usage_of(row),
    )


def usage_of(row: Mapping[str, Any]) -> UsageTotals:
    """The usage_* columns of an execution or step attempt row (or of a sum over rows)."""
    calls = row["usage_calls"]
    if not calls:
        return UsageTotals()
    # int() and float(): Postgres sums BIGINT columns as NUMERIC (Decimal).
    return UsageTotals(
        calls=int(calls),
        input=int(row["usage_input"]),
        output=int(row["usage_output"]),
        cached=int(row["usage_cached"]),
        reasoning=int(row["usage_reasoning"]),
        cost_usd=float(row["usage_cost_usd"]),
        unpriced=int(row["usage_unpriced"]),
    )


# The usage_* columns summed over rows, named as usage_of reads them (COALESCE: no rows).
USAGE_SUMS = ", ".join(
    f"COALESCE(SUM({column}), 0) AS {column}"
    for column in (
        "usage_calls",
        "usage_input",
        "usage_output",
        "usage_cached",
        "usage_reasoning",
        "usage_cost_usd",
        "usage_unpriced",
    )
)


def span_of(row: Mapping[str, Any]) -> Span:
    return Span(
        execution_id=row["execution_id"],
        span_id=row["span_id"],
        parent_id=row["parent_id"],
        step_key=row["step_key"],
        attempt=row["attempt"],
        name=row["name"],
        kind=row["kind"],
        status=row["status"],
        started_at=stored_datetime(row["started_at"]),
        finished_at=optional_stored_datetime(row["finished_at"]),
        attributes=load(row["attributes"]),
    )


def event_of(row: Mapping[str, Any]) -> Event:
    return Event(
        execution_id=row["execution_id"],
        seq=row["seq"],
        at=stored_datetime(row["at"]),
        type=EventType(row["type"]),
        data=load(row["data"]),
        step_key=row["step_key"],
        attempt=row["attempt"],
    )


def batch_of(row: Mapping[str, Any]) -> Batch:
    return Batch(
        id=row["id"],
        name=row["name"],
        scenario_name=row["scenario_name"],
        concurrency=row["concurrency"],
        total=row["total"],
        created_at=stored_datetime(row["created_at"]),
        created_by=row["created_by"],
        stopped_at=optional_stored_datetime(row["stopped_at"]),
        workspace_id=row["workspace_id"],
    )


def activity_of(row: Mapping[str, Any]) -> Activity:
    return Activity(
        action=row["action"],
        actor=row["actor"],
        execution_id=row["execution_id"],
        at=stored_datetime(row["at"]),
        detail=load(row["detail"]),
        result=row["result"],
        workspace_id=row["workspace_id"],
    )
