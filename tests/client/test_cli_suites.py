"""`rw suite run` as CI runs it: a real subprocess against a real server; the exit code says
whether anything regressed, and the JUnit file it writes is read by a JUnit parser."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import junitparser
from tests.support.server import Server

RW = Path(sys.executable).with_name("rw")


def rw(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
    env |= {"RUNWIRE_URL": server.url, "RUNWIRE_TOKEN": server.token}
    return subprocess.run(
        [str(RW), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def graphql(server: Server, query: str, **variables: Any) -> dict[str, Any]:
    """Arrange and read through plain HTTP, not through the code under test."""
    response = httpx.post(
        server.graphql_http,
        json={"query": query, "variables": variables},
        headers=server.headers,
        timeout=10,
    )
    body = response.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def save(server: Server, field: str, text: str) -> None:
    document = f"mutation($d: String!) {{ {field}(definition: $d) {{ __typename }} }}"
    assert graphql(server, document, d=text)[field]["__typename"].endswith("Success")


def scenario(name: str, code: int) -> str:
    return (
        f"name: {name}\nsteps:\n"
        f'  - {{key: check, kind: shell, with: {{argv: [sh, -c, "exit {code}"]}},'
        " expect: {exit_code: 0}}\n"
    )


def test_rw_suite_run_follows_writes_junit_and_exits_1_only_when_a_case_regressed(
    server: Server, tmp_path: Path
) -> None:
    save(server, "createScenario", scenario("cli-ok", 0))
    save(server, "createScenario", scenario("cli-breaks", 0))
    save(server, "createScenario", scenario("cli-broken", 1))
    save(
        server,
        "createSuite",
        "name: cli-suite\ncases: [cli-ok, cli-breaks, cli-broken]\n",
    )

    # No baseline yet: a failing case cannot have regressed.
    first = rw(server, "suite", "run", "cli-suite", "--repeat", "2", "--follow")
    assert first.returncode == 0, first.stderr
    run_id, *cases, summary = first.stdout.splitlines()
    assert sorted(line.split()[-1] for line in cases) == ["cli-breaks", "cli-broken", "cli-ok"]
    assert summary == "2 passed, 1 failed, 0 flaky of 3 cases"
    assert "has no baseline" in first.stderr
    # ... but with --fail-on failed it fails the build.
    strict = rw(server, "suite", "run", "cli-suite", "--follow", "--fail-on", "failed")
    assert strict.returncode == 1, strict.stderr

    graphql(server, "mutation($r: ID!) { setSuiteBaseline(run: $r) { __typename } }", r=run_id)
    save(server, "updateScenario", scenario("cli-breaks", 4))
    out = tmp_path / "out.xml"
    report = tmp_path / "report.json"
    second = rw(
        server,
        "suite",
        "run",
        "cli-suite",
        "--repeat",
        "2",
        "--junit",
        str(out),
        "--json-report",
        str(report),
        "--follow",
    )

    assert second.returncode == 1, second.stderr
    assert second.stdout.splitlines()[-1] == (
        "regressions: 1 regressed (cli-breaks), 1 still failing, 1 still passing of 3 cases"
    )
    [suite] = list(junitparser.JUnitXml.fromfile(str(out)))
    assert (suite.name, suite.tests, suite.failures) == ("cli-suite", 3, 2)
    failed = {case.name for case in suite if case.result}
    assert failed == {"cli-breaks", "cli-broken"}
    assert '"REGRESSED"' in report.read_text()

    # The report of a run, again, later: on stdout, or to files.
    head_id = second.stdout.splitlines()[0]
    again_report = rw(server, "suite", "report", head_id, "--base", "baseline")
    assert again_report.returncode == 0, again_report.stderr
    assert again_report.stdout == out.read_text()
    json_path = tmp_path / "again.json"
    to_file = rw(server, "suite", "report", head_id, "--json-report", str(json_path))
    assert to_file.returncode == 0, to_file.stderr
    assert '"comparison"' not in json_path.read_text()
    unknown = rw(server, "suite", "report", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 2
    assert "not found" in unknown.stderr

    # The same run against itself: nothing regressed.
    again = rw(server, "suite", "run", "cli-suite", "--follow", "--base", "none")
    assert again.returncode == 0, again.stderr


def test_rw_suite_run_refusals_exit_2(server: Server) -> None:
    save(server, "createScenario", scenario("cli-lonely", 0))
    save(server, "createSuite", "name: cli-limits\ncases: [cli-lonely]\n")

    bad = rw(server, "suite", "run", "cli-limits", "--repeat", "0")
    missing = rw(server, "suite", "run", "cli-nope")
    partial = rw(server, "suite", "run", "cli-limits", "--junit", "x.xml")

    assert (bad.returncode, bad.stderr.strip()) == (2, "rw: error: repeat: expected 1..100")
    assert (missing.returncode, missing.stderr.strip()) == (
        2,
        "rw: error: suite cli-nope not found",
    )
    assert partial.returncode == 2
    assert "--junit and --json-report need --follow" in partial.stderr


def test_rw_suite_run_without_follow_prints_only_the_run_id(server: Server) -> None:
    save(server, "createScenario", scenario("cli-quick", 0))
    save(server, "createSuite", "name: cli-quick\ncases: [cli-quick]\n")

    started = rw(server, "suite", "run", "cli-quick")

    assert started.returncode == 0, started.stderr
    [run_id] = started.stdout.split()
    found = graphql(server, "query($id: ID!) { suiteRun(id: $id) { suite total } }", id=run_id)
    assert found["suiteRun"] == {"suite": "cli-quick", "total": 1}
