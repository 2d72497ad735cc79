"""Execution metrics computed in the database, the same way on SQLite and Postgres."""

from __future__ import annotations

from typing import Any

from runwire.db.engine import Database, marks
from runwire.db.rows import USAGE_SUMS, load, usage_of
from runwire.domain.agents import UsageTotals
from runwire.domain.models import EXECUTION_TERMINAL, ExecutionStatus
from runwire.domain.queries import (
    PERCENTILES,
    CallMetrics,
    ExecutionMetrics,
    MetricsQuery,
    nearest_rank,
    terminal_statuses,
)

CALL_ATTEMPTS_READ = 10_000
"""The most recent call attempts a window's call figures are computed from."""


class MetricsRepository:
    """Aggregates over finished executions; it writes nothing."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def execution_metrics(self, query: MetricsQuery) -> ExecutionMetrics:
        """Counts, nearest-rank percentiles and the maximum of executions finished in the window."""
        where, args = _window(query)
        # One snapshot, so counts and ranks agree while executions finish: without it, one
        # finishing (or resumed) between the count and a ranked read shifts the ranks.
        async with self._database.snapshot():
            rows = await self._database.fetch(
                "SELECT status, COUNT(*) AS n, COUNT(duration_ms) AS measured,"
                f" MAX(duration_ms) AS max_ms, {USAGE_SUMS} FROM runwire_execution"
                f" WHERE {where} GROUP BY status",
                *args,
            )
            counts = dict.fromkeys(terminal_statuses(), 0)
            for row in rows:
                counts[ExecutionStatus(row["status"])] = int(row["n"])
            measured = sum(int(row["measured"]) for row in rows)
            maxima = [int(row["max_ms"]) for row in rows if row["max_ms"] is not None]
            usage = UsageTotals()
            for row in rows:
                usage = usage.plus(usage_of(row))
            percentiles = {
                p: await self._ranked(where, args, nearest_rank(p, measured), measured)
                for p in PERCENTILES
            }
            # Calls are few and slow (each holds a phone line for seconds): their figures are
            # read whole and ranked here, not in SQL over JSON that SQLite and Postgres read
            # differently. The cap bounds one answer.
            call_rows = await self._database.fetch(
                "SELECT attributes FROM runwire_step_run WHERE kind = {} AND attributes IS NOT"
                f" NULL AND execution_id IN (SELECT id FROM runwire_execution WHERE {where})"
                f" ORDER BY id DESC LIMIT {CALL_ATTEMPTS_READ}",
                "call",
                *args,
            )
        return ExecutionMetrics(
            query=query,
            counts=counts,
            measured=measured,
            percentiles_ms=percentiles,
            max_ms=max(maxima, default=None),
            usage=usage,
            calls=CallMetrics.of(load(row["attributes"]) for row in call_rows)
            if call_rows
            else None,
        )

    async def live_counts(self) -> list[tuple[str, str, int]]:
        """(workspace name, status, count) of executions not ended, 0 for each status absent.

        Two short reads for Prometheus scrapes: the count is grouped in the database (the claim
        index leads with status), and workspaces are few.
        """
        live = [status for status in ExecutionStatus if status not in EXECUTION_TERMINAL]
        rows = await self._database.fetch(
            "SELECT workspace_id, status, COUNT(*) AS n FROM runwire_execution"
            f" WHERE status IN ({marks(live)}) GROUP BY workspace_id, status",
            *(status.value for status in live),
        )
        names = {
            row["id"]: row["name"]
            for row in await self._database.fetch("SELECT id, name FROM runwire_workspace")
        }
        counts = {(name, status.value): 0 for name in names.values() for status in live}
        for row in rows:
            key = (names.get(row["workspace_id"], row["workspace_id"]), row["status"])
            counts[key] = counts.get(key, 0) + int(row["n"])
        return [(workspace, status, n) for (workspace, status), n in sorted(counts.items())]

    async def _ranked(self, where: str, args: list[Any], rank: int, measured: int) -> int | None:
        """The rank-th smallest stored duration (1-based) among `measured`; None if there is none.

        Postgres's percentile_disc has no SQLite counterpart (and ranks with floating point), so
        both databases pick the row with ORDER BY … LIMIT 1 OFFSET, the rank computed in integers.
        Sorting from the nearer end keeps the offset, and so the database's top-N sort, small.
        """
        if measured == 0:
            return None
        ascending = rank - 1 <= measured - rank
        rows = await self._database.fetch(
            f"SELECT duration_ms FROM runwire_execution WHERE {where} AND duration_ms IS NOT NULL"
            f" ORDER BY duration_ms {'ASC' if ascending else 'DESC'} LIMIT 1 OFFSET {{}}",
            *args,
            rank - 1 if ascending else measured - rank,
        )
        return int(rows[0]["duration_ms"]) if rows else None


def _window(query: MetricsQuery) -> tuple[str, list[Any]]:
    """The WHERE clause: one workspace, finished in [since, until), so the index bounds the scan."""
    clauses = ["workspace_id = {}", "finished_at >= {}", "finished_at < {}"]
    args: list[Any] = [query.workspace, query.since, query.until]
    # finished_at is cleared whenever an execution leaves a terminal status; checking the status
    # as well costs nothing and keeps a row that disagrees with itself out of the counts.
    statuses = terminal_statuses()
    clauses.append(f"status IN ({', '.join('{}' for _ in statuses)})")
    args.extend(status.value for status in statuses)
    if query.scenario is not None:
        clauses.append("scenario_name = {}")
        args.append(query.scenario)
    for label in query.labels:
        clauses.append(
            "EXISTS (SELECT 1 FROM runwire_execution_label l"
            " WHERE l.label = {} AND l.execution_id = runwire_execution.id)"
        )
        args.append(label)
    return " AND ".join(clauses), args
