"""Input types of the mutations and queries."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from runwire.graphql.types import ExecutionStatus


@strawberry.input(description="Give exactly one of scenario (a saved name) or definition (text).")
class StartExecutionInput:
    scenario: str | None = None
    definition: str | None = strawberry.field(
        default=None, description="An inline definition as YAML or JSON text."
    )
    inputs: JSON | None = None
    labels: list[str] | None = None
    priority: int = 0
    timeout_seconds: float | None = None
    grace_seconds: float | None = strawberry.field(
        default=None, description="Seconds between SIGINT and SIGKILL when stopped."
    )


@strawberry.input(description="Every given field must match.")
class ExecutionFilter:
    statuses: list[ExecutionStatus] | None = None  # type: ignore[valid-type]
    scenario: str | None = None
    label: str | None = None
    queued_after: datetime | None = None
    queued_before: datetime | None = None
    search: str | None = strawberry.field(
        default=None,
        description="Case-insensitive substring of the name, a label or the error, taken"
        " literally (% and _ are not wildcards). On SQLite only ASCII letters fold case.",
    )
    batch: str | None = strawberry.field(default=None, description="A batch id.")
    triggered_by: str | None = strawberry.field(
        default=None, description="Who started the execution."
    )
    min_duration_ms: int | None = strawberry.field(
        default=None, description="Inclusive; executions still running have no duration."
    )
    max_duration_ms: int | None = strawberry.field(
        default=None, description="Inclusive; executions still running have no duration."
    )
