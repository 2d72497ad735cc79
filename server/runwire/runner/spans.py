"""The data of a SPAN event: one finished sub-operation a step attempt reports."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
"""Sub-operation statuses, named like the step statuses so one trace reads in one vocabulary."""


def new_span_id() -> str:
    """An id unique within the execution (and within the 64-character span_id column).

    Random rather than `step#attempt/n` so no counter has to live in the runner's context, and a
    caller can mint a parent's id before the parent finishes, to report its children first.
    """
    return uuid.uuid4().hex


def span_event_data(
    name: str,
    kind: str,
    started_at: datetime,
    finished_at: datetime | None,
    status: str,
    attributes: Mapping[str, Any] | None = None,
    parent_id: str | None = None,
    span_id: str | None = None,
) -> dict[str, Any]:
    """The `data` of an EventType.SPAN event, in the shape the repository projects into a row.

    The event's step_key and attempt say which step attempt reported it; `parent_id` None hangs
    the span directly under that attempt.
    """
    return {
        "span_id": span_id or new_span_id(),
        "parent_id": parent_id,
        "name": name,
        "kind": kind,
        "status": status,
        "started_at": started_at.isoformat(),
        "finished_at": None if finished_at is None else finished_at.isoformat(),
        "attributes": dict(attributes or {}),
    }
