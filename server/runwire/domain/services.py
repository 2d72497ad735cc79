"""Start and stop executions and save scenarios: the rules, independent of any framework."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from runwire.domain.clock import utc_now
from runwire.domain.errors import FieldError, Invalid, InvalidTransition, NotFound
from runwire.domain.models import (
    Event,
    EventType,
    Execution,
    ExecutionStatus,
    ScenarioVersion,
)
from runwire.scenarios.definition import Definition, ParamsParser, bind_inputs, parse_definition

_STOP_ACK_SECONDS = 5.0
_MAX_LABELS = 20
_MAX_LABEL_LENGTH = 200
_MAX_PRIORITY = 1000


class ExecutionStore(Protocol):
    """What the services need from persistence (implemented by db.repository.Repository)."""

    async def save_scenario(
        self, name: str, description: str, definition: Mapping[str, Any], actor: str
    ) -> ScenarioVersion: ...

    async def latest_scenario(self, name: str) -> ScenarioVersion | None: ...

    async def create_execution(
        self, execution: Execution, first_event: Event, fingerprint: str | None = None
    ) -> tuple[Execution, bool]: ...

    async def execution(
        self, execution_id: str, *, with_steps: bool = True
    ) -> Execution | None: ...

    async def cancel_queued(self, execution_id: str, event: Event) -> bool: ...

    async def request_control(
        self, execution_id: str, action: str, reason: str, actor: str, grace: float | None
    ) -> None: ...

    async def record_activity(
        self, action: str, actor: str, execution_id: str | None, detail: Mapping[str, Any]
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class StartRequest:
    """What `startExecution` asks for: a saved scenario or an inline definition, with inputs."""

    scenario: str | None = None
    definition: str | None = None
    inputs: Mapping[str, Any] | None = None
    labels: Sequence[str] = field(default=())
    priority: int = 0
    timeout_seconds: float | None = None
    grace_seconds: float | None = None


class ExecutionService:
    """The only way executions are started and stopped."""

    def __init__(
        self,
        store: ExecutionStore,
        kinds: Mapping[str, ParamsParser],
        on_queued: Callable[[], None],
        on_control: Callable[[str], Awaitable[None]],
    ) -> None:
        self._store = store
        self._kinds = kinds
        self._on_queued = on_queued
        self._on_control = on_control

    async def save_scenario(
        self, source: str | Mapping[str, Any], actor: str, *, must_exist: bool | None = None
    ) -> ScenarioVersion:
        """Validate and store a definition as the next version of its scenario."""
        definition = parse_definition(source, self._kinds)
        if must_exist is not None:
            existing = await self._store.latest_scenario(definition.name)
            if must_exist and existing is None:
                raise NotFound(f"scenario {definition.name} not found")
            if not must_exist and existing is not None:
                raise Invalid(
                    [FieldError("name", f"scenario {definition.name} exists; update it instead")]
                )
        return await self._store.save_scenario(
            definition.name, definition.description, definition.source, actor
        )

    async def start(self, request: StartRequest, actor: str) -> Execution:
        """Validate the request and queue a new execution (its event seq 1)."""
        definition, scenario = await self._resolve(request)
        inputs = bind_inputs(definition, request.inputs)
        _check_options(request)
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
        )
        queued = Event(
            execution_id=execution.id,
            seq=1,
            at=now,
            type=EventType.EXECUTION_STATUS,
            data={"status": ExecutionStatus.QUEUED},
        )
        await self._store.create_execution(execution, queued)
        await self._store.record_activity(
            "start", actor, execution.id, {"scenario": execution.scenario_name}
        )
        self._on_queued()
        return execution

    async def stop(self, execution_id: str, reason: str | None, actor: str) -> Execution:
        """Cancel a queued execution, or ask its runner to stop it (SIGINT, grace, SIGKILL)."""
        execution = await self._get(execution_id)
        reason = reason or "stopped by request"
        if execution.status.is_terminal:
            raise InvalidTransition(
                f"execution {execution_id} already ended as {execution.status}",
                execution.status,
            )
        if execution.status is ExecutionStatus.STOPPING:
            raise InvalidTransition(f"execution {execution_id} is already stopping", "STOPPING")
        await self._store.record_activity("stop", actor, execution_id, {"reason": reason})
        cancelled = Event(
            execution_id=execution_id,
            seq=execution.last_seq + 1,
            at=utc_now(),
            type=EventType.EXECUTION_STATUS,
            data={"status": ExecutionStatus.CANCELLED, "error": f"stopped: {reason}"},
        )
        if execution.status is ExecutionStatus.QUEUED and await self._store.cancel_queued(
            execution_id, cancelled
        ):
            return await self._get(execution_id)
        # A runner owns it (perhaps since a moment ago): the durable request reaches it even
        # in another process; this process's runner is nudged to apply it at once.
        await self._store.request_control(execution_id, "stop", reason, actor, None)
        await self._on_control(execution_id)
        return await self._await_stopping(execution_id)

    async def _await_stopping(self, execution_id: str) -> Execution:
        deadline = asyncio.get_running_loop().time() + _STOP_ACK_SECONDS
        while True:
            execution = await self._get(execution_id)
            if execution.status not in (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING):
                return execution
            if asyncio.get_running_loop().time() > deadline:
                return execution
            await asyncio.sleep(0.02)

    async def _resolve(self, request: StartRequest) -> tuple[Definition, ScenarioVersion | None]:
        if (request.scenario is None) == (request.definition is None):
            raise Invalid([FieldError("input", "give exactly one of scenario or definition")])
        if request.scenario is not None:
            scenario = await self._store.latest_scenario(request.scenario)
            if scenario is None:
                raise NotFound(f"scenario {request.scenario} not found")
            return parse_definition(scenario.definition, self._kinds), scenario
        assert request.definition is not None
        return parse_definition(request.definition, self._kinds), None

    async def _get(self, execution_id: str) -> Execution:
        execution = await self._store.execution(execution_id, with_steps=False)
        if execution is None:
            raise NotFound(f"execution {execution_id} not found")
        return execution


def _check_options(request: StartRequest) -> None:
    errors: list[FieldError] = []
    if not -_MAX_PRIORITY <= request.priority <= _MAX_PRIORITY:
        errors.append(FieldError("priority", f"expected -{_MAX_PRIORITY}..{_MAX_PRIORITY}"))
    if request.timeout_seconds is not None and request.timeout_seconds <= 0:
        errors.append(FieldError("timeoutSeconds", "expected a positive number of seconds"))
    if request.grace_seconds is not None and not 0 <= request.grace_seconds <= 3600:
        errors.append(FieldError("graceSeconds", "expected 0..3600 seconds"))
    if len(request.labels) > _MAX_LABELS:
        errors.append(FieldError("labels", f"at most {_MAX_LABELS} labels"))
    for index, label in enumerate(request.labels):
        if not label.strip() or len(label) > _MAX_LABEL_LENGTH:
            errors.append(
                FieldError(f"labels[{index}]", f"expected 1..{_MAX_LABEL_LENGTH} characters")
            )
    if errors:
        raise Invalid(errors)
