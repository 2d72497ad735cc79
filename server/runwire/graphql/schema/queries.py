"""Read side: one execution, history, active executions, the queue, scenarios."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime

import strawberry

from runwire.domain import queries
from runwire.domain.access import Permission
from runwire.errors import FieldError, Invalid
from runwire.graphql.schema.access import AccessQueries
from runwire.graphql.schema.auth import authorized
from runwire.graphql.schema.batches import Batch
from runwire.graphql.schema.context import Info, core
from runwire.graphql.schema.deletion import RetentionQueries
from runwire.graphql.schema.errors import schema_paths
from runwire.graphql.schema.inputs import ExecutionFilter
from runwire.graphql.schema.metrics import ExecutionMetrics, execution_metrics
from runwire.graphql.schema.reviews import ReviewQueries
from runwire.graphql.schema.schedules import ScheduleQueries
from runwire.graphql.schema.secrets import SecretQueries
from runwire.graphql.schema.storable import check_every_argument
from runwire.graphql.schema.suites import SuiteQueries
from runwire.graphql.schema.types import (
    Execution,
    ExecutionConnection,
    ExecutionEdge,
    PageInfo,
    Queue,
    RunnerType,
    Scenario,
    ScenarioActiveCount,
)
from runwire.graphql.schema.webhooks import WebhookQueries
from runwire.scenarios.limits import unstorable

MAX_PAGE = 200
_PLAIN_ID = re.compile(r"[A-Za-z0-9_.-]*")


@strawberry.type
class Query(
    AccessQueries,
    SecretQueries,
    SuiteQueries,
    WebhookQueries,
    RetentionQueries,
    ScheduleQueries,
    ReviewQueries,
):
    @strawberry.field(description="The execution, or null if this workspace has none with the id.")
    async def execution(self, info: Info, id: strawberry.ID) -> Execution | None:
        actor = authorized(info, Permission.EXECUTION_READ)
        found = await core(info).store.executions.execution(
            str(id), workspace=actor.workspace_id, with_steps=False
        )
        return Execution.of(found) if found else None

    @strawberry.field(description="History, newest first, with a keyset cursor.")
    async def executions(
        self,
        info: Info,
        filter: ExecutionFilter | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> ExecutionConnection:
        actor = authorized(info, Permission.EXECUTION_READ)
        if not 0 <= first <= MAX_PAGE:
            raise Invalid([FieldError("first", f"expected 0..{MAX_PAGE}")])
        page = await core(info).store.history.executions(
            _filter(actor.workspace_id, filter), first, decode_cursor(after) if after else None
        )
        edges = [
            ExecutionEdge(cursor=encode_cursor(item.queued_at, item.id), node=Execution.of(item))
            for item in page.items
        ]
        return ExecutionConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next, end_cursor=edges[-1].cursor if edges else None
            ),
        )

    execution_metrics: ExecutionMetrics = strawberry.field(
        resolver=execution_metrics,
        description="Counts, success rate, durations and throughput of the executions that"
        " finished in [since, until); invalid windows are errors naming the argument.",
    )

    @strawberry.field
    async def active_executions(self, info: Info) -> list[Execution]:
        actor = authorized(info, Permission.EXECUTION_READ)
        active = await core(info).store.history.active_executions(actor.workspace_id)
        return [Execution.of(item) for item in active]

    @strawberry.field
    async def queue(self, info: Info) -> Queue:
        actor = authorized(info, Permission.EXECUTION_READ)
        found = core(info)
        counts = await found.store.history.queue_counts(actor.workspace_id, found.runner_slots)
        judged = await found.queue_health.judge(actor.workspace_id)
        return Queue(
            queued=counts.queued,
            running=counts.running,
            slots=counts.slots,
            runners_alive=judged.runners_alive,
            runner_slots=judged.runner_slots,
            oldest_queued_age_seconds=judged.oldest_queued_age_seconds,
            warning=judged.warning,
        )

    @strawberry.field(
        description="The runners alive now (their heartbeat within their lease), oldest first."
        " They serve every workspace's queue. Admin only: their hosts, pids and load are the"
        " deployment's, and a runner's load counts other workspaces' executions."
    )
    async def runners(self, info: Info) -> list[RunnerType]:
        authorized(info, Permission.ADMIN)
        return [RunnerType.of(found) for found in await core(info).queue_health.alive_runners()]

    @strawberry.field(
        description="Queued, running and paused executions per scenario; inline ones last."
    )
    async def active_execution_counts(self, info: Info) -> list[ScenarioActiveCount]:
        actor = authorized(info, Permission.EXECUTION_READ)
        counts = await core(info).store.history.active_counts(actor.workspace_id)
        return [ScenarioActiveCount.of(item) for item in counts]

    @strawberry.field
    async def batch(self, info: Info, id: strawberry.ID) -> Batch | None:
        actor = authorized(info, Permission.EXECUTION_READ)
        return await Batch.load(info, str(id), actor.workspace_id)

    @strawberry.field(description="The latest version of every scenario.")
    async def scenarios(self, info: Info) -> list[Scenario]:
        actor = authorized(info, Permission.EXECUTION_READ)
        found = await core(info).store.scenarios.scenarios(actor.workspace_id)
        return [Scenario.of(s) for s in found]

    @strawberry.field(description="The latest version, or the given one.")
    async def scenario(self, info: Info, name: str, version: int | None = None) -> Scenario | None:
        workspace = authorized(info, Permission.EXECUTION_READ).workspace_id
        scenarios = core(info).store.scenarios
        found = (
            await scenarios.latest_scenario(workspace, name)
            if version is None
            else await scenarios.scenario_version(workspace, name, version)
        )
        return Scenario.of(found) if found else None


def _filter(workspace: str, given: ExecutionFilter | None) -> queries.ExecutionFilter:
    if given is None:
        return queries.ExecutionFilter(workspace=workspace)
    try:
        return queries.ExecutionFilter(
            workspace=workspace,
            statuses=tuple(given.statuses or ()),
            scenario=given.scenario,
            label=given.label,
            queued_after=given.queued_after,
            queued_before=given.queued_before,
            search=given.search or None,
            batch=given.batch,
            triggered_by=given.triggered_by,
            trigger_types=tuple(given.trigger_types or ()),
            min_duration_ms=given.min_duration_ms,
            max_duration_ms=given.max_duration_ms,
        )
    except Invalid as error:
        raise schema_paths(error, "filter.") from None


def encode_cursor(queued_at: datetime, execution_id: str) -> str:
    queued = queued_at.isoformat()
    # Every edge of a page gets one: skip json.dumps (most of the cost) for ids that need no
    # escaping, which are all of ours (UUIDs); the text is byte for byte what it would write.
    if _PLAIN_ID.fullmatch(execution_id):
        raw = f'["{queued}", "{execution_id}"]'
    else:
        raw = json.dumps([queued, execution_id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> queries.Cursor:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        queued_at, execution_id = json.loads(raw)
        # Its id goes to the database: text no database can store is no cursor of ours.
        if unstorable(str(execution_id)):
            raise ValueError("unstorable id")
        queued = datetime.fromisoformat(queued_at)
        if queued.tzinfo is None:
            raise ValueError("a time without its offset")  # ours always carry one
        # In UTC, as the databases compare it: at the calendar's edges an offset overflows.
        return queries.Cursor(queued.astimezone(UTC), str(execution_id))
    except (binascii.Error, ValueError, TypeError, OverflowError) as error:
        raise Invalid([FieldError("after", "not a cursor from this API")]) from error


# A string no database can store is refused before it reaches a query's SQL (as a parameter
# Postgres would reject with a driver error).
check_every_argument(Query)
