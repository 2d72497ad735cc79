"""Steer executions: stop, pause, resume, retry a step, skip a step.

An execution no runner owns (queued, paused or ended) is changed here, in one transaction that
appends its events. One a runner owns is changed by that runner, which is asked through a durable
control request and woken by a queue signal (so a runner in another process gets it too); the
call then waits, briefly, until the change shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from runwire.domain.access import Actor
from runwire.domain.clock import utc_now
from runwire.domain.models import (
    Event,
    EventDraft,
    EventType,
    Execution,
    ExecutionMode,
    ExecutionStatus,
    StepRun,
    StepStatus,
    duration_between,
)
from runwire.domain.ports import ControlRequests, EventPublisher, ExecutionStore, WorkSignals
from runwire.errors import FieldError, Invalid, InvalidTransition, NotFound
from runwire.scenarios.definition import ParamsParser, StepSpec, parse_definition
from runwire.scenarios.limits import DEFAULT_LIMITS, InputLimits, too_big

_ACK_SECONDS = 5.0
_POLL_SECONDS = 0.02
# A runner releases an ended or paused execution a moment after its last event is written.
_RELEASE_SECONDS = 5.0

S = ExecutionStatus
# What a bulk stop cancels by status alone when no runner holds it (see `stop_many`).
_CANCEL_UNHELD = (S.QUEUED, S.PAUSED)
_RETRYABLE = frozenset({S.FAILED, S.CANCELLED, S.TIMED_OUT, S.PAUSED})
# A review step WAITING for its decision may be skipped too: its review closes unanswered.
_SKIPPABLE_STEP = frozenset(
    {
        StepStatus.FAILED,
        StepStatus.TIMED_OUT,
        StepStatus.CANCELLED,
        StepStatus.PENDING,
        StepStatus.WAITING,
    }
)


class ExecutionControl:
    """Every control mutation goes through here; each returns the execution as it now is."""

    def __init__(
        self,
        store: ExecutionStore,
        requests: ControlRequests,
        kinds: Mapping[str, ParamsParser],
        publisher: EventPublisher,
        signals: WorkSignals,
        limits: InputLimits = DEFAULT_LIMITS,
        ended: Callable[[str], None] | None = None,
    ) -> None:
        self._limits = limits
        self._store = store
        self._requests = requests
        # Told each execution this service ended itself (no runner held it), e.g. to export its
        # trace; the runner tells of the ones it ends.
        self._ended = ended
        self._kinds = kinds
        self._publisher = publisher
        self._signals = signals

    async def stop(self, execution_id: str, reason: str | None, actor: Actor) -> Execution:
        """Cancel an unowned execution now, or ask its runner to stop it (SIGINT, grace, KILL)."""
        self.check_reason(reason)
        reason = reason or "stopped by request"

        def decide(execution: Execution) -> list[EventDraft]:
            return _stopped(execution, reason)

        def ask(execution: Execution) -> bool:
            _refuse_stop(execution)
            return True

        return await self._steer(
            execution_id,
            "stop",
            actor,
            decide,
            ask,
            lambda e: e.status not in (S.QUEUED, S.RUNNING, S.PAUSING),
            reason=reason,
        )

    async def stop_many(
        self, execution_ids: Sequence[str], reason: str, actor: Actor, chunk: int = 500
    ) -> int:
        """Stop many executions at once (a batch): the ones no runner holds are cancelled in a
        transaction per `chunk`, the others' runners are asked, in one statement per chunk, and
        stop them in parallel. Returns without waiting for those; how many were stopped or
        asked (the rest had ended or were stopping)."""
        self.check_reason(reason)
        done = 0
        for at in range(0, len(execution_ids), chunk):
            ids = execution_ids[at : at + chunk]
            # Queued and paused ones (most of a large batch) end by their status alone, without
            # reading their rows; what is left (running, waiting for a review, ended) is decided
            # one by one, reading those rows whole: few, as the batch's concurrency bounds them.
            events = await self._store.cancel_unowned(
                ids, _CANCEL_UNHELD, f"stopped: {reason}", workspace=actor.workspace_id
            )
            cancelled = {event.execution_id for event in events}
            held: list[Execution] = []
            if rest := [execution_id for execution_id in ids if execution_id not in cancelled]:
                decided, held = await self._store.transition_many(
                    rest,
                    lambda execution: _stopped(execution, reason),
                    workspace=actor.workspace_id,
                )
                events.extend(decided)
            # Not the ones stopping already, or ended a moment ago (not yet released).
            owned = [e.id for e in held if e.status in (S.QUEUED, S.RUNNING, S.PAUSING)]
            await self._publisher.publish(events)
            ended = {event.execution_id for event in events if _ends(event)}
            if self._ended is not None:
                for execution_id in ended:
                    self._ended(execution_id)
            await self._requests.request_controls(owned, "stop", reason, actor.label)
            if owned:
                # Any signal wakes every runner, and each applies all its pending requests.
                self._signals.control_requested(owned[0])
            done += len(ended) + len(owned)
        return done

    async def pause(self, execution_id: str, reason: str | None, actor: Actor) -> Execution:
        """Hold a queued execution in the queue, or pause a running one at its next step end."""
        self.check_reason(reason)
        reason = reason or "paused by request"

        def decide(execution: Execution) -> list[EventDraft]:
            if execution.status is not S.QUEUED:
                raise _cannot("pause", execution)
            return [status_event(execution, S.PAUSED, reason=reason)]

        def ask(execution: Execution) -> bool:
            if execution.status not in (S.QUEUED, S.RUNNING):
                raise _cannot("pause", execution)
            return True

        return await self._steer(
            execution_id,
            "pause",
            actor,
            decide,
            ask,
            lambda e: e.status not in (S.QUEUED, S.RUNNING),
            reason=reason,
        )

    def check_reason(self, reason: str | None) -> None:
        """Refuse a reason longer than the limit: it is stored and shown with every event."""
        if reason is not None and len(reason) > self._limits.reason_chars:
            raise Invalid([too_big("reason", self._limits.reason_chars, len(reason), "characters")])

    async def resume(self, execution_id: str, actor: Actor) -> Execution:
        """Continue a paused execution (back in the queue), or cancel a pause not yet taken."""

        def decide(execution: Execution) -> list[EventDraft]:
            if execution.status is not S.PAUSED:
                raise _cannot("resume", execution)
            return [status_event(execution, S.QUEUED, reason="resumed")]

        def ask(execution: Execution) -> bool:
            if execution.status is S.PAUSED:
                return False  # its runner is letting go of it: change it once released
            if execution.status is not S.PAUSING:
                raise _cannot("resume", execution)
            return True

        return await self._steer(
            execution_id,
            "resume",
            actor,
            decide,
            ask,
            lambda e: e.status is not S.PAUSING,
        )

    async def retry_step(self, execution_id: str, step_key: str, actor: Actor) -> Execution:
        """Run a step again as a new attempt, then the steps after it that have not succeeded."""

        def decide(execution: Execution) -> list[EventDraft]:
            step = self._step(execution, step_key)
            if execution.status not in _RETRYABLE:
                raise InvalidTransition(
                    f"cannot retry a step of execution {execution.id}: it is {execution.status};"
                    " a step can be retried when the execution is FAILED, CANCELLED, TIMED_OUT"
                    " or PAUSED",
                    execution.status,
                )
            latest = execution.latest_attempts().get(step_key)
            if latest is not None and latest.status in (StepStatus.RUNNING, StepStatus.PENDING):
                raise _step_conflict("retry", execution, latest)
            attempt = 1 if latest is None else latest.attempt + 1
            return [
                _step_status(step, StepStatus.PENDING, attempt, reason="retry requested"),
                status_event(execution, S.QUEUED, reason=f"retrying step {step_key}"),
            ]

        def ask(execution: Execution) -> bool:
            if execution.status in _RETRYABLE:
                return False  # ended or paused a moment ago: change it once released
            raise InvalidTransition(
                f"cannot retry a step of execution {execution.id}: it is {execution.status}",
                execution.status,
            )

        return await self._steer(execution_id, "retry_step", actor, decide, ask, lambda e: True)

    async def skip_step(self, execution_id: str, step_key: str, actor: Actor) -> Execution:
        """Mark a failed or pending step SKIPPED; a stopped or paused execution continues."""

        def decide(execution: Execution) -> list[EventDraft]:
            step = self._step(execution, step_key)
            if execution.status not in (*_RETRYABLE, S.QUEUED, S.WAITING):
                raise _cannot("skip a step of", execution)
            latest = execution.latest_attempts().get(step_key)
            if latest is not None and latest.status not in _SKIPPABLE_STEP:
                raise _step_conflict("skip", execution, latest)
            attempt = _skip_attempt(latest)
            skipped = _step_status(step, StepStatus.SKIPPED, attempt, reason="skipped by request")
            if execution.status is S.QUEUED:
                return [skipped]
            return [
                skipped,
                status_event(execution, S.QUEUED, reason=f"continuing after {step_key}"),
            ]

        def ask(execution: Execution) -> bool:
            self._step(execution, step_key)
            if execution.status in _RETRYABLE or execution.status is S.WAITING:
                return False
            if execution.status not in (S.QUEUED, S.RUNNING, S.PAUSING):
                raise _cannot("skip a step of", execution)
            return True

        execution = await self._steer(
            execution_id,
            "skip_step",
            actor,
            decide,
            ask,
            lambda e: True,
            step_key=step_key,
        )
        if execution.owner is None:
            return execution
        return await self._await_skip(execution_id, step_key)

    async def change_unowned(
        self,
        execution_id: str,
        action: str,
        actor: Actor,
        decide: Callable[[Execution], list[EventDraft]],
        ask: Callable[[Execution], bool],
        *,
        reason: str = "",
        step_key: str | None = None,
    ) -> Execution:
        """Change an execution no runner owns with `decide`; for an owned one `ask` raises,
        returns False to wait until its runner lets it go, or True to send its runner the
        request (`action`, `reason`, `step_key`) and return at once (deciding a review)."""
        return await self._steer(
            execution_id,
            action,
            actor,
            decide,
            ask,
            lambda e: True,
            reason=reason,
            step_key=step_key,
        )

    async def _steer(
        self,
        execution_id: str,
        action: str,
        actor: Actor,
        decide: Callable[[Execution], list[EventDraft]],
        ask: Callable[[Execution], bool],
        settled: Callable[[Execution], bool],
        *,
        reason: str = "",
        step_key: str | None = None,
    ) -> Execution:
        """Change the execution here if no runner owns it, else ask its runner and wait."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _RELEASE_SECONDS
        while True:
            # Another workspace's execution is NotFound here, exactly like a missing one; once
            # this returns, the id is known to be the actor's, so the reads below need no scope.
            events = await self._store.transition(
                execution_id, decide, workspace=actor.workspace_id
            )
            if events is not None:
                await self._publisher.publish(events)
                if any(_requeues(event) for event in events):
                    self._signals.queued()
                if self._ended is not None and any(_ends(event) for event in events):
                    self._ended(execution_id)
                return await self._get(execution_id)
            execution = await self._get(execution_id, with_steps=True)
            if execution.owner is None:
                continue  # released between the two reads
            if ask(execution):
                await self._requests.request_control(
                    execution_id, action, reason, actor.label, None, step_key
                )
                self._signals.control_requested(execution_id)
                return await self._await(execution_id, settled)
            if loop.time() > deadline:
                raise InvalidTransition(
                    f"execution {execution_id} is still held by its runner; try again",
                    execution.status,
                )
            await asyncio.sleep(_POLL_SECONDS)

    async def _await(self, execution_id: str, settled: Callable[[Execution], bool]) -> Execution:
        deadline = asyncio.get_running_loop().time() + _ACK_SECONDS
        while True:
            execution = await self._get(execution_id)
            if settled(execution) or asyncio.get_running_loop().time() > deadline:
                return execution
            await asyncio.sleep(_POLL_SECONDS)

    async def _await_skip(self, execution_id: str, step_key: str) -> Execution:
        """A running execution's runner skips the step unless it has started meanwhile."""
        deadline = asyncio.get_running_loop().time() + _ACK_SECONDS
        while True:
            execution = await self._get(execution_id, with_steps=True)
            latest = execution.latest_attempts().get(step_key)
            if latest is not None and latest.status is StepStatus.SKIPPED:
                return execution
            if latest is not None and latest.status not in _SKIPPABLE_STEP:
                raise _step_conflict("skip", execution, latest)
            if execution.status.is_terminal or asyncio.get_running_loop().time() > deadline:
                raise InvalidTransition(
                    f"step {step_key} was not skipped: execution is {execution.status}",
                    execution.status,
                    step_key,
                    latest.status if latest else StepStatus.PENDING,
                )
            await asyncio.sleep(_POLL_SECONDS)

    def _step(self, execution: Execution, step_key: str) -> StepSpec:
        definition = parse_definition(execution.definition, self._kinds)
        step = definition.step(step_key)  # NotFound names the scenario
        if execution.mode is not ExecutionMode.FULL and step_key != execution.step_key:
            raise Invalid(
                [
                    FieldError(
                        "step_key",
                        f"this {execution.mode} execution runs only step {execution.step_key}",
                    )
                ]
            )
        return step

    async def _get(self, execution_id: str, *, with_steps: bool = False) -> Execution:
        execution = await self._store.execution(execution_id, workspace=None, with_steps=with_steps)
        if execution is None:
            raise NotFound(f"execution {execution_id} not found")
        return execution


def _stopped(execution: Execution, reason: str) -> list[EventDraft]:
    """A stop of an execution no runner holds: its waiting reviews close unanswered (their rows
    say CANCELLED), and it ends CANCELLED."""
    _refuse_stop(execution)
    unanswered = [
        _step_end(run, StepStatus.CANCELLED, f"stopped: {reason}")
        for run in execution.latest_attempts().values()
        if run.status is StepStatus.WAITING
    ]
    return [*unanswered, status_event(execution, S.CANCELLED, error=f"stopped: {reason}")]


def _refuse_stop(execution: Execution) -> None:
    if execution.status.is_terminal:
        raise InvalidTransition(
            f"execution {execution.id} already ended as {execution.status}", execution.status
        )
    if execution.status is S.STOPPING:
        raise InvalidTransition(f"execution {execution.id} is already stopping", S.STOPPING)


def _cannot(action: str, execution: Execution) -> InvalidTransition:
    return InvalidTransition(
        f"cannot {action} execution {execution.id}: it is {execution.status}", execution.status
    )


def _step_conflict(action: str, execution: Execution, latest: StepRun) -> InvalidTransition:
    return InvalidTransition(
        f"cannot {action} step {latest.key}: attempt {latest.attempt} is {latest.status}",
        execution.status,
        latest.key,
        latest.status,
    )


def _skip_attempt(latest: StepRun | None) -> int:
    if latest is None:
        return 1
    # A retry queued but not started is replaced by the skip rather than kept as a ghost; a
    # waiting review's attempt ends as the skip.
    waiting = latest.status in (StepStatus.PENDING, StepStatus.WAITING)
    return latest.attempt if waiting else latest.attempt + 1


def status_event(
    execution: Execution,
    status: ExecutionStatus,
    *,
    error: str | None = None,
    reason: str | None = None,
) -> EventDraft:
    """The execution's EXECUTION_STATUS event; an end carries its duration."""
    data: dict[str, Any] = {"status": status}
    if error is not None:
        data["error"] = error
    if reason is not None:
        data["reason"] = reason
    if status.is_terminal:
        data["duration_ms"] = duration_between(execution.started_at, utc_now())
    return EventDraft(EventType.EXECUTION_STATUS, data)


def _step_status(step: StepSpec, status: StepStatus, attempt: int, *, reason: str) -> EventDraft:
    data: dict[str, Any] = {
        "status": status,
        "kind": step.kind,
        "position": step.position,
        "reason": reason,
    }
    return EventDraft(EventType.STEP_STATUS, data, step.key, attempt)


def _step_end(run: StepRun, status: StepStatus, error: str) -> EventDraft:
    data = {"status": status, "kind": run.kind, "position": run.position, "error": error}
    return EventDraft(EventType.STEP_STATUS, data, run.key, run.attempt)


def _ends(event: Event) -> bool:
    return event.type is EventType.EXECUTION_STATUS and S(event.data["status"]).is_terminal


def _requeues(event: Event) -> bool:
    return event.type is EventType.EXECUTION_STATUS and event.data["status"] == S.QUEUED
