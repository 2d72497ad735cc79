"""Schedules: the only code on runwire_schedule."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from runwire.db.engine import Database, optional_stored_datetime, stored_datetime
from runwire.db.rows import execution_of, suite_run_of
from runwire.domain.models import Execution, SuiteRun, TriggerType
from runwire.domain.schedules import MissedFirePolicy, Schedule, Timing


class ScheduleRepository:
    """runwire_schedule, and the executions and suite runs schedules started."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def insert_schedule(self, schedule: Schedule) -> None:
        await self._database.fetch(
            "INSERT INTO runwire_schedule (id, workspace_id, name, scenario, suite, inputs, cron,"
            " interval_seconds, time_zone, anchor, missed, enabled, next_fire_at, revision,"
            " created_at, created_by, updated_at)"
            " VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
            schedule.id,
            schedule.workspace_id,
            schedule.name,
            schedule.scenario,
            schedule.suite,
            json.dumps(dict(schedule.inputs)),
            schedule.timing.cron,
            schedule.timing.interval_seconds,
            schedule.timing.time_zone,
            schedule.timing.anchor,
            str(schedule.missed),
            schedule.enabled,
            schedule.next_fire_at,
            schedule.revision,
            schedule.created_at,
            schedule.created_by,
            schedule.updated_at,
        )

    async def update_schedule(self, schedule: Schedule) -> None:
        await self._database.fetch(
            "UPDATE runwire_schedule SET name = {}, scenario = {}, suite = {}, inputs = {},"
            " cron = {}, interval_seconds = {}, time_zone = {}, anchor = {}, missed = {},"
            " enabled = {}, next_fire_at = {}, revision = revision + 1, updated_at = {}"
            " WHERE id = {} AND workspace_id = {}",
            schedule.name,
            schedule.scenario,
            schedule.suite,
            json.dumps(dict(schedule.inputs)),
            schedule.timing.cron,
            schedule.timing.interval_seconds,
            schedule.timing.time_zone,
            schedule.timing.anchor,
            str(schedule.missed),
            schedule.enabled,
            schedule.next_fire_at,
            schedule.updated_at,
            schedule.id,
            schedule.workspace_id,
        )

    async def delete_schedule(self, workspace: str, schedule_id: str) -> bool:
        rows = await self._database.fetch(
            "DELETE FROM runwire_schedule WHERE id = {} AND workspace_id = {} RETURNING id",
            schedule_id,
            workspace,
        )
        return bool(rows)

    async def schedule(self, workspace: str, schedule_id: str) -> Schedule | None:
        rows = await self._database.fetch(
            "SELECT * FROM runwire_schedule WHERE id = {} AND workspace_id = {}",
            schedule_id,
            workspace,
        )
        return _schedule(rows[0]) if rows else None

    async def schedules(self, workspace: str) -> list[Schedule]:
        rows = await self._database.fetch(
            "SELECT * FROM runwire_schedule WHERE workspace_id = {} ORDER BY created_at, id",
            workspace,
        )
        return [_schedule(row) for row in rows]

    async def due_schedules(self, now: datetime, limit: int) -> list[Schedule]:
        # A read: an idle scheduler looks every second, and on SQLite a write would take the
        # database's one write lock. Which process fires a slot is decided by the idempotency
        # key of its execution, and the advance below by the revision.
        rows = await self._database.fetch(
            "SELECT * FROM runwire_schedule WHERE enabled AND next_fire_at <= {}"
            " ORDER BY next_fire_at LIMIT {}",
            now,
            limit,
        )
        return [_schedule(row) for row in rows]

    async def advance(self, schedule: Schedule, next_fire_at: datetime) -> bool:
        rows = await self._database.fetch(
            "UPDATE runwire_schedule SET next_fire_at = {}, revision = revision + 1"
            " WHERE id = {} AND revision = {} RETURNING id",
            next_fire_at,
            schedule.id,
            schedule.revision,
        )
        return bool(rows)

    async def next_due_at(self) -> datetime | None:
        rows = await self._database.fetch(
            "SELECT MIN(next_fire_at) AS due FROM runwire_schedule WHERE enabled"
        )
        return optional_stored_datetime(rows[0]["due"]) if rows else None

    async def runs(self, workspace: str, trigger: str, first: int) -> list[Execution]:
        # The executions of its suite runs carry its label too, with trigger type SUITE.
        rows = await self._database.fetch(
            "SELECT * FROM runwire_execution WHERE created_by = {} AND workspace_id = {}"
            " AND trigger_type = {} ORDER BY queued_at DESC, id DESC LIMIT {}",
            trigger,
            workspace,
            TriggerType.SCHEDULE.value,
            first,
        )
        return [execution_of(row) for row in rows]

    async def suite_runs(self, workspace: str, trigger: str, first: int) -> list[SuiteRun]:
        rows = await self._database.fetch(
            "SELECT * FROM runwire_suite_run WHERE workspace_id = {} AND created_by = {}"
            " ORDER BY created_at DESC, id DESC LIMIT {}",
            workspace,
            trigger,
            first,
        )
        return [suite_run_of(row) for row in rows]


def _schedule(row: Mapping[str, Any]) -> Schedule:
    interval = row["interval_seconds"]
    return Schedule(
        id=row["id"],
        workspace_id=row["workspace_id"],
        name=row["name"],
        scenario=row["scenario"],
        suite=row["suite"],
        inputs=json.loads(row["inputs"]),
        timing=Timing(
            cron=row["cron"],
            interval_seconds=float(interval) if interval is not None else None,
            time_zone=row["time_zone"],
            anchor=stored_datetime(row["anchor"]),
        ),
        missed=MissedFirePolicy(row["missed"]),
        enabled=bool(row["enabled"]),
        next_fire_at=optional_stored_datetime(row["next_fire_at"]),
        revision=int(row["revision"]),
        created_at=stored_datetime(row["created_at"]),
        created_by=row["created_by"],
        updated_at=stored_datetime(row["updated_at"]),
    )
