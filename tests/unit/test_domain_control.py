"""Steering: stop, pause, resume, retry and skip, on executions no runner owns and on owned ones.

An unowned execution changes here, in one transition whose events are published; an owned one
gets a control request and a signal, and the test acts as its runner (`answer`) so the call
returns as soon as the change shows, without waiting for the service's timeouts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from tests.support.domain import (
    EDITOR,
    OPERATOR,
    OUTSIDER,
    RUNNER,
    Domain,
    status_changed,
    step_changed,
)

from runwire.domain.access import Actor
from runwire.domain.control import ExecutionControl
from runwire.domain.executions import StartRequest
from runwire.domain.models import (
    EXECUTION_TERMINAL,
    Event,
    EventDraft,
    Execution,
    ExecutionMode,
    ExecutionStatus,
    StepStatus,
)
from runwire.errors import FieldError, Invalid, InvalidTransition, NotFound, RunwireError
from runwire.queue.store import ControlRequest

S = ExecutionStatus
Step = StepStatus
E = TypeVar("E", bound=RunwireError)

TWO_STEPS = """
name: two-steps
steps:
  - {key: build, kind: shell, with: {argv: [make]}}
  - {key: test, kind: shell, with: {argv: [make, test]}}
"""
# Long enough for the service's poll (every 20 ms) to find the execution still held, or the
# runner's answer not yet written, at least once.
_RELEASE_AFTER_SECONDS = 0.03
_ANSWER_AFTER_SECONDS = 0.03


async def queued(domain: Domain, **fields: Any) -> str:
    execution = await domain.executions.start(StartRequest(definition=TWO_STEPS, **fields), EDITOR)
    return execution.id


async def after_build(
    domain: Domain, step: StepStatus, ended: ExecutionStatus, *, release: bool = True
) -> str:
    """An execution whose first step ended `step` and then the execution `ended`."""
    execution_id = await queued(domain)
    domain.run(
        execution_id,
        status_changed(S.RUNNING),
        step_changed("build", Step.RUNNING, 1),
        step_changed("build", step, 1, exit_code=2, error="exit code 2"),
        status_changed(ended, error="step build failed", duration_ms=5),
        release=release,
    )
    return execution_id


async def running(domain: Domain, *, release: bool = False) -> str:
    """An execution a runner is running (owned unless `release`), its first step running."""
    execution_id = await queued(domain)
    domain.run(
        execution_id,
        status_changed(S.RUNNING),
        step_changed("build", Step.RUNNING, 1),
        release=release,
    )
    return execution_id


async def left_in(domain: Domain, status: ExecutionStatus) -> str:
    """An execution no runner owns, in `status`: as started if QUEUED, else as a runner left it."""
    execution_id = await queued(domain)
    if status is not S.QUEUED:
        domain.run(execution_id, status_changed(status))
    return execution_id


def release_soon(domain: Domain, execution_id: str) -> None:
    """The owning runner lets go of the execution a moment from now, as it does once idle."""
    asyncio.get_running_loop().call_later(
        _RELEASE_AFTER_SECONDS, domain.store.release, execution_id
    )


Summary = tuple[int, str | None, int | None, dict[str, Any]]


def summary(events: list[Event]) -> list[Summary]:
    """Each event's seq, step key, attempt and data; `at` is the store's clock."""
    return [(e.seq, e.step_key, e.attempt, dict(e.data)) for e in events]


def became(seq: int, status: ExecutionStatus, **data: Any) -> Summary:
    """The summary of an execution status event the service writes."""
    return (seq, None, None, {"status": status, **data})


def marked(
    seq: int, key: str, attempt: int, status: StepStatus, reason: str, *, position: int = 0
) -> Summary:
    """The summary of a step status event the service writes (both steps are shell steps)."""
    return (
        seq,
        key,
        attempt,
        {"status": status, "kind": "shell", "position": position, "reason": reason},
    )


async def steered(
    domain: Domain, execution_id: str, call: Awaitable[Execution]
) -> tuple[Execution, list[Event]]:
    """The control call's result and the events it stored, once checked to be what it published:
    one batch, every stored event, in seq order."""
    before = await domain.read(execution_id)
    batches = len(domain.published.batches)
    execution = await call
    stored = await domain.store.events(execution_id, before.last_seq)
    assert domain.published.batches[batches:] == [stored]
    assert [event.seq for event in stored] == list(
        range(before.last_seq + 1, execution.last_seq + 1)
    )
    return execution, stored


async def refused(
    domain: Domain, execution_id: str, call: Awaitable[Execution], error: type[E]
) -> E:
    """The refusal `call` raised, once checked to have changed, published and asked nothing."""
    before = await domain.store.execution(execution_id, workspace=None)
    batches, queued_count = len(domain.published.batches), domain.signals.queued_count
    with pytest.raises(error) as refusal:
        await call
    assert await domain.store.execution(execution_id, workspace=None) == before
    assert len(domain.published.batches) == batches
    assert domain.signals.queued_count == queued_count
    assert domain.store.control_requests == ()
    assert domain.signals.control_requested_for == []
    return refusal.value


Said = tuple[str, str, str | None, str | None]


def said(error: InvalidTransition) -> Said:
    """All an InvalidTransition tells a client: message, status, step key and step status."""
    return (error.message, error.current_status, error.step_key, error.step_status)


async def transition_refused(domain: Domain, execution_id: str, call: Awaitable[Execution]) -> Said:
    """What the InvalidTransition `call` raised says, once checked to have changed nothing."""
    return said(await refused(domain, execution_id, call, InvalidTransition))


def attempts(execution: Execution, key: str) -> list[tuple[int, StepStatus]]:
    return [(run.attempt, run.status) for run in execution.steps if run.key == key]


Control = Callable[[ExecutionControl, str, Actor], Awaitable[Execution]]
CONTROLS: dict[str, Control] = {
    "stop": lambda control, execution_id, actor: control.stop(execution_id, None, actor),
    "pause": lambda control, execution_id, actor: control.pause(execution_id, None, actor),
    "resume": lambda control, execution_id, actor: control.resume(execution_id, actor),
    "retry_step": lambda control, execution_id, actor: control.retry_step(
        execution_id, "build", actor
    ),
    "skip_step": lambda control, execution_id, actor: control.skip_step(
        execution_id, "build", actor
    ),
}


# ---- what each status allows, on an execution no runner owns ---------------------------

RETRY_ONLY_WHEN = (
    "cannot retry a step of execution {id}: it is {status}; a step can be retried when the"
    " execution is FAILED, CANCELLED, TIMED_OUT or PAUSED"
)


def refusals(action: str, message: str, *statuses: ExecutionStatus) -> list[Any]:
    """Cases of `action` refused in each of `statuses` with `message` ({id}, {status} filled)."""
    return [pytest.param(status, action, message, id=f"{action}-{status}") for status in statuses]


@pytest.mark.parametrize(
    ("status", "action", "message"),
    [
        *refusals("stop", "execution {id} already ended as {status}", *sorted(EXECUTION_TERMINAL)),
        *refusals("stop", "execution {id} is already stopping", S.STOPPING),
        *refusals(
            "pause", "cannot pause execution {id}: it is {status}", S.PAUSED, S.RUNNING, S.FAILED
        ),
        *refusals(
            "resume", "cannot resume execution {id}: it is {status}", S.QUEUED, S.RUNNING, S.FAILED
        ),
        *refusals("retry_step", RETRY_ONLY_WHEN, S.QUEUED, S.RUNNING, S.SUCCEEDED),
        *refusals(
            "skip_step",
            "cannot skip a step of execution {id}: it is {status}",
            S.RUNNING,
            S.PAUSING,
            S.SUCCEEDED,
        ),
    ],
)
async def test_a_status_refuses_the_controls_it_does_not_allow(
    domain: Domain, status: ExecutionStatus, action: str, message: str
) -> None:
    execution_id = await left_in(domain, status)

    refusal = await transition_refused(
        domain, execution_id, CONTROLS[action](domain.control, execution_id, OPERATOR)
    )

    assert refusal == (message.format(id=execution_id, status=status), status, None, None)


# ---- stop --------------------------------------------------------------------------------


async def test_stopping_a_queued_execution_cancels_it(domain: Domain) -> None:
    execution_id = await queued(domain)

    stopped, events = await steered(
        domain, execution_id, domain.control.stop(execution_id, "enough", OPERATOR)
    )

    assert (stopped.status, stopped.error) == (S.CANCELLED, "stopped: enough")
    assert stopped.finished_at == events[0].at
    assert summary(events) == [became(2, S.CANCELLED, error="stopped: enough", duration_ms=None)]
    assert domain.signals.queued_count == 1  # the start's only


async def test_stopping_a_paused_execution_cancels_it_with_its_duration(domain: Domain) -> None:
    execution_id = await after_build(domain, Step.FAILED, S.PAUSED)
    started_at = (await domain.read(execution_id)).started_at
    assert started_at is not None

    stopped, events = await steered(
        domain, execution_id, domain.control.stop(execution_id, None, OPERATOR)
    )

    assert (stopped.status, stopped.error) == (S.CANCELLED, "stopped: stopped by request")
    duration_ms = events[0].data["duration_ms"]
    assert stopped.duration_ms == duration_ms
    assert 0 <= duration_ms <= (events[0].at - started_at).total_seconds() * 1000


# ---- pause and resume --------------------------------------------------------------------


async def test_pausing_a_queued_execution_holds_it(domain: Domain) -> None:
    execution_id = await queued(domain)

    paused, events = await steered(
        domain, execution_id, domain.control.pause(execution_id, None, OPERATOR)
    )

    assert paused.status is S.PAUSED
    assert summary(events) == [became(2, S.PAUSED, reason="paused by request")]
    assert domain.signals.queued_count == 1


async def test_resuming_a_paused_execution_queues_it_again(domain: Domain) -> None:
    execution_id = await after_build(domain, Step.FAILED, S.PAUSED)

    resumed, events = await steered(
        domain, execution_id, domain.control.resume(execution_id, OPERATOR)
    )

    assert (resumed.status, resumed.error) == (S.QUEUED, None)
    assert summary(events) == [became(6, S.QUEUED, reason="resumed")]
    assert domain.signals.queued_count == 2


# ---- retry a step ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "ended"),
    [
        (Step.FAILED, S.FAILED),
        (Step.CANCELLED, S.CANCELLED),
        (Step.TIMED_OUT, S.TIMED_OUT),
        (Step.FAILED, S.PAUSED),
    ],
)
async def test_retrying_a_step_queues_a_new_attempt(
    domain: Domain, step: StepStatus, ended: ExecutionStatus
) -> None:
    execution_id = await after_build(domain, step, ended)

    retried, events = await steered(
        domain, execution_id, domain.control.retry_step(execution_id, "build", OPERATOR)
    )

    assert summary(events) == [
        marked(6, "build", 2, Step.PENDING, "retry requested"),
        became(7, S.QUEUED, reason="retrying step build"),
    ]
    assert (retried.status, retried.error, retried.finished_at) == (S.QUEUED, None, None)
    assert attempts(await domain.read(execution_id), "build") == [(1, step), (2, Step.PENDING)]
    assert domain.signals.queued_count == 2


async def test_a_step_that_never_ran_is_retried_as_its_first_attempt(domain: Domain) -> None:
    execution_id = await after_build(domain, Step.FAILED, S.FAILED)

    await domain.control.retry_step(execution_id, "test", OPERATOR)

    assert attempts(await domain.read(execution_id), "test") == [(1, Step.PENDING)]


async def test_retrying_an_unknown_step_is_not_found(domain: Domain) -> None:
    execution_id = await after_build(domain, Step.FAILED, S.FAILED)

    error = await refused(
        domain, execution_id, domain.control.retry_step(execution_id, "deploy", OPERATOR), NotFound
    )

    assert error.message == 'no step "deploy" in scenario "two-steps"'


async def test_a_retry_already_pending_is_not_queued_twice(domain: Domain) -> None:
    execution_id = await after_build(domain, Step.FAILED, S.FAILED)
    await domain.control.retry_step(execution_id, "build", OPERATOR)
    await domain.control.pause(execution_id, None, OPERATOR)

    refusal = await transition_refused(
        domain, execution_id, domain.control.retry_step(execution_id, "build", OPERATOR)
    )

    message = "cannot retry step build: attempt 2 is PENDING"
    assert refusal == (message, S.PAUSED, "build", Step.PENDING)


async def test_a_step_still_marked_running_is_not_retried(domain: Domain) -> None:
    execution_id = await running(domain)
    domain.run(execution_id, status_changed(S.TIMED_OUT))

    refusal = await transition_refused(
        domain, execution_id, domain.control.retry_step(execution_id, "build", OPERATOR)
    )

    message = "cannot retry step build: attempt 1 is RUNNING"
    assert refusal == (message, S.TIMED_OUT, "build", Step.RUNNING)


@pytest.mark.parametrize("action", ["retry_step", "skip_step"])
async def test_a_test_panel_execution_steers_only_its_own_step(domain: Domain, action: str) -> None:
    execution_id = await queued(domain, mode=ExecutionMode.STEP, step_key="build")
    domain.run(execution_id, status_changed(S.FAILED))
    steer = getattr(domain.control, action)

    error = await refused(domain, execution_id, steer(execution_id, "test", OPERATOR), Invalid)

    assert error.errors == (FieldError("step_key", "this STEP execution runs only step build"),)
    await steer(execution_id, "build", OPERATOR)


# ---- skip a step -------------------------------------------------------------------------


async def test_skipping_a_failed_step_continues_the_execution(domain: Domain) -> None:
    execution_id = await after_build(domain, Step.FAILED, S.FAILED)

    skipped, events = await steered(
        domain, execution_id, domain.control.skip_step(execution_id, "build", OPERATOR)
    )

    assert summary(events) == [
        marked(6, "build", 2, Step.SKIPPED, "skipped by request"),
        became(7, S.QUEUED, reason="continuing after build"),
    ]
    assert skipped.status is S.QUEUED
    assert attempts(await domain.read(execution_id), "build") == [
        (1, Step.FAILED),
        (2, Step.SKIPPED),
    ]
    assert domain.signals.queued_count == 2


async def test_skipping_replaces_a_pending_retry_under_its_attempt_number(domain: Domain) -> None:
    execution_id = await after_build(domain, Step.FAILED, S.FAILED)
    await domain.control.retry_step(execution_id, "build", OPERATOR)

    _, events = await steered(
        domain, execution_id, domain.control.skip_step(execution_id, "build", OPERATOR)
    )

    # Still queued from the retry: only the step changes.
    assert summary(events) == [marked(8, "build", 2, Step.SKIPPED, "skipped by request")]
    execution = await domain.read(execution_id)
    assert execution.status is S.QUEUED
    assert attempts(execution, "build") == [(1, Step.FAILED), (2, Step.SKIPPED)]
    assert domain.signals.queued_count == 2  # the start and the retry


async def test_skipping_a_step_of_a_queued_execution_only_marks_the_step(domain: Domain) -> None:
    execution_id = await queued(domain)

    skipped, events = await steered(
        domain, execution_id, domain.control.skip_step(execution_id, "test", OPERATOR)
    )

    assert summary(events) == [marked(2, "test", 1, Step.SKIPPED, "skipped by request", position=1)]
    assert skipped.status is S.QUEUED
    assert domain.signals.queued_count == 1


async def test_a_succeeded_step_cannot_be_skipped(domain: Domain) -> None:
    execution_id = await queued(domain)
    domain.run(
        execution_id,
        status_changed(S.RUNNING),
        step_changed("build", Step.SUCCEEDED, 1),
        step_changed("test", Step.FAILED, 1, position=1),
        status_changed(S.FAILED),
    )

    refusal = await transition_refused(
        domain, execution_id, domain.control.skip_step(execution_id, "build", OPERATOR)
    )

    message = "cannot skip step build: attempt 1 is SUCCEEDED"
    assert refusal == (message, S.FAILED, "build", Step.SUCCEEDED)


async def test_skipping_an_unknown_step_is_not_found(domain: Domain) -> None:
    execution_id = await after_build(domain, Step.FAILED, S.FAILED)

    await refused(
        domain, execution_id, domain.control.skip_step(execution_id, "deploy", OPERATOR), NotFound
    )


# ---- executions a runner owns ------------------------------------------------------------


def requested(domain: Domain, execution_id: str, action: str, reason: str, **fields: Any) -> None:
    """Assert the one control request stored and signalled for the execution."""
    assert domain.store.control_requests == (
        ControlRequest(1, execution_id, action, reason, OPERATOR.label, None, **fields),
    )
    assert domain.signals.control_requested_for == [execution_id]


@pytest.mark.parametrize(
    ("action", "before", "answer", "reason"),
    [
        pytest.param("stop", [], S.STOPPING, "stopped by request", id="stop"),
        pytest.param("pause", [], S.PAUSING, "paused by request", id="pause"),
        pytest.param("resume", [S.PAUSING], S.RUNNING, "", id="resume withdraws a pause"),
    ],
)
@pytest.mark.parametrize("after", [0.0, _ANSWER_AFTER_SECONDS], ids=["at once", "a moment later"])
async def test_a_running_execution_s_runner_is_asked_and_its_answer_returned(
    domain: Domain,
    action: str,
    before: list[ExecutionStatus],
    answer: ExecutionStatus,
    reason: str,
    after: float,
) -> None:
    execution_id = await running(domain)
    domain.store.append_as_owner(execution_id, [status_changed(s) for s in before], owner=RUNNER)
    domain.answer_controls(status_changed(answer), after=after)

    changed = await CONTROLS[action](domain.control, execution_id, OPERATOR)

    assert changed.status is answer
    requested(domain, execution_id, action, reason)
    assert len(domain.published.batches) == 1  # the start's: the runner publishes its own


async def test_a_claimed_execution_that_has_not_started_is_stopped_by_its_runner(
    domain: Domain,
) -> None:
    execution_id = await queued(domain)
    domain.store.own(execution_id, RUNNER)
    domain.answer_controls(status_changed(S.CANCELLED, error="stopped: stopped by request"))

    stopped = await domain.control.stop(execution_id, None, OPERATOR)

    assert stopped.status is S.CANCELLED
    requested(domain, execution_id, "stop", "stopped by request")


@pytest.mark.parametrize(
    ("status", "message"),
    [(S.SUCCEEDED, "already ended as SUCCEEDED"), (S.STOPPING, "is already stopping")],
)
async def test_an_owned_execution_that_ended_or_is_stopping_is_not_asked_to_stop(
    domain: Domain, status: ExecutionStatus, message: str
) -> None:
    execution_id = await running(domain)
    domain.store.append_as_owner(execution_id, [status_changed(status)], owner=RUNNER)

    refusal = await transition_refused(
        domain, execution_id, domain.control.stop(execution_id, None, OPERATOR)
    )

    assert refusal == (f"execution {execution_id} {message}", status, None, None)


async def test_pausing_a_pausing_execution_is_refused(domain: Domain) -> None:
    execution_id = await running(domain)
    domain.store.append_as_owner(execution_id, [status_changed(S.PAUSING)], owner=RUNNER)

    refusal = await transition_refused(
        domain, execution_id, domain.control.pause(execution_id, None, OPERATOR)
    )

    message = f"cannot pause execution {execution_id}: it is PAUSING"
    assert refusal == (message, S.PAUSING, None, None)


async def test_resuming_a_running_execution_is_refused_without_asking(domain: Domain) -> None:
    execution_id = await running(domain)

    refusal = await transition_refused(
        domain, execution_id, domain.control.resume(execution_id, OPERATOR)
    )

    message = f"cannot resume execution {execution_id}: it is RUNNING"
    assert refusal == (message, S.RUNNING, None, None)


@pytest.mark.parametrize("action", ["resume", "retry_step", "skip_step"])
async def test_an_execution_its_runner_is_letting_go_of_changes_once_released(
    domain: Domain, action: str
) -> None:
    execution_id = await after_build(domain, Step.FAILED, S.PAUSED, release=False)
    release_soon(domain, execution_id)
    arguments = (
        (execution_id, OPERATOR) if action == "resume" else (execution_id, "build", OPERATOR)
    )

    changed = await getattr(domain.control, action)(*arguments)

    assert (changed.status, changed.owner) == (S.QUEUED, None)
    assert domain.store.control_requests == ()
    assert domain.signals.queued_count == 2


async def test_retrying_a_step_of_a_running_execution_is_refused_without_asking(
    domain: Domain,
) -> None:
    execution_id = await running(domain)

    refusal = await transition_refused(
        domain, execution_id, domain.control.retry_step(execution_id, "build", OPERATOR)
    )

    message = f"cannot retry a step of execution {execution_id}: it is RUNNING"
    assert refusal == (message, S.RUNNING, None, None)


async def test_skipping_a_pending_step_of_a_running_execution_asks_its_runner(
    domain: Domain,
) -> None:
    execution_id = await running(domain)
    domain.answer_controls(step_changed("test", Step.SKIPPED, 1, position=1))

    skipped = await domain.control.skip_step(execution_id, "test", OPERATOR)

    assert attempts(skipped, "test") == [(1, Step.SKIPPED)]
    assert skipped.status is S.RUNNING
    requested(domain, execution_id, "skip_step", "", step_key="test")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(
            step_changed("test", Step.RUNNING, 1, position=1),
            ("cannot skip step test: attempt 1 is RUNNING", S.RUNNING, "test", Step.RUNNING),
            id="the step started meanwhile",
        ),
        pytest.param(
            status_changed(S.FAILED),
            ("step test was not skipped: execution is FAILED", S.FAILED, "test", Step.PENDING),
            id="the execution ended first",
        ),
    ],
)
async def test_a_step_the_runner_did_not_skip_is_refused(
    domain: Domain, answer: EventDraft, expected: Said
) -> None:
    execution_id = await running(domain)
    domain.answer_controls(answer)

    with pytest.raises(InvalidTransition) as refusal:
        await domain.control.skip_step(execution_id, "test", OPERATOR)

    assert said(refusal.value) == expected


@pytest.mark.parametrize("status", [S.STOPPING, S.SUCCEEDED])
async def test_a_step_of_an_owned_execution_stopping_or_ended_is_not_skipped(
    domain: Domain, status: ExecutionStatus
) -> None:
    execution_id = await running(domain)
    domain.store.append_as_owner(execution_id, [status_changed(status)], owner=RUNNER)

    refusal = await transition_refused(
        domain, execution_id, domain.control.skip_step(execution_id, "test", OPERATOR)
    )

    assert refusal == (
        f"cannot skip a step of execution {execution_id}: it is {status}",
        status,
        None,
        None,
    )


async def test_skipping_an_unknown_step_of_an_owned_execution_asks_nothing(domain: Domain) -> None:
    execution_id = await running(domain)

    await refused(
        domain, execution_id, domain.control.skip_step(execution_id, "deploy", OPERATOR), NotFound
    )


# ---- workspaces --------------------------------------------------------------------------


@pytest.mark.parametrize("owned", [False, True], ids=["unowned", "owned"])
@pytest.mark.parametrize("action", CONTROLS)
async def test_another_workspace_s_execution_is_not_found(
    domain: Domain, action: str, owned: bool
) -> None:
    execution_id = await after_build(domain, Step.FAILED, S.PAUSED, release=not owned)

    error = await refused(
        domain, execution_id, CONTROLS[action](domain.control, execution_id, OUTSIDER), NotFound
    )

    assert error.message == f"execution {execution_id} not found"


@pytest.mark.parametrize("action", CONTROLS)
async def test_a_missing_execution_is_not_found(domain: Domain, action: str) -> None:
    with pytest.raises(NotFound, match="execution nope not found"):
        await CONTROLS[action](domain.control, "nope", OPERATOR)
