"""What a client's request may carry: size limits, and text that both databases can store.

Two kinds of Python string cannot be stored everywhere: a NUL character (Postgres text
columns cannot hold it; SQLite's can) and a lone surrogate (half of a UTF-16 pair: not Unicode
text, so neither driver can encode it as UTF-8). Every string a client sends is checked with
`unstorable_errors` before it reaches a store, so both databases answer the same validation
error; text a step produces is repaired with `storable` instead, since refusing it would lose
what the step did."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import msgspec

from runwire.errors import FieldError
from runwire.scenarios.results import StepResult
from runwire.settings import Settings

# Labels are stored in a 200-character column: not a setting, the schema fixes it.
LABEL_CHARS = 200
_REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class InputLimits:
    """Sizes one request may not exceed (settings.py says why each default is what it is)."""

    definition_bytes: int = 200_000
    definition_steps: int = 1_000
    labels: int = 20
    inputs_bytes: int = 100_000
    inputs_depth: int = 32
    reason_chars: int = 1_000

    @classmethod
    def of(cls, settings: Settings) -> InputLimits:
        return cls(
            definition_bytes=settings.max_definition_bytes,
            definition_steps=settings.max_definition_steps,
            labels=settings.max_labels,
            inputs_bytes=settings.max_inputs_bytes,
            inputs_depth=settings.max_inputs_depth,
            reason_chars=settings.max_reason_chars,
        )


DEFAULT_LIMITS = InputLimits()


def too_big(path: str, limit: int, got: int, unit: str) -> FieldError:
    """`must be at most 200,000 bytes (got 907,312)` at `path`."""
    return FieldError(path, f"must be at most {limit:,} {unit} (got {got:,})")


def text_bytes(text: str) -> int:
    """The UTF-8 size of `text`, lone surrogates counted as the 3 bytes they would take."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def unstorable(text: str) -> str | None:
    """Why `text` cannot be stored (a NUL or a lone surrogate), or None when it can."""
    if "\x00" in text:
        return "must not contain a NUL character (\\u0000)"
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        code = ord(text[error.start])
        return f"must not contain a lone surrogate (\\u{code:04x}): it is not Unicode text"
    return None


def unstorable_errors(value: Any, path: str) -> list[FieldError]:
    """Every string in `value` (JSON data; mapping keys too) that cannot be stored, by path."""
    errors: list[FieldError] = []
    # Depth first in the order written, without recursion: a client chooses the nesting. An
    # entry with a problem is a refused key, reported when its turn comes.
    pending: list[tuple[Any, str, str | None]] = [(value, path, None)]
    while pending:
        item, where, key_problem = pending.pop()
        if key_problem is not None:
            errors.append(FieldError(where, f"the key {key_problem}"))
        elif isinstance(item, str):
            if problem := unstorable(item):
                errors.append(FieldError(where, problem))
        elif isinstance(item, Mapping):
            children: list[tuple[Any, str, str | None]] = []
            for key, inner in item.items():
                name = str(key)
                if problem := unstorable(name):
                    children.append((None, join(where, printable(name)), problem))
                else:
                    children.append((inner, join(where, name), None))
            pending.extend(reversed(children))
        elif isinstance(item, list | tuple):
            pending.extend((item[i], f"{where}[{i}]", None) for i in reversed(range(len(item))))
    return errors


def json_size_errors(
    value: Any, path: str, max_bytes: int | None, max_depth: int
) -> list[FieldError]:
    """`value` (JSON data) nested deeper than `max_depth` or larger than `max_bytes` encoded."""
    depth = _depth(value, max_depth + 1)
    if depth > max_depth:
        return [FieldError(path, f"must be nested at most {max_depth} levels deep")]
    if max_bytes is None:
        return []
    try:
        size = len(msgspec.json.encode(value))
    except UnicodeEncodeError:  # a lone surrogate: refused on its own account, still measured
        size = len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        return [too_big(path, max_bytes, size, "bytes of JSON")]
    return []


def storable(text: str) -> str:
    """`text` with each NUL and lone surrogate replaced by U+FFFD, so any store can keep it."""
    if unstorable(text) is None:
        return text
    return _UNSTORABLE.sub(_REPLACEMENT, text)


def storable_result(result: StepResult) -> StepResult:
    """`result` with its error text storable: a step's output (parsed as JSON by `expect:`, or
    named in an OS error) can put a lone surrogate or NUL into it, and it goes to a text column."""
    if result.error is None or unstorable(result.error) is None:
        return result
    return replace(result, error=storable(result.error))


def printable(text: str) -> str:
    """`text` with unstorable characters written as escapes, for naming it in a path."""
    return _UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _depth(value: Any, cap: int) -> int:
    """Nesting depth of lists and mappings in `value`, counting no further than `cap`."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, Mapping | list | tuple):
            level += 1
            deepest = max(deepest, level)
            if level >= cap:
                return deepest
            inner = item.values() if isinstance(item, Mapping) else item
            pending.extend((child, level) for child in inner)
    return deepest
