"""The issue's done-when: a suite run set as the baseline, scenarios changed so that one case
regresses and another becomes flaky, the suite run again, and the comparison names exactly
those cases. On SQLite and on Postgres: the results are SQL over executions and step attempts.

Flakiness is deterministic: the flaky scenario's step claims a slot with `mkdir` (atomic, so
repeats running at once cannot both take one) and fails only when it takes the second, so
exactly one of its three repeats fails, whatever order they run in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import junitparser
import pytest
import pytest_asyncio
from tests.support.server import Server

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Results are SQL over executions, step attempts and baselines: both databases, as the issue asks.
SERVER_BACKENDS = ["sqlite", "postgres"]


def scenario(name: str, script: str) -> str:
    return (
        f"name: {name}\nsteps:\n"
        f'  - {{key: check, kind: shell, with: {{argv: [sh, -c, "{script}"]}},'
        " expect: {exit_code: 0}}\n"
    )


def flaky_script(slots: Path) -> str:
    """Passes, fails, passes: the invocation that takes slot 2 fails."""
    return f"mkdir {slots}/1 2>/dev/null && exit 0; mkdir {slots}/2 2>/dev/null && exit 1; exit 0"


SUITE = """
name: release
cases:
  - {name: stable, scenario: stable}
  - {name: to-regress, scenario: to-regress}
  - {name: to-flake, scenario: to-flake}
  - {name: to-fix, scenario: to-fix}
  - {name: broken, scenario: broken}
"""
RUN_FIELDS = "id complete ended total cases { name status passRate }"
COMPARISON = """
  __typename
  ... on Error { message }
  ... on SuiteMismatchError { baseSuite headSuite }
  ... on SuiteComparison {
    verdict regressed regressedCases flakyCases fixedCases unchangedPassCases unchangedFailCases
    base { id } head { id }
    cases {
      name change basePassRate headPassRate durationP50DeltaMs
      assertionChanges { stepKey assertion change }
    }
  }
"""


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


async def save_scenario(client: httpx.AsyncClient, text: str, *, update: bool) -> None:
    field = "updateScenario" if update else "createScenario"
    document = (
        f"mutation($d: String!) {{ {field}(definition: $d) {{"
        " __typename ... on Error { message } } }"
    )
    saved = (await graphql(client, document, {"d": text}))[field]
    assert saved["__typename"] == "ScenarioSuccess", saved


async def save_suite(client: httpx.AsyncClient, text: str) -> None:
    document = (
        "mutation($d: String!) { createSuite(definition: $d) {"
        " __typename ... on Error { message } } }"
    )
    saved = (await graphql(client, document, {"d": text}))["createSuite"]
    assert saved["__typename"] == "SuiteSuccess", saved


async def run_to_the_end(client: httpx.AsyncClient, suite: str) -> dict[str, Any]:
    """Start the suite 3 times over, 5 executions at once, and wait until every one ended."""
    started = await graphql(
        client,
        "mutation($i: StartSuiteRunInput!) { startSuiteRun(input: $i) {"
        " __typename ... on Error { message } ... on SuiteRunSuccess { run { id } } } }",
        {"i": {"suite": suite, "repeat": 3, "concurrency": 5}},
    )
    run_id = started["startSuiteRun"]["run"]["id"]
    query = f"query($id: ID!) {{ suiteRun(id: $id) {{ {RUN_FIELDS} }} }}"
    async with asyncio.timeout(90):
        while not (run := (await graphql(client, query, {"id": run_id}))["suiteRun"])["complete"]:
            await asyncio.sleep(0.05)
    found: dict[str, Any] = run
    return found


async def compare(client: httpx.AsyncClient, head: str, base: str | None = None) -> Any:
    document = (
        f"query($h: ID!, $b: ID) {{ compareSuiteRuns(head: $h, base: $b) {{ {COMPARISON} }} }}"
    )
    return (await graphql(client, document, {"h": head, "b": base}))["compareSuiteRuns"]


async def test_a_changed_scenario_shows_as_the_one_regression_and_the_one_flaky_case(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    slots = tmp_path / "slots"
    slots.mkdir()
    for name, script in [
        ("stable", "exit 0"),
        ("to-regress", "exit 0"),
        ("to-flake", "exit 0"),
        ("to-fix", "exit 1"),
        ("broken", "exit 1"),
    ]:
        await save_scenario(client, scenario(name, script), update=False)
    await save_suite(client, SUITE)
    before = await run_to_the_end(client, "release")
    assert [(c["name"], c["passRate"]) for c in before["cases"]] == [
        ("stable", 1.0),
        ("to-regress", 1.0),
        ("to-flake", 1.0),
        ("to-fix", 0.0),
        ("broken", 0.0),
    ]
    baseline = await graphql(
        client,
        "mutation($r: ID!) { setSuiteBaseline(run: $r) { __typename"
        " ... on SetSuiteBaselineSuccess { baseline { runId setBy } } } }",
        {"r": before["id"]},
    )
    assert baseline["setSuiteBaseline"]["baseline"] == {
        "runId": before["id"],
        "setBy": "token:bootstrap-admin",
    }

    await save_scenario(client, scenario("to-regress", "exit 1"), update=True)
    await save_scenario(client, scenario("to-flake", flaky_script(slots)), update=True)
    await save_scenario(client, scenario("to-fix", "exit 0"), update=True)
    after = await run_to_the_end(client, "release")
    comparison = await compare(client, after["id"])  # against the baseline

    assert comparison["__typename"] == "SuiteComparison", comparison
    assert (comparison["base"]["id"], comparison["head"]["id"]) == (before["id"], after["id"])
    changes = {case["name"]: case["change"] for case in comparison["cases"]}
    assert changes == {
        "stable": "UNCHANGED_PASS",
        "to-regress": "REGRESSED",
        "to-flake": "FLAKY",
        "to-fix": "FIXED",
        "broken": "UNCHANGED_FAIL",
    }
    assert comparison["regressed"] is True
    assert comparison["verdict"] == (
        "regressions: 1 regressed (to-regress), 1 flaky (to-flake), 1 fixed (to-fix),"
        " 1 still failing, 1 still passing of 5 cases"
    )
    flaky = next(case for case in comparison["cases"] if case["name"] == "to-flake")
    assert (flaky["basePassRate"], flaky["headPassRate"]) == (1.0, pytest.approx(2 / 3))
    regressed = next(case for case in comparison["cases"] if case["name"] == "to-regress")
    assert regressed["assertionChanges"] == [
        {"stepKey": "check", "assertion": "exit_code", "change": "NEWLY_FAILING"}
    ]
    assert regressed["durationP50DeltaMs"] is not None

    await check_reports(client, after["id"], before["id"])

    # Nothing changed since: the head against itself regresses nothing.
    same = await compare(client, after["id"], after["id"])
    assert (same["regressed"], same["regressedCases"], same["flakyCases"]) == (False, 0, 1)


async def test_runs_of_different_suites_are_refused_with_a_typed_error(
    client: httpx.AsyncClient,
) -> None:
    await save_scenario(client, scenario("lonely", "exit 0"), update=False)
    await save_suite(client, "name: one\ncases: [lonely]\n")
    await save_suite(client, "name: two\ncases: [lonely]\n")
    one = await run_to_the_end(client, "one")
    two = await run_to_the_end(client, "two")

    refused = await compare(client, two["id"], one["id"])
    no_baseline = await compare(client, one["id"])

    assert refused == {
        "__typename": "SuiteMismatchError",
        "message": "cannot compare runs of different suites: base is of one, head is of two",
        "baseSuite": "one",
        "headSuite": "two",
    }
    assert no_baseline["__typename"] == "NotFoundError"
    assert "suite one has no baseline" in no_baseline["message"]


async def check_reports(client: httpx.AsyncClient, run_id: str, base_id: str) -> None:
    """The JUnit report, read by a JUnit parser, and the JSON report, against the baseline."""
    response = await client.get(f"/suite-runs/{run_id}/junit.xml", params={"base": "baseline"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    report = junitparser.JUnitXml.fromstring(response.content)
    [suite] = list(report)
    assert (suite.name, suite.tests, suite.failures, suite.errors, suite.skipped) == (
        "release",
        5,
        3,
        0,
        0,
    )
    outcomes = {}
    for case in suite:
        results = case.result
        outcomes[case.name] = [(type(r).__name__, r.type) for r in results]
        assert case.classname == "release"
    assert outcomes == {
        "stable": [],
        "to-regress": [("Failure", "FAILED")],
        "to-flake": [("Failure", "FLAKY")],
        "to-fix": [],
        "broken": [("Failure", "FAILED")],
    }
    flaky = next(case for case in suite if case.name == "to-flake")
    assert flaky.result[0].message == "1 of 3 repeats did not end SUCCEEDED (pass rate 0.67)"
    regressed = next(case for case in suite if case.name == "to-regress")
    assert "exit_code expected 0, got 1" in (regressed.result[0].text or "")
    properties = {p.name: p.value for p in suite.properties()}
    assert properties["runwire.base_run"] == base_id
    assert properties["runwire.verdict"].startswith("regressions: 1 regressed (to-regress)")

    as_json = await client.get(f"/suite-runs/{run_id}/report.json", params={"base": base_id})
    assert as_json.status_code == 200
    data = as_json.json()
    assert data["comparison"]["changes"]["to-flake"] == "FLAKY"
    assert [(c["name"], c["status"], c["change"]) for c in data["cases"]][:3] == [
        ("stable", "PASSED", "UNCHANGED_PASS"),
        ("to-regress", "FAILED", "REGRESSED"),
        ("to-flake", "FLAKY", "FLAKY"),
    ]
    plain = await client.get(f"/suite-runs/{run_id}/report.json")
    assert "comparison" not in plain.json()
    anonymous = await client.get(
        f"/suite-runs/{run_id}/junit.xml", headers={"Authorization": "Bearer nope"}
    )
    assert anonymous.status_code == 401
    missing = await client.get("/suite-runs/00000000-0000-0000-0000-000000000000/junit.xml")
    assert missing.status_code == 404
