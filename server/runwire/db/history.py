"""The read model across executions: history pages, what is active, and the live list's reads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from runwire.db.engine import Database, marks, stored_datetime
from runwire.db.rows import execution_of, load
from runwire.domain.models import (
    EXECUTION_TERMINAL,
    Event,
    EventType,
    Execution,
    ExecutionStatus,
)
from runwire.domain.queries import (
    Cursor,
    ExecutionFilter,
    Page,
    QueueCounts,
    ScenarioActiveCounts,
)
from runwire.domain.runners import Waiting

# Executions that hold a runner slot; PAUSING still runs its current step.
ACTIVE = (
    ExecutionStatus.RUNNING.value,
    ExecutionStatus.STOPPING.value,
    ExecutionStatus.PAUSING.value,
)
# Placeholders per statement stay far below SQLite's oldest limit of 999 host parameters.
_IDS_PER_QUERY = 300


class HistoryRepository:
    """Reads over many executions; it writes nothing."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def executions(
        self, where: ExecutionFilter, first: int, after: Cursor | None
    ) -> Page[Execution]:
        """Newest first, keyset-paginated on (queued_at, id)."""
        clauses: list[str] = ["workspace_id = {}"]
        args: list[Any] = [where.workspace]
        if where.statuses:
            clauses.append(f"status IN ({marks(where.statuses)})")
            args.extend(status.value for status in where.statuses)
        if where.scenario is not None:
            clauses.append("scenario_name = {}")
            args.append(where.scenario)
        if where.label is not None:
            clauses.append(
                "id IN (SELECT execution_id FROM runwire_execution_label WHERE label = {})"
            )
            args.append(where.label)
        if where.queued_after is not None:
            clauses.append("queued_at >= {}")
            args.append(where.queued_after)
        if where.queued_before is not None:
            clauses.append("queued_at < {}")
            args.append(where.queued_before)
        if where.search:
            # LOWER on both sides folds case alike on both databases (SQLite: ASCII only);
            # '!' escapes the search text's own % and _ so they match literally.
            pattern = "%" + _like_escaped(where.search) + "%"
            clauses.append(
                "(LOWER(name) LIKE LOWER({}) ESCAPE '!' OR LOWER(error) LIKE LOWER({}) ESCAPE '!'"
                " OR EXISTS (SELECT 1 FROM runwire_execution_label l"
                " WHERE l.execution_id = runwire_execution.id"
                " AND LOWER(l.label) LIKE LOWER({}) ESCAPE '!'))"
            )
            args.extend([pattern, pattern, pattern])
        if where.batch is not None:
            clauses.append("batch_id = {}")
            args.append(where.batch)
        if where.triggered_by is not None:
            clauses.append("created_by = {}")
            args.append(where.triggered_by)
        if where.trigger_types:
            clauses.append(f"trigger_type IN ({marks(where.trigger_types)})")
            args.extend(str(trigger) for trigger in where.trigger_types)
        if where.min_duration_ms is not None:
            clauses.append("duration_ms >= {}")
            args.append(where.min_duration_ms)
        if where.max_duration_ms is not None:
            clauses.append("duration_ms <= {}")
            args.append(where.max_duration_ms)
        if after is not None:
            # The plain range bound is what lets the index seek to the cursor; the OR alone is
            # applied as a filter after the scan, so a deep page walked every row before it.
            clauses.append("queued_at <= {}")
            clauses.append("(queued_at < {} OR (queued_at = {} AND id < {}))")
            args.extend([after.queued_at, after.queued_at, after.queued_at, after.id])
        sql = "SELECT * FROM runwire_execution WHERE " + " AND ".join(clauses)
        sql += " ORDER BY queued_at DESC, id DESC LIMIT {}"
        args.append(first + 1)
        rows = await self._database.fetch(sql, *args)
        items = tuple(execution_of(row) for row in rows[:first])
        return Page(items=items, has_next=len(rows) > first)

    async def active_executions(self, workspace: str) -> list[Execution]:
        rows = await self._database.fetch(
            "SELECT * FROM runwire_execution WHERE workspace_id = {}"
            f" AND status IN ({marks(ACTIVE)}) ORDER BY started_at, id",
            workspace,
            *ACTIVE,
        )
        return [execution_of(row) for row in rows]

    async def queue_counts(self, workspace: str, slots: int) -> QueueCounts:
        """The workspace's queued and running executions; `slots` is this process's runner's."""
        statuses = (ExecutionStatus.QUEUED.value, *ACTIVE)
        rows = await self._database.fetch(
            "SELECT status, COUNT(*) AS n FROM runwire_execution WHERE workspace_id = {}"
            f" AND status IN ({marks(statuses)}) GROUP BY status",
            workspace,
            *statuses,
        )
        counts = {row["status"]: int(row["n"]) for row in rows}
        running = sum(counts.get(status, 0) for status in ACTIVE)
        return QueueCounts(
            queued=counts.get(ExecutionStatus.QUEUED.value, 0), running=running, slots=slots
        )

    async def waiting(self, workspace: str | None) -> Waiting:
        """Queued executions no runner holds yet, of one workspace (None: of all)."""
        where = "status = {} AND owner IS NULL"
        args: list[Any] = [ExecutionStatus.QUEUED.value]
        if workspace is not None:
            where += " AND workspace_id = {}"
            args.append(workspace)
        rows = await self._database.fetch(
            f"SELECT COUNT(*) AS n, MIN(queued_at) AS oldest FROM runwire_execution WHERE {where}",
            *args,
        )
        oldest = rows[0]["oldest"] if rows else None
        return Waiting(
            count=int(rows[0]["n"]) if rows else 0,
            oldest_queued_at=None if oldest is None else stored_datetime(oldest),
        )

    async def active_counts(self, workspace: str) -> list[ScenarioActiveCounts]:
        """Queued, running, paused and waiting executions per scenario (None last: inline
        ones)."""
        queued, paused = ExecutionStatus.QUEUED.value, ExecutionStatus.PAUSED.value
        waiting = ExecutionStatus.WAITING.value
        statuses = (queued, paused, waiting, *ACTIVE)
        rows = await self._database.fetch(
            "SELECT scenario_name, status, COUNT(*) AS n FROM runwire_execution"
            " WHERE workspace_id = {}"
            f" AND status IN ({marks(statuses)}) GROUP BY scenario_name, status",
            workspace,
            *statuses,
        )
        counts: dict[str | None, dict[str, int]] = {}
        for row in rows:
            counts.setdefault(row["scenario_name"], {})[row["status"]] = int(row["n"])
        return [
            ScenarioActiveCounts(
                scenario=scenario,
                queued=by_status.get(queued, 0),
                running=sum(by_status.get(status, 0) for status in ACTIVE),
                paused=by_status.get(paused, 0),
                waiting=by_status.get(waiting, 0),
            )
            for scenario, by_status in sorted(
                counts.items(), key=lambda item: (item[0] is None, item[0] or "")
            )
        ]

    async def executions_by_id(self, ids: Iterable[str]) -> dict[str, Execution]:
        """The stored executions among `ids` (missing ones are left out), without steps."""
        found: dict[str, Execution] = {}
        unique = sorted(set(ids))
        for start in range(0, len(unique), _IDS_PER_QUERY):
            chunk = unique[start : start + _IDS_PER_QUERY]
            rows = await self._database.fetch(
                f"SELECT * FROM runwire_execution WHERE id IN ({marks(chunk)})", *chunk
            )
            found.update((row["id"], execution_of(row)) for row in rows)
        return found

    async def status_changes(
        self, ranges: Sequence[tuple[str, int, int]]
    ) -> list[tuple[Event, Execution]]:
        """Status events in each (execution_id, after, last] range, with the execution as now."""
        changes: list[tuple[Event, Execution]] = []
        for start in range(0, len(ranges), _IDS_PER_QUERY // 3):
            chunk = ranges[start : start + _IDS_PER_QUERY // 3]
            # One statement for the whole chunk; the (execution_id, seq) index serves each range.
            rows = await self._database.fetch(
                "SELECT e.seq AS change_seq, e.at AS change_at, e.data AS change_data, x.*"
                " FROM runwire_event e JOIN runwire_execution x ON x.id = e.execution_id"
                " WHERE e.type = {} AND ("
                + " OR ".join("(e.execution_id = {} AND e.seq > {} AND e.seq <= {})" for _ in chunk)
                + ") ORDER BY x.id, e.seq",
                EventType.EXECUTION_STATUS.value,
                *(value for bounds in chunk for value in bounds),
            )
            for row in rows:
                event = Event(
                    execution_id=row["id"],
                    seq=row["change_seq"],
                    at=stored_datetime(row["change_at"]),
                    type=EventType.EXECUTION_STATUS,
                    data=load(row["change_data"]),
                )
                changes.append((event, execution_of(row)))
        return changes

    async def unfinished_ids(
        self, workspace: str, statuses: Sequence[ExecutionStatus], limit: int
    ) -> list[str]:
        """Ids of the workspace's executions now in one of the (unfinished) `statuses`; newest
        first, at most `limit`."""
        wanted = tuple(s.value for s in statuses if s not in EXECUTION_TERMINAL)
        if not wanted:
            return []
        rows = await self._database.fetch(
            "SELECT id FROM runwire_execution WHERE workspace_id = {}"
            f" AND status IN ({marks(wanted)}) ORDER BY queued_at DESC, id DESC LIMIT {{}}",
            workspace,
            *wanted,
            limit,
        )
        return [row["id"] for row in rows]

    async def live_executions(self, ended_since: datetime, limit: int) -> list[Execution]:
        """Executions not ended, or ended at or after `ended_since`; newest first, at most limit."""
        unfinished = tuple(s.value for s in ExecutionStatus if s not in EXECUTION_TERMINAL)
        rows = await self._database.fetch(
            f"SELECT * FROM runwire_execution WHERE status IN ({marks(unfinished)})"
            " OR finished_at >= {} ORDER BY queued_at DESC, id DESC LIMIT {}",
            *unfinished,
            ended_since,
            limit,
        )
        return [execution_of(row) for row in rows]


def _like_escaped(text: str) -> str:
    """`text` as a LIKE pattern that matches itself only, for ESCAPE '!'."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")
