"""A review step's `with` mapping: what it accepts, how a submission is checked against it, and
that the stored request reads back as the same review."""

from __future__ import annotations

import pytest

from runwire.errors import FieldError, Invalid, InvalidDefinition
from runwire.scenarios.reviews import COMMENT_CHARS, parse_review

FULL = {
    "title": "Judge {{ inputs.who }}",
    "instructions": "Listen first.",
    "show": ["call"],
    "decisions": ["pass", "fail", "unsure"],
    "fail_on": ["fail"],
    "form": {
        "score": {"type": "integer", "enum": [1, 2, 3]},
        "notes": {"type": "string", "required": False, "default": "none"},
    },
    "on_timeout": "unsure",
}


def test_defaults_are_approve_and_reject_and_a_timeout_fails() -> None:
    spec = parse_review({"title": "Go?"}, "steps[0].with")
    assert (spec.decisions, spec.fail_on, spec.on_timeout) == (
        ("approve", "reject"),
        ("reject",),
        "fail",
    )
    assert spec.fails("reject")
    assert not spec.fails("approve")
    assert spec.form == ()


def test_the_stored_request_parses_back_to_the_same_review() -> None:
    spec = parse_review(FULL, "steps[0].with")
    assert parse_review(spec.request(), "review") == spec


def test_without_reject_nothing_fails_unless_named() -> None:
    spec = parse_review({"title": "Code?", "decisions": ["entered"]}, "w")
    assert spec.fail_on == ()


def test_a_submission_is_checked_field_by_field() -> None:
    spec = parse_review(FULL, "w")
    assert spec.answer("pass", {"score": 2}, None) == {"score": 2, "notes": "none"}
    with pytest.raises(Invalid) as refused:
        spec.answer("maybe", {"score": 7, "extra": True}, "x" * (COMMENT_CHARS + 1))
    assert {error.path for error in refused.value.errors} == {
        "decision",
        "values.score",
        "values.extra",
        "comment",
    }


def test_a_timeout_decision_takes_the_form_defaults() -> None:
    assert parse_review(FULL, "w").defaults() == {"score": None, "notes": "none"}


@pytest.mark.parametrize(
    ("field", "value", "path", "message"),
    [
        ("title", "", "w.title", "required: what reviewers are asked to judge"),
        ("decisions", [], "w.decisions", "list at least one decision"),
        ("decisions", ["ok", "ok"], "w.decisions", "lists a name twice"),
        ("fail_on", ["nope"], "w.fail_on[0]", "'nope' is not one of the decisions"),
        (
            "form",
            {"decision": {"type": "string"}},
            "w.form.decision",
            "reserved: the output's decision",
        ),
        ("on_timeout", "later", "w.on_timeout", "expected one of fail, skip, pass, fail, unsure"),
        ("decisions", "{{ inputs.d }}", "w.decisions", "cannot be a template"),
        ("colour", "red", "w.colour", None),
    ],
)
def test_a_bad_field_is_named(field: str, value: object, path: str, message: str | None) -> None:
    with pytest.raises(InvalidDefinition) as refused:
        parse_review({**FULL, field: value}, "w")
    errors: dict[str, list[str]] = {}
    for error in refused.value.errors:
        errors.setdefault(error.path, []).append(error.message)
    assert path in errors, errors
    if message is not None:
        assert message in errors[path]


def test_field_errors_are_field_errors() -> None:
    with pytest.raises(InvalidDefinition) as refused:
        parse_review("not a mapping", "w")
    assert refused.value.errors == (FieldError("w", "expected a mapping"),)
