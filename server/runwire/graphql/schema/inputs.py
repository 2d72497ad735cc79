"""Input types of the mutations and queries."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypedDict

import strawberry
from strawberry.scalars import JSON

from runwire.domain import models
from runwire.domain.trace_context import TraceContext, header_trace_context
from runwire.errors import FieldError, InvalidInputs
from runwire.graphql.schema.types import ExecutionMode, ExecutionStatus, TriggerType


@strawberry.input(
    description=(
        "A W3C trace context (https://www.w3.org/TR/trace-context/): the run's trace continues"
        " the caller's span. Given here it wins over the request's traceparent header."
    )
)
class TraceContextInput:
    traceparent: str = strawberry.field(
        description="00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>."
    )
    tracestate: str | None = strawberry.field(
        default=None, description="Vendors' key=value entries, passed on with the trace."
    )


@strawberry.input(description="Give exactly one of scenario (a saved name) or definition (text).")
class StartExecutionInput:
    scenario: str | None = None
    definition: str | None = strawberry.field(
        default=None, description="An inline definition as YAML or JSON text."
    )
    inputs: JSON | None = None
    labels: list[str] | None = None
    priority: int = 0
    timeout_seconds: float | None = None
    grace_seconds: float | None = strawberry.field(
        default=None, description="Seconds between SIGINT and SIGKILL when stopped."
    )
    mode: ExecutionMode = strawberry.field(  # type: ignore[valid-type]
        default=models.ExecutionMode.FULL,
        description="FULL runs the definition; STEP and STEP_IN_CONTEXT run only stepKey.",
    )
    step_key: str | None = strawberry.field(
        default=None, description="The step that modes STEP and STEP_IN_CONTEXT run."
    )
    upstream: JSON | None = strawberry.field(
        default=None,
        description=(
            "STEP_IN_CONTEXT: the outputs of the steps stepKey needs, by step key; templates"
            " read them as steps.<key>.output."
        ),
    )
    idempotency_key: str | None = strawberry.field(
        default=None,
        description=(
            "Starting again with the same key returns the first execution instead of a new one,"
            " also under concurrent calls; the same key with a different request is an error."
        ),
    )
    trace_context: TraceContextInput | None = strawberry.field(
        default=None,
        description=(
            "The caller's trace to continue (else the traceparent header's, if any); see"
            " Execution.traceId."
        ),
    )


@strawberry.input(description="One execution of a batch.")
class BatchRunInput:
    inputs: JSON | None = None
    labels: list[str] | None = None


@strawberry.input(description="Give exactly one of scenario (a saved name) or definition (text).")
class StartBatchInput:
    scenario: str | None = None
    definition: str | None = None
    runs: list[BatchRunInput]
    concurrency: int = strawberry.field(
        default=10, description="At most this many of the batch's executions run at once."
    )
    name: str | None = None
    labels: list[str] | None = strawberry.field(
        default=None, description="Labels for every run, besides each run's own."
    )
    priority: int = 0
    trace_context: TraceContextInput | None = strawberry.field(
        default=None,
        description="Every run continues this trace (else the traceparent header's, if any).",
    )


@strawberry.input(description="Every given field must match.")
class ExecutionFilter:
    statuses: list[ExecutionStatus] | None = None  # type: ignore[valid-type]
    scenario: str | None = None
    label: str | None = None
    queued_after: datetime | None = None
    queued_before: datetime | None = None
    search: str | None = strawberry.field(
        default=None,
        description="Case-insensitive substring of the name, a label or the error, taken"
        " literally (% and _ are not wildcards). On SQLite only ASCII letters fold case.",
    )
    batch: str | None = strawberry.field(default=None, description="A batch id.")
    triggered_by: str | None = strawberry.field(
        default=None, description="Who started the execution."
    )
    trigger_types: list[TriggerType] | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="What started it: any of these (SCHEDULE, RETRY, API …)."
    )
    min_duration_ms: int | None = strawberry.field(
        default=None, description="Inclusive; executions still running have no duration."
    )
    max_duration_ms: int | None = strawberry.field(
        default=None, description="Inclusive; executions still running have no duration."
    )


def json_object(value: object, path: str) -> dict[str, object] | None:
    """A JSON scalar argument that must be an object (inputs, upstream), or None."""
    if value is None or isinstance(value, dict):
        return value
    raise InvalidInputs([FieldError(path, "expected a JSON object")])


def trace_fields(info_context: Mapping[str, Any], given: TraceContextInput | None) -> TraceFields:
    """StartRequest's trace fields: the given context, else the request headers' one."""
    if given is not None:
        return {"traceparent": given.traceparent, "tracestate": given.tracestate}
    headers = info_context.get("trace_headers")
    if headers is None:  # sockets: no per-request headers
        return {}
    return {"header_trace": header_trace_context(*headers)}


class TraceFields(TypedDict, total=False):
    traceparent: str
    tracestate: str | None
    header_trace: TraceContext | None
