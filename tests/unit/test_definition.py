"""Parsing and validating definitions, and binding inputs to their signature."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runwire.errors import FieldError, InvalidDefinition, InvalidInputs, NotFound
from runwire.scenarios.definition import (
    ConcurrencyLimit,
    Definition,
    InputType,
    OnFailure,
    OnRunnerLost,
    ParamsParser,
    RetryPolicy,
    bind_inputs,
    parse_definition,
)


class ArgvParserForTests:
    """Test helper: a `shell`-like kind that needs `argv`, a list of strings."""

    def parse(self, params: Any, path: str) -> object:
        argv = params.get("argv")
        if not isinstance(argv, list) or not all(isinstance(arg, str) for arg in argv):
            raise InvalidDefinition([FieldError(f"{path}.argv", "must be a list of strings")])
        return argv

    def idempotent(self, params: Any) -> bool:
        return False


class AnyParamsForTests:
    """Test helper: a kind that accepts any `with` mapping, and runs twice harmlessly."""

    def parse(self, params: Any, path: str) -> object:
        return params

    def idempotent(self, params: Any) -> bool:
        return True


KINDS: dict[str, ParamsParser] = {"shell": ArgvParserForTests(), "sleep": AnyParamsForTests()}

VALID_YAML = """
name: deploy.v2
description: Ship it.
timeout: 600
inputs:
  target:
    type: string
    enum: [staging, production]
    description: Where to.
  count:
    type: integer
    default: 3
  dry_run:
    type: boolean
    required: false
steps:
  - key: build
    kind: shell
    timeout: 30.5
    with:
      argv: ["make", "{{ inputs.target }}"]
  - key: wait-a-bit
    kind: sleep
    with: {seconds: 1}
  - key: bare
    kind: sleep
"""


def parse(text_or_mapping: str | dict[str, Any]) -> Definition:
    return parse_definition(text_or_mapping, KINDS)


def errors_of(text_or_mapping: str | dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidDefinition) as caught:
        parse(text_or_mapping)
    return {error.path: error.message for error in caught.value.errors}


def minimal(**fields: Any) -> dict[str, Any]:
    """A valid definition with `fields` replacing or adding top-level fields."""
    definition = {"name": "x", "steps": [{"key": "a", "kind": "shell", "with": {"argv": ["true"]}}]}
    return definition | fields


def with_step(**fields: Any) -> dict[str, Any]:
    return minimal(steps=[{"key": "a", "kind": "sleep"} | fields])


def with_input(**spec: Any) -> dict[str, Any]:
    return minimal(inputs={"value": spec})


def test_a_valid_yaml_definition_parses_to_specs() -> None:
    definition = parse(VALID_YAML)

    assert (definition.name, definition.description, definition.timeout) == (
        "deploy.v2",
        "Ship it.",
        600.0,
    )
    target, count, dry_run = definition.inputs
    assert target.type is InputType.STRING
    assert (target.required, target.default, target.enum) == (True, None, ("staging", "production"))
    assert target.description == "Where to."
    assert (count.type, count.required, count.default) == (InputType.INTEGER, False, 3)
    assert (dry_run.required, dry_run.default) == (False, None)
    build, wait, bare = definition.steps
    assert (build.key, build.kind, build.timeout, build.position) == ("build", "shell", 30.5, 0)
    assert build.with_ == {"argv": ["make", "{{ inputs.target }}"]}
    assert (wait.with_, wait.timeout, wait.position) == ({"seconds": 1}, None, 1)
    assert bare.with_ == {}
    assert definition.step("wait-a-bit") is wait


def test_the_source_is_json_data_that_parses_back_to_the_same_definition() -> None:
    definition = parse(VALID_YAML)

    again = parse(json.loads(json.dumps(definition.source)))

    assert again == definition


def test_a_json_definition_parses_even_when_indented_with_tabs() -> None:
    text = json.dumps(minimal(description="tabbed"), indent="\t")

    assert parse(text).description == "tabbed"


def test_a_mapping_definition_parses_and_defaults_the_optional_fields() -> None:
    definition = parse(minimal())

    assert (definition.description, definition.inputs, definition.timeout) == ("", (), None)


def test_looking_up_a_missing_step_is_not_found() -> None:
    with pytest.raises(NotFound, match='no step "nope"'):
        parse(minimal()).step("nope")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nsteps: [1, 2", "invalid YAML: expected ',' or ']', but got '<stream end>'"),
        ('{"name": "x",\n  "steps": [}', "invalid JSON: Expecting value (line 2, column 13)"),
        ("name: x\nname: y\n", 'invalid YAML: duplicate key "name" (line 2, column 1)'),
        ('{"name": "x", "name": "y"}', 'invalid JSON: duplicate key "name"'),
        ("- a\n- b\n", "a definition must be a mapping, got array"),
        ("", "a definition must be a mapping, got null"),
    ],
)
def test_text_that_is_not_a_mapping_is_one_error_at_the_top(text: str, message: str) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        parse(text)

    [error] = caught.value.errors
    assert error.path == ""
    assert error.message.startswith(message)


def test_a_yaml_syntax_error_names_the_line_and_column() -> None:
    with pytest.raises(InvalidDefinition) as caught:
        parse("name: x\nsteps:\n  - key: a\n\tkind: sleep\n")

    assert caught.value.errors == (
        FieldError(
            "", "invalid YAML: found character '\\t' that cannot start any token (line 4, column 1)"
        ),
    )


def test_yaml_keeps_country_codes_and_dates_as_strings() -> None:
    definition = parse("""
name: x
inputs:
  country: {type: string, enum: [GB, NO, on], default: NO}
  day: {type: string, default: 2024-01-01}
steps: [{key: a, kind: sleep, with: {flag: yes, real: true}}]
""")

    country, day = definition.inputs
    assert (country.enum, country.default, day.default) == (("GB", "NO", "on"), "NO", "2024-01-01")
    assert definition.steps[0].with_ == {"flag": "yes", "real": True}


def test_yaml_aliases_are_copied_into_a_tree() -> None:
    definition = parse("""
name: x
steps:
  - {key: a, kind: sleep, with: &shared {env: {A: "1"}}}
  - {key: b, kind: sleep, with: *shared}
""")

    first, second = definition.steps
    assert first.with_ == second.with_
    assert first.with_ is not second.with_


def test_a_yaml_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = "\n".join(
        ["name: x", "steps: [{key: a, kind: sleep}]", "bomb:", *("  " + line for line in lines)]
    )

    with pytest.raises(InvalidDefinition, match="more than 100000 values"):
        parse(text)


@pytest.mark.parametrize(
    ("definition", "path", "message"),
    [
        (minimal(name=None), "name", "required"),
        (minimal(name=""), "name", "must be 1-100 letters"),
        (minimal(name="-x"), "name", "must be 1-100 letters"),
        (minimal(name="x" * 101), "name", "must be 1-100 letters"),
        (minimal(name="a b"), "name", "must be 1-100 letters"),
        (minimal(name="x\n"), "name", "must be 1-100 letters"),
        (minimal(name=7), "name", "must be 1-100 letters"),
        (minimal(description=["no"]), "description", "must be a string, got array"),
        (minimal(timeout=0), "timeout", "must be more than 0"),
        (minimal(timeout=-1.5), "timeout", "must be more than 0"),
        (minimal(timeout=10**400), "timeout", "must be more than 0 and at most 1000000000 seconds"),
        (minimal(timeout=True), "timeout", "must be a positive number of seconds, got boolean"),
        (minimal(timeout="10s"), "timeout", "must be a positive number of seconds, got string"),
        (minimal(timeout=float("nan")), "timeout", "must be a finite number"),
        (
            minimal(wiht=1),
            "wiht",
            "unknown field; expected one of budget, concurrency, description, inputs, name,"
            " parallelism, steps, timeout",
        ),
        (minimal(steps=None), "steps", "required"),
        (minimal(steps=[]), "steps", "must be a non-empty list of steps, got array"),
        (minimal(steps={"a": {}}), "steps", "must be a non-empty list of steps, got object"),
        (minimal(inputs=["a"]), "inputs", "must be a mapping of input name to spec, got array"),
    ],
)
def test_each_invalid_top_level_field_is_reported_at_its_path(
    definition: dict[str, Any], path: str, message: str
) -> None:
    assert errors_of(definition)[path].startswith(message)


def test_non_string_keys_are_reported_at_their_path() -> None:
    assert errors_of("name: x\nsteps: [{key: a, kind: sleep, with: {1: x}}]")[
        "steps[0].with.1"
    ] == ("keys must be strings")


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ({}, "inputs.value.type", "required; expected one of string, integer, number"),
        ({"type": "str"}, "inputs.value.type", 'unknown type "str"; expected one of string, '),
        ({"type": ["string"]}, "inputs.value.type", 'unknown type ["string"]'),
        ({"type": "string", "colour": 1}, "inputs.value.colour", "unknown field; expected one of"),
        (
            {"type": "integer", "default": 3.0},
            "inputs.value.default",
            "expected integer, got number",
        ),
        (
            {"type": "integer", "default": True},
            "inputs.value.default",
            "expected integer, got boolean",
        ),
        (
            {"type": "number", "default": False},
            "inputs.value.default",
            "expected number, got boolean",
        ),
        (
            {"type": "boolean", "default": 1},
            "inputs.value.default",
            "expected boolean, got integer",
        ),
        ({"type": "object", "default": []}, "inputs.value.default", "expected object, got array"),
        ({"type": "array", "default": {}}, "inputs.value.default", "expected array, got object"),
        (
            {"type": "string", "enum": ["a", "b"], "default": "c"},
            "inputs.value.default",
            '"c" is not one of "a", "b"',
        ),
        ({"type": "string", "enum": []}, "inputs.value.enum", "must be a non-empty list of string"),
        (
            {"type": "string", "enum": "a"},
            "inputs.value.enum",
            "must be a non-empty list of string",
        ),
        (
            {"type": "string", "enum": ["a", 2]},
            "inputs.value.enum[1]",
            "expected string, got integer",
        ),
        ({"type": "string", "required": "yes"}, "inputs.value.required", "must be true or false"),
        (
            {"type": "string", "required": True, "default": "a"},
            "inputs.value.required",
            "a required input cannot have a default",
        ),
        ({"type": "string", "description": 1}, "inputs.value.description", "must be a string"),
    ],
)
def test_each_invalid_input_spec_is_reported_at_its_path(
    spec: dict[str, Any], path: str, message: str
) -> None:
    assert errors_of(with_input(**spec))[path].startswith(message)


@pytest.mark.parametrize("name", ["1st", "has-dash", "has space", ""])
def test_input_names_must_be_identifiers(name: str) -> None:
    errors = errors_of(minimal(inputs={name: {"type": "string"}}))

    assert errors[f"inputs.{name}"].startswith("an input name must be letters, digits and '_'")


def test_an_input_spec_must_be_a_mapping() -> None:
    errors = errors_of(minimal(inputs={"value": "string"}))

    assert errors == {"inputs.value": "must be a mapping with a type, got string"}


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"key": None}, "steps[0].key", "required"),
        ({"key": "1st"}, "steps[0].key", "a step key must be letters, digits, '_' and '-'"),
        ({"key": "-x"}, "steps[0].key", "a step key must be letters"),
        ({"key": 5}, "steps[0].key", "a step key must be letters"),
        ({"kind": None}, "steps[0].kind", "required"),
        ({"kind": "shel"}, "steps[0].kind", 'unknown kind "shel"; expected one of shell, sleep'),
        ({"kind": 3}, "steps[0].kind", "unknown kind 3; expected one of shell, sleep"),
        ({"with": ["seconds", 1]}, "steps[0].with", "must be a mapping, got array"),
        ({"timeout": 0}, "steps[0].timeout", "must be more than 0"),
        (
            {"timeout": False},
            "steps[0].timeout",
            "must be a positive number of seconds, got boolean",
        ),
        (
            {"wiht": {}},
            "steps[0].wiht",
            "unknown field; expected one of budget, continue_on_failure, expect, key",
        ),
        ({"needs": ["b"]}, "steps[0].needs[0]", 'unknown step "b"'),
        ({"needs": "b"}, "steps[0].needs", "must be a list of step keys, got string"),
        ({"needs": ["a"]}, "steps[0].needs[0]", "a step cannot need itself"),
        ({"retries": -1}, "steps[0].retries.max", "must be a whole number from 0 to 100"),
        ({"retries": {"max": 2, "delay": -1}}, "steps[0].retries.delay", "must be a number of"),
        (
            {"retries": {"max": 2, "backoff": 0.5}},
            "steps[0].retries.backoff",
            "must be a number from 1",
        ),
        ({"retries": {"delay": 1}}, "steps[0].retries.max", "required"),
        ({"retries": {"max": 1, "jitter": 1}}, "steps[0].retries.jitter", "unknown field"),
        ({"retries": "3"}, "steps[0].retries", "must be a mapping with max, delay, backoff"),
        ({"continue_on_failure": "yes"}, "steps[0].continue_on_failure", "must be true or false"),
        (
            {"on_failure": "retry"},
            "steps[0].on_failure",
            'expected one of fail, pause, got "retry"',
        ),
        (
            {"on_failure": "pause", "continue_on_failure": True},
            "steps[0].on_failure",
            "cannot pause when continue_on_failure is true",
        ),
        (
            {"with": {"argv": ["echo", "{{ inputs.x "]}},
            "steps[0].with.argv[1]",
            "template syntax error: unexpected end of template",
        ),
        (
            {"kind": "shell", "with": {"argv": "ls"}},
            "steps[0].with.argv",
            "must be a list of strings",
        ),
        ({"kind": "shell", "with": None}, "steps[0].with.argv", "must be a list of strings"),
    ],
)
def test_each_invalid_step_field_is_reported_at_its_path(
    fields: dict[str, Any], path: str, message: str
) -> None:
    assert errors_of(with_step(**fields))[path].startswith(message)


def test_a_step_that_is_not_a_mapping_is_reported_at_its_index() -> None:
    errors = errors_of(minimal(steps=[{"key": "a", "kind": "sleep"}, "echo hi"]))

    assert errors == {"steps[1]": "must be a mapping, got string"}


def test_a_duplicate_step_key_names_the_first_step_that_used_it() -> None:
    step = {"key": "same", "kind": "sleep"}

    errors = errors_of(minimal(steps=[step, {"key": "other", "kind": "sleep"}, step]))

    assert errors == {"steps[2].key": 'duplicate key "same"; first used by steps[0]'}


def test_every_error_is_collected_at_once() -> None:
    text = """
name: ""
colour: blue
timeout: -1
inputs:
  phone: {type: phone}
steps:
  - {key: a, kind: shel}
  - {key: a, kind: shell, wiht: {}, with: {argv: oops}}
  - {key: c, kind: shell, with: {argv: ["{{ x"]}}
"""

    errors = errors_of(text)

    assert sorted(errors) == [
        "colour",
        "inputs.phone.type",
        "name",
        "steps[0].kind",
        "steps[1].key",
        "steps[1].wiht",
        "steps[1].with.argv",
        "steps[2].with.argv[0]",
        "timeout",
    ]


def test_the_error_message_lists_every_error() -> None:
    with pytest.raises(InvalidDefinition) as caught:
        parse(minimal(name="", timeout=0))

    assert str(caught.value).startswith("name: must be 1-100 letters")
    assert "; timeout: must be more than 0" in str(caught.value)


def test_a_template_in_a_field_the_kind_checks_is_parsed_unrendered() -> None:
    # Kinds see the raw `with`, so a template string is checked as a string.
    step = with_step(kind="shell", **{"with": {"argv": ["echo", "{{ inputs.x }}"]}})
    definition = parse(step | {"inputs": {"x": {"type": "string"}}})

    assert definition.steps[0].with_ == {"argv": ["echo", "{{ inputs.x }}"]}


SIGNATURE = parse_definition(
    minimal(
        inputs={
            "name": {"type": "string"},
            "count": {"type": "integer", "default": 3},
            "ratio": {"type": "number", "required": False},
            "verbose": {"type": "boolean", "default": False},
            "env": {"type": "object", "required": False},
            "tags": {"type": "array", "required": False},
            "region": {"type": "string", "enum": ["eu", "us"], "default": "eu"},
        }
    ),
    KINDS,
)


def test_binding_applies_defaults_and_binds_optional_inputs_to_none() -> None:
    assert bind_inputs(SIGNATURE, {"name": "ada"}) == {
        "name": "ada",
        "count": 3,
        "ratio": None,
        "verbose": False,
        "env": None,
        "tags": None,
        "region": "eu",
    }


def test_binding_keeps_given_values() -> None:
    given = {
        "name": "ada",
        "count": 0,
        "ratio": 2,
        "verbose": True,
        "env": {"A": "1"},
        "tags": ["x"],
        "region": "us",
    }

    assert bind_inputs(SIGNATURE, given) == given


def test_a_null_input_counts_as_not_given() -> None:
    assert bind_inputs(SIGNATURE, {"name": "ada", "count": None})["count"] == 3
    with pytest.raises(InvalidInputs, match=r"^inputs\.name: required$"):
        bind_inputs(SIGNATURE, {"name": None})


def test_binding_without_inputs_to_a_scenario_without_inputs_is_empty() -> None:
    assert bind_inputs(parse(minimal()), None) == {}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("name", 5, "expected string, got integer"),
        ("count", True, "expected integer, got boolean"),
        ("count", 3.0, "expected integer, got number"),
        ("count", "3", "expected integer, got string"),
        ("ratio", False, "expected number, got boolean"),
        ("verbose", 1, "expected boolean, got integer"),
        ("verbose", "true", "expected boolean, got string"),
        ("env", ["A"], "expected object, got array"),
        ("tags", "x", "expected array, got string"),
        ("region", "mars", '"mars" is not one of "eu", "us"'),
    ],
)
def test_a_wrong_input_value_is_reported_at_its_path(name: str, value: Any, message: str) -> None:
    with pytest.raises(InvalidInputs) as caught:
        bind_inputs(SIGNATURE, {"name": "ada"} | {name: value})

    assert caught.value.errors == (FieldError(f"inputs.{name}", message),)


def test_every_input_error_is_collected_at_once() -> None:
    with pytest.raises(InvalidInputs) as caught:
        bind_inputs(SIGNATURE, {"count": "many", "colour": "blue"})

    assert caught.value.errors == (
        FieldError("inputs.name", "required"),
        FieldError("inputs.count", "expected integer, got string"),
        FieldError(
            "inputs.colour",
            "unknown input; expected one of name, count, ratio, verbose, env, tags, region",
        ),
    )


def test_an_input_to_a_scenario_without_inputs_is_unknown() -> None:
    with pytest.raises(
        InvalidInputs, match=r"inputs\.x: unknown input; this scenario takes no inputs"
    ):
        bind_inputs(parse(minimal()), {"x": 1})


def test_step_keys_longer_than_the_stored_column_are_rejected() -> None:
    source = {"name": "x", "steps": [{"key": "k" * 101, "kind": "sleep"}]}
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(source, KINDS)
    assert [error.path for error in caught.value.errors] == ["steps[0].key"]
    assert "at most 100 characters" in caught.value.errors[0].message


def sleeps(*steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return minimal(steps=[{"kind": "sleep"} | step for step in steps], **fields)


def test_a_step_without_needs_depends_on_the_step_before_it() -> None:
    definition = parse(sleeps({"key": "a"}, {"key": "b"}, {"key": "c", "needs": []}))

    assert [step.needs for step in definition.steps] == [(), ("a",), ()]


def test_a_diamond_of_needs_is_valid() -> None:
    definition = parse(
        sleeps(
            {"key": "top"},
            {"key": "left", "needs": ["top"]},
            {"key": "right", "needs": ["top"]},
            {"key": "bottom", "needs": ["left", "right"]},
        )
    )

    assert definition.step("bottom").needs == ("left", "right")


def test_a_cycle_is_reported_with_its_keys() -> None:
    errors = errors_of(
        sleeps({"key": "a", "needs": ["c"]}, {"key": "b", "needs": ["a"]}, {"key": "c"})
    )

    assert errors == {"steps[0].needs": "cycle: a needs c needs b needs a"}


def test_step_policies_parse_with_defaults() -> None:
    definition = parse(
        sleeps(
            {"key": "a", "retries": 3, "continue_on_failure": True},
            {"key": "b", "retries": {"max": 2, "delay": 0.5, "backoff": 3}, "on_failure": "pause"},
        )
    )

    first, second = definition.steps
    assert first.retries == RetryPolicy(max=3, delay=1.0, backoff=2.0)
    assert first.continue_on_failure
    assert first.on_failure is OnFailure.FAIL
    assert second.on_failure is OnFailure.PAUSE
    assert second.retries is not None
    assert [second.retries.delay_before(n) for n in (2, 3, 4)] == [0.5, 1.5, 4.5]


def test_retry_delays_are_capped_by_max_delay() -> None:
    policy = RetryPolicy(max=10, delay=1, backoff=10, max_delay=30)

    assert [policy.delay_before(n) for n in (2, 3, 4)] == [1, 10, 30]


def test_concurrency_and_parallelism_parse() -> None:
    definition = parse(
        minimal(concurrency={"key": "{{ inputs.phone }}"}, parallelism=2)
        | {"inputs": {"phone": {"type": "string"}}}
    )

    assert definition.concurrency == ConcurrencyLimit("{{ inputs.phone }}", 1)
    assert definition.parallelism == 2


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"concurrency": "phone"}, "concurrency", "must be a mapping with key and limit"),
        ({"concurrency": {"limit": 2}}, "concurrency.key", "required"),
        (
            {"concurrency": {"key": "x", "limit": 0}},
            "concurrency.limit",
            "must be a whole number from 1",
        ),
        ({"concurrency": {"key": "{{ x"}}, "concurrency.key", "template syntax error"),
        ({"parallelism": 0}, "parallelism", "must be a whole number from 1 to 64"),
    ],
)
def test_bad_concurrency_and_parallelism_are_named(
    fields: dict[str, Any], path: str, message: str
) -> None:
    assert message in errors_of(minimal(**fields))[path]


def test_on_runner_lost_defaults_by_kind_and_can_be_written() -> None:
    definition = parse_definition(
        "name: lost\nsteps:\n"
        "  - {key: cmd, kind: shell, with: {argv: [a]}}\n"
        "  - {key: nap, kind: sleep}\n"
        "  - {key: again, kind: shell, on_runner_lost: retry, with: {argv: [a]}}\n"
        "  - {key: never, kind: sleep, on_runner_lost: fail}\n",
        KINDS,
    )
    policies = {step.key: step.on_runner_lost for step in definition.steps}
    # A command may have done its work: it fails unless it says it may run again.
    assert policies == {
        "cmd": OnRunnerLost.FAIL,
        "nap": OnRunnerLost.RETRY,
        "again": OnRunnerLost.RETRY,
        "never": OnRunnerLost.FAIL,
    }


def test_a_bad_on_runner_lost_names_the_field() -> None:
    with pytest.raises(InvalidDefinition) as raised:
        parse_definition("name: x\nsteps: [{key: a, kind: sleep, on_runner_lost: maybe}]", KINDS)
    assert raised.value.errors == (
        FieldError("steps[0].on_runner_lost", 'expected one of retry, fail, got "maybe"'),
    )
