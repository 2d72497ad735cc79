"""Batches: many executions of one definition, started together, run a few at a time."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runwire.domain.access import Actor
from runwire.domain.clock import utc_now
from runwire.domain.control import ExecutionControl
from runwire.domain.executions import (
    ExecutionService,
    StartRequest,
    label_errors,
    priority_errors,
)
from runwire.domain.models import Batch, ExecutionStatus, TriggerType
from runwire.domain.ports import BatchStore, EventPublisher, WorkSignals
from runwire.domain.scenarios import ScenarioService
from runwire.domain.trace_context import TraceContext, trace_context_errors
from runwire.errors import FieldError, Invalid, NotFound
from runwire.scenarios.limits import DEFAULT_LIMITS, InputLimits

MAX_RUNS = 1000
MAX_CONCURRENCY = 1000
_MAX_NAME = 200


@dataclass(frozen=True, slots=True)
class BatchRun:
    """One execution of a batch: its inputs and labels."""

    inputs: Mapping[str, Any] | None = None
    labels: Sequence[str] = field(default=())


@dataclass(frozen=True, slots=True)
class BatchRequest:
    scenario: str | None
    definition: str | None
    runs: Sequence[BatchRun]
    concurrency: int
    name: str | None = None
    priority: int = 0
    labels: Sequence[str] = field(default=())
    # Every run continues the caller's trace, as StartRequest's fields of the same names.
    traceparent: str | None = None
    tracestate: str | None = None
    header_trace: TraceContext | None = None


class BatchService:
    """Start and stop batches; each run is validated and queued like a single start."""

    def __init__(
        self,
        store: BatchStore,
        scenarios: ScenarioService,
        executions: ExecutionService,
        control: ExecutionControl,
        publisher: EventPublisher,
        signals: WorkSignals,
        limits: InputLimits = DEFAULT_LIMITS,
    ) -> None:
        self._limits = limits
        self._store = store
        self._scenarios = scenarios
        self._executions = executions
        self._control = control
        self._publisher = publisher
        self._signals = signals

    async def start(self, request: BatchRequest, actor: Actor) -> Batch:
        """Validate every run, then queue them all in one transaction (all or none)."""
        errors = _request_errors(request, self._limits.labels)
        if request.traceparent is not None:  # checked once here, not per run
            errors.extend(
                trace_context_errors(request.traceparent, request.tracestate, "trace_context")[1]
            )
        definition, scenario = await self._scenarios.resolve(
            actor.workspace_id, request.scenario, request.definition
        )
        await self._executions.admit(definition, scenario, actor)
        batch = Batch(
            id=str(uuid.uuid4()),
            name=(request.name or definition.name)[:_MAX_NAME],
            scenario_name=scenario.name if scenario else None,
            concurrency=request.concurrency,
            total=len(request.runs),
            created_at=utc_now(),
            created_by=actor.label,
            workspace_id=actor.workspace_id,
        )
        prepared = []
        for index, run in enumerate(request.runs):
            # Each run's own labels are named within the run; the batch's priority and labels
            # were checked once, above.
            errors.extend(label_errors(run.labels, f"runs[{index}].labels", self._limits.labels))
            start = StartRequest(
                inputs=run.inputs,
                labels=tuple(dict.fromkeys([*request.labels, *run.labels])),
                priority=request.priority,
                traceparent=request.traceparent,
                tracestate=request.tracestate,
                header_trace=request.header_trace,
                trigger=TriggerType.BATCH,
            )
            try:
                ready = self._executions.prepare(
                    definition, scenario, start, actor, batch=(batch.id, batch.concurrency)
                )
            except Invalid as error:
                errors.extend(
                    FieldError(f"runs[{index}].{e.path}", e.message)
                    for e in error.errors
                    if e.path != "priority" and not e.path.startswith(("labels[", "trace_context."))
                )
                continue
            prepared.append((ready.execution, ready.queued))
        if errors:
            raise Invalid(errors)
        await self._store.create_batch(batch, prepared)
        await self._publisher.publish([queued for _, queued in prepared])
        self._signals.queued()
        return batch

    async def stop(self, batch_id: str, reason: str | None, actor: Actor) -> Batch:
        """Cancel the batch's queued and paused executions and stop its running ones."""
        self._control.check_reason(reason)
        batch = await self._store.batch(batch_id, workspace=actor.workspace_id)
        if batch is None:
            raise NotFound(f"batch {batch_id} not found")
        await self._store.mark_batch_stopped(batch_id)
        unfinished = await self._store.unfinished_in_batch(batch_id)
        # Queued, paused and waiting ones end now; running ones stop in their runners meanwhile.
        await self._control.stop_many(unfinished, reason or f"batch {batch_id} stopped", actor)
        found = await self._store.batch(batch_id, workspace=actor.workspace_id)
        assert found is not None
        return found


def _request_errors(request: BatchRequest, max_labels: int) -> list[FieldError]:
    errors = priority_errors(request.priority, "priority")
    errors.extend(label_errors(request.labels, "labels", max_labels))
    if not 1 <= len(request.runs) <= MAX_RUNS:
        errors.append(FieldError("runs", f"expected 1..{MAX_RUNS} runs"))
    if not 1 <= request.concurrency <= MAX_CONCURRENCY:
        errors.append(FieldError("concurrency", f"expected 1..{MAX_CONCURRENCY}"))
    if request.name is not None and not 0 < len(request.name) <= _MAX_NAME:
        errors.append(FieldError("name", f"expected 1..{_MAX_NAME} characters"))
    return errors


def progress(counts: Mapping[ExecutionStatus, int], total: int) -> float:
    """The share of the batch's executions that have ended, 0..1."""
    ended = sum(n for status, n in counts.items() if status.is_terminal)
    return ended / total if total else 1.0
