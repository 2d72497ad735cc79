"""The audit trail: who did what, when, and with what result."""

from __future__ import annotations

from typing import Any

from runwire.db import tables
from runwire.db.engine import Database
from runwire.db.rows import activity_of, dump
from runwire.domain.models import Activity


class AuditRepository:
    """The only code that touches runwire_activity."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def record_activity(self, activity: Activity) -> None:
        await insert_activity(self._database, activity)

    async def activities(
        self,
        workspace: str,
        *,
        execution_id: str | None = None,
        first: int = 100,
        before_id: int | None = None,
    ) -> list[tuple[int, Activity]]:
        """The workspace's audit trail, newest first, optionally of one execution; with row ids."""
        sql = "SELECT * FROM runwire_activity WHERE workspace_id = {}"
        args: list[Any] = [workspace]
        if execution_id is not None:
            sql += " AND execution_id = {}"
            args.append(execution_id)
        if before_id is not None:
            sql += " AND id < {}"
            args.append(before_id)
        rows = await self._database.fetch(sql + " ORDER BY id DESC LIMIT {}", *args, first)
        return [(row["id"], activity_of(row)) for row in rows]


async def insert_activity(database: Database, activity: Activity) -> None:
    """One audit row (in the current transaction, if any)."""
    if database.is_postgres:
        # Every mutation is audited: the hot path skips Piccolo's query building.
        await database.execute_postgres(
            "INSERT INTO runwire_activity (workspace_id, at, actor, action, result,"
            " execution_id, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            activity.workspace_id,
            activity.at,
            activity.actor[:200],
            activity.action,
            activity.result,
            activity.execution_id,
            dump(activity.detail),
        )
        return
    await tables.Activity.insert(
        tables.Activity(
            workspace_id=activity.workspace_id,
            at=activity.at,
            actor=activity.actor[:200],
            action=activity.action,
            result=activity.result,
            execution_id=activity.execution_id,
            detail=dump(activity.detail),
        )
    )
