"""The `review` step as written: what reviewers see, the form they fill in, and how it ends.

A review's `with` mapping is checked here, by the definition (unrendered) and by the runner
(rendered). The rendered mapping is stored with the review, and a submission is checked against
that stored copy: what a reviewer was shown is what their answer must fit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runwire.errors import FieldError, Invalid, InvalidDefinition
from runwire.scenarios.definition import InputSpec, bind_values, parse_input_specs
from runwire.scenarios.limits import too_big

REVIEW_KIND = "review"
DEFAULT_DECISIONS = ("approve", "reject")
# on_timeout: the step fails (TIMED_OUT), is skipped, or is decided as one of its decisions.
TIMEOUT_FAILS = "fail"
TIMEOUT_SKIPS = "skip"

_FIELDS = ("title", "instructions", "show", "decisions", "fail_on", "form", "on_timeout")
# Literal parts: a submission is checked against them, so they cannot wait for a render.
_LITERAL = ("decisions", "fail_on", "form", "on_timeout")
_DECISION = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,49}")
_TITLE_CHARS = 200
_INSTRUCTIONS_CHARS = 20_000
_MAX_DECISIONS = 10
_MAX_FORM_FIELDS = 50
_MAX_SHOWN = 50
COMMENT_CHARS = 4_000
VALUES_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ReviewSpec:
    """One review step's request: `show` names the steps whose results reviewers look at."""

    title: str
    instructions: str
    show: tuple[str, ...]
    decisions: tuple[str, ...]
    fail_on: tuple[str, ...]
    form: tuple[InputSpec, ...]
    on_timeout: str

    def fails(self, decision: str) -> bool:
        return decision in self.fail_on

    def request(self) -> dict[str, Any]:
        """As plain JSON data that parses back to this spec (stored with the review)."""
        return {
            "title": self.title,
            "instructions": self.instructions,
            "show": list(self.show),
            "decisions": list(self.decisions),
            "fail_on": list(self.fail_on),
            "form": {spec.name: _field_source(spec) for spec in self.form},
            "on_timeout": self.on_timeout,
        }

    def answer(
        self, decision: str, values: Mapping[str, Any] | None, comment: str | None
    ) -> dict[str, Any]:
        """The form's values with defaults applied; Invalid names each field that is wrong."""
        errors: list[FieldError] = []
        if decision not in self.decisions:
            errors.append(FieldError("decision", f"expected one of {', '.join(self.decisions)}"))
        bound = bind_values(
            self.form, values, "values", "field", "this review has no form fields", errors
        )
        if comment is not None and len(comment) > COMMENT_CHARS:
            errors.append(too_big("comment", COMMENT_CHARS, len(comment), "characters"))
        size = len(json.dumps(bound, default=str).encode())
        if size > VALUES_BYTES:
            errors.append(too_big("values", VALUES_BYTES, size, "bytes"))
        if errors:
            raise Invalid(errors)
        return bound

    def defaults(self) -> dict[str, Any]:
        """The form's defaults: the values of a decision its timeout made."""
        return {spec.name: spec.default for spec in self.form}


def parse_review(params: Any, path: str) -> ReviewSpec:
    """Check a review step's `with` mapping, raising InvalidDefinition naming `path.field`."""
    errors: list[FieldError] = []
    if not isinstance(params, Mapping):
        raise InvalidDefinition([FieldError(path, "expected a mapping")])
    for name in params:
        if name not in _FIELDS:
            expected = ", ".join(sorted(_FIELDS))
            errors.append(
                FieldError(f"{path}.{name}", f"unknown field; expected one of: {expected}")
            )
    for name in _LITERAL:
        if "{{" in json.dumps(params.get(name), default=str):
            errors.append(FieldError(f"{path}.{name}", "cannot be a template"))

    title = params.get("title")
    if not isinstance(title, str) or not title.strip():
        errors.append(FieldError(f"{path}.title", "required: what reviewers are asked to judge"))
        title = ""
    elif len(title) > _TITLE_CHARS and "{{" not in title:
        errors.append(too_big(f"{path}.title", _TITLE_CHARS, len(title), "characters"))
    instructions = params.get("instructions", "")
    if not isinstance(instructions, str):
        errors.append(FieldError(f"{path}.instructions", "expected a string"))
        instructions = ""
    elif len(instructions) > _INSTRUCTIONS_CHARS:
        errors.append(
            too_big(f"{path}.instructions", _INSTRUCTIONS_CHARS, len(instructions), "characters")
        )
    show = _names(params, "show", path, (), _MAX_SHOWN, errors, pattern=None)
    decisions = _names(
        params, "decisions", path, DEFAULT_DECISIONS, _MAX_DECISIONS, errors, pattern=_DECISION
    )
    if not decisions and "decisions" in params:
        errors.append(FieldError(f"{path}.decisions", "list at least one decision"))
    default_fail_on = ("reject",) if "reject" in decisions else ()
    fail_on = _names(params, "fail_on", path, default_fail_on, _MAX_DECISIONS, errors, None)
    for index, decision in enumerate(fail_on):
        if decision not in decisions:
            errors.append(
                FieldError(f"{path}.fail_on[{index}]", f"{decision!r} is not one of the decisions")
            )
    form = parse_input_specs(params.get("form"), f"{path}.form", "field", errors)
    if len(form) > _MAX_FORM_FIELDS:
        errors.append(too_big(f"{path}.form", _MAX_FORM_FIELDS, len(form), "fields"))
    if any(spec.name == "decision" for spec in form):
        # The step's output is the values plus the decision, under that name.
        errors.append(FieldError(f"{path}.form.decision", "reserved: the output's decision"))
    on_timeout = params.get("on_timeout", TIMEOUT_FAILS)
    if on_timeout not in (TIMEOUT_FAILS, TIMEOUT_SKIPS, *decisions):
        allowed = ", ".join((TIMEOUT_FAILS, TIMEOUT_SKIPS, *decisions))
        errors.append(FieldError(f"{path}.on_timeout", f"expected one of {allowed}"))
    if errors:
        raise InvalidDefinition(errors)
    return ReviewSpec(
        title=title,
        instructions=instructions,
        show=show,
        decisions=decisions,
        fail_on=fail_on,
        form=form,
        on_timeout=str(on_timeout),
    )


def _names(
    params: Mapping[str, Any],
    name: str,
    path: str,
    default: tuple[str, ...],
    most: int,
    errors: list[FieldError],
    pattern: re.Pattern[str] | None,
) -> tuple[str, ...]:
    value = params.get(name)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        errors.append(FieldError(f"{path}.{name}", "expected a list of strings"))
        return default
    if len(value) > most:
        errors.append(too_big(f"{path}.{name}", most, len(value), "entries"))
    if len(set(value)) != len(value):
        errors.append(FieldError(f"{path}.{name}", "lists a name twice"))
    for index, item in enumerate(value):
        if pattern is not None and not pattern.fullmatch(item):
            errors.append(
                FieldError(
                    f"{path}.{name}[{index}]",
                    "a decision is a letter, then letters, digits, '_' or '-', at most 50",
                )
            )
    return tuple(value)


def _field_source(spec: InputSpec) -> dict[str, Any]:
    source: dict[str, Any] = {"type": spec.type.value, "required": spec.required}
    if spec.default is not None:
        source["default"] = spec.default
    if spec.description is not None:
        source["description"] = spec.description
    if spec.enum is not None:
        source["enum"] = list(spec.enum)
    return source
