"""Steering through the real API: pause, resume, retry, skip, step policies and step graphs."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.support.graphql import (
    attempts,
    definition,
    execute,
    follow,
    gated_step,
    start,
    steps_of,
    wait_for_status,
    wait_for_step,
)
from tests.support.server import Server

SERVER_SETTINGS = {"RUNWIRE_RUNNER_SLOTS": "4", "RUNWIRE_GRACE_SECONDS": "0.2"}


def _control(name: str, arguments: str, variables: str) -> str:
    return f"""
mutation({variables}) {{
  {name}({arguments}) {{
    __typename
    ... on Error {{ message }}
    ... on InvalidTransitionError {{ currentStatus stepKey stepStatus }}
    ... on ValidationError {{ fieldErrors {{ path message }} }}
    ... on {name[0].upper()}{name[1:]}Success {{ execution {{ id status }} }}
  }}
}}
"""


PAUSE = _control("pauseExecution", "id: $id", "$id: ID!")
RESUME = _control("resumeExecution", "id: $id", "$id: ID!")
RETRY = _control("retryStep", "executionId: $id, stepKey: $key", "$id: ID!, $key: String!")
SKIP = _control("skipStep", "executionId: $id, stepKey: $key", "$id: ID!, $key: String!")


async def control(server: Server, document: str, **variables: Any) -> dict[str, Any]:
    result = await execute(server, document, variables)
    return dict(next(iter(result.values())))


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_pause_waits_for_the_running_step_and_resume_continues(
    server: Server, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    text = definition(
        gated_step("first", gate),
        "{key: second, kind: sleep, with: {seconds: 0.05}}",
    )
    execution_id = await start(server, definition=text)
    await wait_for_step(server, execution_id, "first", "RUNNING")

    paused = await control(server, PAUSE, id=execution_id)
    assert paused["__typename"] == "PauseExecutionSuccess"
    assert paused["execution"]["status"] == "PAUSING"
    steps = await steps_of(server, execution_id)
    assert attempts(steps, "first") == [(1, "RUNNING")]  # PAUSING lasts while it runs
    gate.touch()
    await wait_for_status(server, execution_id, {"PAUSED"})
    steps = await steps_of(server, execution_id)
    assert attempts(steps, "first") == [(1, "SUCCEEDED")]  # the running step finished
    assert attempts(steps, "second") == [(0, "PENDING")]  # and nothing new started

    again = await control(server, PAUSE, id=execution_id)
    assert again["__typename"] == "InvalidTransitionError"
    assert again["currentStatus"] == "PAUSED"

    resumed = await control(server, RESUME, id=execution_id)
    assert resumed["__typename"] == "ResumeExecutionSuccess"
    await wait_for_status(server, execution_id, {"SUCCEEDED"})
    steps = await steps_of(server, execution_id)
    assert attempts(steps, "first") == [(1, "SUCCEEDED")]  # not run twice
    assert attempts(steps, "second") == [(1, "SUCCEEDED")]

    statuses = [e["status"] for e in await follow(server, execution_id) if "status" in e]
    assert statuses == ["QUEUED", "RUNNING", "PAUSING", "PAUSED", "QUEUED", "RUNNING", "SUCCEEDED"]


async def test_resuming_a_running_execution_is_an_invalid_transition(
    server: Server, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    execution_id = await start(server, definition=definition(gated_step("a", gate)))
    await wait_for_status(server, execution_id, {"RUNNING"})

    result = await control(server, RESUME, id=execution_id)

    assert result["__typename"] == "InvalidTransitionError"
    assert result["currentStatus"] == "RUNNING"
    assert "cannot resume" in result["message"]
    gate.touch()
    await wait_for_status(server, execution_id, {"SUCCEEDED"})


async def test_a_failed_middle_step_is_retried_in_place(server: Server, tmp_path: Path) -> None:
    marker = tmp_path / "ready"
    text = definition(
        '{key: prepare, kind: shell, with: {argv: ["echo", "prepared"]}}',
        f'{{key: check, kind: shell, with: {{argv: ["test", "-f", "{marker}"]}}}}',
        '{key: report, kind: shell, with: {argv: ["echo", "done"]}}',
    )
    execution_id = await start(server, definition=text)
    failed = await wait_for_status(server, execution_id, {"FAILED"})
    assert "step check failed" in failed["error"]

    premature = await control(server, RETRY, id=execution_id, key="nope")
    assert premature["__typename"] == "NotFoundError"

    marker.touch()
    retried = await control(server, RETRY, id=execution_id, key="check")
    assert retried["__typename"] == "RetryStepSuccess"
    assert retried["execution"]["id"] == execution_id
    assert retried["execution"]["status"] in {"QUEUED", "RUNNING", "SUCCEEDED"}
    done = await wait_for_status(server, execution_id, {"SUCCEEDED", "FAILED"})
    assert done["status"] == "SUCCEEDED"
    assert done["error"] is None  # the old error no longer applies

    steps = await steps_of(server, execution_id)
    assert attempts(steps, "prepare") == [(1, "SUCCEEDED")]
    assert attempts(steps, "check") == [(1, "FAILED"), (2, "SUCCEEDED")]
    assert attempts(steps, "report") == [(1, "SUCCEEDED")]

    events = await follow(server, execution_id)
    check_statuses = [
        (e["attempt"], e["stepStatus"])
        for e in events
        if e["stepKey"] == "check" and e.get("stepStatus")
    ]
    assert check_statuses == [
        (1, "RUNNING"),
        (1, "FAILED"),
        (2, "PENDING"),
        (2, "RUNNING"),
        (2, "SUCCEEDED"),
    ]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


async def test_retrying_a_step_of_a_running_execution_names_its_state(
    server: Server, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    execution_id = await start(server, definition=definition(gated_step("a", gate)))
    await wait_for_step(server, execution_id, "a", "RUNNING")

    result = await control(server, RETRY, id=execution_id, key="a")

    assert result["__typename"] == "InvalidTransitionError"
    assert result["currentStatus"] == "RUNNING"
    gate.touch()
    await wait_for_status(server, execution_id, {"SUCCEEDED"})


async def test_automatic_retries_back_off(server: Server, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    script = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; [ $n -ge 3 ]"
    )
    text = definition(
        "{key: flaky, kind: shell, retries: {max: 3, delay: 0.2, backoff: 2},"
        f" with: {{argv: [sh, -c, '{script}']}}}}"
    )
    execution_id = await start(server, definition=text)
    await wait_for_status(server, execution_id, {"SUCCEEDED"})

    steps = await steps_of(server, execution_id)
    assert attempts(steps, "flaky") == [(1, "FAILED"), (2, "FAILED"), (3, "SUCCEEDED")]
    gaps = [
        (_time(later["startedAt"]) - _time(earlier["finishedAt"])).total_seconds()
        for earlier, later in itertools.pairwise(steps)
    ]
    # asyncio timers may fire up to a clock tick early; the delays are 0.2 s and 0.4 s.
    assert gaps[0] >= 0.19
    assert gaps[1] >= 0.39  # delay * backoff
    retry_in = [
        e["retryInSeconds"]
        for e in await follow(server, execution_id)
        if e.get("stepStatus") == "FAILED"
    ]
    assert retry_in == [0.2, 0.4]


async def test_skipping_a_failed_step_continues_the_rest(server: Server) -> None:
    text = definition(
        '{key: broken, kind: shell, with: {argv: ["false"]}}',
        '{key: after, kind: shell, with: {argv: ["echo", "after"]}}',
    )
    execution_id = await start(server, definition=text)
    await wait_for_status(server, execution_id, {"FAILED"})

    skipped = await control(server, SKIP, id=execution_id, key="broken")
    assert skipped["__typename"] == "SkipStepSuccess"
    await wait_for_status(server, execution_id, {"SUCCEEDED"})
    steps = await steps_of(server, execution_id)
    assert attempts(steps, "broken") == [(1, "FAILED"), (2, "SKIPPED")]
    assert attempts(steps, "after") == [(1, "SUCCEEDED")]

    again = await control(server, SKIP, id=execution_id, key="after")
    assert again["__typename"] == "InvalidTransitionError"
    assert again["currentStatus"] == "SUCCEEDED"


async def test_a_pending_step_of_a_running_execution_can_be_skipped(
    server: Server, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    text = definition(
        gated_step("first", gate),
        '{key: never, kind: shell, with: {argv: ["false"]}}',
    )
    execution_id = await start(server, definition=text)
    await wait_for_step(server, execution_id, "first", "RUNNING")

    skipped = await control(server, SKIP, id=execution_id, key="never")

    assert skipped["__typename"] == "SkipStepSuccess"
    gate.touch()
    await wait_for_status(server, execution_id, {"SUCCEEDED"})
    assert attempts(await steps_of(server, execution_id), "never") == [(1, "SKIPPED")]


async def test_on_failure_pause_waits_for_an_operator(server: Server) -> None:
    text = definition(
        '{key: shaky, kind: shell, on_failure: pause, with: {argv: ["false"]}}',
        '{key: after, kind: shell, with: {argv: ["true"]}}',
    )
    execution_id = await start(server, definition=text)
    paused = await wait_for_status(server, execution_id, {"PAUSED"})
    assert paused["error"].startswith("step shaky failed")

    skipped = await control(server, SKIP, id=execution_id, key="shaky")
    assert skipped["__typename"] == "SkipStepSuccess"
    await wait_for_status(server, execution_id, {"SUCCEEDED"})


async def test_continue_on_failure_lets_the_next_steps_run(server: Server) -> None:
    text = definition(
        '{key: optional, kind: shell, continue_on_failure: true, with: {argv: ["false"]}}',
        '{key: after, kind: shell, with: {argv: ["echo", "{{ steps.optional.status }}"]}}',
    )
    execution_id = await start(server, definition=text)
    await wait_for_status(server, execution_id, {"SUCCEEDED"})
    steps = await steps_of(server, execution_id)
    assert attempts(steps, "optional") == [(1, "FAILED")]
    after = next(step for step in steps if step["key"] == "after")
    assert after["output"]["stdout"] == "FAILED\n"


async def test_a_diamond_runs_its_two_middle_steps_concurrently(server: Server) -> None:
    text = definition(
        '{key: top, kind: shell, with: {argv: ["echo", "top"]}}',
        "{key: left, needs: [top], kind: sleep, with: {seconds: 0.4}}",
        "{key: right, needs: [top], kind: sleep, with: {seconds: 0.4}}",
        "{key: bottom, needs: [left, right], kind: shell,"
        ' with: {argv: ["echo", "{{ steps.top.output.stdout | trim }}"]}}',
    )
    execution_id = await start(server, definition=text)
    await wait_for_status(server, execution_id, {"SUCCEEDED"})

    steps = {step["key"]: step for step in await steps_of(server, execution_id)}
    left, right = steps["left"], steps["right"]
    assert _time(left["startedAt"]) < _time(right["finishedAt"])
    assert _time(right["startedAt"]) < _time(left["finishedAt"])
    assert _time(steps["top"]["finishedAt"]) <= _time(left["startedAt"])
    latest_middle = max(_time(left["finishedAt"]), _time(right["finishedAt"]))
    assert latest_middle <= _time(steps["bottom"]["startedAt"])
    assert steps["bottom"]["output"]["stdout"] == "top\n"


async def test_a_failing_branch_cancels_its_sibling(server: Server) -> None:
    text = definition(
        '{key: slow, needs: [], kind: shell, with: {argv: ["sleep", "30"]}}',
        '{key: broken, needs: [], kind: shell, with: {argv: ["false"]}}',
    )
    execution_id = await start(server, definition=text)
    failed = await wait_for_status(server, execution_id, {"FAILED"}, timeout=10)
    assert "step broken failed" in failed["error"]
    steps = await steps_of(server, execution_id)
    assert attempts(steps, "slow") == [(1, "CANCELLED")]
