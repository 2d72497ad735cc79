"""`rw reviews` and `rw review` as a user runs them against a real server, and `rw run --follow`
of an execution that waits for a review: it says what it waits for and how to decide it."""

from __future__ import annotations

import io
import json
import os
import re
import select
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from rich.console import Console
from runwire_client import ExecutionStatus, ExecutionStatusChanged, StepStatus, StepStatusChanged
from runwire_client.view import LiveView, RunState, StepProgress
from tests.support.server import Server

RW = Path(sys.executable).with_name("rw")
JUDGED = """name: judged
inputs:
  who: {type: string}
steps:
  - {key: call, kind: shell, with: {argv: ["echo", "the caller said hello"]}}
  - key: judge
    kind: review
    needs: [call]
    with:
      title: "Judge the call for {{ inputs.who }}"
      show: [call]
      form:
        score: {type: integer}
        notes: {type: string, required: false}
  - key: after
    kind: shell
    needs: [judge]
    with:
      argv: ["echo", "{{ steps.judge.output.decision }} {{ steps.judge.output.score }}"]
"""


@pytest.fixture
def judged(tmp_path: Path) -> Path:
    path = tmp_path / "judged.yaml"
    path.write_text(JUDGED)
    return path


def rw(server: Server, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RW), *args],
        env=_env(server, token),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _env(server: Server, token: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
    return env | {"RUNWIRE_URL": server.url, "RUNWIRE_TOKEN": token or server.token}


def _query(server: Server, query: str, **variables: Any) -> dict[str, Any]:
    """Read the server directly (plain HTTP), not through the code under test."""
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


def _read_until(stream: IO[str] | None, text: str, timeout: float = 30) -> str:
    """A pipe's text up to `text`, read from the pipe itself (see test_cli._read_until)."""
    assert stream is not None
    fd = stream.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {text!r} in {seen!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"the pipe ended before {text!r}: {seen!r}"
            seen += chunk
    return seen.decode()


def _refused(done: subprocess.CompletedProcess[str], *parts: str) -> None:
    """Exit 2 with one line on stderr naming each of `parts`, and nothing on stdout."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("rw: error: "), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for part in parts:
        assert part in done.stderr, done.stderr
    assert done.stdout == ""


def _bad_usage(done: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit 2 with click's usage and the message, as `rw run --input` without `=` gets."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_followed_run_waits_for_rw_review_and_succeeds(server: Server, judged: Path) -> None:
    process = subprocess.Popen(
        [str(RW), "run", str(judged), "--input", "who=Ada", "--follow"],
        env=_env(server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # It says what it waits for and the command that decides it, rather than look hung.
        said = _read_until(process.stderr, "(decisions: approve, reject)\n")
        execution_id = re.search(r"following execution ([0-9a-f-]{36}) \(judged\)", said)
        assert execution_id, said
        execution = execution_id.group(1)
        assert (
            "waiting for review of step judge (Judge the call for Ada); decide it with:"
            f" rw review {execution} judge approve --value score=VALUE"
            " (decisions: approve, reject)"
        ) in said

        queue = rw(server, "reviews")
        assert queue.returncode == 0, queue.stderr
        header, *rows = [line.split("\t") for line in queue.stdout.splitlines()]
        assert header == ["execution", "step", "title", "requested", "expires"]
        [row] = [row for row in rows if row[0] == execution]
        assert row[1:3] == ["judge", "Judge the call for Ada"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row[3]), row
        assert row[4] == "-"  # no timeout: it waits until decided

        shown = rw(server, "show", execution)
        assert re.search(r"^status:\s+WAITING$", shown.stdout, re.M), shown.stdout
        assert re.search(r"^judge\s+WAITING", shown.stdout, re.M), shown.stdout
        assert re.search(
            rf"^review:\s+waiting for review of step judge .*: rw review {execution} judge approve",
            shown.stdout,
            re.M,
        ), shown.stdout

        _refused(
            rw(server, "review", execution, "judge", "approve", "--value", "score=high"),
            "values.score",
        )
        _refused(
            rw(server, "review", execution, "judge", "maybe", "--value", "score=4"),
            "decision: expected one of approve, reject",
        )
        _bad_usage(
            rw(server, "review", execution, "judge", "approve", "--value", "score"),
            "Invalid value for --value: 'score': expected NAME=VALUE",
        )
        status = _query(server, "query($id: ID!) { execution(id: $id) { status } }", id=execution)[
            "execution"
        ]["status"]
        assert status == "WAITING"  # the refused ones changed nothing

        decided = rw(
            server,
            *("review", execution, "judge", "approve"),
            *("--value", "score=4", "--value", "notes=clear and polite", "--comment", "ok"),
        )
        assert decided.returncode == 0, decided.stderr
        assert decided.stdout.split()[0] == execution
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, (out, err)
    assert re.search(r"^\[\d+\] step judge waiting for a review \(attempt 1\)$", out, re.M), out
    assert re.search(r"^\[\d+\] execution WAITING \(waiting for review of step judge\)$", out, re.M)
    assert re.search(r"^\[\d+\] after \| approve 4$", out, re.M), out
    assert re.search(r"^\[\d+\] execution SUCCEEDED$", out, re.M), out
    assert re.search(r"^judge\s+SUCCEEDED", out, re.M), out

    # Decided: out of the queue, in the decided list with what was decided and by whom.
    assert execution not in rw(server, "reviews").stdout
    closed = rw(server, "reviews", "--status", "decided", "--execution", execution)
    header, row = [line.split("\t") for line in closed.stdout.splitlines()]
    assert header == [
        "execution",
        "step",
        "title",
        "requested",
        "expires",
        "status",
        "decision",
        "by",
    ]
    assert row[0] == execution
    assert row[5:7] == ["DECIDED", "approve"]
    assert row[7].startswith("token:")
    [as_json] = [
        json.loads(line)
        for line in rw(
            server, "reviews", "--status", "all", "--execution", execution, "--json"
        ).stdout.splitlines()
    ]
    assert as_json["values"] == {"score": 4, "notes": "clear and polite"}
    assert as_json["comment"] == "ok"
    assert as_json["form"][0]["name"] == "score"

    # Twice is refused, as steering an execution in the wrong state is.
    _refused(
        rw(server, "review", execution, "judge", "approve", "--value", "score=5"),
        "is not waiting for a review",
    )


def test_review_refusals_are_one_line_with_exit_2(server: Server) -> None:
    _refused(rw(server, "review", "no-such-id", "judge", "approve"), "not found")
    _bad_usage(rw(server, "reviews", "--status", "bogus"), "Invalid value for '--status'")
    created = _query(
        server,
        """mutation { createApiToken(input: {name: "cli-viewer", role: VIEWER}) {
             ... on CreateApiTokenSuccess { secret } } }""",
    )
    viewer = created["createApiToken"]["secret"]
    gate = _query(
        server,
        "mutation($d: String!) { startExecution(input: {definition: $d}) {"
        " ... on StartExecutionSuccess { execution { id } } } }",
        d='name: gate\nsteps:\n  - {key: gate, kind: review, with: {title: "Decide gate"}}\n',
    )["startExecution"]["execution"]["id"]
    deadline = time.monotonic() + 30
    query = "query($id: ID!) { execution(id: $id) { status } }"
    while _query(server, query, id=gate)["execution"]["status"] != "WAITING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # A viewer reads the queue but may not decide.
    listed = rw(server, "reviews", "--execution", gate, token=viewer)
    assert listed.returncode == 0, listed.stderr
    assert gate in listed.stdout
    _refused(rw(server, "review", gate, "gate", "approve", token=viewer), "review:write")
    rejected = rw(server, "review", gate, "gate", "reject", "--comment", "not yet")
    assert rejected.returncode == 0, rejected.stderr
    watched = rw(server, "watch", gate)
    assert watched.returncode == 1  # a rejection fails the execution
    assert "review decided reject" in watched.stdout
    # Replaying a wait that has since been decided hints nothing.
    assert "decide it with" not in watched.stderr


def test_the_live_view_shows_a_waiting_step_with_its_timer() -> None:
    now = datetime.now(UTC)
    state = RunState(
        execution_id="e1",
        name="judged",
        status=ExecutionStatus.QUEUED,
        steps={"call": StepProgress("call", 0), "judge": StepProgress("judge", 1)},
    )
    state.apply(
        ExecutionStatusChanged(
            seq=1,
            at=now - timedelta(seconds=70),
            step_key=None,
            attempt=None,
            status=ExecutionStatus.RUNNING,
            error=None,
            reason=None,
        )
    )
    state.apply(
        StepStatusChanged(
            seq=2,
            at=now - timedelta(seconds=65),
            step_key="judge",
            attempt=1,
            status=StepStatus.WAITING,
            kind="review",
            exit_code=None,
            error=None,
            output=None,
            retry_in_seconds=None,
            reason=None,
        )
    )
    assert [step.key for step in state.running_steps] == ["judge"]
    assert state.done_steps == 0
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=False)
    console.print(LiveView(state, console).render())
    assert re.search(r"◷ judge\s+waiting for a review\s+1m 0[5-9]s", out.getvalue()), out.getvalue()
