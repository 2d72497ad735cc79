"""Live side: every event of an execution, late joiners included, in batches."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from runwire.graphql.context import Info, services
from runwire.graphql.types import ExecutionEventBatch, event_of


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
        async for batch in services(info).hub.follow(str(execution_id), after_seq):
            yield ExecutionEventBatch(
                events=[event_of(event) for event in batch], last_seq=batch[-1].seq
            )
