"""Reading a CLI agent's stdout: one line in, typed transcript entries and usage out.

Each format is a pure function from one decoded JSON object to a `Parsed`; `parse_line` does the
part they share: a line that is not JSON is plain output, a line that looks like a record but does
not decode (or is not an object) is kept as an UNKNOWN entry and counted, never an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from runwire.domain.agents import AgentEntry, EntryType
from runwire.runner.agent_formats import claude, codex, ndjson
from runwire.runner.agent_formats.common import Parsed, unknown

__all__ = ["FORMATS", "Parsed", "parse_line"]

FORMATS: Mapping[str, Callable[[Mapping[str, Any]], Parsed]] = {
    "claude-stream-json": claude.parse,
    "codex-jsonl": codex.parse,
    "ndjson": ndjson.parse,
}
"""Every format by its `format:` name."""


def parse_line(format_name: str, line: str) -> Parsed | None:
    """What one line of stdout (without its newline) says; None when it is plain output."""
    stripped = line.strip()
    if not stripped.startswith(("{", "[")):
        return None
    try:
        record = json.loads(stripped)
    except (ValueError, RecursionError) as error:
        return Parsed(
            (AgentEntry(EntryType.UNKNOWN, data={"raw": line, "reason": f"not JSON: {error}"}),),
            unknown=1,
        )
    if not isinstance(record, dict):
        return unknown(line, "not a JSON object")
    try:
        return FORMATS[format_name](record)
    except (TypeError, ValueError, LookupError, AttributeError) as error:
        # A record of a known type whose fields have shapes no version of the format has.
        return unknown(record, f"unreadable {record.get('type')!r} record: {error}")
