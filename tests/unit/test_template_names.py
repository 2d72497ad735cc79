"""Template names checked when a definition is parsed: inputs declared, steps upstream."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.test_definition import errors_of, minimal, parse

from runwire.errors import InvalidDefinition
from runwire.scenarios.templating import TemplateScope, check_names

INPUTS = {"name": {"type": "string"}, "count": {"type": "integer", "default": 1}}


def shell(key: str, *argv: str, **fields: Any) -> dict[str, Any]:
    return {"key": key, "kind": "shell", "with": {"argv": ["echo", *argv]}} | fields


def test_a_misspelt_input_is_named_with_its_field_and_the_declared_ones() -> None:
    definition = minimal(
        inputs=INPUTS, steps=[shell("a", "ok"), shell("b", "hi", "{{ inputs.nme }}")]
    )

    assert errors_of(definition) == {
        "steps[1].with.argv[2]": "unknown input 'nme' (inputs: name, count)"
    }


def test_an_input_read_by_subscript_or_in_a_block_is_checked_too() -> None:
    definition = minimal(
        inputs=INPUTS,
        steps=[
            shell("a", "{{ inputs['cont'] }}"),
            shell("b", "{% if inputs.verbose %}-v{% endif %}"),
        ],
    )

    assert errors_of(definition) == {
        "steps[0].with.argv[1]": "unknown input 'cont' (inputs: name, count)",
        "steps[1].with.argv[1]": "unknown input 'verbose' (inputs: name, count)",
    }


def test_a_definition_without_inputs_says_it_declares_none() -> None:
    assert errors_of(minimal(steps=[shell("a", "{{ inputs.name }}")])) == {
        "steps[0].with.argv[1]": "unknown input 'name' (none declared)"
    }


def test_names_templates_may_read_pass() -> None:
    definition = parse(
        minimal(
            inputs=INPUTS,
            steps=[
                shell("build", "{{ inputs.name }}", "{{ inputs['count'] + 1 }}"),
                shell(
                    "test",
                    "{{ steps.build.output.stdout | trim }}",
                    "{{ steps['build'].exit_code }} {{ steps.build.status }}",
                    # Set by the template, the mapping's own methods, computed keys: all allowed.
                    "{% set n = inputs.count %}{{ n }} {{ range(2) | list }}",
                    "{% for k, v in inputs.items() %}{{ k }}={{ loop.index }}{% endfor %}",
                    "{{ inputs[inputs.name] if inputs.name in inputs else '' }}",
                ),
            ],
        )
    )

    assert [step.key for step in definition.steps] == ["build", "test"]


def test_a_step_reads_only_steps_it_needs_directly_or_through_others() -> None:
    steps = [
        {"key": "top", "kind": "sleep"},
        {"key": "left", "kind": "sleep", "needs": ["top"]},
        {"key": "right", "kind": "sleep", "needs": ["top"]},
        shell("bottom", "{{ steps.top.output }}", needs=["left"]),
        shell("side", "{{ steps.right.output }}", needs=["left"]),
    ]

    assert errors_of(minimal(steps=steps)) == {
        "steps[4].with.argv[1]": "step 'right' has not finished when this step runs: add it"
        " to this step's needs (it may read: top, left)"
    }


def test_a_misspelt_step_and_field_are_named_with_the_known_ones() -> None:
    steps = [
        shell("build", "x"),
        shell("test", "{{ steps.biuld.output }}", "{{ steps.build.outptu }}"),
    ]

    assert errors_of(minimal(steps=steps)) == {
        "steps[1].with.argv[1]": "unknown step 'biuld' (steps: build, test)",
        "steps[1].with.argv[2]": "unknown field 'outptu' of step 'build' (fields: output,"
        " exit_code, status)",
    }


def test_a_step_cannot_read_its_own_output() -> None:
    errors = errors_of(minimal(steps=[shell("a", "{{ steps.a.output }}")]))

    assert errors == {
        "steps[0].with.argv[1]": "step 'a' has not finished when this step runs: add it to this"
        " step's needs (it reads none)"
    }


def test_other_names_and_secrets_are_refused_with_what_templates_read() -> None:
    errors = errors_of(
        minimal(
            steps=[
                shell("a", "{{ input.name }}", "{{ secrets.TOKEN }}"),
            ]
        )
    )

    assert errors == {
        "steps[0].with.argv[1]": "unknown name 'input' (templates here read: inputs, steps)",
        "steps[0].with.argv[2]": "unknown name 'secrets': templates cannot read secrets; a"
        " step's listed secrets reach it as environment variables",
    }


def test_a_concurrency_key_reads_inputs_only() -> None:
    definition = minimal(
        inputs=INPUTS,
        concurrency={"key": "{{ inputs.nam }}-{{ steps.a.output }}", "limit": 1},
    )

    with pytest.raises(InvalidDefinition) as caught:
        parse(definition)
    # Both problems of the one field are reported, each naming it.
    assert [(error.path, error.message) for error in caught.value.errors] == [
        ("concurrency.key", "unknown name 'steps' (templates here read: inputs)"),
        ("concurrency.key", "unknown input 'nam' (inputs: name, count)"),
    ]


def test_a_syntax_error_is_reported_once_not_as_a_name_too() -> None:
    assert errors_of(minimal(steps=[shell("a", "{{ inputs.nme ")])) == {
        "steps[0].with.argv[1]": "template syntax error: unexpected end of template, expected"
        " 'end of print statement'. (line 1)"
    }


@pytest.mark.parametrize(
    ("source", "problems"),
    [
        ("{{ inputs.name }}", []),
        ("{{ inputs.x }}", ["unknown input 'x' (inputs: name)"]),
        ("{{ steps.a.output }}", ["unknown name 'steps' (templates here read: inputs)"]),
        ("plain text", []),
    ],
)
def test_check_names_on_its_own(source: str, problems: list[str]) -> None:
    found = check_names({"v": source}, "f", TemplateScope(("name",)))

    assert [error.message for error in found] == problems
    assert all(error.path == "f.v" for error in found)


def test_in_a_long_sequence_the_last_step_reads_the_first() -> None:
    steps = [shell(f"s{i}", f"{{{{ steps.s{i - 1}.output }}}}") for i in range(1, 1000)]
    definition = parse(
        minimal(steps=[shell("s0", "first"), *steps, shell("end", "{{ steps.s0 }}")])
    )

    assert len(definition.steps) == 1001


def test_a_cycle_is_reported_as_one_and_names_still_checked() -> None:
    steps = [
        shell("a", "{{ steps.b.output }}", needs=["b"]),
        shell("b", "{{ steps.a.output }} {{ steps.c.output }}", needs=["a"]),
    ]

    assert errors_of(minimal(steps=steps)) == {
        "steps[0].needs": "cycle: a needs b needs a",
        "steps[1].with.argv[1]": "unknown step 'c' (steps: a, b)",
    }
