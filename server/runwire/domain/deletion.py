"""Delete an ended execution with everything kept about it; its audit rows stay."""

from __future__ import annotations

from typing import Protocol

from runwire.domain.access import Actor, Permission
from runwire.domain.models import EXECUTION_TERMINAL
from runwire.errors import InvalidTransition, NotFound


class DeletionStore(Protocol):
    """Where executions are deleted (db/deletion.py)."""

    async def delete_execution(self, workspace: str, execution_id: str) -> str | None:
        """Delete it if it has ended; its status (deleted or not), or None if there is none."""
        ...


class ExecutionDeletion:
    """The `deleteExecution` mutation's service: one transaction per execution."""

    def __init__(self, store: DeletionStore) -> None:
        self._store = store

    async def delete(self, execution_id: str, actor: Actor) -> None:
        """Delete an ended execution of the actor's workspace; refuse one that has not ended."""
        actor.require(Permission.TEST_DELETE)
        status = await self._store.delete_execution(actor.workspace_id, execution_id)
        # Another workspace's id answers exactly as a missing one: tenants learn nothing.
        if status is None:
            raise NotFound(f"execution {execution_id} not found")
        if status not in EXECUTION_TERMINAL:
            raise InvalidTransition(
                f"execution {execution_id} is {status}: only an ended execution can be deleted"
                " (stop it first)",
                status,
            )
