"""Schedules against a real server: a 1-second schedule fires executions triggered by it,
stops when disabled, runs on demand, and bad input names its field."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import datetime
from typing import Any

from tests.support.graphql import execute, start, wait_for_status
from tests.support.server import Server

# The scheduler polls next_fire_at with plain SQL on both databases.
SERVER_BACKENDS = ("sqlite", "postgres")

SCHEDULE_FIELDS = "id name enabled nextFireAt nextFireTimes(count: 3) cron intervalSeconds"
CREATE = f"""
mutation($input: CreateScheduleInput!) {{
  createSchedule(input: $input) {{
    __typename
    ... on ScheduleSuccess {{ schedule {{ {SCHEDULE_FIELDS} }} }}
    ... on Error {{ message }}
    ... on ValidationError {{ fieldErrors {{ path message }} }}
  }}
}}
"""
SET_ENABLED = f"""
mutation($id: ID!, $enabled: Boolean!) {{
  setScheduleEnabled(id: $id, enabled: $enabled) {{
    __typename ... on ScheduleSuccess {{ schedule {{ {SCHEDULE_FIELDS} }} }}
  }}
}}
"""
RUN_NOW = """
mutation($id: ID!) {
  runScheduleNow(id: $id) {
    __typename ... on RunScheduleNowSuccess { execution { id triggeredBy triggerType } }
  }
}
"""
DELETE = "mutation($id: ID!) { deleteSchedule(id: $id) { __typename } }"
RUNS = """
{ schedules { id lastRuns(first: 100) {
  fireTime execution { id triggeredBy triggerType inputs } } } }
"""
QUICK = """
name: tick
inputs:
  who: {type: string}
steps:
  - {key: a, kind: shell, with: {argv: ["echo", "{{ inputs.who }}"]}}
"""


async def runs_of(server: Server, schedule_id: str) -> list[dict[str, Any]]:
    found = (await execute(server, RUNS))["schedules"]
    return next(s["lastRuns"] for s in found if s["id"] == schedule_id)


async def test_a_one_second_schedule_fires_stops_when_disabled_and_runs_now(
    server: Server,
) -> None:
    saved = await execute(
        server,
        "mutation($d: String!) { createScenario(definition: $d) { __typename } }",
        {"d": QUICK},
    )
    assert saved["createScenario"]["__typename"] == "ScenarioSuccess", saved
    name = f"every-second-{uuid.uuid4().hex[:6]}"
    created = (
        await execute(
            server,
            CREATE,
            {
                "input": {
                    "name": name,
                    "scenario": "tick",
                    "inputs": {"who": "scheduler"},
                    "intervalSeconds": 1,
                }
            },
        )
    )["createSchedule"]
    assert created["__typename"] == "ScheduleSuccess", created
    schedule = created["schedule"]
    times = [datetime.fromisoformat(t) for t in schedule["nextFireTimes"]]
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(times)] == [1, 1]
    assert schedule["nextFireAt"] == schedule["nextFireTimes"][0]

    async with asyncio.timeout(20):
        while len(runs := await runs_of(server, schedule["id"])) < 2:
            await asyncio.sleep(0.2)
    trigger = f"schedule:{schedule['id']}"
    assert {run["execution"]["triggeredBy"] for run in runs} == {trigger}
    assert {run["execution"]["triggerType"] for run in runs} == {"SCHEDULE"}
    assert {run["execution"]["inputs"]["who"] for run in runs} == {"scheduler"}
    fire_times = [run["fireTime"] for run in runs]
    assert len(set(fire_times)) == len(fire_times)  # one execution per slot
    await wait_for_status(server, runs[-1]["execution"]["id"], {"SUCCEEDED"})

    disabled = await execute(server, SET_ENABLED, {"id": schedule["id"], "enabled": False})
    assert disabled["setScheduleEnabled"]["schedule"]["enabled"] is False
    assert disabled["setScheduleEnabled"]["schedule"]["nextFireAt"] is None
    assert disabled["setScheduleEnabled"]["schedule"]["nextFireTimes"] == []
    # A fire already past its advance may still land: settle, then nothing more for 2.5 s.
    await asyncio.sleep(1.2)
    settled = len(await runs_of(server, schedule["id"]))
    await asyncio.sleep(2.5)
    assert len(await runs_of(server, schedule["id"])) == settled

    now = (await execute(server, RUN_NOW, {"id": schedule["id"]}))["runScheduleNow"]
    assert now["__typename"] == "RunScheduleNowSuccess", now
    assert now["execution"]["triggeredBy"] == trigger
    assert now["execution"]["triggerType"] == "SCHEDULE"
    latest = (await runs_of(server, schedule["id"]))[0]
    assert latest == {
        "fireTime": None,
        "execution": {
            "id": now["execution"]["id"],
            "triggeredBy": trigger,
            "triggerType": "SCHEDULE",
            "inputs": {"who": "scheduler"},
        },
    }
    # History finds what schedules started by its trigger type, and nothing else.
    found = await execute(
        server,
        "{ executions(first: 200, filter: {triggerTypes: [SCHEDULE]})"
        " { edges { node { id triggerType triggeredBy } } } }",
    )
    nodes = [edge["node"] for edge in found["executions"]["edges"]]
    assert {run["execution"]["id"] for run in await runs_of(server, schedule["id"])} <= {
        node["id"] for node in nodes
    }
    assert {node["triggerType"] for node in nodes} == {"SCHEDULE"}
    deleted = await execute(server, DELETE, {"id": schedule["id"]})
    assert deleted["deleteSchedule"]["__typename"] == "DeleteScheduleSuccess"
    gone = await execute(server, RUN_NOW, {"id": schedule["id"]})
    assert gone["runScheduleNow"]["__typename"] == "NotFoundError"


TRIGGER = "query($id: ID!) { execution(id: $id) { triggerType batchId } }"


async def test_every_execution_records_what_started_it(server: Server) -> None:
    started = await start(server, scenario="hello")
    assert (await execute(server, TRIGGER, {"id": started}))["execution"] == {
        "triggerType": "API",
        "batchId": None,
    }
    batch = await execute(
        server,
        """mutation($input: StartBatchInput!) { startBatch(input: $input) {
          __typename ... on BatchSuccess { batch { executions { id } } } } }""",
        {"input": {"scenario": "hello", "runs": [{"inputs": {"name": "b"}}]}},
    )
    [member] = batch["startBatch"]["batch"]["executions"]
    found = (await execute(server, TRIGGER, {"id": member["id"]}))["execution"]
    assert found["triggerType"] == "BATCH"


async def test_bad_input_is_a_validation_error_naming_the_field(server: Server) -> None:
    cases = [
        ({"cron": "* * *"}, "cron"),
        ({"cron": "0 9 * * *", "timeZone": "Europe/Atlantis"}, "timeZone"),
        ({"intervalSeconds": 0.2}, "intervalSeconds"),
        ({"intervalSeconds": 5, "scenario": "no-such-scenario"}, "scenario"),
        ({"intervalSeconds": 5, "inputs": {"name": 3}}, "inputs.name"),
    ]
    for given, field in cases:
        found = (
            await execute(server, CREATE, {"input": {"name": "bad", "scenario": "hello", **given}})
        )["createSchedule"]
        assert found["__typename"] == "ValidationError", (given, found)
        assert field in {e["path"] for e in found["fieldErrors"]}, (given, found)


SUITE_RUNS = """
query { schedules { id scenario suite lastRuns(first: 100) { fireTime }
  lastSuiteRuns(first: 20) { fireTime run {
    id suite total triggeredBy triggerType idempotencyKey inputs
    cases { repeats { executionId } } } } } }
"""
RUN_SUITE_NOW = """
mutation($id: ID!) {
  runScheduleNow(id: $id) {
    __typename ... on SuiteRunSuccess { run { id triggeredBy triggerType idempotencyKey } }
  }
}
"""
EXECUTION = "query($id: ID!) { execution(id: $id) { triggeredBy triggerType inputs } }"


async def suite_schedule(server: Server, schedule_id: str) -> dict[str, Any]:
    found = (await execute(server, SUITE_RUNS))["schedules"]
    return next(s for s in found if s["id"] == schedule_id)


async def test_a_suite_schedule_starts_suite_runs_triggered_by_it(server: Server) -> None:
    suite = f"nightly-{uuid.uuid4().hex[:6]}"
    saved = await execute(
        server,
        "mutation($d: String!) { createSuite(definition: $d) { __typename } }",
        {"d": f"name: {suite}\ncases: [{{scenario: hello, inputs: {{name: a}}}}, hello]\n"},
    )
    assert saved["createSuite"]["__typename"] == "SuiteSuccess", saved
    created = (
        await execute(
            server,
            CREATE,
            {
                "input": {
                    "name": suite,
                    "suite": suite,
                    "inputs": {"name": "scheduled"},
                    "intervalSeconds": 1,
                }
            },
        )
    )["createSchedule"]
    assert created["__typename"] == "ScheduleSuccess", created
    schedule_id = created["schedule"]["id"]
    trigger = f"schedule:{schedule_id}"

    async with asyncio.timeout(20):
        while len((found := await suite_schedule(server, schedule_id))["lastSuiteRuns"]) < 2:
            await asyncio.sleep(0.2)
    disabled = await execute(server, SET_ENABLED, {"id": schedule_id, "enabled": False})
    assert disabled["setScheduleEnabled"]["schedule"]["enabled"] is False

    assert (found["scenario"], found["suite"], found["lastRuns"]) == (None, suite, [])
    runs = found["lastSuiteRuns"]
    assert {(r["run"]["suite"], r["run"]["total"]) for r in runs} == {(suite, 2)}
    assert {(r["run"]["triggeredBy"], r["run"]["triggerType"]) for r in runs} == {
        (trigger, "SCHEDULE")
    }
    assert {r["run"]["idempotencyKey"] for r in runs} == {
        f"{trigger}:{datetime.fromisoformat(r['fireTime']).isoformat()}" for r in runs
    }
    assert len({r["fireTime"] for r in runs}) == len(runs)  # one run per slot
    assert {r["run"]["inputs"]["name"] for r in runs} == {"scheduled"}
    for case in runs[0]["run"]["cases"]:
        member = await execute(server, EXECUTION, {"id": case["repeats"][0]["executionId"]})
        assert member["execution"] == {
            "triggeredBy": trigger,
            "triggerType": "SUITE",
            "inputs": {"name": "scheduled"},
        }

    now = (await execute(server, RUN_SUITE_NOW, {"id": schedule_id}))["runScheduleNow"]
    assert now == {
        "__typename": "SuiteRunSuccess",
        "run": {
            "id": now["run"]["id"],
            "triggeredBy": trigger,
            "triggerType": "SCHEDULE",
            "idempotencyKey": None,
        },
    }
    listed = (await suite_schedule(server, schedule_id))["lastSuiteRuns"]
    [by_hand] = [r for r in listed if r["run"]["id"] == now["run"]["id"]]
    assert by_hand["fireTime"] is None


async def test_a_suite_schedule_names_the_field_it_refuses(server: Server) -> None:
    saved = await execute(
        server,
        "mutation($d: String!) { createSuite(definition: $d) { __typename } }",
        {"d": "name: refusals\ncases: [{scenario: hello, inputs: {name: a}}]\n"},
    )
    assert saved["createSuite"]["__typename"] == "SuiteSuccess", saved
    cases = [
        ({"suite": "refusals", "scenario": "hello"}, "suite"),
        ({}, "scenario"),
        ({"suite": "no-such-suite"}, "suite"),
        ({"suite": "refusals", "inputs": {"colour": "red"}}, "inputs.colour"),
        ({"suite": "refusals", "inputs": {"name": 3}}, "inputs.name"),
    ]
    for given, field in cases:
        found = (
            await execute(server, CREATE, {"input": {"name": "bad", "intervalSeconds": 5, **given}})
        )["createSchedule"]
        assert found["__typename"] == "ValidationError", (given, found)
        assert field in {e["path"] for e in found["fieldErrors"]}, (given, found)
