"""What every resolver can reach: the services of this process, and what the schema reads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from strawberry.types import Info as StrawberryInfo

from runwire.domain.batches import BatchService
from runwire.domain.control import ExecutionControl
from runwire.domain.identity import Authenticator
from runwire.domain.models import (
    Activity,
    Batch,
    Event,
    Execution,
    ExecutionStatus,
    ScenarioVersion,
    Span,
    StepRun,
)
from runwire.domain.queries import (
    Cursor,
    ExecutionFilter,
    ExecutionMetrics,
    MetricsQuery,
    Page,
    QueueCounts,
    ScenarioActiveCounts,
)
from runwire.domain.services import ExecutionService
from runwire.domain.sessions import LiveSessions
from runwire.domain.tokens import AccessStore, TokenService
from runwire.events.hub import Hub
from runwire.graphql.fanout.send_groups import SendGroups


class SchemaReads(Protocol):
    """What resolvers read from the store, and the audit they write (the repository does both)."""

    async def execution(
        self, execution_id: str, *, workspace: str | None, with_steps: bool = True
    ) -> Execution | None: ...

    async def executions(
        self, where: ExecutionFilter, first: int, after: Cursor | None
    ) -> Page[Execution]: ...

    async def active_executions(self, workspace: str) -> list[Execution]: ...

    async def active_counts(self, workspace: str) -> list[ScenarioActiveCounts]: ...

    async def queue_counts(self, workspace: str, slots: int) -> QueueCounts: ...

    async def steps(self, execution_id: str) -> tuple[StepRun, ...]: ...

    async def spans(self, execution_id: str) -> list[Span]: ...

    async def events(
        self, execution_id: str, after_seq: int, *, before_seq: int | None = None, limit: int = 1000
    ) -> list[Event]: ...

    async def scenarios(self, workspace: str) -> list[ScenarioVersion]: ...

    async def latest_scenario(self, workspace: str, name: str) -> ScenarioVersion | None: ...

    async def scenario_version(
        self, workspace: str, name: str, version: int
    ) -> ScenarioVersion | None: ...

    async def batch(self, batch_id: str, *, workspace: str) -> Batch | None: ...

    async def batch_counts(self, batch_id: str) -> dict[ExecutionStatus, int]: ...

    async def activities(
        self,
        workspace: str,
        *,
        execution_id: str | None = None,
        first: int = 100,
        before_id: int | None = None,
    ) -> list[tuple[int, Activity]]: ...

    async def record_activity(self, activity: Activity) -> None: ...


@dataclass(frozen=True, slots=True)
class Services:
    """Built once per process by app.py; shared by every request."""

    repository: SchemaReads
    executions: ExecutionService
    control: ExecutionControl
    batches: BatchService
    hub: Hub
    send_groups: SendGroups
    runner_slots: int
    access: AccessStore
    tokens: TokenService
    authenticator: Authenticator
    sessions: LiveSessions
    metrics: Callable[[MetricsQuery], Awaitable[ExecutionMetrics]]
    """Execution metrics, computed where the executions are stored."""


def services(info: Info) -> Services:
    """The process's services, put into every request's context by the controller."""
    found = info.context["services"]
    assert isinstance(found, Services)
    return found


Info = StrawberryInfo[dict[str, Any], None]
