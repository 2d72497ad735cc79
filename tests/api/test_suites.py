"""Suites over the API: defined by mutation or by file, read back with their cases expanded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from gql import Client, GraphQLRequest
from tests.support.graphql import definition, gated_step, ws_transport
from tests.support.server import Server, running_server

MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")

SUITE_FIELDS = """
  name version description tags createdBy
  cases { name scenario definitionName inputs labels expectedStatus }
"""
CREATE = f"""
mutation($definition: String!) {{
  createSuite(definition: $definition) {{
    __typename
    ... on Error {{ message }}
    ... on ValidationError {{ fieldErrors {{ path message }} }}
    ... on SuiteSuccess {{ suite {{ {SUITE_FIELDS} }} }}
  }}
}}
"""
UPDATE = CREATE.replace("createSuite", "updateSuite")
READ = f"query($name: String!) {{ suite(name: $name) {{ {SUITE_FIELDS} }} }}"

FILE_SUITE = """
name: from-file
tags: [shipped]
cases:
  - {scenario: hello, inputs: {name: file}}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("suites")
    suites = directory / "suites"
    suites.mkdir()
    (suites / "from-file.yaml").write_text(FILE_SUITE)
    with running_server("sqlite", directory, {"RUNWIRE_SUITES_DIR": str(suites)}) as found:
        yield found


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers, timeout=30) as c:
        yield c


async def graphql(
    client: httpx.AsyncClient, document: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": document, "variables": variables})
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body.get("errors"), body
    data: dict[str, Any] = body["data"]
    return data


@MODULE_LOOP
async def test_a_suite_file_is_loaded_at_start(client: httpx.AsyncClient) -> None:
    found = (await graphql(client, READ, {"name": "from-file"}))["suite"]

    assert found["version"] == 1
    assert found["tags"] == ["shipped"]
    assert found["createdBy"] == "system"
    assert [case["name"] for case in found["cases"]] == ["hello[name=file]"]
    listed = await graphql(client, '{ suites(tag: "shipped") { name } }')
    assert listed["suites"] == [{"name": "from-file"}]


@MODULE_LOOP
async def test_create_then_update_a_suite_and_read_its_cases(client: httpx.AsyncClient) -> None:
    text = """
name: api-smoke
description: checks
cases:
  - {name: greets, scenario: hello, inputs: {name: ann}, labels: [quick]}
  - {scenario: hello, rows: [{name: bob}, {name: cy}], expect: {status: SUCCEEDED}}
"""
    created = (await graphql(client, CREATE, {"definition": text}))["createSuite"]

    assert created["__typename"] == "SuiteSuccess", created
    assert created["suite"]["cases"] == [
        {
            "name": "greets",
            "scenario": "hello",
            "definitionName": None,
            "inputs": {"name": "ann"},
            "labels": ["quick"],
            "expectedStatus": "SUCCEEDED",
        },
        {
            "name": "hello[name=bob]",
            "scenario": "hello",
            "definitionName": None,
            "inputs": {"name": "bob"},
            "labels": [],
            "expectedStatus": "SUCCEEDED",
        },
        {
            "name": "hello[name=cy]",
            "scenario": "hello",
            "definitionName": None,
            "inputs": {"name": "cy"},
            "labels": [],
            "expectedStatus": "SUCCEEDED",
        },
    ]
    updated = (await graphql(client, UPDATE, {"definition": text + "tags: [v2]\n"}))["updateSuite"]
    assert (updated["suite"]["version"], updated["suite"]["tags"]) == (2, ["v2"])
    assert (await graphql(client, READ, {"name": "api-smoke"}))["suite"]["version"] == 2


@MODULE_LOOP
async def test_an_invalid_case_is_a_validation_error_naming_it(client: httpx.AsyncClient) -> None:
    text = "name: broken\ncases:\n  - {scenario: hello}\n  - {scenario: nope}\n"

    refused = (await graphql(client, CREATE, {"definition": text}))["createSuite"]

    assert refused["__typename"] == "ValidationError"
    assert refused["fieldErrors"] == [
        {"path": "cases[1].scenario", "message": "unknown scenario nope"},
    ]
    assert (await graphql(client, READ, {"name": "broken"}))["suite"] is None


def test_a_bad_suite_file_stops_the_server_naming_the_file(tmp_path: Path) -> None:
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "bad.yaml").write_text("name: bad\ncases: [{scenario: missing}]\n")

    settings = {"RUNWIRE_SUITES_DIR": str(suites)}
    with (
        pytest.raises(RuntimeError, match=r"bad.yaml: cases\[0\].scenario"),
        running_server("sqlite", tmp_path, settings),
    ):
        pass


RUN_FIELDS = """
  id suite suiteVersion repeat total ended progress complete passRate batchId
  passedCases failedCases flakyCases pendingCases
  batch { id total concurrency }
  cases {
    name scenario status passed failed pending passRate durationP50Ms durationMaxMs
    repeats { repeat executionId status passed }
    failures { repeat stepKey error failedAssertions { assertion expected actual passed } }
    usage { calls }
  }
"""
START_RUN = f"""
mutation($input: StartSuiteRunInput!) {{
  startSuiteRun(input: $input) {{
    __typename
    ... on Error {{ message }}
    ... on ValidationError {{ fieldErrors {{ path message }} }}
    ... on SuiteRunSuccess {{ run {{ {RUN_FIELDS} }} }}
  }}
}}
"""
READ_RUN = f"query($id: ID!) {{ suiteRun(id: $id) {{ {RUN_FIELDS} }} }}"
CHECKED = """
name: checked
inputs:
  code: {type: integer, default: 0}
steps:
  - key: check
    kind: shell
    with: {argv: [sh, -c, "exit {{ inputs.code }}"]}
    expect: {exit_code: 0}
"""
CREATE_SCENARIO = """
mutation($definition: String!) {
  createScenario(definition: $definition) { __typename ... on Error { message } }
}
"""


async def create_scenario(client: httpx.AsyncClient, text: str) -> None:
    created = (await graphql(client, CREATE_SCENARIO, {"definition": text}))["createScenario"]
    assert created["__typename"] == "ScenarioSuccess", created


async def create_suite(client: httpx.AsyncClient, text: str) -> None:
    created = (await graphql(client, CREATE, {"definition": text}))["createSuite"]
    assert created["__typename"] == "SuiteSuccess", created


async def start_run(client: httpx.AsyncClient, **input: Any) -> dict[str, Any]:
    started = (await graphql(client, START_RUN, {"input": input}))["startSuiteRun"]
    assert started["__typename"] == "SuiteRunSuccess", started
    run: dict[str, Any] = started["run"]
    return run


async def finished_run(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    """The run once every execution of it has ended."""
    async with asyncio.timeout(60):
        while not (run := (await graphql(client, READ_RUN, {"id": run_id}))["suiteRun"])[
            "complete"
        ]:
            await asyncio.sleep(0.05)
    found: dict[str, Any] = run
    return found


@MODULE_LOOP
async def test_a_run_reports_each_case_over_its_repeats(client: httpx.AsyncClient) -> None:
    await create_scenario(client, CHECKED)
    await create_suite(
        client,
        """
name: run-me
cases:
  - {name: passes, scenario: checked}
  - {name: breaks, scenario: checked, inputs: {code: 3}}
  - {name: meant-to-fail, scenario: checked, inputs: {code: 1}, expect: {status: FAILED}}
""",
    )

    started = await start_run(client, suite="run-me", repeat=2, concurrency=2)

    assert (started["suite"], started["suiteVersion"], started["repeat"]) == ("run-me", 1, 2)
    assert (started["total"], started["batch"]["total"], started["batch"]["concurrency"]) == (
        6,
        6,
        2,
    )
    run = await finished_run(client, started["id"])
    assert (run["ended"], run["progress"], run["passRate"]) == (6, 1.0, 4 / 6)
    assert (run["passedCases"], run["failedCases"], run["flakyCases"], run["pendingCases"]) == (
        2,
        1,
        0,
        0,
    )
    passes, breaks, meant = run["cases"]
    assert (passes["name"], passes["status"], passes["passRate"]) == ("passes", "PASSED", 1.0)
    assert passes["failures"] == []
    assert passes["durationP50Ms"] is not None
    assert (breaks["status"], breaks["passed"], breaks["failed"]) == ("FAILED", 0, 2)
    assert [f["repeat"] for f in breaks["failures"]] == [1, 2]
    assert breaks["failures"][0]["stepKey"] == "check"
    assert breaks["failures"][0]["failedAssertions"] == [
        {"assertion": "exit_code", "expected": 0, "actual": 3, "passed": False}
    ]
    assert [r["status"] for r in breaks["repeats"]] == ["FAILED", "FAILED"]
    assert (meant["status"], meant["failures"]) == ("PASSED", [])
    # The executions are real: each repeat links to one.
    execution_id = breaks["repeats"][0]["executionId"]
    found = await graphql(
        client,
        "query($id: ID!) { execution(id: $id) { status batchId triggerType } }",
        {"id": execution_id},
    )
    assert found["execution"] == {
        "status": "FAILED",
        "batchId": run["batchId"],
        "triggerType": "SUITE",
    }


@MODULE_LOOP
async def test_run_limits_and_unknown_suites_are_typed_errors(client: httpx.AsyncClient) -> None:
    await create_suite(client, "name: limits\ncases: [{scenario: hello, inputs: {name: x}}]\n")

    refused = (
        await graphql(
            client, START_RUN, {"input": {"suite": "limits", "repeat": 0, "concurrency": 5000}}
        )
    )["startSuiteRun"]
    missing = (await graphql(client, START_RUN, {"input": {"suite": "nope"}}))["startSuiteRun"]

    assert refused["__typename"] == "ValidationError"
    assert refused["fieldErrors"] == [
        {"path": "repeat", "message": "expected 1..100"},
        {"path": "concurrency", "message": "expected 1..1000"},
    ]
    assert missing == {"__typename": "NotFoundError", "message": "suite nope not found"}
    listed = await graphql(client, '{ suiteRuns(suite: "limits") { id } }')
    assert listed["suiteRuns"] == []


RETRY = f"""
mutation($run: ID!) {{
  retryFailedCases(run: $run) {{
    __typename
    ... on Error {{ message }}
    ... on SuiteRunSuccess {{ run {{ {RUN_FIELDS} }} }}
  }}
}}
"""


@MODULE_LOOP
async def test_retrying_reruns_only_the_failed_repeats_into_the_same_run(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    # Fails the first time it runs, passes after: `mkdir` of the slot succeeds only once.
    once = tmp_path / "once"
    await create_scenario(
        client,
        "name: fails-once\nsteps:\n"
        f'  - {{key: check, kind: shell, with: {{argv: [sh, -c, "! mkdir {once}"]}}}}\n',
    )
    await create_suite(
        client, "name: retry-me\ncases: [{name: steady, scenario: hello}, fails-once]\n"
    )
    started = await start_run(client, suite="retry-me")
    first = await finished_run(client, started["id"])
    assert [c["status"] for c in first["cases"]] == ["PASSED", "FAILED"]

    retried = (await graphql(client, RETRY, {"run": first["id"]}))["retryFailedCases"]

    assert retried["__typename"] == "SuiteRunSuccess", retried
    assert retried["run"]["batch"]["total"] == 3
    healed = await finished_run(client, first["id"])
    steady, flaky = healed["cases"]
    assert steady["repeats"] == first["cases"][0]["repeats"]
    assert (flaky["status"], flaky["failures"]) == ("PASSED", [])
    assert flaky["repeats"][0]["executionId"] != first["cases"][1]["repeats"][0]["executionId"]
    kinds = "query($id: ID!) { execution(id: $id) { triggerType } }"
    for repeat, expected in ((steady, "SUITE"), (flaky, "RETRY")):
        ran = await graphql(client, kinds, {"id": repeat["repeats"][0]["executionId"]})
        assert ran["execution"]["triggerType"] == expected
    again = (await graphql(client, RETRY, {"run": first["id"]}))["retryFailedCases"]
    assert again["__typename"] == "InvalidTransitionError"
    trend = await graphql(
        client,
        '{ suiteTrend(suite: "retry-me", last: 5) {'
        " runId total ended complete passRate durationMeanMs usage { calls } } }",
    )
    [point] = trend["suiteTrend"]
    assert (point["runId"], point["total"], point["complete"], point["passRate"]) == (
        first["id"],
        2,
        True,
        1.0,
    )
    assert point["durationMeanMs"] > 0


@MODULE_LOOP
async def test_a_dashboard_follows_a_run_live_until_every_repeat_ended(
    server: Server, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    await create_scenario(client, definition(gated_step("wait", gate), name="gated"))
    await create_suite(client, "name: live\ncases: [{name: quick, scenario: hello}, gated]\n")
    started = await start_run(client, suite="live", repeat=2, concurrency=4)
    request = GraphQLRequest(
        "subscription($id: ID!) { suiteRunUpdates(id: $id) {"
        " ended total complete cases { name status pending } } }",
        variable_values={"id": started["id"]},
    )

    seen: list[dict[str, Any]] = []
    async with Client(transport=ws_transport(server)) as session, asyncio.timeout(60):
        async for message in session.subscribe(request):
            run = message["suiteRunUpdates"]
            seen.append(run)
            statuses = {case["name"]: case for case in run["cases"]}
            # Once both quick repeats are in and the gated ones still wait, let them finish.
            if statuses["quick"]["pending"] == 0 and not gate.exists():
                assert statuses["gated"]["pending"] == 2
                gate.touch()
        # The subscription completed by itself, after the last repeat ended.

    assert seen[0]["complete"] is False
    assert seen[-1]["complete"] is True
    assert [case["status"] for case in seen[-1]["cases"]] == ["PASSED", "PASSED"]
    assert [run["ended"] for run in seen] == sorted(run["ended"] for run in seen)


KEYED_RUN = """
mutation($input: StartSuiteRunInput!) {
  startSuiteRun(input: $input) {
    __typename
    ... on ValidationError { fieldErrors { path message } }
    ... on SuiteRunSuccess { run { id total idempotencyKey triggerType triggeredBy } }
  }
}
"""


@MODULE_LOOP
async def test_a_run_started_again_with_its_idempotency_key_is_the_first_run(
    client: httpx.AsyncClient,
) -> None:
    await create_suite(client, "name: keyed\ncases: [{scenario: hello, inputs: {name: k}}]\n")
    asked = {"suite": "keyed", "repeat": 2, "idempotencyKey": "release-7"}

    first, again = [
        (await graphql(client, KEYED_RUN, {"input": asked}))["startSuiteRun"] for _ in range(2)
    ]
    other = (await graphql(client, KEYED_RUN, {"input": {**asked, "repeat": 3}}))["startSuiteRun"]
    too_long = (
        await graphql(client, KEYED_RUN, {"input": {**asked, "idempotencyKey": "k" * 201}})
    )["startSuiteRun"]

    assert first["__typename"] == "SuiteRunSuccess", first
    assert first["run"]["idempotencyKey"] == "release-7"
    assert (first["run"]["triggerType"], first["run"]["total"]) == ("API", 2)
    assert again == first
    assert other["__typename"] == "ValidationError"
    assert other["fieldErrors"] == [
        {
            "path": "idempotencyKey",
            "message": f"already used for a different request (suite run {first['run']['id']})",
        }
    ]
    assert too_long["fieldErrors"] == [
        {"path": "idempotencyKey", "message": "expected 1..200 characters"}
    ]
    listed = await graphql(client, '{ suiteRuns(suite: "keyed") { id } }')
    assert listed["suiteRuns"] == [{"id": first["run"]["id"]}]
    # Without a key every start is a new run.
    plain = [await start_run(client, suite="keyed") for _ in range(2)]
    assert plain[0]["id"] != plain[1]["id"]
