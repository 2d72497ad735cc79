"""What the formats share: the result of reading one record, and lenient field readers."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runwire.domain.agents import AgentEntry, EntryType, Usage


@dataclass(frozen=True, slots=True)
class Parsed:
    """One record read: entries in order, the usage it reports, text for the step's output.

    `unknown` counts what could not be read (kept as UNKNOWN entries); `output` is text that
    streams as plain output (partial assistant deltas), not as an entry.
    """

    entries: tuple[AgentEntry, ...] = ()
    usage: Usage | None = None
    output: str = ""
    unknown: int = 0


NOTHING = Parsed()
"""A record that is known but carries nothing to report (a turn started, a partial delta's end)."""


def unknown(record: Any, reason: str) -> Parsed:
    """A record kept as it came, counted."""
    return Parsed(
        (AgentEntry(EntryType.UNKNOWN, data={"raw": record, "reason": reason}),), unknown=1
    )


def text_of(value: Any) -> str:
    """A tool's output or a message's content as text: strings as they are, text blocks joined."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for block in value:
            if isinstance(block, Mapping) and isinstance(block.get("text"), str):
                parts.append(block["text"])
            elif isinstance(block, str):
                parts.append(block)
            else:
                parts.append(json.dumps(block, default=str))
        return "\n".join(parts)
    return json.dumps(value, default=str)


def string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def count(value: Any) -> int:
    """A token count: a whole non-negative number, else 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value) if math.isfinite(value) and value >= 0 else 0


def number(value: Any) -> float | None:
    """A finite number, or None (bools are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def whole(value: Any) -> int | None:
    found = number(value)
    return None if found is None else int(found)


def compact(data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` without its None values."""
    return {key: value for key, value in data.items() if value is not None}
