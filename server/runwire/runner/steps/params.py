"""Checking a step's `with` mapping field by field, collecting every error before raising."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from runwire.errors import FieldError, InvalidDefinition


def is_template(value: Any) -> bool:
    """Whether `value` is a template string, rendered only when the step runs."""
    return isinstance(value, str) and "{{" in value


def finite_number(value: Any) -> float | None:
    """`value` as a float if it is a finite int or float (bools are not numbers), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


class Fields:
    """One `with` mapping being checked; each getter records errors instead of raising."""

    def __init__(
        self,
        params: Any,
        path: str,
        allowed: Collection[str],
        errors: list[FieldError] | None = None,
    ) -> None:
        self.path = path
        self.errors: list[FieldError] = [] if errors is None else errors
        self.values: Mapping[Any, Any] = {}
        if not isinstance(params, Mapping):
            self.errors.append(FieldError(path, "expected a mapping"))
            return
        self.values = params
        names = ", ".join(sorted(allowed))
        for key in params:
            if key not in allowed:
                self.error(str(key), f"unknown field; expected one of: {names}")

    def error(self, name: str, message: str) -> None:
        self.errors.append(FieldError(f"{self.path}.{name}", message))

    def has(self, name: str) -> bool:
        return name in self.values

    def require(self, *names: str) -> None:
        for name in names:
            if name not in self.values:
                self.error(name, "required")

    def string(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is None or isinstance(value, str):
            return value
        self.error(name, "expected a string")
        return None

    def boolean(self, name: str, default: bool) -> bool | None:
        """The flag, `default` when absent, None when it has the wrong type."""
        value = self.values.get(name, default)
        if isinstance(value, bool):
            return value
        self.error(name, "expected true or false")
        return None

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.values.get(name, [])
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        self.error(name, "expected a list of strings")
        return ()

    def string_map(self, name: str) -> dict[str, str]:
        value = self.values.get(name, {})
        if not isinstance(value, Mapping):
            self.error(name, "expected a mapping of strings to strings")
            return {}
        result = {}
        for key, item in value.items():
            if not isinstance(key, str) or not isinstance(item, str):
                self.error(f"{name}.{key}", "expected a string")
            else:
                result[key] = item
        return result

    def number(self, name: str, default: float, *, positive: bool = False) -> float | str:
        """A non-negative (or positive) number, or a template string that must render to one."""
        value = self.values.get(name, default)
        if is_template(value):
            return str(value)
        number = finite_number(value)
        if number is None:
            self.error(name, "expected a number or a {{ template }}")
        elif positive and number <= 0:
            self.error(name, "must be more than 0")
        elif number < 0:
            self.error(name, "must not be negative")
        return default if number is None else number

    def check(self) -> None:
        """Raise every error recorded so far."""
        if self.errors:
            raise InvalidDefinition(self.errors)
