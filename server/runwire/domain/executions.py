"""Start executions: validate a request and queue it, the rules independent of any framework."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runwire.domain.access import Actor, Permission
from runwire.domain.clock import utc_now
from runwire.domain.models import (
    Event,
    EventType,
    Execution,
    ExecutionMode,
    ExecutionStatus,
    ScenarioVersion,
    TriggerType,
)
from runwire.domain.ports import (
    EventPublisher,
    ExecutionStore,
    SecretStore,
    StartAudit,
    WorkSignals,
)
from runwire.domain.scenarios import ScenarioService
from runwire.domain.secrets import missing_secrets
from runwire.domain.trace_context import TraceContext, trace_context_errors
from runwire.errors import FieldError, Invalid, InvalidInputs, NotFound
from runwire.scenarios.definition import MAX_SECONDS, Definition, bind_inputs
from runwire.scenarios.limits import DEFAULT_LIMITS, LABEL_CHARS, InputLimits, json_size_errors
from runwire.scenarios.templating import TemplateError, render

_MAX_PRIORITY = 1000
_MAX_KEY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class StartRequest:
    """What `startExecution` asks for: a saved scenario or an inline definition, with inputs.

    `mode` STEP runs only `step_key`; STEP_IN_CONTEXT also gives `upstream`, the outputs of the
    steps it needs, by key.
    """

    scenario: str | None = None
    definition: str | None = None
    inputs: Mapping[str, Any] | None = None
    labels: Sequence[str] = field(default=())
    priority: int = 0
    timeout_seconds: float | None = None
    grace_seconds: float | None = None
    mode: ExecutionMode = ExecutionMode.FULL
    step_key: str | None = None
    upstream: Mapping[str, Any] | None = None
    idempotency_key: str | None = None
    # The W3C trace context to continue: given explicitly (validated, errors at
    # trace_context.*), else the one the request's headers carried (already read leniently).
    traceparent: str | None = None
    tracestate: str | None = None
    header_trace: TraceContext | None = None
    trigger: TriggerType = TriggerType.API


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated, not yet stored execution with its first event."""

    execution: Execution
    queued: Event
    fingerprint: str | None


class ExecutionService:
    """The only way executions are created."""

    def __init__(
        self,
        store: ExecutionStore,
        scenarios: ScenarioService,
        publisher: EventPublisher,
        signals: WorkSignals,
        secrets: SecretStore,
        limits: InputLimits = DEFAULT_LIMITS,
    ) -> None:
        self._store = store
        self._scenarios = scenarios
        self._publisher = publisher
        self._signals = signals
        self._secrets = secrets
        self._limits = limits

    async def start(
        self, request: StartRequest, actor: Actor, audit: StartAudit | None = None
    ) -> Execution:
        """Validate the request and queue a new execution (its event seq 1).

        With an idempotency key used before, the earlier execution is returned and nothing is
        queued; the same key with a different request is a validation error. `audit`'s record
        of a new execution is stored with it (one transaction), and told so.
        """
        definition, scenario = await self._scenarios.resolve(
            actor.workspace_id, request.scenario, request.definition
        )
        only = request.step_key if request.mode is not ExecutionMode.FULL else None
        await self.admit(definition, scenario, actor, only)
        prepared = self.prepare(definition, scenario, request, actor)
        execution, created = await self._store.create_execution(
            prepared.execution,
            prepared.queued,
            prepared.fingerprint,
            None if audit is None else audit.activity(prepared.execution),
        )
        if not created:
            stored = await self._store.request_fingerprint(execution.id)
            if stored != prepared.fingerprint:
                raise Invalid(
                    [
                        FieldError(
                            "idempotency_key",
                            f"already used for a different request (execution {execution.id})",
                        )
                    ]
                )
            return execution
        if audit is not None:
            audit.stored()
        # Subscribers (followers, the live list) in every process learn of it as of seq 1.
        if self._store.starts_announced:
            # The store's own statement notified the bus at commit; what is left is local.
            self._publisher.deliver_here([prepared.queued])
            self._signals.queued_here()
        else:
            await self._publisher.publish([prepared.queued])
            self._signals.queued()
        return execution

    async def admit(
        self,
        definition: Definition,
        scenario: ScenarioVersion | None,
        actor: Actor,
        only: str | None = None,
    ) -> None:
        """May the actor run it (an inline process step needs `scenario:write`), and does the
        workspace have every secret its steps (or step `only`) name?"""
        if scenario is None and any(
            runs_processes(self._scenarios.kinds.get(step.kind)) for step in definition.steps
        ):
            # Running any command the caller writes is authoring, not operating: operators run
            # what editors saved.
            actor.require(Permission.SCENARIO_WRITE)
        errors = await missing_secrets(self._secrets, actor.workspace_id, definition, only)
        if errors:
            raise Invalid(errors)

    def prepare(
        self,
        definition: Definition,
        scenario: ScenarioVersion | None,
        request: StartRequest,
        actor: Actor,
        *,
        batch: tuple[str, int] | None = None,
    ) -> Prepared:
        """Check everything about one start that does not need the database."""
        errors = _option_errors(request, self._limits)
        errors.extend(_mode_errors(definition, request))
        caller_trace = request.header_trace
        if request.traceparent is not None:
            caller_trace, trace_errors = trace_context_errors(
                request.traceparent, request.tracestate, "trace_context"
            )
            errors.extend(trace_errors)
        oversized = self._json_errors(request.inputs, "inputs", self._limits.inputs_bytes)
        # Step outputs (a body up to 1 MiB): bounded in bytes by the request body's limit only.
        oversized.extend(self._json_errors(request.upstream, "upstream", None))
        if oversized:
            # Binding oversized inputs, or rendering templates with them, is the work refused.
            raise Invalid([*errors, *oversized])
        try:
            inputs = bind_inputs(definition, request.inputs)
        except InvalidInputs as error:
            errors.extend(error.errors)
            inputs = {}
        concurrency_key = None
        if definition.concurrency is not None and not errors:
            concurrency_key = _render_key(definition.concurrency.key, inputs, errors)
        if errors:
            raise Invalid(errors)
        now = utc_now()
        execution = Execution(
            id=str(uuid.uuid4()),
            status=ExecutionStatus.QUEUED,
            definition=definition.source,
            inputs=inputs,
            queued_at=now,
            scenario_name=scenario.name if scenario else None,
            scenario_version=scenario.version if scenario else None,
            labels=tuple(dict.fromkeys(request.labels)),
            priority=request.priority,
            timeout_seconds=request.timeout_seconds,
            grace_seconds=request.grace_seconds,
            last_seq=1,
            mode=request.mode,
            step_key=request.step_key if request.mode is not ExecutionMode.FULL else None,
            upstream=dict(request.upstream or {})
            if request.mode is ExecutionMode.STEP_IN_CONTEXT
            else None,
            idempotency_key=request.idempotency_key,
            concurrency_key=concurrency_key,
            concurrency_limit=definition.concurrency.limit if definition.concurrency else None,
            batch_id=batch[0] if batch else None,
            batch_limit=batch[1] if batch else None,
            triggered_by=actor.label,
            trigger_type=request.trigger,
            workspace_id=actor.workspace_id,
            trace_context=caller_trace,
        )
        queued = Event(
            execution_id=execution.id,
            seq=1,
            at=now,
            type=EventType.EXECUTION_STATUS,
            data={"status": ExecutionStatus.QUEUED},
        )
        fingerprint = _fingerprint(execution) if request.idempotency_key else None
        return Prepared(execution, queued, fingerprint)

    def _json_errors(self, value: Any, path: str, max_bytes: int | None) -> list[FieldError]:
        if value is None:
            return []
        return json_size_errors(value, path, max_bytes, self._limits.inputs_depth)


def runs_processes(kind: object) -> bool:
    """Whether a step kind runs a process; a kind that does not say is taken to (fail closed)."""
    return bool(getattr(kind, "runs_processes", True))


def _option_errors(request: StartRequest, limits: InputLimits) -> list[FieldError]:
    errors = priority_errors(request.priority, "priority")
    if request.timeout_seconds is not None and not 0 < request.timeout_seconds <= MAX_SECONDS:
        # As a definition's `timeout`: a huge one (1e308) would overflow the runner's timer.
        errors.append(
            FieldError("timeout_seconds", f"expected more than 0 and at most {MAX_SECONDS} seconds")
        )
    if request.grace_seconds is not None and not 0 <= request.grace_seconds <= 3600:
        errors.append(FieldError("grace_seconds", "expected 0..3600 seconds"))
    errors.extend(label_errors(request.labels, "labels", limits.labels))
    errors.extend(idempotency_key_errors(request.idempotency_key))
    return errors


def idempotency_key_errors(key: str | None) -> list[FieldError]:
    """What is wrong with an idempotency key (of an execution or a suite run)."""
    if key is not None and not 0 < len(key) <= _MAX_KEY_LENGTH:
        return [FieldError("idempotency_key", f"expected 1..{_MAX_KEY_LENGTH} characters")]
    return []


def priority_errors(priority: int, path: str) -> list[FieldError]:
    """What is wrong with a priority, named at `path`."""
    if -_MAX_PRIORITY <= priority <= _MAX_PRIORITY:
        return []
    return [FieldError(path, f"expected -{_MAX_PRIORITY}..{_MAX_PRIORITY}")]


def label_errors(labels: Sequence[str], path: str, max_labels: int) -> list[FieldError]:
    """What is wrong with a list of labels: too many, or each label at `path[i]`."""
    errors: list[FieldError] = []
    if len(labels) > max_labels:
        errors.append(
            FieldError(path, f"must be at most {max_labels:,} labels (got {len(labels):,})")
        )
    for index, label in enumerate(labels):
        if not label.strip():
            errors.append(FieldError(f"{path}[{index}]", "must not be blank"))
        elif len(label) > LABEL_CHARS:
            errors.append(
                FieldError(
                    f"{path}[{index}]",
                    f"must be at most {LABEL_CHARS} characters (got {len(label):,})",
                )
            )
    return errors


def _mode_errors(definition: Definition, request: StartRequest) -> list[FieldError]:
    if request.mode is ExecutionMode.FULL:
        errors = []
        if request.step_key is not None:
            errors.append(FieldError("step_key", "only for modes STEP and STEP_IN_CONTEXT"))
        if request.upstream is not None:
            errors.append(FieldError("upstream", "only for mode STEP_IN_CONTEXT"))
        return errors
    if request.step_key is None:
        return [FieldError("step_key", f"required for mode {request.mode}")]
    try:
        step = definition.step(request.step_key)
    except NotFound:
        keys = ", ".join(step.key for step in definition.steps)
        return [FieldError("step_key", f'no step "{request.step_key}"; expected one of {keys}')]
    if request.mode is ExecutionMode.STEP:
        if request.upstream is not None:
            return [FieldError("upstream", "only for mode STEP_IN_CONTEXT")]
        return []
    upstream = request.upstream or {}
    errors = [
        FieldError(f"upstream.{need}", f'required: step "{step.key}" needs it')
        for need in step.needs
        if need not in upstream
    ]
    errors.extend(
        FieldError(f"upstream.{key}", f'step "{step.key}" does not need it')
        for key in upstream
        if key not in step.needs
    )
    return errors


def _render_key(template: str, inputs: Mapping[str, Any], errors: list[FieldError]) -> str | None:
    try:
        key = str(render(template, {"inputs": inputs}, "concurrency.key"))
    except TemplateError as error:
        errors.append(FieldError("concurrency.key", error.reason))
        return None
    if not key.strip() or len(key) > _MAX_KEY_LENGTH:
        errors.append(
            FieldError("concurrency.key", f"rendered to {len(key)} characters; expected 1..200")
        )
        return None
    return key


def _fingerprint(execution: Execution) -> str:
    """What makes two starts with one idempotency key the same request."""
    # A saved scenario is named rather than compared by content, so a new version saved between
    # a start and its retry does not turn the retry into a conflict.
    request: dict[str, Any] = {
        "scenario": execution.scenario_name,
        "definition": None if execution.scenario_name else execution.definition,
        "inputs": execution.inputs,
        "mode": execution.mode.value,
        "step_key": execution.step_key,
        "upstream": execution.upstream,
        "labels": sorted(execution.labels),
        "priority": execution.priority,
    }
    # Only when given, so the fingerprints of keys used before they counted stay the same.
    if execution.timeout_seconds is not None:
        request["timeout_seconds"] = execution.timeout_seconds
    if execution.grace_seconds is not None:
        request["grace_seconds"] = execution.grace_seconds
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
