"""Deleting executions with every row kept about them, in one transaction per execution."""

from __future__ import annotations

from runwire.db.engine import Database
from runwire.domain.models import EXECUTION_TERMINAL

# Every table keyed by an execution id except runwire_activity: the audit trail outlives what it
# records. Artifacts keep their content in their row, so deleting the row deletes the content.
DEPENDENT_TABLES = (
    "runwire_event",
    "runwire_step_run",
    "runwire_span",
    "runwire_artifact",
    "runwire_execution_label",
    "runwire_control_request",
    "runwire_suite_run_execution",
)
_ENDED = ", ".join(f"'{status.value}'" for status in sorted(EXECUTION_TERMINAL))


class DeletionRepository:
    """The only code that deletes executions."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def delete_execution(self, workspace: str, execution_id: str) -> str | None:
        """Delete it if it has ended; its status (deleted or not), or None if there is none."""
        lock = " FOR UPDATE" if self._database.is_postgres else ""
        async with self._database.write():
            # Locked first, so a retry that would re-queue it waits for (then misses) the delete.
            rows = await self._database.fetch(
                "SELECT status FROM runwire_execution WHERE id = {} AND workspace_id = {}" + lock,
                execution_id,
                workspace,
            )
            if not rows:
                return None
            status = str(rows[0]["status"])
            if status in EXECUTION_TERMINAL:
                await self._delete_rows([execution_id])
            return status

    async def _delete_rows(self, ids: list[str]) -> None:
        """Delete these executions' rows (in the caller's transaction), dependents first."""
        marks = ", ".join("{}" for _ in ids)
        # A batch counts what is left of it: its total shrinks with its deleted executions, so
        # its progress (ended / total) can still reach 1.
        await self._database.fetch(
            "UPDATE runwire_batch SET total = total - (SELECT COUNT(*) FROM runwire_execution e"
            f" WHERE e.batch_id = runwire_batch.id AND e.id IN ({marks}))"
            f" WHERE id IN (SELECT batch_id FROM runwire_execution WHERE id IN ({marks}))",
            *ids,
            *ids,
        )
        for table in DEPENDENT_TABLES:
            await self._database.fetch(f"DELETE FROM {table} WHERE execution_id IN ({marks})", *ids)
        await self._database.fetch(f"DELETE FROM runwire_execution WHERE id IN ({marks})", *ids)
