"""Deleting executions with every row kept about them, in one transaction per execution."""

from __future__ import annotations

from typing import Any

from runwire.db.engine import Database, optional_stored_datetime
from runwire.domain.models import EXECUTION_TERMINAL, ExecutionStatus
from runwire.domain.retention import RetentionPolicy, SweepRules

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
    "runwire_review",
)
_ENDED = ", ".join(f"'{status.value}'" for status in sorted(EXECUTION_TERMINAL))
# Kept for `keep_failed_days` when a policy sets it.
_FAILED = f"'{ExecutionStatus.FAILED.value}', '{ExecutionStatus.TIMED_OUT.value}'"


class DeletionRepository:
    """The only code that deletes executions, and that touches runwire_retention_policy."""

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

    async def retention_policy(self, workspace: str) -> RetentionPolicy:
        rows = await self._database.fetch(
            "SELECT * FROM runwire_retention_policy WHERE workspace_id = {}", workspace
        )
        return _policy(rows[0]) if rows else RetentionPolicy()

    async def put_retention_policy(self, workspace: str, policy: RetentionPolicy) -> None:
        await self._database.fetch(
            "INSERT INTO runwire_retention_policy (workspace_id, keep_days, keep_executions,"
            " keep_failed_days, updated_at, updated_by) VALUES ({}, {}, {}, {}, {}, {})"
            " ON CONFLICT (workspace_id) DO UPDATE SET keep_days = excluded.keep_days,"
            " keep_executions = excluded.keep_executions,"
            " keep_failed_days = excluded.keep_failed_days,"
            " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            workspace,
            policy.keep_days,
            policy.keep_executions,
            policy.keep_failed_days,
            policy.updated_at,
            policy.updated_by[:200],
        )

    async def retention_policies(self) -> list[tuple[str, RetentionPolicy]]:
        rows = await self._database.fetch(
            "SELECT * FROM runwire_retention_policy WHERE keep_days IS NOT NULL"
            " OR keep_executions IS NOT NULL OR keep_failed_days IS NOT NULL"
            " ORDER BY workspace_id"
        )
        return [(row["workspace_id"], _policy(row)) for row in rows]

    async def delete_expired(self, workspace: str, rules: SweepRules, limit: int) -> int:
        """Delete at most `limit` expired executions in one transaction; how many."""
        args: list[Any] = [workspace]
        kept = ["FALSE"]
        if rules.older_than is not None:
            kept = ["finished_at < {}"]
            args.append(rules.older_than)
        if rules.keep_newest is not None:
            newest = await self._database.fetch(
                "SELECT finished_at, id FROM runwire_execution"
                f" WHERE workspace_id = {{}} AND status IN ({_ENDED})"
                # Postgres sorts nulls first when descending, SQLite last: leave them out.
                " AND finished_at IS NOT NULL"
                " ORDER BY finished_at DESC, id DESC LIMIT 1 OFFSET {}",
                workspace,
                rules.keep_newest - 1,
            )
            if newest:
                # Older than the last one kept, in (finished_at, id) order.
                kept.append("(finished_at < {} OR (finished_at = {} AND id < {}))")
                args += [newest[0]["finished_at"], newest[0]["finished_at"], newest[0]["id"]]
        expired = " OR ".join(kept)
        if rules.failed_older_than is not None:
            expired = (
                f"(status NOT IN ({_FAILED}) AND ({expired}))"
                f" OR (status IN ({_FAILED}) AND finished_at < {{}})"
            )
            args.append(rules.failed_older_than)
        # Only ended executions that their runner has released (it does a moment after the end).
        # Postgres: two sweeping processes take disjoint executions instead of waiting on each
        # other's; SQLite's one writer at a time gives the same.
        skip = " FOR UPDATE SKIP LOCKED" if self._database.is_postgres else ""
        async with self._database.write():
            rows = await self._database.fetch(
                "SELECT id FROM runwire_execution"
                f" WHERE workspace_id = {{}} AND status IN ({_ENDED}) AND owner IS NULL"
                f" AND ({expired})"
                f" LIMIT {{}}{skip}",
                *args,
                limit,
            )
            ids = [str(row["id"]) for row in rows]
            if ids:
                await self._delete_rows(ids)
        return len(ids)


def _policy(row: Any) -> RetentionPolicy:
    return RetentionPolicy(
        keep_days=row["keep_days"],
        keep_executions=row["keep_executions"],
        keep_failed_days=row["keep_failed_days"],
        updated_at=optional_stored_datetime(row["updated_at"]),
        updated_by=row["updated_by"],
    )
