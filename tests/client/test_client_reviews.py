"""Reviews through the client against a real server: the queue as typed values, decisions with
the typed errors a wrong one gets, the blocking twin, and the queue live."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import datetime

import pytest
from runwire_client import (
    Execution,
    ExecutionStatus,
    ExecutionStatusChanged,
    InvalidTransitionError,
    NotFoundError,
    PermissionDeniedError,
    Review,
    ReviewStatus,
    ReviewUpdate,
    RunwireClient,
    ScenarioInput,
    StepStatus,
    SyncRunwireClient,
    ValidationError,
)
from tests.support.graphql import definition, execute
from tests.support.server import Server

# Timestamps and JSON come back from Postgres typed, from SQLite as text: both are decoded here.
SERVER_BACKENDS = ("sqlite", "postgres")

JUDGED = definition(
    '{key: call, kind: shell, with: {argv: ["echo", "the caller said hello"]}}',
    "{key: judge, kind: review, needs: [call], with: {"
    ' title: "Judge the call for {{ inputs.who }}",'
    ' instructions: "Listen, then score it.",'
    " show: [call],"
    " form: {score: {type: integer, description: 1 to 5},"
    " tone: {type: string, enum: [warm, cold], required: false},"
    " notes: {type: string, required: false}}}}",
    '{key: after, kind: shell, needs: [judge], with: {argv: ["echo",'
    ' "{{ steps.judge.output.decision }} {{ steps.judge.output.score }}"]}}',
    name="judged",
    extra="inputs:\n  who: {type: string}",
)
GATE = definition('{key: gate, kind: review, with: {title: "Decide gate"}}', name="gate")


@pytest.fixture
async def client(server: Server) -> AsyncIterator[RunwireClient]:
    async with RunwireClient(server.url, server.token) as found:
        yield found


async def _until(client: RunwireClient, execution_id: str, *statuses: str) -> Execution:
    async with asyncio.timeout(30):
        while (found := await client.get(execution_id)).status not in statuses:
            await asyncio.sleep(0.05)
    return found


async def _token(server: Server, role: str) -> str:
    created = await execute(
        server,
        """mutation($input: CreateApiTokenInput!) { createApiToken(input: $input) {
             ... on CreateApiTokenSuccess { secret } } }""",
        {"input": {"name": f"client-{role.lower()}", "role": role}},
    )
    return str(created["createApiToken"]["secret"])


async def test_the_queue_lists_a_waiting_review_as_typed_values(client: RunwireClient) -> None:
    started = await client.start(definition=JUDGED, inputs={"who": "Ada"})
    waiting = await _until(client, started.id, "WAITING")
    assert waiting.status is ExecutionStatus.WAITING
    assert not waiting.status.is_terminal
    steps = {step.key: step.status for step in waiting.steps}
    assert steps == {
        "call": StepStatus.SUCCEEDED,
        "judge": StepStatus.WAITING,
        "after": StepStatus.PENDING,
    }

    [review] = await client.reviews(ReviewStatus.PENDING, execution_id=started.id)
    assert isinstance(review, Review)
    assert (review.execution_id, review.step_key, review.attempt) == (started.id, "judge", 1)
    assert review.status is ReviewStatus.PENDING
    assert review.title == "Judge the call for Ada"
    assert review.instructions == "Listen, then score it."
    assert (review.decisions, review.fail_on, review.on_timeout) == (
        ("approve", "reject"),
        ("reject",),
        "fail",
    )
    assert review.form == (
        ScenarioInput("score", "integer", True, None, "1 to 5"),
        ScenarioInput("tone", "string", False, None, None, ("warm", "cold")),
        ScenarioInput("notes", "string", False, None, None),
    )
    assert isinstance(review.requested_at, datetime)
    assert review.requested_at.tzinfo is not None
    assert review.expires_at is None
    assert (review.decision, review.values, review.decided_by, review.decided_at) == (
        None,
        None,
        None,
        None,
    )
    assert review.execution is not None
    assert (review.execution.id, review.execution.status) == (started.id, ExecutionStatus.WAITING)
    [shown] = review.shown_steps
    assert (shown.key, shown.status) == ("call", StepStatus.SUCCEEDED)
    assert "the caller said hello" in str(shown.output)

    # The queue of the whole workspace has it too, and no status means every status.
    assert started.id in {r.execution_id for r in await client.reviews(ReviewStatus.PENDING)}
    assert [r.step_key for r in await client.reviews(execution_id=started.id)] == ["judge"]
    assert await client.reviews(ReviewStatus.DECIDED, execution_id=started.id) == []
    await client.stop(started.id)


async def test_a_decision_goes_on_and_wrong_ones_raise_typed_errors(
    client: RunwireClient, server: Server
) -> None:
    started = await client.start(definition=JUDGED, inputs={"who": "Bo"})
    await _until(client, started.id, "WAITING")

    with pytest.raises(ValidationError) as wrong:
        await client.submit_review(
            started.id, "judge", "maybe", {"score": "high", "tone": "lukewarm", "x": 1}
        )
    assert {e.path for e in wrong.value.field_errors} == {
        "decision",
        "values.score",
        "values.tone",
        "values.x",
    }
    with pytest.raises(ValidationError) as missing:
        await client.submit_review(started.id, "judge", "approve")
    assert [e.path for e in missing.value.field_errors] == ["values.score"]
    with pytest.raises(NotFoundError):
        await client.submit_review("no-such-id", "judge", "approve", {"score": 1})
    with pytest.raises(InvalidTransitionError) as not_a_review:
        await client.submit_review(started.id, "call", "approve")
    assert (not_a_review.value.step_key, not_a_review.value.step_status) == ("call", "SUCCEEDED")
    async with RunwireClient(server.url, await _token(server, "VIEWER")) as viewer:
        with pytest.raises(PermissionDeniedError) as denied:
            await viewer.submit_review(started.id, "judge", "approve", {"score": 4})
        assert (denied.value.permission, denied.value.role) == ("review:write", "viewer")
        # Reading the queue is a viewer's.
        assert len(await viewer.reviews(execution_id=started.id)) == 1

    decided = await client.submit_review(
        started.id, "judge", "approve", {"score": 4, "tone": "warm"}, comment="clear and polite"
    )
    assert isinstance(decided, Execution)
    assert decided.id == started.id
    assert decided.status is not ExecutionStatus.WAITING
    done = await _until(client, started.id, "SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT")
    assert done.status is ExecutionStatus.SUCCEEDED, done.error
    outputs = {step.key: step.output for step in done.steps}
    assert outputs["judge"] == {"score": 4, "tone": "warm", "notes": None, "decision": "approve"}
    assert "approve 4" in str(outputs["after"])

    with pytest.raises(InvalidTransitionError) as again:
        await client.submit_review(started.id, "judge", "approve", {"score": 5})
    assert again.value.current_status == "SUCCEEDED"
    assert (again.value.step_key, again.value.step_status) == ("judge", "SUCCEEDED")
    [closed] = await client.reviews(ReviewStatus.DECIDED, execution_id=started.id)
    assert (closed.decision, closed.values, closed.comment) == (
        "approve",
        {"score": 4, "tone": "warm", "notes": None},
        "clear and polite",
    )
    assert closed.decided_by is not None
    assert closed.decided_by.startswith("token:")
    assert closed.decided_at is not None


async def test_a_rejection_fails_the_execution(client: RunwireClient) -> None:
    started = await client.start(definition=GATE)
    await _until(client, started.id, "WAITING")
    await client.submit_review(started.id, "gate", "reject", comment="not yet")
    failed = await _until(client, started.id, "FAILED", "SUCCEEDED")
    assert failed.status is ExecutionStatus.FAILED
    assert failed.error is not None
    assert "review decided reject" in failed.error
    [closed] = await client.reviews(execution_id=started.id)
    assert (closed.status, closed.decision) == (ReviewStatus.DECIDED, "reject")


def test_the_blocking_client_lists_and_decides_reviews(server: Server) -> None:
    with SyncRunwireClient(server.url, server.token) as client:
        started = client.start(definition=GATE)
        for event in client.follow(started.id):
            if isinstance(event, ExecutionStatusChanged) and event.status.value == "WAITING":
                break
        [review] = client.reviews(ReviewStatus.PENDING, execution_id=started.id)
        assert review.title == "Decide gate"
        with pytest.raises(ValidationError):
            client.submit_review(started.id, "gate", "approve", {"unknown": 1})
        client.submit_review(started.id, "gate", "approve")
        ended = [e for e in client.follow(started.id) if getattr(e, "terminal", False)]
        assert [getattr(e, "status", None) for e in ended] == [ExecutionStatus.SUCCEEDED]


async def test_the_queue_is_live(client: RunwireClient) -> None:
    updates = client.review_updates()
    async with asyncio.timeout(60), aclosing(updates):
        first = asyncio.ensure_future(anext(updates))
        # Nothing says when the server has registered the subscription: start executions that
        # wait until one is reported, and check the updates only once one has been.
        waiting: list[str] = []
        while not first.done():
            waiting.append((await client.start(definition=GATE)).id)
            await _until(client, waiting[-1], "WAITING")
        assert (await first).execution_id in waiting

        started = await client.start(definition=GATE)
        asked = await _update_of(updates, started.id)
        [review] = asked.reviews
        assert (review.step_key, review.status, review.title) == (
            "gate",
            ReviewStatus.PENDING,
            "Decide gate",
        )
        await client.submit_review(started.id, "gate", "approve")
        assert (await _update_of(updates, started.id)).reviews == ()
    for execution_id in waiting:
        await client.stop(execution_id)


async def _update_of(updates: AsyncIterator[ReviewUpdate], execution_id: str) -> ReviewUpdate:
    async for update in updates:
        if update.execution_id == execution_id:
            return update
    raise AssertionError("the review updates ended")
