"""Client input limits and storable text: what is refused, with which path and message."""

from __future__ import annotations

import pytest

from runwire.errors import FieldError, InvalidDefinition
from runwire.runner.steps import STEP_KINDS
from runwire.scenarios.definition import parse_definition
from runwire.scenarios.limits import (
    InputLimits,
    json_size_errors,
    storable,
    storable_result,
    text_bytes,
    unstorable,
    unstorable_errors,
)
from runwire.scenarios.results import StepResult
from runwire.settings import Settings


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("plain", None),
        ("é ✓ 😀", None),  # a real pair is fine
        ("a\x00b", "must not contain a NUL character (\\u0000)"),
        ("a\ud800", "must not contain a lone surrogate (\\ud800): it is not Unicode text"),
        ("\udfff", "must not contain a lone surrogate (\\udfff): it is not Unicode text"),
    ],
)
def test_unstorable_names_the_character(text: str, problem: str | None) -> None:
    assert unstorable(text) == problem


def test_every_unstorable_string_and_key_is_named_in_order() -> None:
    value = {"a": ["ok", "x\x00"], "k\ud800": "fine", "b": {"c": "\udc00"}}
    assert unstorable_errors(value, "inputs") == [
        FieldError("inputs.a[1]", "must not contain a NUL character (\\u0000)"),
        FieldError(
            "inputs.k\\ud800",
            "the key must not contain a lone surrogate (\\ud800): it is not Unicode text",
        ),
        FieldError(
            "inputs.b.c", "must not contain a lone surrogate (\\udc00): it is not Unicode text"
        ),
    ]


def test_deep_values_are_walked_without_recursion() -> None:
    deep: object = "x\x00"
    for _ in range(50_000):
        deep = [deep]
    [error] = unstorable_errors(deep, "inputs")
    assert error.path.startswith("inputs[0][0]")
    assert json_size_errors(deep, "inputs", 10**9, 32) == [
        FieldError("inputs", "must be nested at most 32 levels deep")
    ]


def test_json_size_is_its_encoded_bytes() -> None:
    assert json_size_errors({"a": "é" * 10}, "inputs", 28, 5) == []  # {"a":"…"} = 8 + 20
    assert json_size_errors({"a": "é" * 10}, "inputs", 27, 5) == [
        FieldError("inputs", "must be at most 27 bytes of JSON (got 28)")
    ]
    assert text_bytes("é\ud800") == 5


def test_step_texts_are_repaired_not_refused() -> None:
    assert storable("a\x00b\ud800c\ufffd") == "a\ufffdb\ufffdc\ufffd"
    clean = StepResult(error="fine")
    assert storable_result(clean) is clean
    assert storable_result(StepResult(error='got "\ud800"')).error == 'got "\ufffd"'


def test_step_limit_is_checked_before_each_step() -> None:
    steps = "\n".join(f"  - {{key: s{i}, kind: nope}}" for i in range(4))
    with pytest.raises(InvalidDefinition) as refused:
        parse_definition(f"name: x\nsteps:\n{steps}\n", STEP_KINDS, max_steps=3)
    # Only the limit: the unknown kinds were never looked at.
    assert refused.value.errors == (FieldError("steps", "must be at most 3 steps (got 4)"),)


def test_escapes_in_a_definition_are_named_where_they_are() -> None:
    text = 'name: x\ndescription: "\\0"\nsteps: [{key: a, kind: shell, with: {argv: ["\\ud800"]}}]'
    with pytest.raises(InvalidDefinition) as refused:
        parse_definition(text, STEP_KINDS)
    assert [e.path for e in refused.value.errors] == ["description", "steps[0].with.argv[0]"]


def test_limits_are_settings() -> None:
    settings = Settings.from_env(
        {
            "RUNWIRE_MAX_DEFINITION_BYTES": "1000",
            "RUNWIRE_MAX_DEFINITION_STEPS": "5",
            "RUNWIRE_MAX_LABELS": "2",
            "RUNWIRE_MAX_INPUTS_BYTES": "300",
            "RUNWIRE_MAX_INPUTS_DEPTH": "4",
            "RUNWIRE_MAX_REASON_CHARS": "10",
        }
    )
    assert InputLimits.of(settings) == InputLimits(1000, 5, 2, 300, 4, 10)
    assert InputLimits.of(Settings()) == InputLimits()
