"""Reviews: people deciding `review` steps, and the timeouts that decide for them.

A review step's attempt waits (WAITING) with no runner: its execution is WAITING too. Deciding
it changes the execution without a runner, in one transaction: the attempt ends (its output is
the decision and the form's values) and the execution is queued to go on, or ends as the step's
failure rules say. The review rows are the store's projection of those events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from runwire.domain.access import Actor, Role
from runwire.domain.clock import utc_now
from runwire.domain.control import ExecutionControl, status_event
from runwire.domain.models import (
    Activity,
    EventDraft,
    EventType,
    Execution,
    ExecutionStatus,
    StepRun,
    StepStatus,
)
from runwire.errors import InvalidTransition, NotFound
from runwire.scenarios.definition import OnFailure, ParamsParser, StepSpec, parse_definition
from runwire.scenarios.reviews import TIMEOUT_FAILS, TIMEOUT_SKIPS, ReviewSpec, parse_review

TIMEOUT_ACTOR = "system:review-timeout"
S = ExecutionStatus


class ReviewStatus(StrEnum):
    PENDING = "PENDING"
    DECIDED = "DECIDED"
    # No decision in time: closed by the step's on_timeout (which may be a decision).
    TIMED_OUT = "TIMED_OUT"
    # Its execution was stopped, or the step skipped, before anyone decided.
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class Review:
    """One attempt of a review step: what was asked and, once closed, what was decided."""

    execution_id: str
    workspace_id: str
    step_key: str
    attempt: int
    status: ReviewStatus
    request: Mapping[str, Any]
    requested_at: datetime
    expires_at: datetime | None = None
    decision: str | None = None
    values: Mapping[str, Any] | None = None
    comment: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None

    @property
    def spec(self) -> ReviewSpec:
        return parse_review(self.request, "review")


class ReviewStore(Protocol):
    async def reviews(
        self,
        workspace: str,
        *,
        status: ReviewStatus | None,
        execution_id: str | None,
        first: int,
    ) -> list[Review]:
        """Oldest request first."""
        ...

    async def pending(self, execution_id: str, step_key: str, workspace: str) -> Review | None:
        """The step's review still waiting for a decision, if there is one."""
        ...

    async def due(self, now: datetime, limit: int) -> list[Review]:
        """Pending reviews whose time ran out, in every workspace."""
        ...


@dataclass(frozen=True, slots=True)
class ReviewOutcome:
    """How a review closes: the attempt's status and what the review row records."""

    step_status: StepStatus
    review_status: ReviewStatus
    decided_by: str
    decision: str | None = None
    values: Mapping[str, Any] | None = None
    comment: str | None = None
    error: str | None = None

    @property
    def output(self) -> dict[str, Any] | None:
        """The step's output: the form's values plus the decision (None without one)."""
        if self.decision is None:
            return None
        # Later steps read `steps.<key>.output.decision` and each field by its name.
        return {**(self.values or {}), "decision": self.decision}

    def step_data(self, kind: str, position: int) -> dict[str, Any]:
        """The data of the STEP_STATUS event that ends the attempt (and closes its review)."""
        review: dict[str, Any] = {"status": self.review_status, "decided_by": self.decided_by}
        data: dict[str, Any] = {
            "status": self.step_status,
            "kind": kind,
            "position": position,
            "review": review,
        }
        if self.decision is not None:
            review.update(decision=self.decision, values=dict(self.values or {}))
            if self.comment:
                review["comment"] = self.comment
            data["output"] = self.output
        if self.error is not None:
            data["error"] = self.error
        return data

    def to_request(self, attempt: int) -> str:
        """As the control request that asks an execution's runner to close `attempt`."""
        return json.dumps(
            {
                "attempt": attempt,
                "step_status": self.step_status,
                "review_status": self.review_status,
                "decided_by": self.decided_by,
                "decision": self.decision,
                "values": None if self.values is None else dict(self.values),
                "comment": self.comment,
                "error": self.error,
            }
        )

    @classmethod
    def of_request(cls, text: str) -> tuple[int, ReviewOutcome]:
        """(the attempt it closes, the outcome) from `to_request`'s text."""
        data = json.loads(text)
        return int(data["attempt"]), cls(
            step_status=StepStatus(data["step_status"]),
            review_status=ReviewStatus(data["review_status"]),
            decided_by=str(data["decided_by"]),
            decision=data.get("decision"),
            values=data.get("values"),
            comment=data.get("comment"),
            error=data.get("error"),
        )


# How long a decision waits for the runner that holds the execution to apply it.
_APPLIED_SECONDS = 5.0
_POLL_SECONDS = 0.02
# Tries of a decision whose runner let the execution go (WAITING) instead of applying it.
_TRIES = 3


class ReviewService:
    """submitReview, the review queue, and the timeouts every process sweeps."""

    def __init__(
        self,
        store: ReviewStore,
        control: ExecutionControl,
        kinds: Mapping[str, ParamsParser],
        audit: Callable[[Activity], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._control = control
        self._kinds = kinds
        # Where a timeout's decision is recorded; people's are, as every mutation is.
        self._audit = audit

    async def reviews(
        self,
        actor: Actor,
        *,
        status: ReviewStatus | None = None,
        execution_id: str | None = None,
        first: int = 100,
    ) -> list[Review]:
        return await self._store.reviews(
            actor.workspace_id, status=status, execution_id=execution_id, first=first
        )

    async def submit(
        self,
        execution_id: str,
        step_key: str,
        decision: str,
        values: Mapping[str, Any] | None,
        comment: str | None,
        actor: Actor,
    ) -> Execution:
        """Decide a waiting review: Invalid names a wrong field, InvalidTransition says why the
        step is not waiting (decided already, timed out, never asked)."""
        review = await self._store.pending(execution_id, step_key, actor.workspace_id)
        if review is None:
            # Missing, another workspace's, or not waiting: the transition says which.
            return await self._close(execution_id, step_key, None, actor, None)
        spec = review.spec
        answer = spec.answer(decision, values, comment)
        failed = spec.fails(decision)
        said = f"{decision} by {actor.label}" + (f": {comment}" if comment else "")
        outcome = ReviewOutcome(
            StepStatus.FAILED if failed else StepStatus.SUCCEEDED,
            ReviewStatus.DECIDED,
            actor.label,
            decision,
            answer,
            comment,
            error=f"review decided {said}" if failed else None,
        )
        return await self._close(execution_id, step_key, review.attempt, actor, outcome)

    async def expire_due(self, limit: int = 100) -> int:
        """Close up to `limit` reviews whose time ran out, as their steps' on_timeout says;
        how many were closed here."""
        closed = 0
        for review in await self._store.due(utc_now(), limit):
            actor = Actor(workspace_id=review.workspace_id, label=TIMEOUT_ACTOR, role=Role.ADMIN)
            outcome = _on_timeout(review.spec)
            try:
                await self._close(
                    review.execution_id, review.step_key, review.attempt, actor, outcome
                )
            except (InvalidTransition, NotFound):
                continue  # decided, stopped or deleted meanwhile, or closed by another process
            closed += 1
            if self._audit is not None:
                await self._audit(
                    Activity(
                        action="reviewTimedOut",
                        actor=TIMEOUT_ACTOR,
                        execution_id=review.execution_id,
                        at=utc_now(),
                        detail={"stepKey": review.step_key, "onTimeout": review.spec.on_timeout},
                        result="ok",
                        workspace_id=review.workspace_id,
                    )
                )
        return closed

    async def _close(
        self,
        execution_id: str,
        step_key: str,
        attempt: int | None,
        actor: Actor,
        outcome: ReviewOutcome | None,
    ) -> Execution:
        """Close the review of `attempt` with `outcome`: here, in one transaction, when no
        runner holds the execution (WAITING); else by its runner, which gets a control request
        (the execution runs other steps meanwhile)."""

        def decide(execution: Execution) -> list[EventDraft]:
            step = self._step(execution, step_key)
            waiting = _waiting_attempt(execution, step_key, (S.WAITING,))
            if waiting is None or outcome is None or waiting.attempt != attempt:
                raise _not_waiting(execution, step_key)
            return _closing_events(execution, step, waiting.attempt, outcome)

        def ask(execution: Execution) -> bool:
            if execution.status is S.WAITING:
                return False  # its runner is letting go of it: decide once released
            running = _waiting_attempt(execution, step_key, (S.RUNNING, S.PAUSING))
            if running is None or outcome is None or running.attempt != attempt:
                raise _not_waiting(execution, step_key)
            return True

        for _ in range(_TRIES):
            execution = await self._control.change_unowned(
                execution_id,
                "decide_review",
                actor,
                decide,
                ask,
                reason="" if outcome is None or attempt is None else outcome.to_request(attempt),
                step_key=step_key,
            )
            if await self._closed(execution.workspace_id, execution_id, step_key):
                return execution
            # Its runner let the execution go (WAITING) before the request reached it: the
            # review is still open, and now no runner holds it.
        raise InvalidTransition(
            f"the review of step {step_key} of execution {execution_id} is still open; try again",
            S.WAITING,
            step_key,
            StepStatus.WAITING,
        )

    async def _closed(self, workspace: str, execution_id: str, step_key: str) -> bool:
        """Whether the step's review is closed, waiting briefly for a runner to close it."""
        deadline = asyncio.get_running_loop().time() + _APPLIED_SECONDS
        while await self._store.pending(execution_id, step_key, workspace) is not None:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(_POLL_SECONDS)
        return True

    def _step(self, execution: Execution, step_key: str) -> StepSpec:
        return parse_definition(execution.definition, self._kinds).step(step_key)


def _on_timeout(spec: ReviewSpec) -> ReviewOutcome:
    if spec.on_timeout == TIMEOUT_FAILS:
        return ReviewOutcome(
            StepStatus.TIMED_OUT,
            ReviewStatus.TIMED_OUT,
            TIMEOUT_ACTOR,
            error="no review decision in time (on_timeout: fail)",
        )
    if spec.on_timeout == TIMEOUT_SKIPS:
        return ReviewOutcome(StepStatus.SKIPPED, ReviewStatus.TIMED_OUT, TIMEOUT_ACTOR)
    decision = spec.on_timeout
    failed = spec.fails(decision)
    return ReviewOutcome(
        StepStatus.FAILED if failed else StepStatus.SUCCEEDED,
        ReviewStatus.TIMED_OUT,
        TIMEOUT_ACTOR,
        decision,
        spec.defaults(),
        error=f"no review decision in time; decided {decision} (on_timeout)" if failed else None,
    )


def _waiting_attempt(
    execution: Execution, step_key: str, statuses: tuple[ExecutionStatus, ...]
) -> StepRun | None:
    """The step's attempt waiting for its review, while the execution is in `statuses`."""
    latest = execution.latest_attempts().get(step_key)
    if execution.status not in statuses or latest is None:
        return None
    return latest if latest.status is StepStatus.WAITING else None


def _not_waiting(execution: Execution, step_key: str) -> InvalidTransition:
    latest = execution.latest_attempts().get(step_key)
    step_status = latest.status if latest is not None else StepStatus.PENDING
    return InvalidTransition(
        f"step {step_key} of execution {execution.id} is not waiting for a review: the step is"
        f" {step_status}, the execution {execution.status}",
        execution.status,
        step_key,
        step_status,
    )


def _closing_events(
    execution: Execution, step: StepSpec, attempt: int, outcome: ReviewOutcome
) -> list[EventDraft]:
    """The attempt's end, then what the execution does: go on, pause, or end."""
    data = outcome.step_data(step.kind, step.position)
    events = [EventDraft(EventType.STEP_STATUS, data, step.key, attempt)]
    goes_on = outcome.step_status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED)
    if goes_on or step.continue_on_failure:
        reason = f"review of step {step.key} closed by {outcome.decided_by}"
        return [*events, status_event(execution, S.QUEUED, reason=reason)]
    error = f"step {step.key} failed: {outcome.error}"
    if step.on_failure is OnFailure.PAUSE:
        paused = status_event(execution, S.PAUSED, error=error, reason=f"step {step.key} failed")
        return [*events, paused]
    # It ends: reviews still waiting beside this one close unanswered.
    for other in _other_waiting(execution, step.key):
        events.append(
            EventDraft(
                EventType.STEP_STATUS,
                {
                    "status": StepStatus.CANCELLED,
                    "kind": other.kind,
                    "position": other.position,
                    "error": f"cancelled: step {step.key} failed",
                    "review": {"status": ReviewStatus.CANCELLED, "decided_by": outcome.decided_by},
                },
                other.key,
                other.attempt,
            )
        )
    ends_as = S.TIMED_OUT if outcome.step_status is StepStatus.TIMED_OUT else S.FAILED
    return [*events, status_event(execution, ends_as, error=error)]


def _other_waiting(execution: Execution, step_key: str) -> Sequence[StepRun]:
    return [
        run
        for key, run in execution.latest_attempts().items()
        if key != step_key and run.status is StepStatus.WAITING
    ]
