"""Deleting executions in the schema."""

from __future__ import annotations

from typing import Annotated

import strawberry

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
