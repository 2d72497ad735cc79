"""Live side: an execution's events (late joiners included) and the live list of executions."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import strawberry

from runwire.domain.access import Permission
from runwire.domain.models import Event
from runwire.events.hub import EventBatch
from runwire.graphql.auth import authorized
from runwire.graphql.context import Info, services
from runwire.graphql.inputs import ExecutionFilter
from runwire.graphql.queries import _filter as domain_filter
from runwire.graphql.sharing import send_shared
from runwire.graphql.types import ExecutionEventBatch, ExecutionUpdate, event_of


def _payload(batch: list[Event]) -> ExecutionEventBatch:
    """The batch as GraphQL sees it; for a live batch, one object shared by all its followers."""
    if not isinstance(batch, EventBatch):
        return _view(batch)
    view = batch.views.get(ExecutionEventBatch)
    if not isinstance(view, ExecutionEventBatch):
        view = batch.views[ExecutionEventBatch] = _view(batch)
    return view


def _view(batch: list[Event]) -> ExecutionEventBatch:
    return ExecutionEventBatch(events=[event_of(event) for event in batch], last_seq=batch[-1].seq)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description=(
            "Every event with seq > afterSeq exactly once, in order, batched; completes after"
            " the terminal event. afterSeq < 0 means live only (from the current last seq)."
        )
    )
    async def execution_events(
        self, info: Info, execution_id: strawberry.ID, after_seq: int = 0
    ) -> AsyncGenerator[ExecutionEventBatch, None]:
        workspace = authorized(info, Permission.EXECUTION_READ).workspace_id
        # Another workspace's execution is refused exactly like a missing one.
        follow = services(info).hub.follow(str(execution_id), after_seq, workspace=workspace)
        async for batch in follow:
            payload = _payload(batch)
            # Another subscriber with this document already had it executed: send its message.
            if not await send_shared(info, payload):
                yield payload
            # An idle subscription waits for its next batch for long: keep this one no longer.
            del batch, payload

    @strawberry.subscription(
        description=(
            "One message whenever an execution matching the filter changes status, from now on"
            " (read the current list with executions or activeExecutions after subscribing)."
            " Also the change that takes a listed execution out of the filter's statuses, so a"
            " live list can drop it. Never completes."
        )
    )
    async def execution_updates(
        self, info: Info, filter: ExecutionFilter | None = None
    ) -> AsyncGenerator[ExecutionUpdate, None]:
        where = domain_filter(authorized(info, Permission.EXECUTION_READ).workspace_id, filter)
        # aclosing: a client that goes away unsubscribes the watcher at once, not at GC.
        async with aclosing(services(info).hub.watch(where)) as updates:
            async for update in updates:
                yield ExecutionUpdate.of(update)
