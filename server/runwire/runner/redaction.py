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
_PROBE = 16
_MAX_COMPARISONS = 8


class Redactor:
    """The secret values of one run, longest first, so a value inside another is masked whole."""

    def __init__(self) -> None:
        self._values: list[str] = []
        self._failures: dict[str, list[int]] = {}

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

    def content(self, content: bytes) -> bytes:
        """Text content (UTF-8, as bytes) with every value masked, such as a text artifact."""
        for value in self._values:
            encoded = value.encode()
            if encoded in content:
                content = content.replace(encoded, MASK.encode())
        return content

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
            longest = max(longest, self._prefix_at_end(text, value, start))
        return longest

    def _prefix_at_end(self, text: str, value: str, start: int) -> int:
        """The length of the longest end of `text` (from `start` on) that `value` starts with."""
        if text.find(value[0], start) == -1:
            return 0  # the common case, in one scan
        head = value[:_PROBE]
        # Where the end is at least as long as the probe, candidates are where the probe occurs
        # (str.find scans in C); a few are compared whole. Output built to match the probe
        # again and again goes to a linear scan instead, so no output stalls the event loop.
        short_from = max(start, len(text) - len(head) + 1)
        position = text.find(head, start)
        for _ in range(_MAX_COMPARISONS):
            if position == -1 or position >= short_from:
                break
            if value.startswith(text[position:]):
                return len(text) - position
            position = text.find(head, position + 1)
        else:
            return self._matched_at_end(text, value, start)
        # The last few positions, shorter than the probe: at most _PROBE - 1 of them.
        position = text.find(value[0], short_from)
        while position != -1:
            if value.startswith(text[position:]):
                return len(text) - position
            position = text.find(value[0], position + 1)
        return 0

    def _matched_at_end(self, text: str, value: str, start: int) -> int:
        """`_prefix_at_end` by Knuth-Morris-Pratt: one pass over the end of `text`."""
        failure = self._failures.get(value)
        if failure is None:
            failure = self._failures[value] = _failure_function(value)
        state = 0
        for position in range(start, len(text)):
            char = text[position]
            while state and value[state] != char:
                state = failure[state - 1]
            if value[state] == char:
                state += 1
            if state == len(value):
                state = failure[state - 1]
        return state


def _failure_function(value: str) -> list[int]:
    """For each prefix of `value`, the length of its longest proper prefix that is a suffix."""
    failure = [0] * len(value)
    state = 0
    for position in range(1, len(value)):
        while state and value[position] != value[state]:
            state = failure[state - 1]
        if value[position] == value[state]:
            state += 1
        failure[position] = state
    return failure


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
