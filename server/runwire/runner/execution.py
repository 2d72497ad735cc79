"""Run one claimed execution: its steps in order, as the single writer of its events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runwire.domain.clock import utc_now
from runwire.domain.errors import RunwireError
from runwire.domain.models import (
    Event,
    EventType,
    Execution,
    ExecutionStatus,
    OutputStream,
    StepStatus,
    duration_between,
)
from runwire.events.log import EventLog
from runwire.runner.output import OutputCoalescer
from runwire.runner.steps.base import StepKind, StepResult
from runwire.scenarios.definition import Definition, StepSpec
from runwire.scenarios.templating import render

logger = logging.getLogger(__name__)

SHUTDOWN_REASON = "server shutting down"


@dataclass(frozen=True, slots=True)
class _Ended:
    status: ExecutionStatus
    error: str | None = None


class _Stopped(Exception):
    """The running step was cancelled because an operator stopped the execution."""


@dataclass(slots=True)
class _StepContext:
    execution_id: str
    step_key: str
    attempt: int
    grace_seconds: float
    coalescer: OutputCoalescer

    def output(self, stream: OutputStream, text: str) -> None:
        self.coalescer.write(stream, text)


class ExecutionRun:
    """Assigns seqs 1, 2, 3, … (continuing from the row's last_seq) to everything it emits."""

    def __init__(
        self,
        execution: Execution,
        definition: Definition,
        log: EventLog,
        kinds: Mapping[str, StepKind[Any]],
        grace_seconds: float,
        coalesce_seconds: float,
    ) -> None:
        self.execution = execution
        self._definition = definition
        self._log = log
        self._kinds = kinds
        self._grace = grace_seconds
        self._coalesce_seconds = coalesce_seconds
        self._seq = execution.last_seq
        self._step_task: asyncio.Task[StepResult] | None = None
        self.stop_reason: str | None = None

    @property
    def id(self) -> str:
        return self.execution.id

    def emit(
        self,
        type: EventType,
        data: Mapping[str, Any],
        step_key: str | None = None,
        attempt: int | None = None,
    ) -> Event:
        self._seq += 1
        event = Event(
            execution_id=self.execution.id,
            seq=self._seq,
            at=utc_now(),
            type=type,
            data=data,
            step_key=step_key,
            attempt=attempt,
        )
        self._log.append(event)
        return event

    def stop(self, reason: str) -> bool:
        """Move to STOPPING and cancel the running step (SIGINT, grace, SIGKILL for processes)."""
        if self.stop_reason is not None:
            return False
        self.stop_reason = reason
        self.emit(
            EventType.EXECUTION_STATUS, {"status": ExecutionStatus.STOPPING, "reason": reason}
        )
        if self._step_task is not None:
            self._step_task.cancel()
        return True

    async def run(self) -> None:
        """Run to a terminal event; shutdown cancellation still ends the execution CANCELLED."""
        if self.stop_reason is not None:
            # Stopped between the claim and the first step: it never ran.
            self.emit(
                EventType.EXECUTION_STATUS,
                {"status": ExecutionStatus.CANCELLED, "error": f"stopped: {self.stop_reason}"},
            )
            return
        running = self.emit(EventType.EXECUTION_STATUS, {"status": ExecutionStatus.RUNNING})
        started_at = self.execution.started_at or running.at
        ended = _Ended(ExecutionStatus.FAILED, "execution ended without a result")
        current: list[str] = []
        try:
            async with asyncio.timeout(self.execution.timeout_seconds or self._definition.timeout):
                ended = await self._run_steps(current)
        except TimeoutError:
            during = f" during step {current[-1]}" if current else ""
            seconds = self.execution.timeout_seconds or self._definition.timeout
            ended = _Ended(
                ExecutionStatus.TIMED_OUT, f"execution timed out after {seconds:g}s{during}"
            )
        except asyncio.CancelledError:
            ended = _Ended(ExecutionStatus.CANCELLED, SHUTDOWN_REASON)
            raise
        finally:
            data: dict[str, Any] = {"status": ended.status}
            if ended.error:
                data["error"] = ended.error
            data["duration_ms"] = duration_between(started_at, utc_now())
            self.emit(EventType.EXECUTION_STATUS, data)

    async def _run_steps(self, current: list[str]) -> _Ended:
        outputs: dict[str, Any] = {}
        for step in self._definition.steps:
            if self.stop_reason is not None:
                return _Ended(ExecutionStatus.CANCELLED, f"stopped: {self.stop_reason}")
            current.append(step.key)
            result = await self._run_step(step, outputs)
            if isinstance(result, _Ended):
                return result
            outputs[step.key] = {"output": result.output, "exit_code": result.exit_code}
        if self.stop_reason is not None:
            return _Ended(ExecutionStatus.CANCELLED, f"stopped: {self.stop_reason}")
        return _Ended(ExecutionStatus.SUCCEEDED)

    async def _run_step(self, step: StepSpec, outputs: Mapping[str, Any]) -> StepResult | _Ended:
        attempt = 1
        key = step.key
        kind = self._kinds[step.kind]
        self.emit(
            EventType.STEP_STATUS,
            {"status": StepStatus.RUNNING, "kind": step.kind, "position": step.position},
            key,
            attempt,
        )
        coalescer = OutputCoalescer(
            lambda stream, text: self.emit(
                EventType.OUTPUT, {"stream": stream, "text": text}, key, attempt
            ),
            self._coalesce_seconds,
        )
        context = _StepContext(self.execution.id, key, attempt, self._grace, coalescer)
        status = StepStatus.FAILED
        result = StepResult(error="step ended without a result")
        try:
            path = f"steps[{step.position}].with"
            scope = {"inputs": self.execution.inputs, "steps": outputs}
            params = kind.parse(render(step.with_, scope, path), path)
            self._step_task = asyncio.create_task(kind.run(params, context))
            async with asyncio.timeout(step.timeout):
                result = await self._await_step(self._step_task)
            status = StepStatus.SUCCEEDED if result.error is None else StepStatus.FAILED
        except _Stopped:
            status, result = StepStatus.CANCELLED, StepResult(error=f"stopped: {self.stop_reason}")
        except TimeoutError:
            status = StepStatus.TIMED_OUT
            result = StepResult(error=f"step timed out after {step.timeout:g}s")
        except asyncio.CancelledError:
            status, result = StepStatus.CANCELLED, StepResult(error=SHUTDOWN_REASON)
            raise
        except RunwireError as error:
            result = StepResult(error=error.message)
        except Exception as error:
            # A defect in a step kind fails this execution, never the runner.
            logger.exception("step %s of execution %s crashed", key, self.execution.id)
            result = StepResult(error=f"internal error in step kind {step.kind}: {error!r}")
        finally:
            self._step_task = None
            coalescer.flush()
            data: dict[str, Any] = {
                "status": status,
                "kind": step.kind,
                "position": step.position,
                "output": result.output,
            }
            if result.exit_code is not None:
                data["exit_code"] = result.exit_code
            if result.error is not None:
                data["error"] = result.error
            self.emit(EventType.STEP_STATUS, data, key, attempt)
        if status is StepStatus.SUCCEEDED:
            return result
        if status is StepStatus.TIMED_OUT:
            return _Ended(ExecutionStatus.TIMED_OUT, f"step {key}: {result.error}")
        if status is StepStatus.CANCELLED:
            return _Ended(ExecutionStatus.CANCELLED, result.error)
        return _Ended(ExecutionStatus.FAILED, f"step {key} failed: {result.error}")

    async def _await_step(self, task: asyncio.Task[StepResult]) -> StepResult:
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            # Only the step task was cancelled (by stop), not this one (timeout or shutdown).
            if self.stop_reason is not None and current is not None and not current.cancelling():
                raise _Stopped() from None
            raise
