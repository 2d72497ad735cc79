"""`rw run --step` and `--upstream`: the test panel's modes from a terminal, against a real server.
Only the chosen step runs; in context it reads the upstream outputs it was given; a bad
combination is a usage error that names the option."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.server import Server

RW = Path(sys.executable).with_name("rw")
# Two fast steps: `greet` reads what `build` printed, so in context it shows the given output.
TWO_STEPS = """name: two-steps
steps:
  - key: build
    kind: shell
    with: {argv: ["sh", "-c", "echo built-for-real"]}
  - key: greet
    needs: [build]
    kind: shell
    with:
      argv: ["sh", "-c", "echo \\"greet after $BUILT\\""]
      env: {BUILT: "{{ steps.build.output.stdout if steps.build is defined else 'nothing' }}"}
"""


@pytest.fixture
def definition(tmp_path: Path) -> Path:
    path = tmp_path / "two-steps.yaml"
    path.write_text(TWO_STEPS)
    return path


def rw(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"RUNWIRE_URL": server.url, "RUNWIRE_TOKEN": server.token}
    return subprocess.run(
        [str(RW), *args],
        env=_environment() | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}


def _execution(server: Server, execution_id: str) -> dict[str, Any]:
    """Read the server directly (plain HTTP), not through the code under test."""
    query = """query($id: ID!) { execution(id: $id) {
        status mode stepKey upstream steps { key status attempt output } } }"""
    response = httpx.post(
        server.graphql_http,
        json={"query": query, "variables": {"id": execution_id}},
        headers=server.headers,
        timeout=10,
    )
    body = response.json()
    assert "errors" not in body, body
    found: dict[str, Any] = body["data"]["execution"]
    return found


def _finished_id(done: subprocess.CompletedProcess[str]) -> str:
    """The id in the summary's headline: `name STATUS in 1.2s (execution ID)`."""
    found = re.search(r"\(execution ([0-9a-f-]{36})\)", done.stdout + done.stderr)
    assert found, done.stdout
    return found.group(1)


def _ran(execution: dict[str, Any]) -> dict[str, str]:
    """Step key to status, for the steps that have an attempt."""
    return {step["key"]: step["status"] for step in execution["steps"] if step["attempt"] >= 1}


def test_step_runs_that_step_alone(server: Server, definition: Path) -> None:
    done = rw(server, "run", str(definition), "--step", "greet", "--follow")

    assert done.returncode == 0, done.stderr
    assert "greet | greet after nothing" in done.stdout
    assert "built-for-real" not in done.stdout
    execution = _execution(server, _finished_id(done))
    assert (execution["status"], execution["mode"], execution["stepKey"]) == (
        "SUCCEEDED",
        "STEP",
        "greet",
    )
    assert execution["upstream"] is None
    assert _ran(execution) == {"greet": "SUCCEEDED"}
    shown = rw(server, "show", _finished_id(done))
    assert re.search(r"^mode:\s+STEP, step greet$", shown.stdout, re.M), shown.stdout


def test_upstream_runs_the_step_in_context_with_the_given_outputs(
    server: Server, definition: Path
) -> None:
    given = json.dumps({"stdout": "a-given-build"})
    args = ("--step", "greet", "--upstream", f"build={given}", "--follow", "--json")
    done = rw(server, "run", str(definition), *args)

    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    printed = [e["text"] for e in events if e["type"] == "OUTPUT"]
    assert printed == ["greet after a-given-build\n"], events
    started = {e["step_key"] for e in events if e["type"] == "STEP_STATUS"}
    assert started == {"greet"}
    execution = _execution(server, _finished_id(done))
    assert (execution["mode"], execution["upstream"]) == (
        "STEP_IN_CONTEXT",
        {"build": {"stdout": "a-given-build"}},
    )
    assert _ran(execution) == {"greet": "SUCCEEDED"}


def test_without_step_every_step_runs(server: Server, definition: Path) -> None:
    done = rw(server, "run", str(definition), "--follow")

    assert done.returncode == 0, done.stderr
    assert "greet | greet after built-for-real" in done.stdout
    execution = _execution(server, _finished_id(done))
    assert execution["mode"] == "FULL"
    assert _ran(execution) == {"build": "SUCCEEDED", "greet": "SUCCEEDED"}
    assert "mode:" not in rw(server, "show", _finished_id(done)).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--upstream", "build=1"), "--upstream gives the outputs of the steps one step needs"),
        (("--step", "greet", "--upstream", "build"), "expected KEY=VALUE"),
        (("--step", "greet", "--upstream", "build=1", "--upstream", "build=2"), "given twice"),
        (("--step", " "), "must name a step"),
    ],
)
def test_a_bad_combination_is_a_usage_error_naming_the_option(
    server: Server, definition: Path, args: tuple[str, ...], message: str
) -> None:
    done = rw(server, "run", str(definition), *args)

    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Usage: rw run" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--step", "deploy"), 'no step "deploy"; expected one of build, greet'),
        (("--step", "greet", "--upstream", "lint=1"), 'step "greet" does not need it'),
    ],
)
def test_what_the_server_refuses_is_one_line_with_the_reason(
    server: Server, definition: Path, args: tuple[str, ...], message: str
) -> None:
    done = rw(server, "run", str(definition), *args)

    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stdout == ""
