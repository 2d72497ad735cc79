"""Batches: a batch row with all its queued executions, its counts, and stopping it."""

from __future__ import annotations

from collections.abc import Sequence

from runwire.db import tables
from runwire.db.engine import Database, marks
from runwire.db.executions import insert_executions
from runwire.db.rows import USAGE_SUMS, batch_of, usage_of
from runwire.domain.agents import UsageTotals
from runwire.domain.clock import utc_now
from runwire.domain.models import EXECUTION_TERMINAL, Batch, Event, Execution, ExecutionStatus


class BatchRepository:
    """The only code that touches runwire_batch."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def create_batch(
        self, batch: Batch, executions: Sequence[tuple[Execution, Event]]
    ) -> None:
        """Insert a batch and all its queued executions in one transaction."""
        async with self._database.write():
            await insert_batch(self._database, batch, executions)

    async def batch(self, batch_id: str, *, workspace: str) -> Batch | None:
        """The batch, if it is in `workspace` (another workspace's is None, like a missing one)."""
        rows = await self._database.fetch(
            "SELECT * FROM runwire_batch WHERE id = {} AND workspace_id = {}", batch_id, workspace
        )
        return batch_of(rows[0]) if rows else None

    async def batch_counts(self, batch_id: str) -> dict[ExecutionStatus, int]:
        rows = await self._database.fetch(
            "SELECT status, COUNT(*) AS n FROM runwire_execution WHERE batch_id = {}"
            " GROUP BY status",
            batch_id,
        )
        return {ExecutionStatus(row["status"]): int(row["n"]) for row in rows}

    async def batch_usage(self, batch_id: str) -> UsageTotals:
        """Tokens and cost summed over the batch's executions (their rows keep the totals)."""
        rows = await self._database.fetch(
            f"SELECT {USAGE_SUMS} FROM runwire_execution WHERE batch_id = {{}}", batch_id
        )
        return usage_of(rows[0])

    async def unfinished_in_batch(self, batch_id: str) -> list[str]:
        terminal = [status.value for status in EXECUTION_TERMINAL]
        rows = await self._database.fetch(
            "SELECT id FROM runwire_execution WHERE batch_id = {}"
            f" AND status NOT IN ({marks(terminal)}) ORDER BY queued_at DESC, id DESC",
            batch_id,
            *terminal,
        )
        return [row["id"] for row in rows]

    async def mark_batch_stopped(self, batch_id: str) -> None:
        await self._database.fetch(
            "UPDATE runwire_batch SET stopped_at = COALESCE(stopped_at, {}) WHERE id = {}",
            utc_now(),
            batch_id,
        )


async def insert_batch(
    database: Database, batch: Batch, executions: Sequence[tuple[Execution, Event]]
) -> None:
    """Insert a batch and its queued executions (in the current transaction)."""
    await tables.Batch.insert(
        tables.Batch(
            id=batch.id,
            workspace_id=batch.workspace_id,
            name=batch.name,
            scenario_name=batch.scenario_name,
            concurrency=batch.concurrency,
            total=batch.total,
            created_at=batch.created_at,
            created_by=batch.created_by[:200],
        )
    )
    await insert_executions(database, executions)
