"""Review steps against a real server: an execution waits for a person without holding a runner
slot, across a restart; submitReview checks the form and the execution goes on with the values;
timeouts close reviews as declared; reviewers review without steering; the queue is live."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from tests.support.graphql import (
    acknowledged,
    definition,
    execute,
    gated_step,
    start,
    steps_of,
    wait_for_status,
    wait_for_step,
)
from tests.support.server import Server, database, running_server

SERVER_BACKENDS = ("sqlite", "postgres")
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"}

REVIEW_FIELDS = """
executionId stepKey attempt status title instructions decisions failOn onTimeout
form { name type required default enum }
requestedAt expiresAt decision values comment decidedBy decidedAt
shownSteps { key status output }
"""
REVIEWS = f"""
query($status: ReviewStatus, $execution: ID) {{
  reviews(status: $status, executionId: $execution) {{ {REVIEW_FIELDS} }}
}}
"""
SUBMIT = """
mutation($id: ID!, $step: String!, $decision: String!, $values: JSON, $comment: String) {
  submitReview(executionId: $id, stepKey: $step, decision: $decision, values: $values,
               comment: $comment) {
    __typename
    ... on SubmitReviewSuccess { execution { id status } }
    ... on Error { message }
    ... on ValidationError { fieldErrors { path message } }
    ... on InvalidTransitionError { currentStatus stepKey stepStatus }
  }
}
"""
CREATE_TOKEN = """
mutation($input: CreateApiTokenInput!) {
  createApiToken(input: $input) { __typename ... on CreateApiTokenSuccess { secret } }
}
"""

JUDGED = definition(
    '{key: call, kind: shell, with: {argv: ["echo", "the caller said hello"]}}',
    "{key: judge, kind: review, needs: [call], with: {"
    ' title: "Judge the call for {{ inputs.who }}",'
    ' instructions: "Listen, then score it.",'
    " show: [call],"
    " form: {score: {type: integer}, notes: {type: string, required: false}}}}",
    '{key: after, kind: shell, needs: [judge], with: {argv: ["echo",'
    ' "{{ steps.judge.output.decision }} {{ steps.judge.output.score }}"]}}',
    name="judged",
    extra="inputs:\n  who: {type: string}",
)


def review_step(key: str, extra: str = "", with_: str = "") -> str:
    return f'{{key: {key}, kind: review, {extra}with: {{title: "Decide {key}"{with_}}}}}'


async def submit(
    server: Server,
    execution_id: str,
    step: str,
    decision: str,
    *,
    token: str | None = None,
    **more: Any,
) -> Any:
    variables = {"id": execution_id, "step": step, "decision": decision, **more}
    return (await execute(server, SUBMIT, variables, token=token))["submitReview"]


async def reviews(server: Server, **variables: Any) -> list[dict[str, Any]]:
    return list((await execute(server, REVIEWS, variables))["reviews"])


async def token_of(server: Server, role: str) -> str:
    created = await execute(
        server, CREATE_TOKEN, {"input": {"name": f"a-{role.lower()}", "role": role}}
    )
    assert created["createApiToken"]["__typename"] == "CreateApiTokenSuccess", created
    return str(created["createApiToken"]["secret"])


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_a_review_waits_without_a_slot_across_a_restart_and_the_run_goes_on_when_decided(
    backend: str, tmp_path: Path
) -> None:
    one_slot = {"RUNWIRE_RUNNER_SLOTS": "1"}
    with database(backend) as url:
        with running_server(backend, tmp_path, one_slot, database_url=url) as server:
            execution_id, token = asyncio.run(_waits_holding_no_slot(server))
        # A new process on the same database: the review is still there, and deciding it
        # is all the execution needs.
        with running_server(backend, tmp_path, one_slot, database_url=url, token=token) as server:
            asyncio.run(_decided_after_restart(server, execution_id))


async def _waits_holding_no_slot(server: Server) -> tuple[str, str]:
    execution_id = await start(server, definition=JUDGED, inputs={"who": "Ada"})
    await wait_for_status(server, execution_id, {"WAITING"})
    [pending] = await reviews(server, status="PENDING", execution=execution_id)
    assert pending["title"] == "Judge the call for Ada"
    assert pending["instructions"] == "Listen, then score it."
    assert pending["decisions"] == ["approve", "reject"]
    assert pending["failOn"] == ["reject"]
    assert pending["onTimeout"] == "fail"
    assert pending["expiresAt"] is None
    assert [(f["name"], f["type"], f["required"]) for f in pending["form"]] == [
        ("score", "integer", True),
        ("notes", "string", False),
    ]
    [shown] = pending["shownSteps"]
    assert (shown["key"], shown["status"]) == ("call", "SUCCEEDED")
    steps = {step["key"]: step["status"] for step in await steps_of(server, execution_id)}
    assert steps == {"call": "SUCCEEDED", "judge": "WAITING", "after": "PENDING"}
    # The only runner slot is free: another execution runs to its end meanwhile.
    other = await start(
        server, definition=definition('{key: a, kind: shell, with: {argv: ["true"]}}')
    )
    assert (await wait_for_status(server, other, TERMINAL))["status"] == "SUCCEEDED"
    assert (await wait_for_status(server, execution_id, {"WAITING"}))["status"] == "WAITING"
    return execution_id, server.token


async def _decided_after_restart(server: Server, execution_id: str) -> None:
    assert (await wait_for_status(server, execution_id, {"WAITING"}))["status"] == "WAITING"
    # The form is checked field by field, against what the reviewer was shown.
    wrong = await submit(server, execution_id, "judge", "maybe", values={"score": "high", "x": 1})
    assert wrong["__typename"] == "ValidationError", wrong
    assert {e["path"] for e in wrong["fieldErrors"]} == {"decision", "values.score", "values.x"}
    missing = await submit(server, execution_id, "judge", "approve")
    assert [e["path"] for e in missing["fieldErrors"]] == ["values.score"]
    decided = await submit(
        server, execution_id, "judge", "approve", values={"score": 4}, comment="clear and polite"
    )
    assert decided["__typename"] == "SubmitReviewSuccess", decided
    ended = await wait_for_status(server, execution_id, TERMINAL)
    assert ended["status"] == "SUCCEEDED", ended
    steps = {step["key"]: step for step in await steps_of(server, execution_id)}
    assert steps["judge"]["output"] == {"score": 4, "notes": None, "decision": "approve"}
    assert "approve 4" in json.dumps(steps["after"]["output"])
    # Twice is refused, typed: the step no longer waits.
    again = await submit(server, execution_id, "judge", "approve", values={"score": 5})
    assert again["__typename"] == "InvalidTransitionError", again
    assert (again["stepKey"], again["stepStatus"]) == ("judge", "SUCCEEDED")
    [closed] = await reviews(server, execution=execution_id)
    assert closed["status"] == "DECIDED"
    assert (closed["decision"], closed["values"]) == ("approve", {"score": 4, "notes": None})
    assert closed["comment"] == "clear and polite"
    assert closed["decidedBy"].startswith("token:")
    assert closed["decidedAt"] is not None
    assert await reviews(server, status="PENDING", execution=execution_id) == []
    # The audit trail has who decided what.
    audited = await execute(
        server,
        "query($id: ID!) { execution(id: $id) { activities { action actor result } } }",
        {"id": execution_id},
    )
    actions = [(a["action"], a["result"]) for a in audited["execution"]["activities"]]
    assert ("submitReview", "SubmitReviewSuccess") in actions


async def test_a_rejection_fails_the_step_and_the_execution(server: Server) -> None:
    execution_id = await start(
        server,
        definition=definition(review_step("gate"), '{key: b, kind: shell, with: {argv: ["true"]}}'),
    )
    await wait_for_status(server, execution_id, {"WAITING"})
    rejected = await submit(server, execution_id, "gate", "reject", comment="too slow")
    assert rejected["__typename"] == "SubmitReviewSuccess", rejected
    ended = await wait_for_status(server, execution_id, TERMINAL)
    assert ended["status"] == "FAILED"
    assert (
        ended["error"]
        == "step gate failed: review decided reject by token:bootstrap-admin: too slow"
    )
    steps = {step["key"]: step["status"] for step in await steps_of(server, execution_id)}
    assert steps == {"gate": "FAILED", "b": "PENDING"}


@pytest.mark.parametrize(
    ("on_timeout", "status", "step_status"),
    [
        ("fail", "TIMED_OUT", "TIMED_OUT"),
        ("skip", "SUCCEEDED", "SKIPPED"),
        ("approve", "SUCCEEDED", "SUCCEEDED"),
        ("reject", "FAILED", "FAILED"),
    ],
)
async def test_a_review_times_out_as_declared(
    server: Server, on_timeout: str, status: str, step_status: str
) -> None:
    gate = review_step("gate", extra="timeout: 0.5, ", with_=f", on_timeout: {on_timeout}")
    execution_id = await start(
        server, definition=definition(gate, '{key: b, kind: shell, with: {argv: ["true"]}}')
    )
    ended = await wait_for_status(server, execution_id, TERMINAL)
    assert ended["status"] == status, ended
    steps = {step["key"]: step for step in await steps_of(server, execution_id)}
    assert steps["gate"]["status"] == step_status
    [closed] = await reviews(server, execution=execution_id)
    assert closed["status"] == "TIMED_OUT"
    assert closed["decidedBy"] == "system:review-timeout"
    assert closed["expiresAt"] is not None
    assert closed["decision"] == (on_timeout if on_timeout in ("approve", "reject") else None)
    late = await submit(server, execution_id, "gate", "approve")
    assert late["__typename"] == "InvalidTransitionError", late
    audited = await execute(
        server,
        "query($id: ID!) { execution(id: $id) { activities { action actor } } }",
        {"id": execution_id},
    )
    assert {"action": "reviewTimedOut", "actor": "system:review-timeout"} in (
        audited["execution"]["activities"]
    )


async def test_a_reviewer_decides_reviews_but_cannot_steer_and_a_viewer_cannot_review(
    server: Server,
) -> None:
    reviewer, viewer = await token_of(server, "REVIEWER"), await token_of(server, "VIEWER")
    execution_id = await start(server, definition=definition(review_step("gate")))
    await wait_for_status(server, execution_id, {"WAITING"})
    refused = await submit(server, execution_id, "gate", "approve", token=viewer)
    assert refused["__typename"] == "PermissionDeniedError", refused
    stop = await execute(
        server,
        "mutation($id: ID!) { stopExecution(id: $id) { __typename } }",
        {"id": execution_id},
        token=reviewer,
    )
    assert stop["stopExecution"]["__typename"] == "PermissionDeniedError"
    approved = await submit(server, execution_id, "gate", "approve", token=reviewer)
    assert approved["__typename"] == "SubmitReviewSuccess", approved
    assert (await wait_for_status(server, execution_id, TERMINAL))["status"] == "SUCCEEDED"


async def test_stopping_or_skipping_closes_the_review_unanswered(server: Server) -> None:
    stopped = await start(server, definition=definition(review_step("gate")))
    skipped = await start(
        server,
        definition=definition(review_step("gate"), '{key: b, kind: shell, with: {argv: ["true"]}}'),
    )
    for execution_id in (stopped, skipped):
        await wait_for_status(server, execution_id, {"WAITING"})
    stop = await execute(
        server,
        "mutation($id: ID!) { stopExecution(id: $id) { __typename } }",
        {"id": stopped},
    )
    assert stop["stopExecution"]["__typename"] == "StopExecutionSuccess", stop
    skip = await execute(
        server,
        'mutation($id: ID!) { skipStep(executionId: $id, stepKey: "gate") { __typename } }',
        {"id": skipped},
    )
    assert skip["skipStep"]["__typename"] == "SkipStepSuccess", skip
    assert (await wait_for_status(server, stopped, TERMINAL))["status"] == "CANCELLED"
    assert (await wait_for_status(server, skipped, TERMINAL))["status"] == "SUCCEEDED"
    for execution_id in (stopped, skipped):
        [closed] = await reviews(server, execution=execution_id)
        assert closed["status"] == "CANCELLED"
        assert closed["decision"] is None


async def test_the_review_queue_is_live(server: Server) -> None:
    document = "subscription { reviewUpdates { executionId reviews { stepKey status title } } }"
    async with acknowledged(server) as ws:
        await ws.send(json.dumps({"id": "q", "type": "subscribe", "payload": {"query": document}}))
        # The subscription is registered once a harmless round trip after it has been answered.
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"
        execution_id = await start(server, definition=definition(review_step("gate")))

        async def update() -> dict[str, Any]:
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                assert message["type"] == "next", message
                found = message["payload"]["data"]["reviewUpdates"]
                if found["executionId"] == execution_id:
                    return dict(found)

        asked = await update()
        assert asked["reviews"] == [
            {"stepKey": "gate", "status": "PENDING", "title": "Decide gate"}
        ]
        assert (await submit(server, execution_id, "gate", "approve"))["__typename"] == (
            "SubmitReviewSuccess"
        )
        assert (await update())["reviews"] == []


async def test_a_bad_review_definition_names_the_field(server: Server) -> None:
    bad = definition(
        '{key: gate, kind: review, with: {decisions: [ok, "no way"], fail_on: [nope],'
        " form: {score: {type: float}, decision: {type: string}}, on_timeout: later}}"
    )
    result = await execute(
        server,
        "mutation($d: String!) { startExecution(input: {definition: $d}) { __typename"
        " ... on ValidationError { fieldErrors { path message } } } }",
        {"d": bad},
    )
    paths = {e["path"] for e in result["startExecution"]["fieldErrors"]}
    assert paths == {
        "steps[0].with.title",
        "steps[0].with.decisions[1]",
        "steps[0].with.fail_on[0]",
        "steps[0].with.form.score.type",
        "steps[0].with.form.decision",
        "steps[0].with.on_timeout",
    }, result


async def test_a_review_shows_only_steps_that_ran_before_it(server: Server) -> None:
    bad = definition(
        '{key: a, kind: shell, with: {argv: ["true"]}}',
        '{key: gate, kind: review, needs: [], with: {title: "Go?", show: [a, nope]}}',
    )
    result = await execute(
        server,
        "mutation($d: String!) { startExecution(input: {definition: $d}) { __typename"
        " ... on ValidationError { fieldErrors { path message } } } }",
        {"d": bad},
    )
    errors = {e["path"]: e["message"] for e in result["startExecution"]["fieldErrors"]}
    assert set(errors) == {"steps[1].with.show[0]", "steps[1].with.show[1]"}, result
    assert errors["steps[1].with.show[1]"].startswith('"nope" is not a step this one needs')


async def test_a_review_is_decided_while_another_branch_runs(
    server: Server, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    execution_id = await start(
        server,
        definition=definition(
            review_step("ship", extra="needs: [], "),
            gated_step("soak", gate, extra="needs: [], "),
            '{key: after, kind: shell, needs: [ship], with: {argv: ["echo",'
            ' "{{ steps.ship.output.decision }}"]}}',
        ),
    )
    await wait_for_step(server, execution_id, "ship", "WAITING")
    assert (await wait_for_status(server, execution_id, {"RUNNING"}))["status"] == "RUNNING"
    # Its runner holds the execution: the decision reaches it as a request, and the steps that
    # need the review start while the other branch still runs.
    decided = await submit(server, execution_id, "ship", "approve", comment="looks fine")
    assert decided["__typename"] == "SubmitReviewSuccess", decided
    await wait_for_step(server, execution_id, "after", "SUCCEEDED")
    assert (await wait_for_status(server, execution_id, {"RUNNING"}))["status"] == "RUNNING"
    gate.touch()
    assert (await wait_for_status(server, execution_id, TERMINAL))["status"] == "SUCCEEDED"
    [closed] = await reviews(server, execution=execution_id)
    assert (closed["status"], closed["decision"], closed["comment"]) == (
        "DECIDED",
        "approve",
        "looks fine",
    )


async def test_a_run_lets_go_once_only_reviews_are_left_and_a_stop_closes_them(
    server: Server, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    execution_id = await start(
        server,
        definition=definition(
            review_step("ship", extra="needs: [], "),
            gated_step("soak", gate, extra="needs: [], "),
        ),
    )
    await wait_for_step(server, execution_id, "ship", "WAITING")
    gate.touch()
    # The other branch ended: nothing runs, so the execution waits holding no slot.
    await wait_for_status(server, execution_id, {"WAITING"})
    steps = {step["key"]: step["status"] for step in await steps_of(server, execution_id)}
    assert steps == {"ship": "WAITING", "soak": "SUCCEEDED"}
    stopped = await execute(
        server,
        "mutation($id: ID!) { stopExecution(id: $id) { __typename } }",
        {"id": execution_id},
    )
    assert stopped["stopExecution"]["__typename"] == "StopExecutionSuccess", stopped
    assert (await wait_for_status(server, execution_id, TERMINAL))["status"] == "CANCELLED"
    [closed] = await reviews(server, execution=execution_id)
    assert closed["status"] == "CANCELLED"


async def test_stopping_a_run_with_a_review_waiting_in_it_closes_the_review(
    server: Server, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    execution_id = await start(
        server,
        definition=definition(
            review_step("ship", extra="needs: [], "),
            gated_step("soak", gate, extra="needs: [], "),
        ),
    )
    await wait_for_step(server, execution_id, "ship", "WAITING")
    stopped = await execute(
        server,
        "mutation($id: ID!) { stopExecution(id: $id) { __typename } }",
        {"id": execution_id},
    )
    assert stopped["stopExecution"]["__typename"] == "StopExecutionSuccess", stopped
    assert (await wait_for_status(server, execution_id, TERMINAL))["status"] == "CANCELLED"
    [closed] = await reviews(server, execution=execution_id)
    assert closed["status"] == "CANCELLED"
    gate.touch()
