"""Deleting executions, and the retention policy that deletes them in the background."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from runwire.domain import retention
from runwire.domain.access import Permission
from runwire.errors import RunwireError
from runwire.graphql.schema.auth import authorized
from runwire.graphql.schema.context import Info, core
from runwire.graphql.schema.errors import ErrorType, to_error


@strawberry.type
class DeleteExecutionSuccess:
    id: strawberry.ID


DeleteExecutionResult = Annotated[
    DeleteExecutionSuccess | ErrorType, strawberry.union("DeleteExecutionResult")
]


@strawberry.type(
    description=(
        "Which ended executions the workspace keeps; null limits nothing. An ended execution is"
        " deleted when older than keepDays or not among the newest keepExecutions ended ones;"
        " with keepFailedDays set, FAILED and TIMED_OUT ones are kept by that age alone."
    )
)
class RetentionPolicy:
    keep_days: int | None
    keep_executions: int | None
    keep_failed_days: int | None
    updated_at: datetime | None = strawberry.field(description="Null: never set.")
    updated_by: str

    @classmethod
    def of(cls, policy: retention.RetentionPolicy) -> RetentionPolicy:
        return cls(
            keep_days=policy.keep_days,
            keep_executions=policy.keep_executions,
            keep_failed_days=policy.keep_failed_days,
            updated_at=policy.updated_at,
            updated_by=policy.updated_by,
        )


@strawberry.input(description="Each limit at least 1, or null for none; all null keeps all.")
class RetentionPolicyInput:
    keep_days: int | None = strawberry.field(default=None, description="Days after it ended.")
    keep_executions: int | None = strawberry.field(
        default=None, description="The newest this many ended executions."
    )
    keep_failed_days: int | None = strawberry.field(
        default=None, description="Days FAILED and TIMED_OUT ones are kept; at least keepDays."
    )


@strawberry.type
class SetRetentionPolicySuccess:
    policy: RetentionPolicy


SetRetentionPolicyResult = Annotated[
    SetRetentionPolicySuccess | ErrorType, strawberry.union("SetRetentionPolicyResult")
]


@strawberry.type
class RetentionQueries:
    @strawberry.field(description="How long the workspace keeps ended executions.")
    async def retention_policy(self, info: Info) -> RetentionPolicy:
        actor = authorized(info, Permission.EXECUTION_READ)
        return RetentionPolicy.of(await core(info).retention.policy(actor))


@strawberry.type
class DeletionMutations:
    @strawberry.mutation(
        description=(
            "Delete an ended execution with its events, step runs, spans, control requests and"
            " artifacts (test:delete). One that has not ended is refused (stop it first); the"
            " audit trail keeps its rows. Cannot be undone."
        )
    )
    async def delete_execution(self, info: Info, id: strawberry.ID) -> DeleteExecutionResult:
        try:
            await core(info).deletion.delete(str(id), authorized(info, Permission.TEST_DELETE))
        except RunwireError as error:
            return to_error(error)
        return DeleteExecutionSuccess(id=id)

    @strawberry.mutation(
        description=(
            "Set the workspace's retention policy (admin). A background task in every process"
            " deletes the ended executions beyond it, a few hundred per transaction."
        )
    )
    async def set_retention_policy(
        self, info: Info, input: RetentionPolicyInput
    ) -> SetRetentionPolicyResult:
        try:
            actor = authorized(info, Permission.ADMIN)
            policy = retention.RetentionPolicy(
                keep_days=input.keep_days,
                keep_executions=input.keep_executions,
                keep_failed_days=input.keep_failed_days,
            )
            stored = await core(info).retention.set_policy(actor, policy)
        except RunwireError as error:
            return to_error(error)
        return SetRetentionPolicySuccess(policy=RetentionPolicy.of(stored))
