"""Parse suite documents: a named set of cases, each a scenario (or an inline definition) run with
inputs, where a matrix or rows of inputs generate many cases from one entry.

What needs the store (does the scenario exist, do the inputs fit its signature) is checked by
the domain (domain/suites.py); here only the document's own shape is.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runwire.errors import FieldError, InvalidDefinition
from runwire.scenarios.definition import (
    NAME,
    Definition,
    ParamsParser,
    load_document,
    parse_definition,
)

MAX_CASES = 1_000
MAX_TAGS = 20
TAG_CHARS = 100
CASE_NAME_CHARS = 200
# The statuses a case may expect its executions to end with; SUCCEEDED unless it says.
EXPECTABLE_STATUSES = ("SUCCEEDED", "FAILED", "TIMED_OUT")
_TOP_FIELDS = ("cases", "description", "name", "tags")
_CASE_FIELDS = ("definition", "expect", "inputs", "labels", "matrix", "name", "rows", "scenario")
_EXPECT_FIELDS = ("status",)


@dataclass(frozen=True, slots=True)
class SuiteCase:
    """One case, after a matrix or rows were expanded: what one repeat of it runs."""

    name: str
    path: str
    """Where the case is written (`cases[2]`): every error about it is named under it."""
    scenario: str | None
    definition: Definition | None
    inputs: Mapping[str, Any]
    labels: tuple[str, ...] = ()
    expected_status: str = "SUCCEEDED"
    input_paths: Mapping[str, str] = field(default_factory=dict)
    """Inputs that came from a row or the matrix, by name: where they are written."""

    def input_path(self, name: str) -> str:
        """Where input `name` of this case is written (or would be, if it is missing)."""
        return self.input_paths.get(name, f"{self.path}.inputs.{name}")


@dataclass(frozen=True, slots=True)
class SuiteDefinition:
    name: str
    description: str
    tags: tuple[str, ...]
    cases: tuple[SuiteCase, ...]
    source: Mapping[str, Any]


def parse_suite(
    text_or_mapping: str | Mapping[str, Any],
    kinds: Mapping[str, ParamsParser],
    *,
    max_steps: int | None = None,
) -> SuiteDefinition:
    """Parse and check a suite document, raising InvalidDefinition with every error found."""
    errors: list[FieldError] = []
    source = load_document(text_or_mapping, errors)
    if not isinstance(source, dict):
        raise InvalidDefinition([FieldError("", "a suite must be a mapping")])
    _unknown_fields(source, "", _TOP_FIELDS, errors)
    name = source.get("name")
    if name is None:
        errors.append(FieldError("name", "required"))
    elif not isinstance(name, str) or not NAME.fullmatch(name):
        errors.append(
            FieldError(
                "name",
                "must be 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit",
            )
        )
    description = source.get("description", "")
    if not isinstance(description, str):
        errors.append(FieldError("description", "expected a string"))
        description = ""
    tags = _strings(source.get("tags"), "tags", MAX_TAGS, TAG_CHARS, errors)
    cases = _cases(source.get("cases"), kinds, max_steps, errors)
    if errors:
        raise InvalidDefinition(errors)
    assert isinstance(name, str)
    return SuiteDefinition(name, description, tags, cases, source)


def _cases(
    raw: Any, kinds: Mapping[str, ParamsParser], max_steps: int | None, errors: list[FieldError]
) -> tuple[SuiteCase, ...]:
    if not isinstance(raw, list) or not raw:
        errors.append(FieldError("cases", "expected a non-empty list of cases"))
        return ()
    cases: list[SuiteCase] = []
    first_at: dict[str, str] = {}
    for index, entry in enumerate(raw):
        path = f"cases[{index}]"
        if isinstance(entry, str):
            entry = {"scenario": entry}  # a bare scenario name is the shortest case
        if not isinstance(entry, dict):
            errors.append(FieldError(path, "expected a scenario name or a mapping"))
            continue
        for case in _expand(entry, path, kinds, max_steps, errors):
            if len(cases) == MAX_CASES:
                errors.append(FieldError(path, f"a suite may have at most {MAX_CASES:,} cases"))
                return tuple(cases)
            if case.name in first_at:
                # Runs are compared case by case, by name: two cases of one name cannot be told
                # apart.
                message = f'duplicate case name "{case.name}"; first at {first_at[case.name]}'
                errors.append(FieldError(f"{path}.name", message))
                continue
            first_at[case.name] = path
            cases.append(case)
    return tuple(cases)


def _expand(
    entry: Mapping[str, Any],
    path: str,
    kinds: Mapping[str, ParamsParser],
    max_steps: int | None,
    errors: list[FieldError],
) -> list[SuiteCase]:
    """The cases one entry stands for: one, or one per row or matrix combination."""
    found = len(errors)
    _unknown_fields(entry, path, _CASE_FIELDS, errors)
    scenario, definition = _target(entry, path, kinds, max_steps, errors)
    inputs = entry.get("inputs") or {}
    if not isinstance(inputs, dict):
        errors.append(FieldError(f"{path}.inputs", "expected a mapping of input names to values"))
        inputs = {}
    labels = _strings(entry.get("labels"), f"{path}.labels", None, None, errors)
    expected = _expected_status(entry.get("expect"), f"{path}.expect", errors)
    name = entry.get("name")
    if name is not None and not _is_case_name(name):
        errors.append(FieldError(f"{path}.name", f"expected 1..{CASE_NAME_CHARS} characters"))
    variants = _variants(entry, path, errors)
    if len(errors) > found:
        return []
    base = name or scenario or (definition.name if definition else "")
    cases = []
    for values, value_paths in variants:
        # A named case shows what its row or combination sets; an unnamed one all its inputs,
        # so two cases of one scenario get two names.
        shown = values if name else {**inputs, **values}
        cases.append(
            SuiteCase(
                name=_variant_name(base, shown) if shown else base,
                path=path,
                scenario=scenario,
                definition=definition,
                inputs={**inputs, **values},
                labels=labels,
                expected_status=expected,
                input_paths=value_paths,
            )
        )
    return cases


def _target(
    entry: Mapping[str, Any],
    path: str,
    kinds: Mapping[str, ParamsParser],
    max_steps: int | None,
    errors: list[FieldError],
) -> tuple[str | None, Definition | None]:
    scenario, inline = entry.get("scenario"), entry.get("definition")
    if (scenario is None) == (inline is None):
        errors.append(FieldError(path, "give exactly one of scenario or definition"))
        return None, None
    if scenario is not None:
        if not isinstance(scenario, str) or not NAME.fullmatch(scenario):
            errors.append(FieldError(f"{path}.scenario", "expected a scenario name"))
            return None, None
        return scenario, None
    if not isinstance(inline, str | dict):
        errors.append(FieldError(f"{path}.definition", "expected a definition (text or mapping)"))
        return None, None
    try:
        return None, parse_definition(inline, kinds, max_steps=max_steps)
    except InvalidDefinition as error:
        errors.extend(
            FieldError(f"{path}.definition.{e.path}" if e.path else f"{path}.definition", e.message)
            for e in error.errors
        )
        return None, None


Variant = tuple[dict[str, Any], dict[str, str]]
"""The inputs one generated case sets, and where each is written."""


def _variants(entry: Mapping[str, Any], path: str, errors: list[FieldError]) -> list[Variant]:
    matrix, rows = entry.get("matrix"), entry.get("rows")
    if matrix is not None and rows is not None:
        errors.append(FieldError(path, "give at most one of matrix or rows"))
        return []
    if rows is not None:
        return _rows(rows, f"{path}.rows", errors)
    if matrix is not None:
        return _matrix(matrix, f"{path}.matrix", errors)
    return [({}, {})]


def _rows(rows: Any, path: str, errors: list[FieldError]) -> list[Variant]:
    if not isinstance(rows, list) or not rows:
        errors.append(FieldError(path, "expected a non-empty list of input mappings"))
        return []
    if len(rows) > MAX_CASES:
        errors.append(FieldError(path, f"at most {MAX_CASES:,} rows"))
        return []
    variants: list[Variant] = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            errors.append(FieldError(f"{path}[{index}]", "expected a mapping of inputs"))
            continue
        variants.append((dict(row), {name: f"{path}[{index}].{name}" for name in row}))
    return variants


def _matrix(matrix: Any, path: str, errors: list[FieldError]) -> list[Variant]:
    if not isinstance(matrix, dict) or not matrix:
        errors.append(FieldError(path, "expected a mapping of input names to lists of values"))
        return []
    empty = [name for name, values in matrix.items() if not isinstance(values, list) or not values]
    errors.extend(
        FieldError(f"{path}.{name}", "expected a non-empty list of values") for name in empty
    )
    if empty:
        return []
    # Counted before expanding: a matrix of ten 10-value inputs would be 10^10 cases.
    count = math.prod(len(values) for values in matrix.values())
    if count > MAX_CASES:
        errors.append(FieldError(path, f"makes {count:,} cases; at most {MAX_CASES:,}"))
        return []
    names = list(matrix)
    paths = {name: f"{path}.{name}" for name in names}
    return [
        (dict(zip(names, combination, strict=True)), paths)
        for combination in itertools.product(*(matrix[name] for name in names))
    ]


def _variant_name(base: str, values: Mapping[str, Any]) -> str:
    """`greet[who=world, times=2]`: the case's name says what it sets."""
    shown = ", ".join(
        f"{name}={value if isinstance(value, str) else json.dumps(value)}"
        for name, value in values.items()
    )
    return f"{base}[{shown}]"[:CASE_NAME_CHARS]


def _expected_status(raw: Any, path: str, errors: list[FieldError]) -> str:
    if raw is None:
        return "SUCCEEDED"
    if not isinstance(raw, dict):
        errors.append(FieldError(path, "expected a mapping such as {status: FAILED}"))
        return "SUCCEEDED"
    _unknown_fields(raw, path, _EXPECT_FIELDS, errors)
    status = raw.get("status", "SUCCEEDED")
    if status not in EXPECTABLE_STATUSES:
        errors.append(
            FieldError(f"{path}.status", f"expected one of {', '.join(EXPECTABLE_STATUSES)}")
        )
        return "SUCCEEDED"
    return str(status)


def _strings(
    raw: Any, path: str, max_count: int | None, max_chars: int | None, errors: list[FieldError]
) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        errors.append(FieldError(path, "expected a list of strings"))
        return ()
    if max_count is not None and len(raw) > max_count:
        errors.append(FieldError(path, f"at most {max_count} (got {len(raw)})"))
    for index, item in enumerate(raw):
        if not item.strip():
            errors.append(FieldError(f"{path}[{index}]", "must not be blank"))
        elif max_chars is not None and len(item) > max_chars:
            errors.append(FieldError(f"{path}[{index}]", f"at most {max_chars} characters"))
    return tuple(dict.fromkeys(raw))


def _is_case_name(value: Any) -> bool:
    return isinstance(value, str) and len(value.strip()) > 0 and len(value) <= CASE_NAME_CHARS


def _unknown_fields(
    mapping: Mapping[str, Any], path: str, known: Sequence[str], errors: list[FieldError]
) -> None:
    for key in mapping:
        if key not in known:
            where = f"{path}.{key}" if path else key
            errors.append(FieldError(where, f"unknown field; expected one of {', '.join(known)}"))
