"""Live side: an execution's events (late joiners included) and the live list of executions."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import strawberry

from runwire.domain.access import Permission
from runwire.domain.models import Event
from runwire.events.hub import EventBatch
from runwire.graphql.fanout.sockets import send_shared, subscription_socket
from runwire.graphql.schema.auth import authorized
from runwire.graphql.schema.context import Info, core, services
from runwire.graphql.schema.inputs import ExecutionFilter
from runwire.graphql.schema.queries import _filter as domain_filter
from runwire.graphql.schema.reviews import ReviewSubscriptions
from runwire.graphql.schema.storable import check_every_argument
from runwire.graphql.schema.suites import SuiteSubscriptions
from runwire.graphql.schema.types import ExecutionEventBatch, ExecutionUpdate, event_of


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
class Subscription(SuiteSubscriptions, ReviewSubscriptions):
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
        hub = core(info).hub
        execution = str(execution_id)
        socket = subscription_socket(info)
        with services(info).send_groups.seat(
            socket, execution, lambda: hub.delivered_seq(execution)
        ) as seat:
            last = after_seq
            while True:
                # Another workspace's execution is refused exactly like a missing one.
                async with aclosing(hub.follow(execution, last, workspace=workspace)) as follow:
                    async for batch in follow:
                        payload = _payload(batch)
                        # Another subscriber with this document had it executed: send its message.
                        if not await send_shared(socket, payload):
                            yield payload
                        last = batch[-1].seq
                        park = False
                        if seat is not None:
                            seat.delivered(batch, payload)
                            park = not batch[-1].is_terminal and seat.may_park(
                                hub.delivered_seq(execution)
                            )
                        # An idle subscription waits for its next batch for long: keep this
                        # one no longer.
                        del batch, payload
                        if park:
                            break  # its group's senders send its batches from here
                    else:
                        return
                assert seat is not None  # only a seat breaks out of following
                if await seat.park():
                    return  # a sender sent its terminal batch
                last = seat.last_seq

    @strawberry.subscription(
        description=(
            "One message whenever an execution matching the filter changes status, from now on"
            " (read the current list with executions or activeExecutions after subscribing)."
            " Also the change that takes a listed execution out of the filter's statuses, so a"
            " live list can drop it; and, while an execution runs, a CHANGED message with the"
            " same status when its usage totals (tokens, cost) change, coalesced to at most one"
            " every half second per execution. Never completes."
        )
    )
    async def execution_updates(
        self, info: Info, filter: ExecutionFilter | None = None
    ) -> AsyncGenerator[ExecutionUpdate, None]:
        where = domain_filter(authorized(info, Permission.EXECUTION_READ).workspace_id, filter)
        # aclosing: a client that goes away unsubscribes the watcher at once, not at GC.
        async with aclosing(core(info).hub.watch(where)) as updates:
            async for update in updates:
                yield ExecutionUpdate.of(update)


# An unstorable string in an argument is refused before it reaches the database's lookup.
check_every_argument(Subscription)
