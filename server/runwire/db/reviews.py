"""Reviews: the only code that reads runwire_review (db/projection.py writes it)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from runwire.db.engine import Database, optional_stored_datetime, stored_datetime
from runwire.db.rows import load
from runwire.domain.reviews import Review, ReviewStatus


class ReviewRepository:
    """runwire_review, a projection of the review steps' status events."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def reviews(
        self,
        workspace: str,
        *,
        status: ReviewStatus | None,
        execution_id: str | None,
        first: int,
    ) -> list[Review]:
        where = "workspace_id = {}"
        args: list[Any] = [workspace]
        if status is not None:
            where += " AND status = {}"
            args.append(status.value)
        if execution_id is not None:
            where += " AND execution_id = {}"
            args.append(execution_id)
        rows = await self._database.fetch(
            f"SELECT * FROM runwire_review WHERE {where}"
            " ORDER BY requested_at, execution_id, step_key, attempt LIMIT {}",
            *args,
            first,
        )
        return [_review_of(row) for row in rows]

    async def pending(self, execution_id: str, step_key: str, workspace: str) -> Review | None:
        rows = await self._database.fetch(
            "SELECT * FROM runwire_review WHERE execution_id = {} AND step_key = {}"
            " AND workspace_id = {} AND status = {} ORDER BY attempt DESC LIMIT 1",
            execution_id,
            step_key,
            workspace,
            ReviewStatus.PENDING.value,
        )
        return _review_of(rows[0]) if rows else None

    async def due(self, now: datetime, limit: int) -> list[Review]:
        rows = await self._database.fetch(
            "SELECT * FROM runwire_review WHERE status = {} AND expires_at <= {}"
            " ORDER BY expires_at LIMIT {}",
            ReviewStatus.PENDING.value,
            now,
            limit,
        )
        return [_review_of(row) for row in rows]


def _review_of(row: Mapping[str, Any]) -> Review:
    answer = row["answer"]
    return Review(
        execution_id=row["execution_id"],
        workspace_id=row["workspace_id"],
        step_key=row["step_key"],
        attempt=row["attempt"],
        status=ReviewStatus(row["status"]),
        request=load(row["request"]),
        requested_at=stored_datetime(row["requested_at"]),
        expires_at=optional_stored_datetime(row["expires_at"]),
        decision=row["decision"],
        values=None if answer is None else load(answer),
        comment=row["comment"],
        decided_by=row["decided_by"],
        decided_at=optional_stored_datetime(row["decided_at"]),
    )
