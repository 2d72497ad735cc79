"""A step's `expect:` assertions: parsed with the definition, checked against each attempt's result.

```yaml
- key: ping
  kind: http
  with: {url: "http://127.0.0.1:8000/health"}
  expect:
    status: [200, 201]             # http; a shell step has exit_code (0 or a list) instead
    output_contains: "ok"          # in stdout (shell) or the response body (http)
    output_matches: '^status=\\w+'  # a Python regex, searched; ^ and $ match at line breaks
    json: {"$.status": "ok"}       # RFC 9535 JSONPath -> the JSON value it must select
    latency_ms_below: 500          # http
    cost_usd_below: 0.05           # llm, agent, and steps that report usage: the attempt's cost
    tokens_below: 20000            # input + output tokens of the attempt
```

A kind's default applies when its aspect is not asserted: a shell step must exit with 0, an
http step must answer with a 2xx status. Templates (`{{ … }}`) are not rendered in `expect:` in
this version, and are refused rather than compared as literal text, so adding them later cannot
change what an existing definition means.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonpath import JSONPath, JSONPathEnvironment, JSONPathError

from runwire.errors import FieldError
from runwire.scenarios.budgets import usd as _usd
from runwire.scenarios.results import Observed, StepResult, describe_exit

_ORDER = (
    "exit_code",
    "status",
    "latency_ms_below",
    "output_contains",
    "output_matches",
    "json",
    "cost_usd_below",
    "tokens_below",
)
_USAGE = ("cost_usd_below", "tokens_below")
SUPPORTED: Mapping[str, tuple[str, ...]] = {
    "shell": ("exit_code", "json", "output_contains", "output_matches", *_USAGE),
    "agent": ("exit_code", "json", "output_contains", "output_matches", *_USAGE),
    "llm": ("json", "latency_ms_below", "output_contains", "output_matches", *_USAGE),
    "http": ("json", "latency_ms_below", "output_contains", "output_matches", "status"),
    "sleep": (),
    # The call's result as JSON (output.call has its figures); latency_ms_below is the slowest turn.
    "call": ("json", "latency_ms_below", "output_contains", "output_matches"),
}
"""The assertions each step kind can be checked with; a kind not listed supports none."""

_TEXT_NAMES = {
    "shell": "stdout",
    "http": "the body",
    "agent": "the agent's result",
    "call": "the call's result",
}
_EXIT_CODES = (-128, 255)  # negative: killed by that signal, as subprocess reports it
_MAX_MS = 10**12
_EXCERPT = 200  # characters of a checked text or value kept in a record or message
# Strict RFC 9535: a path means the same here as in any other JSONPath implementation.
_JSONPATH = JSONPathEnvironment(strict=True)


@dataclass(frozen=True, slots=True)
class JsonExpectation:
    """The value `path` must select: the single node of a singular path, else the list of nodes."""

    path: str
    expected: Any


@dataclass(frozen=True, slots=True)
class Expectations:
    """A step's `expect:`; empty tuples and None mean "not asserted" (the kind's default holds)."""

    exit_code: tuple[int, ...] = ()
    status: tuple[int, ...] = ()
    output_contains: str | None = None
    output_matches: str | None = None
    json: tuple[JsonExpectation, ...] = ()
    latency_ms_below: float | None = None
    cost_usd_below: float | None = None
    tokens_below: int | None = None


NO_EXPECTATIONS = Expectations()


def parse_expect(raw: Any, kind_name: str, path: str, errors: list[FieldError]) -> Expectations:
    """Check a step's `expect` mapping for kind `kind_name`, appending errors named by path."""
    if raw is None:
        return NO_EXPECTATIONS
    if not isinstance(raw, Mapping):
        errors.append(FieldError(path, f"must be a mapping of assertions, got {_type_name(raw)}"))
        return NO_EXPECTATIONS
    supported = SUPPORTED.get(kind_name, ())
    allowed = (
        f"expected one of {', '.join(supported)}"
        if supported
        else f"kind {kind_name} checks no assertions"
    )
    count = len(errors)
    values: dict[str, Any] = {}
    for name, value in raw.items():
        where = f"{path}.{name}"
        if name not in _ORDER:
            errors.append(FieldError(where, f"unknown assertion; {allowed}"))
        elif not supported:
            errors.append(
                FieldError(where, f"not available: kind {kind_name} checks no assertions")
            )
        elif name not in supported:
            errors.append(FieldError(where, f"not available for kind {kind_name}; {allowed}"))
        else:
            values[name] = _PARSERS[name](value, where, errors)
    if len(errors) > count:
        return NO_EXPECTATIONS
    return Expectations(**values)


def assess(
    expectations: Expectations, kind_name: str, result: StepResult
) -> tuple[StepResult, list[dict[str, Any]]]:
    """Check one attempt's result: the result, failed when an assertion failed, and every record.

    A result without `observed` (the step never completed: it could not start, connect, or timed
    out) is returned as it is, with no records. An error the kind already reported is kept.
    """
    observed = result.observed
    if observed is None:
        return result, []
    records = _check(expectations, kind_name, observed)
    failures = [_failure(expectations, record) for record in records if not record["passed"]]
    if failures and result.error is None:
        result = dataclasses.replace(result, error="; ".join(failures))
    return result, records


def _failure(expectations: Expectations, record: Mapping[str, Any]) -> str:
    """A failed record as the step's error: an `expect.` path only when the file has that path.

    A kind's default (exit 0, a 2xx status) is not written in the definition, so its failure
    says what happened ("exited with code 1") instead of naming an `expect:` it does not have.
    """
    assertion = record["assertion"]
    if assertion == "exit_code" and not expectations.exit_code:
        return describe_exit(record["actual"])
    if assertion == "status" and not expectations.status:
        return f"answered status {record['actual']}, not a 2xx status"
    path = f"[{record['path']}]" if "path" in record else ""
    return f"expect.{assertion}{path}: {record['message']}"


def _check(expectations: Expectations, kind: str, observed: Observed) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    # The defaults follow what the kind observed, not its name: a kind that reports an exit code
    # must exit with 0, one that reports a status must answer 2xx, unless `expect:` says more.
    if observed.exit_code is not None:
        code = observed.exit_code
        codes = expectations.exit_code or (0,)
        passed = code in codes
        message = f"expected {_either(codes)}, got {code} ({describe_exit(code)})"
        records.append(_record("exit_code", _one_or_list(codes), code, passed, message))
    if observed.status is not None:
        status = observed.status
        expected: Any
        if expectations.status:
            passed, expected = status in expectations.status, _one_or_list(expectations.status)
            message = f"expected {_either(expectations.status)}, got {status}"
        else:
            passed, expected = 200 <= status <= 299, "2xx"
            message = f"expected a 2xx status, got {status}"
        records.append(_record("status", expected, status, passed, message))
    if (bound := expectations.latency_ms_below) is not None:
        latency = observed.latency_ms
        passed = latency is not None and latency < bound
        message = f"expected below {bound:g} ms, took {_ms(latency)}"
        records.append(_record("latency_ms_below", bound, latency, passed, message))
    text = observed.text or ""
    source = _TEXT_NAMES.get(kind, "the output")
    if (needle := expectations.output_contains) is not None:
        passed = needle in text
        message = f"{_show(needle)} not found in {source}"
        records.append(_record("output_contains", needle, _excerpt(text), passed, message))
    if (pattern := expectations.output_matches) is not None:
        # A pathological pattern can take long on a large text; like templates, patterns are
        # written by definition authors, who can run any command anyway.
        found = _regex(pattern).search(text)
        actual = _excerpt(found.group(0)) if found else _excerpt(text)
        message = f"no match for {_show(pattern)} in {source}"
        records.append(_record("output_matches", pattern, actual, found is not None, message))
    if expectations.json:
        records.extend(_check_json(expectations.json, text, source))
    if (bound := expectations.cost_usd_below) is not None:
        cost = observed.cost_usd
        passed = cost is not None and cost < bound
        if cost is not None:
            message = f"expected below ${bound:g}, cost {_usd(cost)}"
        elif observed.unpriced is not None:
            message = f"expected below ${bound:g}, but the cost is unknown: {observed.unpriced}"
        else:
            message = f"expected below ${bound:g}, but no usage was reported"
        records.append(_record("cost_usd_below", bound, cost, passed, message))
    if (limit := expectations.tokens_below) is not None:
        tokens = observed.tokens
        passed = tokens is not None and tokens < limit
        message = (
            f"expected below {limit} tokens, used {'none reported' if tokens is None else tokens}"
        )
        records.append(_record("tokens_below", limit, tokens, passed, message))
    return records


def _check_json(
    expectations: tuple[JsonExpectation, ...], text: str, source: str
) -> list[dict[str, Any]]:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        message = f"{source} is not JSON"
        return [_record("json", e.expected, None, False, message, e.path) for e in expectations]
    records = []
    for expectation in expectations:
        query = _jsonpath(expectation.path)
        try:
            found = query.findall(document)
        except JSONPathError as error:
            message = f"cannot evaluate: {_first_line(error)}"
            records.append(
                _record("json", expectation.expected, None, False, message, expectation.path)
            )
            continue
        if query.singular_query():
            if not found:
                message = f"no value at {expectation.path}"
                records.append(
                    _record("json", expectation.expected, None, False, message, expectation.path)
                )
                continue
            actual: Any = found[0]
        else:
            actual = found
        passed = _json_equal(actual, expectation.expected)
        message = f"expected {_show(expectation.expected)}, got {_show(actual)}"
        records.append(
            _record("json", expectation.expected, actual, passed, message, expectation.path)
        )
    return records


def _record(
    assertion: str,
    expected: Any,
    actual: Any,
    passed: bool,
    message: str,
    path: str | None = None,
) -> dict[str, Any]:
    """One stored assertion result; `message` says why it failed and is None when it passed."""
    record: dict[str, Any] = {"assertion": assertion}
    if path is not None:
        record["path"] = path
    record.update(
        expected=expected, actual=actual, passed=passed, message=None if passed else message
    )
    return record


def _json_equal(actual: Any, expected: Any) -> bool:
    """Equality of JSON values: true is not 1 (as Python's == says), but 1 is 1.0."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            _json_equal(actual[key], expected[key]) for key in actual
        )
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(
            _json_equal(a, e) for a, e in zip(actual, expected, strict=True)
        )
    if isinstance(actual, dict | list) or isinstance(expected, dict | list):
        return False
    return bool(actual == expected)


# ---- parsing each assertion ----------------------------------------------------------------


def _parse_codes(
    value: Any, path: str, low: int, high: int, what: str, errors: list[FieldError]
) -> tuple[int, ...]:
    codes = tuple(value) if isinstance(value, list) else (value,)
    if codes and all(_is_int(code) and low <= code <= high for code in codes):
        return codes
    errors.append(
        FieldError(path, f"expected {what} ({low} to {high}) or a non-empty list of them")
    )
    return ()


def _parse_exit_code(value: Any, path: str, errors: list[FieldError]) -> tuple[int, ...]:
    return _parse_codes(value, path, *_EXIT_CODES, "an exit code", errors)


def _parse_status(value: Any, path: str, errors: list[FieldError]) -> tuple[int, ...]:
    return _parse_codes(value, path, 100, 599, "a status code", errors)


def _parse_text(value: Any, path: str, errors: list[FieldError]) -> str | None:
    if not isinstance(value, str) or not value:
        errors.append(FieldError(path, "expected a non-empty string"))
        return None
    if _has_template(value):
        errors.append(_no_templates(path))
        return None
    return value


def _parse_pattern(value: Any, path: str, errors: list[FieldError]) -> str | None:
    pattern = _parse_text(value, path, errors)
    if pattern is None:
        return None
    try:
        _regex(pattern)
    except re.error as error:
        where = f" at position {error.pos}" if error.pos is not None else ""
        errors.append(FieldError(path, f"invalid regular expression: {error.msg}{where}"))
        return None
    return pattern


def _parse_json(value: Any, path: str, errors: list[FieldError]) -> tuple[JsonExpectation, ...]:
    if not isinstance(value, Mapping) or not value:
        errors.append(
            FieldError(path, "expected a non-empty mapping of JSONPath (like $.user.id) to value")
        )
        return ()
    parsed = []
    for query, expected in value.items():
        where = f'{path}["{query}"]'  # a JSONPath has dots of its own
        if _has_template(query) or _has_template(expected):
            errors.append(_no_templates(where))
            continue
        try:
            _jsonpath(query)
        except (JSONPathError, RecursionError) as error:
            errors.append(FieldError(where, f"invalid JSONPath: {_first_line(error)}"))
            continue
        parsed.append(JsonExpectation(query, expected))
    return tuple(parsed)


def _parse_latency(value: Any, path: str, errors: list[FieldError]) -> float | None:
    if not _is_number(value) or not 0 < value <= _MAX_MS:
        errors.append(
            FieldError(path, f"expected a number of milliseconds above 0, up to {_MAX_MS}")
        )
        return None
    return float(value)


def _parse_cost(value: Any, path: str, errors: list[FieldError]) -> float | None:
    if not _is_number(value) or not 0 < value <= 1e6:
        errors.append(FieldError(path, "expected US dollars above 0, up to 1000000"))
        return None
    return float(value)


def _parse_tokens(value: Any, path: str, errors: list[FieldError]) -> int | None:
    if not _is_int(value) or not 0 < value <= 10**12:
        errors.append(FieldError(path, "expected a whole number of tokens above 0"))
        return None
    return int(value)


_PARSERS: Mapping[str, Callable[[Any, str, list[FieldError]], Any]] = {
    "exit_code": _parse_exit_code,
    "status": _parse_status,
    "output_contains": _parse_text,
    "output_matches": _parse_pattern,
    "json": _parse_json,
    "latency_ms_below": _parse_latency,
    "cost_usd_below": _parse_cost,
    "tokens_below": _parse_tokens,
}


def _no_templates(path: str) -> FieldError:
    return FieldError(path, "templates ({{ … }}) are not supported in expect")


# ---- helpers -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.MULTILINE)


@functools.lru_cache(maxsize=1024)
def _jsonpath(query: str) -> JSONPath:
    compiled = _JSONPATH.compile(query)
    if not isinstance(compiled, JSONPath):  # unions and intersections, refused in strict mode
        raise JSONPathError("expected a single JSONPath query")
    return compiled


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(_has_template(key) or _has_template(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_template(item) for item in value)
    return False


def _first_line(error: BaseException) -> str:
    message = getattr(error, "message", None) or str(error)
    return str(message).splitlines()[0] if str(message) else type(error).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "number" if _is_number(value) else type(value).__name__


def _either(codes: tuple[int, ...]) -> str:
    return " or ".join(map(str, codes))


def _one_or_list(codes: tuple[int, ...]) -> int | list[int]:
    return codes[0] if len(codes) == 1 else list(codes)


def _ms(latency: float | None) -> str:
    return "an unknown time" if latency is None else f"{latency:g} ms"


def _show(value: Any) -> str:
    return _excerpt(json.dumps(value, ensure_ascii=False, default=str))


def _excerpt(text: str) -> str:
    """`text`, or its start and end around an ellipsis when longer than _EXCERPT characters."""
    if len(text) <= _EXCERPT:
        return text
    half = _EXCERPT // 2
    return f"{text[:half]}…{text[-half:]}"
