"""Checking each step kind's `with` mapping: typed params, or every error at once."""

from __future__ import annotations

from typing import Any

import pytest

from runwire.errors import FieldError, InvalidDefinition
from runwire.runner.steps import STEP_KINDS, AgentParams, HttpParams, ShellParams, SleepParams

SHELL_FIELDS = "argv, command, cwd, env, network, shell, stdin"
HTTP_FIELDS = "body, headers, json, method, timeout, url"
METHODS = "expected one of: DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
STRING_MAP = "expected a mapping of strings to strings"
LINE_BREAKS = "must not contain line breaks or NUL"
URL = "http://example.test/x"
UNKNOWN = "unknown field; expected one of: "


def errors(kind: str, params: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidDefinition) as caught:
        STEP_KINDS[kind].parse(params, "w")
    return [(error.path, error.message) for error in caught.value.errors]


@pytest.mark.parametrize("kind", ["shell", "agent", "http", "sleep"])
@pytest.mark.parametrize("params", [None, [], "argv", 3])
def test_params_must_be_a_mapping(kind: str, params: Any) -> None:
    assert errors(kind, params)[0] == ("w", "expected a mapping")


@pytest.mark.parametrize(
    ("kind", "params", "expected"),
    [
        ("shell", {"argv": ["x"], "args": 1}, [("w.args", f"{UNKNOWN}{SHELL_FIELDS}")]),
        ("http", {"url": URL, "data": 1}, [("w.data", f"{UNKNOWN}{HTTP_FIELDS}")]),
        ("sleep", {"seconds": 1, "ms": 1}, [("w.ms", f"{UNKNOWN}seconds")]),
    ],
)
def test_unknown_fields_name_the_allowed_ones(
    kind: str, params: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert errors(kind, params) == expected


def test_shell_parses_typed_params() -> None:
    params = STEP_KINDS["shell"].parse(
        {"argv": ["ls", "{{ inputs.dir }}"], "env": {"A": "1"}, "cwd": "/tmp", "stdin": "x"}, "w"
    )
    assert params == ShellParams(("ls", "{{ inputs.dir }}"), False, None, {"A": "1"}, "/tmp", "x")
    assert STEP_KINDS["shell"].parse({"shell": True, "command": "echo hi"}, "w") == ShellParams(
        (), True, "echo hi"
    )
    assert STEP_KINDS["shell"].parse({"argv": ["curl"], "network": True}, "w").network


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [("w.argv", "required")]),
        ({"argv": "ls -l"}, [("w.argv", "expected a list of strings")]),
        ({"argv": ["ls", 1]}, [("w.argv", "expected a list of strings")]),
        ({"argv": []}, [("w.argv", "must not be empty")]),
        ({"argv": ["ls"], "command": "ls"}, [("w.command", "only allowed when shell is true")]),
        ({"shell": True}, [("w.command", "required")]),
        ({"shell": True, "command": ["ls"]}, [("w.command", "expected a string")]),
        (
            {"shell": True, "command": "ls", "argv": ["ls"]},
            [("w.argv", "not allowed when shell is true; use command")],
        ),
        ({"shell": "yes", "argv": ["ls"]}, [("w.shell", "expected true or false")]),
        ({"shell": 1, "argv": ["ls"]}, [("w.shell", "expected true or false")]),
        ({"argv": ["ls"], "env": ["A=1"]}, [("w.env", STRING_MAP)]),
        ({"argv": ["ls"], "env": {"A": 1}}, [("w.env.A", "expected a string")]),
        ({"argv": ["ls"], "cwd": 1}, [("w.cwd", "expected a string")]),
        ({"argv": ["ls"], "stdin": b"x"}, [("w.stdin", "expected a string")]),
        ({"argv": ["ls"], "network": "yes"}, [("w.network", "expected true or false")]),
        (
            {"argv": ["ls"], "cwd": "build/../../etc"},
            [("w.cwd", "a relative cwd is inside the step's directory: no '..'")],
        ),
        (
            {"argv": "ls", "env": {"A": None}, "cwd": 1, "x": 1},
            [
                ("w.x", f"{UNKNOWN}{SHELL_FIELDS}"),
                ("w.argv", "expected a list of strings"),
                ("w.env.A", "expected a string"),
                ("w.cwd", "expected a string"),
            ],
        ),
    ],
)
def test_shell_errors(params: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert errors("shell", params) == expected


@pytest.mark.parametrize(
    ("seconds", "parsed"),
    [(0, 0.0), (1.5, 1.5), (2, 2.0), ("{{ inputs.wait }}", "{{ inputs.wait }}")],
)
def test_sleep_parses_numbers_and_templates(seconds: Any, parsed: float | str) -> None:
    assert STEP_KINDS["sleep"].parse({"seconds": seconds}, "w") == SleepParams(parsed)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [("w.seconds", "required")]),
        ({"seconds": -1}, [("w.seconds", "must not be negative")]),
        ({"seconds": True}, [("w.seconds", "expected a number or a {{ template }}")]),
        ({"seconds": "5"}, [("w.seconds", "expected a number or a {{ template }}")]),
        ({"seconds": float("nan")}, [("w.seconds", "expected a number or a {{ template }}")]),
        ({"seconds": float("inf")}, [("w.seconds", "expected a number or a {{ template }}")]),
        ({"seconds": 10**400}, [("w.seconds", "expected a number or a {{ template }}")]),
        ({"seconds": None}, [("w.seconds", "expected a number or a {{ template }}")]),
    ],
)
def test_sleep_errors(params: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert errors("sleep", params) == expected


def test_http_parses_typed_params() -> None:
    http = STEP_KINDS["http"]
    assert http.parse({"url": URL}, "w") == HttpParams(URL)
    assert http.parse(
        {
            "method": "post",
            "url": "https://{{ inputs.host }}/x",
            "headers": {"X-A": "b"},
            "json": {"a": [1, None]},
            "timeout": "{{ inputs.timeout }}",
        },
        "w",
    ) == HttpParams(
        "https://{{ inputs.host }}/x",
        "POST",
        {"X-A": "b"},
        b'{"a": [1, null]}',
        True,
        "{{ inputs.timeout }}",
    )
    assert http.parse({"url": URL, "json": None}, "w").content == b"null"
    assert http.parse({"url": URL, "body": "hi"}, "w") == HttpParams(URL, content=b"hi")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [("w.url", "required")]),
        ({"url": 1}, [("w.url", "expected a string")]),
        ({"url": "ftp://example.test/"}, [("w.url", "expected an http or https URL")]),
        ({"url": "example.test/x"}, [("w.url", "expected an http or https URL")]),
        ({"url": "http://"}, [("w.url", "expected an http or https URL")]),
        ({"url": URL, "method": "FETCH"}, [("w.method", METHODS)]),
        ({"url": URL, "method": 1}, [("w.method", "expected a string")]),
        ({"url": URL, "headers": "a: b"}, [("w.headers", STRING_MAP)]),
        ({"url": URL, "headers": {"a": 1}}, [("w.headers.a", "expected a string")]),
        ({"url": URL, "headers": {"a b": "c"}}, [("w.headers.a b", "not a valid header name")]),
        ({"url": URL, "headers": {"a": "s3cret\r\nx: y"}}, [("w.headers.a", LINE_BREAKS)]),
        ({"url": URL, "json": 1, "body": "x"}, [("w.body", "not allowed together with json")]),
        ({"url": URL, "json": {1, 2}}, [("w.json", "expected a JSON value")]),
        ({"url": URL, "json": float("nan")}, [("w.json", "expected a JSON value")]),
        ({"url": URL, "body": {"a": 1}}, [("w.body", "expected a string")]),
        ({"url": URL, "timeout": 0}, [("w.timeout", "must be more than 0")]),
        ({"url": URL, "timeout": -1}, [("w.timeout", "must be more than 0")]),
        ({"url": URL, "timeout": False}, [("w.timeout", "expected a number or a {{ template }}")]),
        ({"url": URL, "timeout": "30"}, [("w.timeout", "expected a number or a {{ template }}")]),
        # Assertions are the step's `expect:`, a sibling of `with` (scenarios/expectations.py).
        ({"url": URL, "expect": {"status": 200}}, [("w.expect", f"{UNKNOWN}{HTTP_FIELDS}")]),
    ],
)
def test_http_errors(params: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert errors("http", params) == expected


def test_header_values_never_appear_in_errors() -> None:
    with pytest.raises(InvalidDefinition) as caught:
        STEP_KINDS["http"].parse({"url": URL, "headers": {"a": "s3cret\n"}}, "w")
    assert "s3cret" not in str(caught.value)
    assert caught.value.errors == (
        FieldError("w.headers.a", "must not contain line breaks or NUL"),
    )


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [("w.command", "required"), ("w.format", "required")]),
        (
            {"command": [], "format": "jsonl"},
            [
                ("w.command", "must not be empty"),
                ("w.format", "expected one of: claude-stream-json, codex-jsonl, ndjson"),
            ],
        ),
        (
            {"command": "claude -p", "format": "ndjson", "cwd": "../up", "prompt": "x"},
            [
                (
                    "w.prompt",
                    "unknown field; expected one of: command, cwd, env, format, model, network,"
                    " stdin",
                ),
                ("w.command", "expected a list of strings"),
                ("w.cwd", "a relative cwd is inside the step's directory: no '..'"),
            ],
        ),
    ],
)
def test_agent_params_errors_name_their_field(
    params: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert errors("agent", params) == expected


def test_agent_params() -> None:
    parsed = STEP_KINDS["agent"].parse(
        {"command": ["codex", "exec", "--json", "-"], "format": "codex-jsonl", "stdin": "hi"}, "w"
    )
    assert parsed == AgentParams(("codex", "exec", "--json", "-"), "codex-jsonl", stdin="hi")
