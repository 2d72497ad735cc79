"""Replace secret values with a mask in everything a step reports, before it is emitted or stored.

An execution run has one `Redactor` holding the values of every secret its steps have been given
so far: each step's output, result, error and spans are redacted of all of them, so a value one
step leaves in a file cannot come out of another step of the same execution. Output arrives in
pieces, and a value may be split across two: `StreamRedactor` holds back the end of a piece
while it could be the start of a value, and lets it go with the next piece or at the step's end.

Redaction matches the exact value only (not an encoding or a part of it): it keeps honest
output clean, it is not a barrier against a step that means to reveal what it was given.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from runwire.domain.models import OutputStream
from runwire.scenarios.results import StepResult

MASK = "***"


class Redactor:
    """The secret values of one run, longest first, so a value inside another is masked whole."""

    def __init__(self) -> None:
        self._values: list[str] = []

    def __bool__(self) -> bool:
        return bool(self._values)

    def add(self, values: Iterable[str]) -> None:
        known = set(self._values)
        fresh = [value for value in values if value and value not in known]
        if fresh:
            self._values = sorted([*self._values, *set(fresh)], key=len, reverse=True)

    def text(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def value(self, value: Any) -> Any:
        """`value` with every string in it (keys too) redacted: JSON-like data, spans, events."""
        if not self._values:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.value(key): self.value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(item) for item in value)
        return value

    def result(self, result: StepResult) -> StepResult:
        if not self._values:
            return result
        return replace(
            result,
            output=self.value(result.output),
            error=None if result.error is None else self.text(result.error),
            attributes=self.value(result.attributes),
        )

    def held_back(self, text: str) -> int:
        """How many characters at the end of `text` could be the start of a value."""
        longest = 0
        for value in self._values:
            # Only a proper prefix can be left: a whole value was replaced already.
            start = max(0, len(text) - len(value) + 1)
            first = value[0]
            position = text.find(first, start)
            while position != -1 and len(text) - position > longest:
                if value.startswith(text[position:]):
                    longest = len(text) - position
                    break
                position = text.find(first, position + 1)
        return longest


class StreamRedactor:
    """Redacts one step's output pieces, per stream, across piece boundaries."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._held: dict[OutputStream, str] = {}

    def feed(self, stream: OutputStream, text: str) -> str:
        """What of `held + text` may go out now, redacted; the rest is held for later."""
        if not self._redactor:
            return text
        text = self._redactor.text(self._held.pop(stream, "") + text)
        keep = self._redactor.held_back(text)
        if keep:
            self._held[stream] = text[-keep:]
            return text[:-keep]
        return text

    def flush(self) -> Iterator[tuple[OutputStream, str]]:
        """What is still held, at the step's end: no value can complete any more."""
        held, self._held = self._held, {}
        for stream, text in held.items():
            if text:
                yield stream, text
