"""A step's `expect:`: every bad assertion named by path, and each attempt's result judged."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runwire.errors import FieldError, InvalidDefinition
from runwire.runner.steps import STEP_KINDS
from runwire.scenarios.definition import parse_definition
from runwire.scenarios.expectations import (
    NO_EXPECTATIONS,
    Expectations,
    JsonExpectation,
    assess,
    parse_expect,
)
from runwire.scenarios.results import Observed, StepResult

SHELL = (
    "expected one of exit_code, json, output_contains, output_matches, cost_usd_below, tokens_below"
)
HTTP = "expected one of json, latency_ms_below, output_contains, output_matches, status"
STATUS = "expected a status code (100 to 599) or a non-empty list of them"
EXIT = "expected an exit code (-128 to 255) or a non-empty list of them"
TEXT = "expected a non-empty string"
JSON_MAP = "expected a non-empty mapping of JSONPath (like $.user.id) to value"
LATENCY = "expected a number of milliseconds above 0, up to 1000000000000"
TEMPLATES = "templates ({{ … }}) are not supported in expect"


def parse(raw: Any, kind: str = "http") -> tuple[Expectations, list[tuple[str, str]]]:
    errors: list[FieldError] = []
    expectations = parse_expect(raw, kind, "e", errors)
    return expectations, [(error.path, error.message) for error in errors]


def problems(raw: Any, kind: str = "http") -> list[tuple[str, str]]:
    expectations, errors = parse(raw, kind)
    assert errors
    assert expectations is NO_EXPECTATIONS  # nothing half-parsed is kept
    return errors


# ---- parse_expect ----------------------------------------------------------------------------


def test_no_expect_is_no_expectations() -> None:
    assert parse(None) == (NO_EXPECTATIONS, [])
    assert parse({}) == (Expectations(), [])


def test_parses_every_assertion_of_a_kind() -> None:
    raw = {
        "status": [200, 201],
        "output_contains": "ok",
        "output_matches": r"^id=\d+",
        "json": {"$.user.id": 42, "$.items[0].name": "x", "$.tags": ["a"]},
        "latency_ms_below": 500,
    }
    assert parse(raw) == (
        Expectations(
            status=(200, 201),
            output_contains="ok",
            output_matches=r"^id=\d+",
            json=(
                JsonExpectation("$.user.id", 42),
                JsonExpectation("$.items[0].name", "x"),
                JsonExpectation("$.tags", ["a"]),
            ),
            latency_ms_below=500.0,
        ),
        [],
    )
    assert parse({"exit_code": 0}, "shell") == (Expectations(exit_code=(0,)), [])
    assert parse({"exit_code": [0, 1, -15]}, "shell")[0].exit_code == (0, 1, -15)
    assert parse({"status": 204})[0].status == (204,)


@pytest.mark.parametrize("raw", [[], "status: 200", 200, True])
def test_expect_must_be_a_mapping(raw: Any) -> None:
    assert problems(raw) == [("e", f"must be a mapping of assertions, got {_name(raw)}")]


def _name(raw: Any) -> str:
    return {list: "list", str: "string", int: "number", bool: "boolean"}[type(raw)]


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("shell", {"status": 200}, [("e.status", f"not available for kind shell; {SHELL}")]),
        (
            "shell",
            {"latency_ms_below": 5},
            [("e.latency_ms_below", f"not available for kind shell; {SHELL}")],
        ),
        ("http", {"exit_code": 0}, [("e.exit_code", f"not available for kind http; {HTTP}")]),
        (
            "sleep",
            {"output_contains": "x"},
            [("e.output_contains", "not available: kind sleep checks no assertions")],
        ),
        ("http", {"body": "ok"}, [("e.body", f"unknown assertion; {HTTP}")]),
        (
            "sleep",
            {"seconds": 1},
            [("e.seconds", "unknown assertion; kind sleep checks no assertions")],
        ),
    ],
)
def test_assertions_a_kind_cannot_check_are_named(
    kind: str, raw: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert problems(raw, kind) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"status": 99}, [("e.status", STATUS)]),
        ({"status": 600}, [("e.status", STATUS)]),
        ({"status": True}, [("e.status", STATUS)]),
        ({"status": "200"}, [("e.status", STATUS)]),
        ({"status": []}, [("e.status", STATUS)]),
        ({"status": [200, "201"]}, [("e.status", STATUS)]),
        ({"status": None}, [("e.status", STATUS)]),
        ({"output_contains": ""}, [("e.output_contains", TEXT)]),
        ({"output_contains": 3}, [("e.output_contains", TEXT)]),
        ({"output_contains": "{{ inputs.word }}"}, [("e.output_contains", TEMPLATES)]),
        (
            {"output_matches": "(unclosed"},
            [
                (
                    "e.output_matches",
                    "invalid regular expression: missing ), unterminated subpattern at position 0",
                )
            ],
        ),
        ({"output_matches": ["a"]}, [("e.output_matches", TEXT)]),
        ({"json": "$.id"}, [("e.json", JSON_MAP)]),
        ({"json": {}}, [("e.json", JSON_MAP)]),
        ({"json": [{"$.id": 1}]}, [("e.json", JSON_MAP)]),
        (
            {"json": {"user.id": 1}},
            [('e.json["user.id"]', "invalid JSONPath: expected 'TOKEN_ROOT', found 'TOKEN_NAME'")],
        ),
        ({"json": {"$[": 1}}, [('e.json["$["]', "invalid JSONPath: unexpected end of query")]),
        (
            {"json": {"$.a | $.b": 1}},
            [('e.json["$.a | $.b"]', "invalid JSONPath: unexpected token '|'")],
        ),
        ({"json": {"$.id": "{{ inputs.id }}"}}, [('e.json["$.id"]', TEMPLATES)]),
        ({"json": {"$.id": {"a": ["{% x %}"]}}}, [('e.json["$.id"]', TEMPLATES)]),
        ({"latency_ms_below": 0}, [("e.latency_ms_below", LATENCY)]),
        ({"latency_ms_below": -5}, [("e.latency_ms_below", LATENCY)]),
        ({"latency_ms_below": True}, [("e.latency_ms_below", LATENCY)]),
        ({"latency_ms_below": "500"}, [("e.latency_ms_below", LATENCY)]),
        ({"latency_ms_below": float("inf")}, [("e.latency_ms_below", LATENCY)]),
    ],
)
def test_bad_values_are_named_by_path(raw: dict[str, Any], expected: list[Any]) -> None:
    assert problems(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"exit_code": 256}, [("e.exit_code", EXIT)]),
        ({"exit_code": -129}, [("e.exit_code", EXIT)]),
        ({"exit_code": [0, False]}, [("e.exit_code", EXIT)]),
        ({"exit_code": 1.0}, [("e.exit_code", EXIT)]),
    ],
)
def test_bad_exit_codes_are_named_by_path(raw: dict[str, Any], expected: list[Any]) -> None:
    assert problems(raw, "shell") == expected


def test_every_error_is_reported_at_once() -> None:
    assert problems({"status": 0, "exit_code": 0, "output_matches": "[", "json": {"x": 1}}) == [
        ("e.status", STATUS),
        ("e.exit_code", f"not available for kind http; {HTTP}"),
        (
            "e.output_matches",
            "invalid regular expression: unterminated character set at position 0",
        ),
        ('e.json["x"]', "invalid JSONPath: expected 'TOKEN_ROOT', found 'TOKEN_NAME'"),
    ]


# ---- in a definition -------------------------------------------------------------------------


def definition_errors(steps: list[dict[str, Any]]) -> list[tuple[str, str]]:
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition({"name": "d", "steps": steps}, STEP_KINDS)
    return [(error.path, error.message) for error in caught.value.errors]


def test_a_definition_carries_each_steps_expectations() -> None:
    definition = parse_definition(
        {
            "name": "d",
            "steps": [
                {"key": "a", "kind": "shell", "with": {"argv": ["true"]}},
                {
                    "key": "b",
                    "kind": "http",
                    "with": {"url": "http://127.0.0.1/"},
                    "expect": {"status": 503, "json": {"$.ok": True}},
                },
            ],
        },
        STEP_KINDS,
    )
    assert definition.step("a").expect is NO_EXPECTATIONS
    assert definition.step("b").expect == Expectations(
        status=(503,), json=(JsonExpectation("$.ok", True),)
    )


def test_a_definition_names_the_step_of_a_bad_expectation() -> None:
    assert definition_errors(
        [
            {"key": "a", "kind": "http", "with": {"url": "http://x.test/"}},
            {"key": "b", "kind": "shell", "with": {"argv": ["true"]}, "expect": {"status": 200}},
            {"key": "c", "kind": "sleep", "with": {"seconds": 1}, "expect": "fast"},
        ]
    ) == [
        ("steps[1].expect.status", f"not available for kind shell; {SHELL}"),
        ("steps[2].expect", "must be a mapping of assertions, got string"),
    ]


def test_an_unknown_kind_gets_one_error_not_one_per_assertion() -> None:
    errors = definition_errors([{"key": "a", "kind": "ftp", "expect": {"status": 200}}])
    assert [path for path, _ in errors] == ["steps[0].kind"]


def test_expect_inside_with_is_refused() -> None:
    errors = definition_errors(
        [{"key": "a", "kind": "http", "with": {"url": "http://x.test/", "expect": {"status": 200}}}]
    )
    assert [path for path, _ in errors] == ["steps[0].with.expect"]


# ---- assess ----------------------------------------------------------------------------------


def shell(code: int, stdout: str = "", error: str | None = None) -> StepResult:
    return StepResult(
        output={"exit_code": code, "stdout": stdout, "stderr": ""},
        exit_code=code,
        error=error,
        observed=Observed(exit_code=code, text=stdout),
    )


def http(status: int, text: str = "", latency_ms: float = 12.5) -> StepResult:
    return StepResult(
        output={"status": status},
        observed=Observed(status=status, latency_ms=latency_ms, text=text),
    )


def record(
    assertion: str, expected: Any, actual: Any, message: str | None = None, **path: str
) -> dict[str, Any]:
    return {
        "assertion": assertion,
        **path,
        "expected": expected,
        "actual": actual,
        "passed": message is None,
        "message": message,
    }


def test_a_shell_step_must_exit_with_0_by_default() -> None:
    passed, records = assess(NO_EXPECTATIONS, "shell", shell(0))
    assert (passed.error, records) == (None, [record("exit_code", 0, 0)])
    failed, records = assess(NO_EXPECTATIONS, "shell", shell(3))
    # No `expect:` asserted it: the error says what happened, not a path the file does not have.
    assert failed.error == "exited with code 3"
    assert records == [record("exit_code", 0, 3, "expected 0, got 3 (exited with code 3)")]
    assert failed.output == shell(3).output  # only the verdict changes
    killed, _ = assess(NO_EXPECTATIONS, "shell", shell(-9))
    assert killed.error == "killed by signal SIGKILL"


def test_expected_exit_codes_replace_the_default() -> None:
    grep = Expectations(exit_code=(0, 1))
    assert assess(grep, "shell", shell(1)) == (shell(1), [record("exit_code", [0, 1], 1)])
    failed, _ = assess(grep, "shell", shell(2))
    assert failed.error == "expect.exit_code: expected 0 or 1, got 2 (exited with code 2)"
    assert assess(Expectations(exit_code=(3,)), "shell", shell(3))[0].error is None


def test_an_http_step_must_answer_2xx_by_default() -> None:
    assert assess(NO_EXPECTATIONS, "http", http(204)) == (
        http(204),
        [record("status", "2xx", 204)],
    )
    failed, records = assess(NO_EXPECTATIONS, "http", http(503))
    assert failed.error == "answered status 503, not a 2xx status"
    assert records == [record("status", "2xx", 503, "expected a 2xx status, got 503")]


def test_expected_statuses_replace_the_default() -> None:
    assert assess(Expectations(status=(503,)), "http", http(503))[0].error is None
    failed, records = assess(Expectations(status=(200, 201)), "http", http(503))
    assert failed.error == "expect.status: expected 200 or 201, got 503"
    assert records == [record("status", [200, 201], 503, "expected 200 or 201, got 503")]
    failed, _ = assess(Expectations(status=(200,)), "http", http(201))
    assert failed.error == "expect.status: expected 200, got 201"


def test_latency_must_be_below_the_bound() -> None:
    fast = Expectations(latency_ms_below=500)
    assert assess(fast, "http", http(200, latency_ms=499.9))[1][1] == record(
        "latency_ms_below", 500, 499.9
    )
    failed, records = assess(fast, "http", http(200, latency_ms=500))
    assert failed.error == "expect.latency_ms_below: expected below 500 ms, took 500 ms"
    assert records[1]["passed"] is False


def test_output_contains_checks_stdout_or_the_body() -> None:
    wanted = Expectations(output_contains="ok")
    assert assess(wanted, "shell", shell(0, "all ok\n"))[1][1] == record(
        "output_contains", "ok", "all ok\n"
    )
    failed, _ = assess(wanted, "shell", shell(0, "all fine\n"))
    assert failed.error == 'expect.output_contains: "ok" not found in stdout'
    failed, _ = assess(wanted, "http", http(200, "nope"))
    assert failed.error == 'expect.output_contains: "ok" not found in the body'


def test_output_matches_searches_with_line_anchors() -> None:
    wanted = Expectations(output_matches=r"^id=\d+$")
    passed, records = assess(wanted, "shell", shell(0, "starting\nid=42\ndone\n"))
    assert passed.error is None
    assert records[1] == record("output_matches", r"^id=\d+$", "id=42")  # actual: what matched
    failed, records = assess(wanted, "shell", shell(0, "id=x\n"))
    assert failed.error == r'expect.output_matches: no match for "^id=\\d+$" in stdout'
    assert records[1]["actual"] == "id=x\n"


def test_a_long_text_is_kept_as_its_start_and_end() -> None:
    text = "a" * 150 + "b" * 150
    _, records = assess(Expectations(output_contains="zzz"), "shell", shell(0, text))
    assert records[1]["actual"] == "a" * 100 + "…" + "b" * 100


def test_json_paths_select_values_to_compare() -> None:
    body = json.dumps({"user": {"id": 42, "admin": True}, "items": [{"n": "x"}, {"n": "y"}]})
    wanted = Expectations(
        json=(
            JsonExpectation("$.user.id", 42),
            JsonExpectation("$.user.id", 42.0),  # one JSON number
            JsonExpectation("$.user", {"admin": True, "id": 42}),
            JsonExpectation("$.items[1].n", "y"),
            JsonExpectation("$.items[*].n", ["x", "y"]),  # not singular: the list of values
            JsonExpectation("$.items[?@.n == 'x']", [{"n": "x"}]),
        )
    )
    passed, records = assess(wanted, "http", http(200, body))
    assert passed.error is None
    assert [r["actual"] for r in records[1:]] == [
        42,
        42,
        {"id": 42, "admin": True},
        "y",
        ["x", "y"],
        [{"n": "x"}],
    ]
    assert records[1] == record("json", 42, 42, path="$.user.id")


@pytest.mark.parametrize(
    ("path", "expected", "actual", "message"),
    [
        ("$.user.id", 41, 42, "expected 41, got 42"),
        ("$.user.admin", 1, True, "expected 1, got true"),  # true is not 1 in JSON
        ("$.user.id", "42", 42, 'expected "42", got 42'),
        ("$.user.id", None, 42, "expected null, got 42"),
        ("$.user.name", None, None, "no value at $.user.name"),
        ("$.items[5]", "x", None, "no value at $.items[5]"),
        ("$.items[*]", [1], [1, 2], "expected [1], got [1, 2]"),
        ("$.missing[*]", [1], [], "expected [1], got []"),
        ("$.user", {"id": 42}, {"id": 42, "admin": True}, None),
    ],
)
def test_json_mismatches_say_what_was_found(
    path: str, expected: Any, actual: Any, message: str | None
) -> None:
    body = json.dumps({"user": {"id": 42, "admin": True}, "items": [1, 2]})
    failed, records = assess(
        Expectations(json=(JsonExpectation(path, expected),)), "http", http(200, body)
    )
    message = message or f"expected {json.dumps(expected)}, got {json.dumps(actual)}"
    assert records[1] == record("json", expected, actual, message, path=path)
    assert failed.error == f"expect.json[{path}]: {message}"


def test_json_of_text_that_is_not_json_fails_each_path() -> None:
    wanted = Expectations(json=(JsonExpectation("$.a", 1), JsonExpectation("$.b", 2)))
    failed, records = assess(wanted, "shell", shell(0, "not json\n"))
    assert failed.error == (
        "expect.json[$.a]: stdout is not JSON; expect.json[$.b]: stdout is not JSON"
    )
    assert records[1:] == [
        record("json", 1, None, "stdout is not JSON", path="$.a"),
        record("json", 2, None, "stdout is not JSON", path="$.b"),
    ]


def test_every_failure_is_in_the_error_in_order() -> None:
    wanted = Expectations(
        status=(200,), output_contains="ok", json=(JsonExpectation("$.a", 1),), latency_ms_below=1
    )
    failed, records = assess(wanted, "http", http(500, '{"a": 2}', latency_ms=3))
    assert failed.error == (
        "expect.status: expected 200, got 500; "
        "expect.latency_ms_below: expected below 1 ms, took 3 ms; "
        'expect.output_contains: "ok" not found in the body; '
        "expect.json[$.a]: expected 1, got 2"
    )
    assert [r["assertion"] for r in records] == [
        "status",
        "latency_ms_below",
        "output_contains",
        "json",
    ]


def test_a_step_that_did_not_complete_is_left_as_it_is() -> None:
    cannot_start = StepResult(error="cannot start: No such file or directory")
    assert assess(Expectations(exit_code=(0,)), "shell", cannot_start) == (cannot_start, [])
    slept = StepResult(output={"slept_seconds": 1})
    assert assess(NO_EXPECTATIONS, "sleep", slept) == (slept, [])


def test_an_error_the_kind_reported_is_kept() -> None:
    result, records = assess(NO_EXPECTATIONS, "shell", shell(3, error="the kind's own reason"))
    assert result.error == "the kind's own reason"
    assert records[0]["passed"] is False


def test_records_are_json_data() -> None:
    wanted = Expectations(
        output_matches="x", json=(JsonExpectation("$", {"a": [1, None]}),), latency_ms_below=9
    )
    _, records = assess(wanted, "http", http(404, '{"a": [1, null]}'))
    assert json.loads(json.dumps(records, allow_nan=False)) == records


@pytest.mark.parametrize(
    ("observed", "passed", "message"),
    [
        (
            Observed(text="", tokens=10, cost_usd=0.004),
            True,
            None,  # a passed assertion has no message
        ),
        (Observed(text="", tokens=10, cost_usd=0.02), False, "expected below $0.01, cost $0.02"),
        (
            Observed(text="", tokens=10, unpriced="1 of 1 usage report(s) could not be priced"),
            False,
            "expected below $0.01, but the cost is unknown: 1 of 1 usage report(s) could not be"
            " priced",
        ),
        (Observed(text=""), False, "expected below $0.01, but no usage was reported"),
    ],
)
def test_cost_below_says_the_cost_or_why_there_is_none(
    observed: Observed, passed: bool, message: str | None
) -> None:
    result, records = assess(
        Expectations(cost_usd_below=0.01), "llm", StepResult(observed=observed)
    )
    cost = [record for record in records if record["assertion"] == "cost_usd_below"]
    assert [(record["passed"], record["message"]) for record in cost] == [(passed, message)]
    assert (result.error is None) is passed


def test_tokens_below_counts_input_and_output() -> None:
    observed = Observed(text="", tokens=120)
    _, records = assess(Expectations(tokens_below=100), "agent", StepResult(observed=observed))
    assert [(r["passed"], r["message"]) for r in records if r["assertion"] == "tokens_below"] == [
        (False, "expected below 100 tokens, used 120")
    ]
