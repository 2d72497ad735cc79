"""The `rw` command as a user runs it: a real subprocess against a real server, in a pipe and in a
pseudo-terminal; exit codes, plain lines, JSON events, steering, history and interrupts."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from runwire_client import (
    Execution,
    ExecutionMode,
    ExecutionStatus,
    Span,
    StepRun,
    StepStatus,
    TokenUsage,
    Trace,
)
from runwire_client.view import summarize, summary_lines
from tests.support.graphql import gated_step
from tests.support.server import Server, free_port, running_server

RW = Path(sys.executable).with_name("rw")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SUCCEEDS = EXAMPLES / "build-and-test.yaml"
FAILS = EXAMPLES / "flaky-deploy.yaml"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Marks this module's runs of the failing example, for `rw ls --label`.
LABEL = f"cli-{uuid.uuid4().hex[:8]}"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# A step that says it is running, then waits: something to interrupt, stop or detach from.
LONG = """name: long-wait
steps:
  - key: wait
    kind: shell
    with: {argv: ["sh", "-c", "echo waiting; sleep 30"]}
"""


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One SQLite server: `rw` sits on the client library, whose behaviour on each database the
    other tests here check; the command's own behaviour does not depend on the backend."""
    if not RW.exists():
        pytest.fail(f"{RW} missing: install the client (`pip install -e clients/python`)")
    directory = tmp_path_factory.mktemp("cli")
    settings = {"RUNWIRE_GRACE_SECONDS": "0.2", "RUNWIRE_RUNNER_SLOTS": "8"}
    with running_server("sqlite", directory, settings) as found:
        yield found


@pytest.fixture
def long_definition(tmp_path: Path) -> Path:
    path = tmp_path / "long.yaml"
    path.write_text(LONG)
    return path


def _env(server: Server, token: str | None = None, **extra: str) -> dict[str, str]:
    """The caller's environment with the server's URL and token; the token never goes in argv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
    env |= {"RUNWIRE_URL": server.url, "RUNWIRE_TOKEN": server.token if token is None else token}
    return env | extra


def rw(
    server: Server, *args: str, token: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RW), *args],
        env=_env(server, token),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


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


def _status(server: Server, execution_id: str) -> str:
    query = "query($id: ID!) { execution(id: $id) { status } }"
    status: str = _query(server, query, id=execution_id)["execution"]["status"]
    return status


def _wait_status(server: Server, execution_id: str, *statuses: str) -> str:
    deadline = time.monotonic() + 20
    while (status := _status(server, execution_id)) not in statuses:
        assert time.monotonic() < deadline, f"{execution_id} still {status}"
        time.sleep(0.05)
    return status


def _start(server: Server, *args: str) -> str:
    """`rw run …` without --follow: only the new execution's id on stdout."""
    done = rw(server, "run", *args)
    assert done.returncode == 0, done.stderr
    execution_id = done.stdout.strip()
    assert UUID.match(execution_id), done.stdout
    return execution_id


def _summarized_id(summary: str) -> str:
    """The execution id in a summary's headline: `name STATUS in 1.2s (execution ID)`."""
    found = re.search(r"\(execution ([0-9a-f-]{36})\)", summary)
    assert found, summary
    return found.group(1)


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


# --- following: exit codes and the three outputs ------------------------------------------------


@pytest.fixture(scope="module")
def example_runs(sqlite_server: Server) -> dict[str, subprocess.CompletedProcess[str]]:
    """The examples' `rw run --follow` runs the tests below read, started together: most of each
    run's seconds are its steps' own sleeps, which need not add up one after another."""
    runs = {
        "succeeds": (str(SUCCEEDS), "--input", "project=shop", "--input", "lines=1", "--follow"),
        "fails": (str(FAILS), "--follow"),
        # With a label, for `rw ls --label`.
        "fails-json": (str(FAILS), "--label", LABEL, "--follow", "--json"),
    }
    with ThreadPoolExecutor(len(runs)) as pool:
        running = {name: pool.submit(rw, sqlite_server, "run", *a) for name, a in runs.items()}
        return {name: done.result() for name, done in running.items()}


def test_run_follow_of_a_succeeding_example_prints_plain_lines_and_exits_0(
    example_runs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    done = example_runs["succeeds"]

    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout  # not a terminal: no colours, no cursor movement
    events, _, summary = done.stdout.partition("\n\n")
    lines = events.splitlines()
    assert all(re.match(r"^\[\d+\] ", line) for line in lines), lines
    seqs = [int(line[1 : line.index("]")]) for line in lines]
    assert seqs == sorted(seqs)
    assert lines[0] == "[1] execution QUEUED"
    assert re.search(r"^\[\d+\] step fetch started \(attempt 1, shell\)$", events, re.M)
    assert re.search(r"^\[\d+\] fetch \| fetching shop$", events, re.M)
    assert re.search(r"^\[\d+\] build \(stderr\) \| warning: 1 deprecated call$", events, re.M)
    assert re.search(r"^\[\d+\] step report succeeded \(attempt 1, [\d.]+s\)$", events, re.M)
    assert re.search(r"^\[\d+\] report \| shop: all checks passed$", events, re.M)
    assert lines[-1].endswith("] execution SUCCEEDED")

    rows = summary.splitlines()
    assert rows[0].startswith("build-and-test SUCCEEDED in ")
    assert rows[1].split() == ["step", "status", "duration", "attempts"]
    table = [row.split() for row in rows[2:]]
    assert [row[0] for row in table] == ["fetch", "build", "unit-tests", "lint", "settle", "report"]
    assert all(row[1] == "SUCCEEDED" and row[3] == "1" for row in table)


def test_run_follow_of_a_failing_example_exits_1_with_its_attempts(
    example_runs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    done = example_runs["fails"]

    assert done.returncode == 1, done.stderr
    assert done.stdout.count("deploy (stderr) | error: staging refused the upload") == 3
    assert "retrying in 0.50s" in done.stdout
    summary = done.stdout.partition("\n\n")[2].splitlines()
    assert summary[0].startswith("flaky-deploy FAILED in ")
    rows = {row.split()[0]: row.split() for row in summary[2:] if not row.startswith("error")}
    assert rows["package"][1:2] == ["SUCCEEDED"]
    assert rows["deploy"][1] == "FAILED"
    assert rows["deploy"][3] == "3"
    assert rows["announce"] == ["announce", "PENDING", "-", "0"]
    assert summary[-1] == "error: step deploy failed: exited with code 1"


@pytest.fixture(scope="module")
def failed_json(
    example_runs: dict[str, subprocess.CompletedProcess[str]],
) -> subprocess.CompletedProcess[str]:
    """One run of the failing example with --json and a label, shared by the tests that read it."""
    return example_runs["fails-json"]


def test_json_gives_every_event_once_in_order_and_nothing_else_on_stdout(
    sqlite_server: Server, failed_json: subprocess.CompletedProcess[str]
) -> None:
    done = failed_json

    assert done.returncode == 1, done.stderr
    events = _events(done.stdout)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["type"] for e in events} == {"EXECUTION_STATUS", "STEP_STATUS", "OUTPUT"}
    assert events[-1]["type"] == "EXECUTION_STATUS"
    assert events[-1]["status"] == "FAILED"
    failed = [e for e in events if e["type"] == "STEP_STATUS" and e["status"] == "FAILED"]
    assert [e["attempt"] for e in failed] == [1, 2, 3]
    assert [e["retry_in_seconds"] for e in failed] == [0.5, 0.5, None]
    # The summary is for people: on stderr, where `| jq` does not see it.
    assert "flaky-deploy FAILED in " in done.stderr
    query = "query($id: ID!) { execution(id: $id) { lastSeq } }"
    found = _query(sqlite_server, query, id=_summarized_id(done.stderr))
    assert found["execution"]["lastSeq"] == len(events)


def test_run_without_follow_prints_the_id_and_watch_later_shows_everything(
    sqlite_server: Server,
) -> None:
    execution_id = _start(sqlite_server, "hello", "--input", "name=late joiner")
    _wait_status(sqlite_server, execution_id, "SUCCEEDED")

    joined = rw(sqlite_server, "watch", execution_id, "--json")
    assert joined.returncode == 0, joined.stderr
    events = _events(joined.stdout)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["text"] for e in events if e["type"] == "OUTPUT"] == ["hello late joiner\n"]
    assert events[-1]["status"] == "SUCCEEDED"

    plain = rw(sqlite_server, "watch", execution_id)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("[1] execution QUEUED\n")
    assert "greet | hello late joiner" in plain.stdout


def test_watch_of_a_failed_execution_exits_1(
    sqlite_server: Server, failed_json: subprocess.CompletedProcess[str]
) -> None:
    execution_id = _summarized_id(failed_json.stderr)

    done = rw(sqlite_server, "watch", execution_id)

    assert done.returncode == 1
    assert done.stdout.startswith("[1] execution QUEUED\n")
    assert "execution FAILED" in done.stdout


# --- steering, history, one execution -----------------------------------------------------------


def test_stop_cancels_a_running_execution(sqlite_server: Server, long_definition: Path) -> None:
    execution_id = _start(sqlite_server, str(long_definition))
    _wait_status(sqlite_server, execution_id, "RUNNING")

    refused = rw(sqlite_server, "delete", execution_id)
    assert refused.returncode == 2
    assert "only an ended execution can be deleted" in refused.stderr

    stopped = rw(sqlite_server, "stop", execution_id, "--reason", "enough")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.split() in ([execution_id, "STOPPING"], [execution_id, "CANCELLED"])
    _wait_status(sqlite_server, execution_id, "CANCELLED")

    watched = rw(sqlite_server, "watch", execution_id)
    assert watched.returncode == 1
    assert "execution CANCELLED" in watched.stdout
    assert "enough" in watched.stdout

    again = rw(sqlite_server, "stop", execution_id)
    assert again.returncode == 2
    assert again.stderr.startswith("rw: error: ")
    assert "Traceback" not in again.stderr

    deleted = rw(sqlite_server, "delete", execution_id)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.split() == [execution_id, "deleted"]
    gone = rw(sqlite_server, "delete", execution_id)
    assert gone.returncode == 2
    assert gone.stderr.startswith("rw: error: ")
    assert "not found" in gone.stderr


def test_pause_then_resume_runs_the_rest(sqlite_server: Server, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    definition = tmp_path / "two.yaml"
    definition.write_text(
        "name: two\nsteps:\n"
        f"  - {gated_step('first', gate)}\n"
        '  - {key: second, kind: shell, with: {argv: ["echo", "second ran"]}, needs: [first]}\n'
    )
    execution_id = _start(sqlite_server, str(definition))
    _wait_status(sqlite_server, execution_id, "RUNNING")

    paused = rw(sqlite_server, "pause", execution_id)
    assert paused.returncode == 0, paused.stderr
    # `first` runs until the gate opens: the pause cannot miss it, however slow the machine.
    assert paused.stdout.split() in ([execution_id, "PAUSING"], [execution_id, "PAUSED"])
    gate.touch()
    _wait_status(sqlite_server, execution_id, "PAUSED")  # once `first` ended; `second` waits

    resumed = rw(sqlite_server, "resume", execution_id)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.split()[0] == execution_id
    _wait_status(sqlite_server, execution_id, "SUCCEEDED")
    assert "second | second ran" in rw(sqlite_server, "watch", execution_id).stdout

    again = rw(sqlite_server, "resume", execution_id)
    assert again.returncode == 2  # a succeeded execution cannot resume: refused, one line
    assert again.stderr.startswith("rw: error: ")
    assert "Traceback" not in again.stderr


def test_skip_lets_a_failed_execution_continue(sqlite_server: Server, tmp_path: Path) -> None:
    definition = tmp_path / "broken.yaml"
    definition.write_text(
        "name: broken\nsteps:\n"
        '  - {key: broken, kind: shell, with: {argv: ["false"]}}\n'
        '  - {key: after, kind: shell, with: {argv: ["echo", "after ran"]}, needs: [broken]}\n'
    )
    execution_id = _start(sqlite_server, str(definition))
    _wait_status(sqlite_server, execution_id, "FAILED")

    skipped = rw(sqlite_server, "skip", execution_id, "broken")
    assert skipped.returncode == 0, skipped.stderr
    assert skipped.stdout.split()[0] == execution_id
    _wait_status(sqlite_server, execution_id, "SUCCEEDED")
    shown = rw(sqlite_server, "show", execution_id)
    assert re.search(r"^broken\s+SKIPPED", shown.stdout, re.MULTILINE), shown.stdout
    assert re.search(r"^after\s+SUCCEEDED", shown.stdout, re.MULTILINE), shown.stdout


def test_retry_follow_runs_the_step_again_and_shows_only_the_new_events(
    sqlite_server: Server, tmp_path: Path
) -> None:
    marker = tmp_path / "ready"
    definition = tmp_path / "gate.yaml"
    definition.write_text(
        "name: gate\nsteps:\n"
        f'  - {{key: check, kind: shell, with: {{argv: ["test", "-f", "{marker}"]}}}}\n'
        '  - {key: after, kind: shell, with: {argv: ["echo", "passed the gate"]}}\n'
    )
    first = rw(sqlite_server, "run", str(definition), "--follow", "--json")
    assert first.returncode == 1, first.stderr
    before = len(_events(first.stdout))
    execution_id = _summarized_id(first.stderr)

    marker.write_text("")
    retried = rw(sqlite_server, "retry", execution_id, "check", "--follow")

    assert retried.returncode == 0, retried.stdout + retried.stderr
    first_seq = int(retried.stdout[1 : retried.stdout.index("]")])
    assert first_seq == before + 1  # only what the retry did, from the seq after the failure
    assert "step check started (attempt 2, shell)" in retried.stdout
    assert "after | passed the gate" in retried.stdout
    # The summary times the retry, as the live view's clock does, and says so; the execution's
    # whole span (from its first start, across the wait before the retry) is named as that.
    headline = retried.stdout.partition("\n\n")[2].splitlines()[0]
    timed = re.fullmatch(
        r"gate SUCCEEDED in ([\d.]+)s after the retry, ([\d.]+)s since its first start"
        rf" \(execution {execution_id}\)",
        headline,
    )
    assert timed, headline
    assert float(timed.group(1)) < float(timed.group(2))
    rows = {r.split()[0]: r.split() for r in retried.stdout.partition("\n\n")[2].splitlines()[2:]}
    assert rows["check"][1] == "SUCCEEDED"
    assert rows["check"][3] == "2"

    shown = rw(sqlite_server, "show", execution_id)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^status:\s+SUCCEEDED$", shown.stdout, re.M)
    assert re.search(r"^check\s+SUCCEEDED\s+\S+\s+2$", shown.stdout, re.M)

    unknown_step = rw(sqlite_server, "retry", execution_id, "nope")
    assert unknown_step.returncode == 2
    assert unknown_step.stderr.startswith("rw: error: ")


def test_ls_filters_by_label_and_status(
    sqlite_server: Server, failed_json: subprocess.CompletedProcess[str]
) -> None:
    label = LABEL
    passed = rw(sqlite_server, "run", "hello", "--label", label, "--follow", "--json")
    assert passed.returncode == 0, passed.stderr
    failed_id, passed_id = _summarized_id(failed_json.stderr), _summarized_id(passed.stderr)

    only_failed = rw(sqlite_server, "ls", "--label", label, "--status", "failed")
    assert only_failed.returncode == 0, only_failed.stderr
    header, *rows = [line.split("\t") for line in only_failed.stdout.splitlines()]
    assert header == ["id", "name", "status", "queued", "duration"]
    assert [(row[0], row[1], row[2]) for row in rows] == [(failed_id, "flaky-deploy", "FAILED")]

    both = rw(sqlite_server, "ls", "--label", label, "--json")
    assert both.returncode == 0, both.stderr
    assert [e["id"] for e in _events(both.stdout)] == [passed_id, failed_id]  # newest first

    limited = rw(sqlite_server, "ls", "--label", label, "-n", "1")
    assert len(limited.stdout.splitlines()) == 2


def test_show_prints_facts_and_steps_and_json(
    sqlite_server: Server, failed_json: subprocess.CompletedProcess[str]
) -> None:
    execution_id = _summarized_id(failed_json.stderr)

    shown = rw(sqlite_server, "show", execution_id)
    assert shown.returncode == 0, shown.stderr
    assert re.search(rf"^id:\s+{execution_id}$", shown.stdout, re.M)
    assert re.search(r"^scenario:\s+\(inline\)$", shown.stdout, re.M)
    assert re.search(r"^deploy\s+FAILED\s+\S+\s+3$", shown.stdout, re.M)

    as_json = rw(sqlite_server, "show", execution_id, "--json")
    found = json.loads(as_json.stdout)
    assert found["id"] == execution_id
    assert found["status"] == "FAILED"
    assert [(s["key"], s["attempt"]) for s in found["steps"]] == [
        ("package", 1),
        ("deploy", 1),
        ("deploy", 2),
        ("deploy", 3),
        ("announce", 0),
    ]
    assert found["trace"]["status"] == "FAILED"


# --- errors: one line, a code, no traceback -----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "token", "code", "message"),
    [
        (("ls",), "not-a-token", 2, "rw: error: the server refused the token"),
        (("ls",), "", 2, "rw: error: no API token: pass --token or set RUNWIRE_TOKEN"),
        (("run", "no-such-scenario"), None, 2, "rw: error: scenario no-such-scenario not found"),
        (("run", "examples/missing.yaml"), None, 2, "rw: error: no such file: examples/missing"),
        (("run", "hello", "--input", "nope=1"), None, 2, "rw: error: inputs.nope: unknown input"),
        (("watch", str(uuid.UUID(int=1))), None, 2, "not found"),
        (("show", "not-an-id"), None, 2, "rw: error: execution not-an-id not found"),
        (("stop", str(uuid.UUID(int=2))), None, 2, "not found"),
        (("--url", "ftp://example.com", "ls"), None, 2, "rw: error: --url: "),
        (("ls",), "two words", 2, "rw: error: --token (or RUNWIRE_TOKEN): "),
        (("run", "countdwn"), None, 2, "scenario countdwn not found; did you mean countdown?"),
    ],
)
def test_errors_are_one_line_with_a_code(
    sqlite_server: Server, args: tuple[str, ...], token: str | None, code: int, message: str
) -> None:
    done = rw(sqlite_server, *args, token=token)

    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_global_options_work_after_the_subcommand_and_win_over_the_groups(
    sqlite_server: Server, tmp_path: Path
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    listed = rw(
        sqlite_server,
        *("--url", nowhere, "ls", "-n", "1"),
        *("--url", sqlite_server.url, "--token", sqlite_server.token),
        token="",
    )
    assert listed.returncode == 0, listed.stderr

    definition = tmp_path / "hi.yaml"
    definition.write_text('name: hi\nsteps:\n  - {key: a, kind: shell, with: {argv: ["true"]}}\n')
    followed = rw(
        sqlite_server,
        *("run", str(definition), "--follow", "--url", sqlite_server.url),
        *("--token", sqlite_server.token),
        token="",
    )
    assert followed.returncode == 0, followed.stderr

    suite = rw(sqlite_server, "suite", "report", "x", "--token", sqlite_server.token, token="")
    assert "no API token" not in suite.stderr  # the nested group's commands take them too


def test_a_bearer_prefixed_token_is_taken_for_the_token(sqlite_server: Server) -> None:
    done = rw(sqlite_server, "ls", "-n", "1", token=f"Bearer {sqlite_server.token}")
    assert done.returncode == 0, done.stderr


def test_json_help_says_what_each_command_prints(sqlite_server: Server) -> None:
    helps = {
        command: " ".join(rw(sqlite_server, command, "--help").stdout.split())
        for command in ("run", "watch", "retry", "ls", "show", "scenarios")
    }
    assert "One JSON object per execution" in helps["ls"]
    assert "per event" not in helps["ls"]
    assert "The execution and its trace as one JSON object" in helps["show"]
    assert "per event" not in helps["show"]
    assert "One JSON object per scenario" in helps["scenarios"]
    for command in ("run", "watch", "retry"):
        assert "one json object per event on stdout" in helps[command].lower(), command


def test_scenarios_lists_names_versions_descriptions_and_inputs(sqlite_server: Server) -> None:
    plain = rw(sqlite_server, "scenarios")
    assert plain.returncode == 0, plain.stderr
    header, *rows = [line.split("\t") for line in plain.stdout.splitlines()]
    assert header == ["name", "version", "inputs", "description"]
    by_name = {row[0]: row for row in rows}
    assert by_name["countdown"][1] == "1"
    assert by_name["hello"][3] != ""

    as_json = rw(sqlite_server, "scenarios", "--json")
    assert as_json.returncode == 0, as_json.stderr
    found = {s["name"]: s for s in _events(as_json.stdout)}
    assert found.keys() == by_name.keys()
    assert {"name", "version", "description", "inputs"} <= found["countdown"].keys()
    inputs = found["countdown"]["inputs"]
    assert inputs  # countdown takes inputs: the column shows them, "?" marking optional ones
    assert by_name["countdown"][2] == ", ".join(
        i["name"] + ("" if i["required"] else "?") for i in inputs
    )


def test_invalid_yaml_is_reported_once(sqlite_server: Server, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps: [\n")

    done = rw(sqlite_server, "run", str(bad))

    assert done.returncode == 2
    assert done.stderr.count("invalid YAML") == 1, done.stderr
    assert "(: " not in done.stderr


def test_bad_usage_exits_2_with_usage(sqlite_server: Server) -> None:
    done = rw(sqlite_server, "run", "hello", "--input", "no-equals-sign")

    assert done.returncode == 2
    assert "expected NAME=VALUE" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_server_exits_3(sqlite_server: Server) -> None:
    done = rw(sqlite_server, "--url", f"http://127.0.0.1:{free_port()}", "watch", "x")

    assert done.returncode == 3
    assert done.stderr.startswith("rw: error: could not reach the server")
    assert "Traceback" not in done.stderr


# --- interrupts ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _following(server: Server, *args: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [str(RW), *args],
        env=_env(server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _read_until(process: subprocess.Popen[str], text: str, timeout: float = 20) -> str:
    """stdout up to `text`, read from the pipe itself: a buffered reader would hold lines that
    `select` no longer sees; `communicate()` reads the rest afterwards."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {text!r} in {seen!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"stdout ended before {text!r}: {seen!r}"
            seen += chunk
    return seen.decode()


def _execution_id_in(text: str) -> str:
    found = re.search(r"execution ([0-9a-f-]{36})", text)
    assert found, text
    return found.group(1)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_without_a_terminal_detaches_and_leaves_it_running(
    sqlite_server: Server, long_definition: Path, signum: int, code: int
) -> None:
    with _following(sqlite_server, "run", str(long_definition), "--follow") as process:
        _read_until(process, "wait | waiting")
        process.send_signal(signum)
        _out, err = process.communicate(timeout=20)

    assert process.returncode == code, err
    assert "detached: execution" in err
    assert "keeps running" in err
    assert "Traceback" not in err
    execution_id = _execution_id_in(err)
    assert _status(sqlite_server, execution_id) == "RUNNING"
    assert rw(sqlite_server, "stop", execution_id).returncode == 0


def test_on_interrupt_stop_stops_the_execution_and_shows_its_end(
    sqlite_server: Server, long_definition: Path
) -> None:
    args = ("run", str(long_definition), "--follow", "--on-interrupt", "stop")
    with _following(sqlite_server, *args) as process:
        seen = _read_until(process, "wait | waiting")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)

    assert process.returncode == 1, err
    assert "stopping execution" in err
    assert "] execution CANCELLED" in seen + out
    assert "long-wait CANCELLED in " in out


# --- in a terminal: the live view and the question ----------------------------------------------


class Terminal:
    """`rw` on a pseudo-terminal (stdin, stdout and stderr), with everything it draws kept."""

    def __init__(self, server: Server, *args: str) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 110, 0, 0))
        env = _env(server, TERM="xterm-256color")
        env.pop("COLUMNS", None)
        env.pop("LINES", None)
        self.process = subprocess.Popen(
            [str(RW), *args], env=env, stdin=slave, stdout=slave, stderr=slave
        )
        os.close(slave)
        self._master = master
        self._drawn = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 4096)
            except OSError:  # EIO: every end of the slave is closed
                return
            if not chunk:
                return
            with self._lock:
                self._drawn.extend(chunk)

    @property
    def raw(self) -> str:
        """Everything drawn, escape sequences included."""
        with self._lock:
            return self._drawn.decode(errors="replace")

    @property
    def drawn(self) -> str:
        """Everything drawn, without colours and cursor movements."""
        return ANSI.sub("", self.raw)

    def wait_for(self, text: str, timeout: float = 20, times: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.drawn.count(text) < times:
            assert time.monotonic() < deadline, f"no {text!r} in {self.drawn[-2000:]!r}"
            time.sleep(0.05)

    def type(self, text: str) -> None:
        os.write(self._master, text.encode())

    def wait(self, timeout: float = 20) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        os.close(self._master)


@contextlib.contextmanager
def _terminal(server: Server, *args: str) -> Iterator[Terminal]:
    terminal = Terminal(server, *args)
    try:
        yield terminal
    finally:
        terminal.close()


def test_live_view_in_a_terminal_draws_progress_and_the_summary_table(
    sqlite_server: Server,
) -> None:
    with _terminal(sqlite_server, "run", str(FAILS), "--follow") as terminal:
        code = terminal.wait()
        drawn = terminal.drawn

    assert code == 1
    assert "\x1b[?25l" in terminal.raw  # the live view hid the cursor while it drew
    assert re.search(r"[012]/3 steps", drawn)
    assert "2/3 steps" in drawn
    assert "deploy" in drawn
    assert "attempt 2" in drawn
    assert "error: staging refused the upload" in drawn
    assert "┃ step" in drawn
    assert "┃ attempts" in drawn
    assert "flaky-deploy FAILED in " in drawn


def test_ctrl_c_in_a_terminal_asks_and_stop_cancels(
    sqlite_server: Server, long_definition: Path
) -> None:
    with _terminal(sqlite_server, "run", str(long_definition), "--follow") as terminal:
        terminal.wait_for("waiting")
        terminal.process.send_signal(signal.SIGINT)
        terminal.wait_for("[s]top / [d]etach / [c]ontinue")
        terminal.type("s\n")
        code = terminal.wait()
        drawn = terminal.drawn

    assert code == 1, drawn
    assert "stopping execution" in drawn
    assert "long-wait CANCELLED in " in drawn
    _wait_status(sqlite_server, _execution_id_in(drawn), "CANCELLED")


def test_ctrl_c_in_a_terminal_continue_then_detach(
    sqlite_server: Server, long_definition: Path
) -> None:
    with _terminal(sqlite_server, "run", str(long_definition), "--follow") as terminal:
        terminal.wait_for("waiting")
        terminal.process.send_signal(signal.SIGINT)
        terminal.wait_for("[s]top / [d]etach / [c]ontinue")
        terminal.type("c\n")
        time.sleep(0.5)
        assert terminal.process.poll() is None  # still watching
        terminal.process.send_signal(signal.SIGINT)
        terminal.wait_for("[s]top / [d]etach / [c]ontinue", times=2)
        terminal.type("d\n")
        code = terminal.wait()
        drawn = terminal.drawn

    assert code == 130, drawn
    execution_id = _execution_id_in(drawn.split("detached:")[1])
    assert _status(sqlite_server, execution_id) == "RUNNING"
    assert rw(sqlite_server, "stop", execution_id).returncode == 0


# --- cost and tokens: the summary is checked on its own, from spans built here -------------------


def _at(second: int) -> datetime:
    return datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC)


def _span(span_id: str, parent: str | None, key: str | None, **attributes: Any) -> Span:
    return Span(
        id=span_id,
        parent_id=parent,
        name=key or "root",
        kind="llm",
        status="SUCCEEDED",
        started_at=_at(0),
        finished_at=_at(1),
        duration_ms=1000,
        step_key=key,
        attempt=None if key is None else 1,
        attributes=attributes,
    )


def _run(key: str, attempt: int, status: StepStatus, position: int) -> StepRun:
    return StepRun(
        key=key,
        kind="llm",
        status=status,
        attempt=attempt,
        position=position,
        started_at=_at(0),
        finished_at=_at(1),
        duration_ms=1000 * attempt,
        exit_code=None,
        output=None,
        error=None,
        assertions=(),
    )


def test_summary_shows_cost_and_tokens_per_step_counting_each_figure_once() -> None:
    execution = Execution(
        id="e1",
        name="agents",
        status=ExecutionStatus.SUCCEEDED,
        scenario=None,
        inputs={},
        labels=(),
        priority=0,
        queued_at=_at(0),
        started_at=_at(0),
        finished_at=_at(3),
        duration_ms=3000,
        error=None,
        last_seq=9,
        mode=ExecutionMode.FULL,
        step_key=None,
        batch_id=None,
        triggered_by="test",
        idempotency_key=None,
        steps=(
            _run("plan", 1, StepStatus.FAILED, 0),
            _run("plan", 2, StepStatus.SUCCEEDED, 0),
            _run("write", 1, StepStatus.SUCCEEDED, 1),
        ),
    )
    spans = (
        _span("root", None, None),
        # plan: two attempts, each with an LLM call; both cost money.
        _span("plan-1", "root", "plan"),
        _span("call-1", "plan-1", "plan", cost_usd=0.01, tokens_input=100, tokens_output=20),
        _span("plan-2", "root", "plan"),
        _span("call-2", "plan-2", "plan", cost_usd=0.02, tokens_input=200, tokens_output=40),
        # write: the step reported its total, which already covers its calls beneath it.
        _span("write-1", "root", "write", cost_usd=0.5, tokens_input=1000, tokens_output=100),
        _span("call-3", "write-1", "write", cost_usd=0.3, tokens_input=600),
    )
    trace = Trace(
        execution_id="e1",
        status=ExecutionStatus.SUCCEEDED,
        spans=spans,
        total_duration_ms=3000,
        tokens=TokenUsage(input=1300, output=160, total=1460),
        cost=0.53,
    )

    summary = summarize(execution, trace)

    plan, write = summary.steps
    assert (plan.status, plan.attempts, plan.duration_ms) == (StepStatus.SUCCEEDED, 2, 2000)
    assert plan.cost_usd == pytest.approx(0.03)
    assert plan.tokens == 360
    assert write.cost_usd == pytest.approx(0.5)
    assert write.tokens == 1100
    lines = summary_lines(summary)
    assert lines[0] == (
        "agents SUCCEEDED in 3.00s, cost $0.5300, tokens 1,460 (1,300 in / 160 out) (execution e1)"
    )
    assert lines[1].split() == ["step", "status", "duration", "attempts", "cost", "tokens"]
    assert lines[2].split() == ["plan", "SUCCEEDED", "2.00s", "2", "$0.0300", "360"]
    assert lines[3].split() == ["write", "SUCCEEDED", "1.00s", "1", "$0.5000", "1,100"]
