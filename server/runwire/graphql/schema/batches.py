"""Batches: start many runs of one definition, watch their progress, stop them together."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from runwire.domain import models, queries
from runwire.domain.access import Permission
from runwire.domain.batches import MAX_RUNS, BatchRequest, BatchRun, progress
from runwire.errors import RunwireError
from runwire.graphql.schema.auth import authorized
from runwire.graphql.schema.context import Info, core
from runwire.graphql.schema.errors import ErrorType, to_error
from runwire.graphql.schema.inputs import StartBatchInput, json_object, trace_fields
from runwire.graphql.schema.types import Execution, ExecutionStatus, UsageTotals


@strawberry.type(description="Executions started together; at most `concurrency` run at once.")
class Batch:
    id: strawberry.ID
    name: str
    scenario: str | None
    concurrency: int
    total: int
    created_at: datetime
    triggered_by: str
    stopped_at: datetime | None
    queued: int
    running: int = strawberry.field(description="RUNNING, PAUSING or STOPPING.")
    paused: int
    waiting: int = strawberry.field(description="WAITING for a review step's decision.")
    succeeded: int
    failed: int
    cancelled: int
    timed_out: int
    progress: float = strawberry.field(description="The share of executions that ended, 0..1.")

    @strawberry.field(
        description=(
            "The batch's executions, newest first; for search and paging use"
            " executions(filter: {batch: id})."
        )
    )
    async def executions(
        self,
        info: Info,
        statuses: list[ExecutionStatus] | None = None,  # type: ignore[valid-type]
        first: Annotated[int, strawberry.argument(description=f"At most {MAX_RUNS}.")] = 100,
    ) -> list[Execution]:
        page = await core(info).store.history.executions(
            queries.ExecutionFilter(
                workspace=authorized(info, Permission.EXECUTION_READ).workspace_id,
                statuses=tuple(statuses or ()),
                batch=str(self.id),
            ),
            max(0, min(first, MAX_RUNS)),
            None,
        )
        return [Execution.of(item) for item in page.items]

    @strawberry.field(
        description="Tokens and cost over the batch's executions so far; the cost is null while"
        " any report has no price."
    )
    async def usage(self, info: Info) -> UsageTotals:
        return UsageTotals.of_totals(await core(info).store.batches.batch_usage(str(self.id)))

    @classmethod
    async def load(cls, info: Info, batch_id: str, workspace: str) -> Batch | None:
        batches = core(info).store.batches
        batch = await batches.batch(batch_id, workspace=workspace)
        if batch is None:
            return None
        counts = await batches.batch_counts(batch_id)
        S = models.ExecutionStatus
        return cls(
            id=strawberry.ID(batch.id),
            name=batch.name,
            scenario=batch.scenario_name,
            concurrency=batch.concurrency,
            total=batch.total,
            created_at=batch.created_at,
            triggered_by=batch.created_by,
            stopped_at=batch.stopped_at,
            queued=counts.get(S.QUEUED, 0),
            running=sum(counts.get(s, 0) for s in (S.RUNNING, S.PAUSING, S.STOPPING)),
            paused=counts.get(S.PAUSED, 0),
            waiting=counts.get(S.WAITING, 0),
            succeeded=counts.get(S.SUCCEEDED, 0),
            failed=counts.get(S.FAILED, 0),
            cancelled=counts.get(S.CANCELLED, 0),
            timed_out=counts.get(S.TIMED_OUT, 0),
            progress=progress(counts, batch.total),
        )


@strawberry.type
class BatchSuccess:
    batch: Batch


BatchResult = Annotated[
    BatchSuccess | ErrorType,
    strawberry.union("BatchResult"),
]


@strawberry.type
class BatchMutations:
    @strawberry.mutation(description="Queue every run at once (all or none); see Batch.")
    async def start_batch(self, info: Info, input: StartBatchInput) -> BatchResult:
        try:
            actor = authorized(info, Permission.EXECUTION_WRITE)
            request = BatchRequest(
                scenario=input.scenario,
                definition=input.definition,
                runs=[
                    BatchRun(
                        inputs=json_object(run.inputs, f"runs[{index}].inputs"),
                        labels=tuple(run.labels or ()),
                    )
                    for index, run in enumerate(input.runs)
                ],
                concurrency=input.concurrency,
                name=input.name,
                priority=input.priority,
                labels=tuple(input.labels or ()),
                **trace_fields(info.context, input.trace_context),
            )
            batch = await core(info).batches.start(request, actor)
        except RunwireError as error:
            return to_error(error)
        return await _success(info, batch.id, actor.workspace_id)

    @strawberry.mutation(description="Cancel queued and paused runs and stop running ones.")
    async def stop_batch(
        self, info: Info, id: strawberry.ID, reason: str | None = None
    ) -> BatchResult:
        try:
            actor = authorized(info, Permission.EXECUTION_WRITE)
            batch = await core(info).batches.stop(str(id), reason, actor)
        except RunwireError as error:
            return to_error(error)
        return await _success(info, batch.id, actor.workspace_id)


async def _success(info: Info, batch_id: str, workspace: str) -> BatchSuccess:
    found = await Batch.load(info, batch_id, workspace)
    assert found is not None
    return BatchSuccess(batch=found)
