"""`expect:` on real runs: a definition's steps run by the real shell and http kinds, then assessed.

This is the runner's sequence for each attempt: parse the definition, run the step's kind with
its `with`, then `assess(step.expect, step.kind, result)`.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.support.http_service import FakeHttpService
from tests.support.steps import OWN_USER_KINDS, RecordingContext

from runwire.scenarios.definition import parse_definition
from runwire.scenarios.expectations import assess


@pytest.fixture
async def service() -> AsyncIterator[FakeHttpService]:
    async with FakeHttpService() as service:
        yield service


async def run_step(step: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    """Run the one step of a definition and assess it: its error and assertion records."""
    spec = parse_definition({"name": "t", "steps": [{"key": "s", **step}]}, OWN_USER_KINDS).steps[0]
    kind = OWN_USER_KINDS[spec.kind]
    result = await kind.run(kind.parse(spec.with_, "with"), RecordingContext())
    judged, records = assess(spec.expect, spec.kind, result)
    assert judged.output == result.output  # assessing changes the verdict, never the output
    return judged.error, records


def sh(script: str, expect: dict[str, Any] | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"kind": "shell", "with": {"argv": ["sh", "-c", script]}}
    return step if expect is None else {**step, "expect": expect}


def get(url: str, expect: dict[str, Any] | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"kind": "http", "with": {"url": url, "timeout": 10}}
    return step if expect is None else {**step, "expect": expect}


async def test_a_nonzero_exit_fails_a_shell_step_by_default() -> None:
    error, records = await run_step(sh("echo hi; exit 3"))
    assert error == "exited with code 3"
    assert [(r["assertion"], r["expected"], r["actual"], r["passed"]) for r in records] == [
        ("exit_code", 0, 3, False)
    ]
    assert await run_step(sh("echo hi")) == (
        None,
        [
            {
                "assertion": "exit_code",
                "expected": 0,
                "actual": 0,
                "passed": True,
                "message": None,
            }
        ],
    )


async def test_a_signal_is_named_in_the_failure() -> None:
    error, _ = await run_step(sh("kill -TERM $$"))
    assert error == "killed by signal SIGTERM"


async def test_shell_stdout_is_checked_as_text_and_as_json() -> None:
    script = f"""{sys.executable} -c 'import json; print(json.dumps({{"user": {{"id": 42}}}}))'"""
    expect = {
        "output_contains": '"id": 42',
        "output_matches": r"^\{.*\}$",
        "json": {"$.user.id": 42},
    }
    error, records = await run_step(sh(script, expect))
    assert error is None
    assert [(r["assertion"], r["passed"]) for r in records] == [
        ("exit_code", True),
        ("output_contains", True),
        ("output_matches", True),
        ("json", True),
    ]
    error, _ = await run_step(sh(script, {"json": {"$.user.id": 7, "$.user.name": "Ada"}}))
    assert error == (
        "expect.json[$.user.id]: expected 7, got 42; "
        "expect.json[$.user.name]: no value at $.user.name"
    )


async def test_an_expected_exit_code_passes_and_stderr_is_not_checked() -> None:
    error, records = await run_step(
        sh("echo found >&2; exit 1", {"exit_code": [0, 1], "output_contains": "found"})
    )
    assert error == 'expect.output_contains: "found" not found in stdout'
    assert [(r["assertion"], r["passed"]) for r in records] == [
        ("exit_code", True),
        ("output_contains", False),
    ]


async def test_a_command_that_cannot_start_keeps_its_own_error() -> None:
    step = {"kind": "shell", "with": {"argv": ["/nonexistent/tool"]}, "expect": {"exit_code": 0}}
    error, records = await run_step(step)
    assert error is not None
    assert error.startswith("cannot start: ")
    assert records == []


async def test_a_non_2xx_status_fails_an_http_step_by_default(service: FakeHttpService) -> None:
    error, records = await run_step(get(f"{service.url}/status/503"))
    assert error == "answered status 503, not a 2xx status"
    assert records == [
        {
            "assertion": "status",
            "expected": "2xx",
            "actual": 503,
            "passed": False,
            "message": "expected a 2xx status, got 503",
        }
    ]
    assert (await run_step(get(f"{service.url}/status/204")))[0] is None


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ([404, 503], None),
        (503, None),
        (200, "expect.status: expected 200, got 503"),
        ([200, 201], "expect.status: expected 200 or 201, got 503"),
    ],
)
async def test_expected_statuses_replace_2xx(
    service: FakeHttpService, status: Any, error: str | None
) -> None:
    assert (await run_step(get(f"{service.url}/status/503", {"status": status})))[0] == error


async def test_a_json_body_is_checked_by_path_and_as_text(service: FakeHttpService) -> None:
    expect = {
        "json": {"$.ok": True, "$.items[1]": 2, "$.items[*]": [1, 2]},
        "output_contains": '"items": [1, 2]',  # the body as sent, not as re-serialised
        "latency_ms_below": 10_000,
    }
    error, records = await run_step(get(f"{service.url}/json", expect))
    assert error is None
    assert [(r["assertion"], r.get("path"), r["actual"]) for r in records[:4]] == [
        ("status", None, 200),
        ("latency_ms_below", None, records[1]["actual"]),
        ("output_contains", None, '{"ok": true, "items": [1, 2]}'),
        ("json", "$.ok", True),
    ]
    assert 0 < records[1]["actual"] < 10_000
    error, _ = await run_step(get(f"{service.url}/json", {"json": {"$.ok": 1}}))
    assert error == "expect.json[$.ok]: expected 1, got true"


async def test_json_that_is_not_labelled_json_is_still_checked(service: FakeHttpService) -> None:
    assert await run_step(get(f"{service.url}/text-json", {"json": {"$.id": 7}})) == (
        None,
        [
            {
                "assertion": "status",
                "expected": "2xx",
                "actual": 200,
                "passed": True,
                "message": None,
            },
            {
                "assertion": "json",
                "path": "$.id",
                "expected": 7,
                "actual": 7,
                "passed": True,
                "message": None,
            },
        ],
    )
    error, _ = await run_step(get(f"{service.url}/status/200", {"json": {"$.id": 7}}))
    assert error == "expect.json[$.id]: the body is not JSON"


async def test_a_long_body_is_searched_past_what_the_output_keeps(
    service: FakeHttpService,
) -> None:
    # /big sends 70 000 bytes; the step's output keeps 65 536 of them, assertions see all.
    error, _ = await run_step(get(f"{service.url}/big", {"output_matches": "y{70000}"}))
    assert error is None


async def test_a_slow_response_fails_latency_ms_below(service: FakeHttpService) -> None:
    # The server waits 300 ms before answering, so no run can be faster than 100 ms.
    error, records = await run_step(get(f"{service.url}/slow/300", {"latency_ms_below": 100}))
    assert error is not None
    assert error.startswith("expect.latency_ms_below: expected below 100 ms, took ")
    assert records[1]["actual"] >= 300
    assert records[1]["passed"] is False
