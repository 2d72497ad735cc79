"""Suites: the versions of each named suite, per workspace."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from runwire.db import tables
from runwire.db.batches import insert_batch
from runwire.db.engine import Database, marks
from runwire.db.executions import insert_executions
from runwire.db.rows import (
    USAGE_SUMS,
    call_figures_of,
    canonical,
    dump,
    repeat_outcome_of,
    step_failure_of,
    suite_baseline_of,
    suite_of,
    suite_run_cases_text,
    suite_run_of,
    usage_of,
)
from runwire.domain.clock import utc_now
from runwire.domain.models import (
    EXECUTION_TERMINAL,
    Batch,
    CallFigures,
    Event,
    Execution,
    RepeatOutcome,
    StepFailure,
    SuiteBaseline,
    SuiteRun,
    SuiteRunMember,
    SuiteRunTotals,
    SuiteVersion,
)

_SUITE_LOCK = 0x52575355  # "RWSU": with a hash of workspace/name, one lock per suite
# Member rows are inserted in chunks: SQLite allows 32,766 parameters per statement.
_MEMBER_ROWS_PER_INSERT = 1_000


class SuiteRepository:
    """The only code that touches runwire_suite."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def save_suite(
        self,
        workspace: str,
        name: str,
        description: str,
        tags: Sequence[str],
        definition: Mapping[str, Any],
        actor: str,
    ) -> SuiteVersion:
        """Store `definition` as the next version of `name`, unless it equals the latest."""
        async with self._database.write():
            if self._database.is_postgres:
                # Read-then-insert, as for scenarios: two writers of one name would both take
                # the same next version. SQLite's IMMEDIATE write transaction queues them.
                await self._database.fetch(
                    "SELECT pg_advisory_xact_lock({}, hashtext({}))",
                    _SUITE_LOCK,
                    f"{workspace}/{name}",
                )
            latest = await self.latest_suite(workspace, name)
            if latest is not None and canonical(latest.definition) == canonical(definition):
                return latest
            row = tables.Suite(
                workspace_id=workspace,
                name=name,
                version=1 if latest is None else latest.version + 1,
                description=description,
                tags=dump(list(tags)),
                definition=dump(definition),
                created_at=utc_now(),
                created_by=actor[:200],
            )
            await row.save()
        return suite_of(row.to_dict())

    async def latest_suite(self, workspace: str, name: str) -> SuiteVersion | None:
        rows = await self._database.fetch(
            "SELECT * FROM runwire_suite WHERE workspace_id = {} AND name = {}"
            " ORDER BY version DESC LIMIT 1",
            workspace,
            name,
        )
        return suite_of(rows[0]) if rows else None

    async def suite_version(self, workspace: str, name: str, version: int) -> SuiteVersion | None:
        rows = await self._database.fetch(
            "SELECT * FROM runwire_suite WHERE workspace_id = {} AND name = {} AND version = {}",
            workspace,
            name,
            version,
        )
        return suite_of(rows[0]) if rows else None

    async def suites(self, workspace: str, tag: str | None = None) -> list[SuiteVersion]:
        """The latest version of every suite of the workspace (with `tag`, if given), by name."""
        rows = await self._database.fetch(
            "SELECT s.* FROM runwire_suite s WHERE s.workspace_id = {} AND s.version ="
            " (SELECT MAX(version) FROM runwire_suite l"
            " WHERE l.workspace_id = s.workspace_id AND l.name = s.name)"
            " ORDER BY s.name",
            workspace,
        )
        found = [suite_of(row) for row in rows]
        return [suite for suite in found if tag is None or tag in suite.tags]


class SuiteRunRepository:
    """The only code that touches runwire_suite_run and runwire_suite_run_execution."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def create_suite_run(
        self,
        run: SuiteRun,
        batch: Batch,
        executions: Sequence[tuple[Execution, Event]],
        members: Sequence[SuiteRunMember],
        fingerprint: str | None = None,
    ) -> tuple[SuiteRun, bool]:
        """The run, its batch, every execution with its first event and member row: one
        transaction, so a run whose cases cannot all be queued queues none; (run, created).

        With an idempotency key already used, nothing is written and the earlier run is
        returned with created=False (its fingerprint: `suite_run_fingerprint`), as for
        executions.
        """
        key = run.idempotency_key
        try:
            async with self._database.write():
                # Inside the write transaction: on SQLite that serialises concurrent starts; on
                # Postgres a concurrent insert still races, and the unique index decides below.
                if key is not None:
                    existing = await self.suite_run_by_key(run.workspace_id, key)
                    if existing is not None:
                        return existing, False
                # The run's row first: a concurrent start with its key then waits on (or fails
                # at) the index before writing thousands of executions it would roll back.
                await tables.SuiteRun.insert(
                    tables.SuiteRun(
                        id=run.id,
                        workspace_id=run.workspace_id,
                        suite_name=run.suite_name,
                        suite_version=run.suite_version,
                        batch_id=run.batch_id,
                        repeat=run.repeat,
                        concurrency=run.concurrency,
                        labels=dump(list(run.labels)),
                        inputs=dump(run.inputs),
                        cases=suite_run_cases_text(run.cases),
                        created_at=run.created_at,
                        created_by=run.created_by[:200],
                        idempotency_key=key,
                        request_fingerprint=fingerprint,
                        trigger_type=run.trigger_type.value,
                    )
                )
                await insert_batch(self._database, batch, executions)
                await self._insert_members(members)
        except (asyncpg.UniqueViolationError, sqlite3.IntegrityError):
            if key is None:
                raise
            existing = await self.suite_run_by_key(run.workspace_id, key)
            if existing is None:
                raise
            return existing, False
        return run, True

    async def suite_run_fingerprint(self, run_id: str) -> str | None:
        rows = await self._database.fetch(
            "SELECT request_fingerprint FROM runwire_suite_run WHERE id = {}", run_id
        )
        return rows[0]["request_fingerprint"] if rows else None

    async def suite_run_by_key(self, workspace: str, key: str) -> SuiteRun | None:
        """The run started earlier in `workspace` with idempotency key `key`."""
        rows = await self._database.fetch(
            "SELECT * FROM runwire_suite_run WHERE workspace_id = {} AND idempotency_key = {}",
            workspace,
            key,
        )
        return suite_run_of(rows[0]) if rows else None

    async def add_suite_run_attempts(
        self,
        run: SuiteRun,
        executions: Sequence[tuple[Execution, Event]],
        members: Sequence[SuiteRunMember],
    ) -> None:
        """Retries: more executions of the run's batch and their member rows, in one
        transaction; the batch's total grows by as many, so its progress stays a share."""
        async with self._database.write():
            await insert_executions(self._database, executions)
            await self._insert_members(members)
            await self._database.fetch(
                "UPDATE runwire_batch SET total = total + {} WHERE id = {}",
                len(executions),
                run.batch_id,
            )

    async def _insert_members(self, members: Sequence[SuiteRunMember]) -> None:
        for start in range(0, len(members), _MEMBER_ROWS_PER_INSERT):
            chunk = members[start : start + _MEMBER_ROWS_PER_INSERT]
            await tables.SuiteRunExecution.insert(
                *(
                    tables.SuiteRunExecution(
                        execution_id=member.execution_id,
                        run_id=member.run_id,
                        case_index=member.case_index,
                        case_name=member.case_name,
                        repeat=member.repeat,
                        attempt=member.attempt,
                        expected_status=member.expected_status,
                    )
                    for member in chunk
                )
            )

    async def suite_run(self, run_id: str, *, workspace: str) -> SuiteRun | None:
        """The run, if it is in `workspace` (another workspace's is None, like a missing one)."""
        rows = await self._database.fetch(
            "SELECT * FROM runwire_suite_run WHERE id = {} AND workspace_id = {}",
            run_id,
            workspace,
        )
        return suite_run_of(rows[0]) if rows else None

    async def suite_runs(self, workspace: str, suite: str, limit: int) -> list[SuiteRun]:
        """The suite's runs, newest first."""
        rows = await self._database.fetch(
            "SELECT * FROM runwire_suite_run WHERE workspace_id = {} AND suite_name = {}"
            " ORDER BY created_at DESC, id DESC LIMIT {}",
            workspace,
            suite,
            limit,
        )
        return [suite_run_of(row) for row in rows]

    async def suite_run_totals(self, run_ids: Sequence[str]) -> dict[str, SuiteRunTotals]:
        """Each run summed in one statement over the latest attempt of each repeat."""
        if not run_ids:
            return {}
        terminal = [status.value for status in EXECUTION_TERMINAL]
        rows = await self._database.fetch(
            "SELECT m.run_id, COUNT(*) AS total,"
            f" SUM(CASE WHEN e.status IN ({marks(terminal)}) THEN 1 ELSE 0 END) AS ended,"
            " SUM(CASE WHEN e.status = m.expected_status THEN 1 ELSE 0 END) AS passed,"
            " COALESCE(SUM(e.duration_ms), 0) AS duration_ms_sum,"
            f" COUNT(e.duration_ms) AS durations, {USAGE_SUMS}"
            " FROM runwire_suite_run_execution m"
            " JOIN runwire_execution e ON e.id = m.execution_id"
            f" WHERE m.run_id IN ({marks(run_ids)}) AND NOT EXISTS ("
            "  SELECT 1 FROM runwire_suite_run_execution later"
            "  WHERE later.run_id = m.run_id AND later.case_index = m.case_index"
            "  AND later.repeat = m.repeat AND later.attempt > m.attempt)"
            " GROUP BY m.run_id",
            *terminal,
            *run_ids,
        )
        return {
            row["run_id"]: SuiteRunTotals(
                run_id=row["run_id"],
                total=int(row["total"]),
                ended=int(row["ended"]),
                passed=int(row["passed"]),
                duration_ms_sum=int(row["duration_ms_sum"]),
                durations=int(row["durations"]),
                usage=usage_of(row),
            )
            for row in rows
        }

    async def suite_run_outcomes(self, run_id: str) -> list[RepeatOutcome]:
        rows = await self._database.fetch(
            "SELECT m.*, e.status, e.duration_ms, e.usage_calls, e.usage_input, e.usage_output,"
            " e.usage_cached, e.usage_reasoning, e.usage_cost_usd, e.usage_unpriced"
            " FROM runwire_suite_run_execution m"
            " JOIN runwire_execution e ON e.id = m.execution_id"
            " WHERE m.run_id = {} ORDER BY m.case_index, m.repeat, m.attempt",
            run_id,
        )
        return [repeat_outcome_of(row) for row in rows]

    async def suite_run_call_figures(self, run_id: str) -> list[CallFigures]:
        rows = await self._database.fetch(
            "SELECT s.execution_id, s.attributes FROM runwire_step_run s"
            " JOIN runwire_suite_run_execution m ON m.execution_id = s.execution_id"
            " WHERE m.run_id = {} AND s.kind = 'call' AND s.attributes IS NOT NULL"
            " ORDER BY s.execution_id, s.position, s.attempt",
            run_id,
        )
        return [call_figures_of(row) for row in rows]

    async def suite_run_failures(self, run_id: str) -> list[StepFailure]:
        rows = await self._database.fetch(
            "SELECT s.execution_id, s.key, s.attempt, s.status, s.error, s.assertions"
            " FROM runwire_step_run s"
            " JOIN runwire_suite_run_execution m ON m.execution_id = s.execution_id"
            " WHERE m.run_id = {} AND s.status IN ('FAILED', 'TIMED_OUT')"
            " ORDER BY s.execution_id, s.position, s.attempt",
            run_id,
        )
        return [step_failure_of(row) for row in rows]

    async def add_suite_baseline(self, baseline: SuiteBaseline) -> None:
        await tables.SuiteBaseline.insert(
            tables.SuiteBaseline(
                workspace_id=baseline.workspace_id,
                suite_name=baseline.suite_name,
                run_id=baseline.run_id,
                set_at=baseline.set_at,
                set_by=baseline.set_by[:200],
            )
        )

    async def suite_baselines(self, workspace: str, suite: str) -> list[SuiteBaseline]:
        """The suite's baselines, newest first: the first is its baseline now."""
        rows = await self._database.fetch(
            "SELECT * FROM runwire_suite_baseline WHERE workspace_id = {} AND suite_name = {}"
            " ORDER BY id DESC",
            workspace,
            suite,
        )
        return [suite_baseline_of(row) for row in rows]
