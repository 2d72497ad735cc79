"""The repository: every read and write of Runwire's tables, on SQLite and Postgres alike."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from piccolo.engine.postgres import PostgresEngine
from piccolo.table import Table

from runwire.db import tables
from runwire.db.engine import Database, optional_stored_datetime, stored_datetime
from runwire.domain.clock import utc_now
from runwire.domain.errors import NotFound
from runwire.domain.models import (
    EXECUTION_TERMINAL,
    Activity,
    Batch,
    Event,
    EventDraft,
    EventType,
    Execution,
    ExecutionMode,
    ExecutionStatus,
    ScenarioVersion,
    Span,
    StepRun,
    StepStatus,
)
from runwire.domain.queries import (
    Cursor,
    ExecutionFilter,
    Page,
    QueueCounts,
    ScenarioActiveCounts,
)

_EVENT_COLUMNS = ("execution_id", "seq", "at", "type", "step_key", "attempt", "data")
# Executions that hold a runner slot; PAUSING still runs its current step.
_ACTIVE = (
    ExecutionStatus.RUNNING.value,
    ExecutionStatus.STOPPING.value,
    ExecutionStatus.PAUSING.value,
)
# Placeholders per statement stay far below SQLite's oldest limit of 999 host parameters.
_IDS_PER_QUERY = 300
# What counts against a concurrency key or batch limit: executions a runner holds. A PAUSED one
# holds nothing until it is resumed and claimed again.
_OWNED_STATUSES = (
    ExecutionStatus.QUEUED.value,
    ExecutionStatus.RUNNING.value,
    ExecutionStatus.PAUSING.value,
    ExecutionStatus.STOPPING.value,
)
_OWNED_WITH_KEY = (
    # Concurrency keys are per workspace: one tenant's key never holds back another's runs.
    "SELECT COUNT(*) FROM runwire_execution a WHERE a.concurrency_key = e.concurrency_key"
    " AND a.workspace_id = e.workspace_id AND a.owner IS NOT NULL AND a.status IN ({}, {}, {}, {})"
)
_OWNED_IN_BATCH = (
    "SELECT COUNT(*) FROM runwire_execution a WHERE a.batch_id = e.batch_id"
    " AND a.owner IS NOT NULL AND a.status IN ({}, {}, {}, {})"
)
# A queued execution, its labels and its first event in one statement (one round trip, atomic
# on its own). Columns left out keep their defaults, as Piccolo's insert would set them.
_INSERT_QUEUED = (
    "WITH execution AS (INSERT INTO runwire_execution (id, workspace_id, name, status,"
    " scenario_name, scenario_version, definition, inputs, labels, priority, timeout_seconds,"
    " grace_seconds, queued_at, last_seq, created_by, mode, step_key, upstream, idempotency_key,"
    " request_fingerprint, concurrency_key, concurrency_limit, batch_id, batch_limit)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,"
    " $19, $20, $21, $22, $23, $24)),"
    " label AS (INSERT INTO runwire_execution_label (execution_id, label)"
    " SELECT $1, unnest($25::varchar[]))"
    " INSERT INTO runwire_event (execution_id, seq, at, type, step_key, attempt, data)"
    " VALUES ($1, $26, $27, $28, $29, $30, $31)"
)
_SCENARIO_LOCK = 0x52575343  # "RWSC": with a hash of workspace/name, one lock per scenario
_CLAIM_LOCK = 0x52554E57  # "RUNW": the advisory lock key of the claim
_encode_json = msgspec.json.Encoder(enc_hook=str).encode
_decode_json = msgspec.json.Decoder().decode


@dataclass(frozen=True, slots=True)
class ControlRequest:
    id: int
    execution_id: str
    action: str
    reason: str
    actor: str
    grace_seconds: float | None
    step_key: str | None = None


class Repository:
    """Reads rows into domain values and writes domain values into rows."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._engine = database.engine

    # ---- scenarios -------------------------------------------------------------------

    async def save_scenario(
        self,
        workspace: str,
        name: str,
        description: str,
        definition: Mapping[str, Any],
        actor: str,
    ) -> ScenarioVersion:
        """Store `definition` as the next version of `name`, unless it equals the latest."""
        async with self._database.write():
            if isinstance(self._engine, PostgresEngine):
                # Read-then-insert: two writers of one name (replicas loading the shipped
                # scenarios as they start together) would both take the same next version.
                # SQLite's IMMEDIATE write transaction already queues them.
                await tables.Scenario.raw(
                    "SELECT pg_advisory_xact_lock({}, hashtext({}))",
                    _SCENARIO_LOCK,
                    f"{workspace}/{name}",
                )
            latest = await self.latest_scenario(workspace, name)
            if latest is not None and _canonical(latest.definition) == _canonical(definition):
                return latest
            version = 1 if latest is None else latest.version + 1
            row = tables.Scenario(
                workspace_id=workspace,
                name=name,
                version=version,
                description=description,
                definition=_dump(definition),
                created_at=utc_now(),
                created_by=actor,
            )
            await row.save()
        return _scenario(row.to_dict())

    async def latest_scenario(self, workspace: str, name: str) -> ScenarioVersion | None:
        rows = await tables.Scenario.raw(
            "SELECT * FROM runwire_scenario WHERE workspace_id = {} AND name = {}"
            " ORDER BY version DESC LIMIT 1",
            workspace,
            name,
        )
        return _scenario(rows[0]) if rows else None

    async def scenario_version(
        self, workspace: str, name: str, version: int
    ) -> ScenarioVersion | None:
        rows = await tables.Scenario.raw(
            "SELECT * FROM runwire_scenario WHERE workspace_id = {} AND name = {} AND version = {}",
            workspace,
            name,
            version,
        )
        return _scenario(rows[0]) if rows else None

    async def scenarios(self, workspace: str) -> list[ScenarioVersion]:
        """The latest version of every scenario of the workspace, by name."""
        rows = await tables.Scenario.raw(
            "SELECT s.* FROM runwire_scenario s WHERE s.workspace_id = {} AND s.version ="
            " (SELECT MAX(version) FROM runwire_scenario l"
            " WHERE l.workspace_id = s.workspace_id AND l.name = s.name)"
            " ORDER BY s.name",
            workspace,
        )
        return [_scenario(row) for row in rows]

    # ---- executions ------------------------------------------------------------------

    async def create_execution(
        self, execution: Execution, first_event: Event, fingerprint: str | None = None
    ) -> tuple[Execution, bool]:
        """Insert a queued execution, its labels and first event; (execution, created).

        With an idempotency key already used, nothing is written and the earlier execution is
        returned with created=False, together with its stored fingerprint for the caller's check.
        """
        if execution.idempotency_key is None and isinstance(self._engine, PostgresEngine):
            # One statement is atomic on its own: no BEGIN/COMMIT round trips for a plain start.
            await self._insert_execution(execution, first_event, fingerprint)
            return execution, True
        try:
            async with self._database.write():
                # Inside the write transaction: on SQLite that serialises concurrent starts; on
                # Postgres a concurrent insert still races, and the unique index decides below.
                if execution.idempotency_key is not None:
                    existing = await self._by_idempotency_key(execution)
                    if existing is not None:
                        return existing, False
                await self._insert_execution(execution, first_event, fingerprint)
        except (asyncpg.UniqueViolationError, sqlite3.IntegrityError):
            if execution.idempotency_key is None:
                raise
            existing = await self._by_idempotency_key(execution)
            if existing is None:
                raise
            return existing, False
        return execution, True

    async def create_executions(self, executions: Sequence[tuple[Execution, Event]]) -> None:
        """Insert several queued executions (a batch) in one transaction."""
        async with self._database.write():
            for execution, first_event in executions:
                await self._insert_execution(execution, first_event, None)

    async def request_fingerprint(self, execution_id: str) -> str | None:
        rows = await tables.Execution.raw(
            "SELECT request_fingerprint FROM runwire_execution WHERE id = {}", execution_id
        )
        return rows[0]["request_fingerprint"] if rows else None

    async def _by_idempotency_key(self, execution: Execution) -> Execution | None:
        """The execution started earlier in this workspace with this one's idempotency key."""
        rows = await tables.Execution.raw(
            "SELECT * FROM runwire_execution WHERE workspace_id = {} AND idempotency_key = {}",
            execution.workspace_id,
            execution.idempotency_key,
        )
        return _execution(rows[0], ()) if rows else None

    async def _insert_execution(
        self, execution: Execution, first_event: Event, fingerprint: str | None
    ) -> None:
        if isinstance(self._engine, PostgresEngine):
            await self._postgres_execute(
                _INSERT_QUEUED,
                execution.id,
                execution.workspace_id,
                execution.name[:100],
                execution.status.value,
                execution.scenario_name,
                execution.scenario_version,
                _dump(execution.definition),
                _dump(execution.inputs),
                _dump(list(execution.labels)),
                execution.priority,
                execution.timeout_seconds,
                execution.grace_seconds,
                execution.queued_at,
                first_event.seq,
                execution.triggered_by[:200],
                execution.mode.value,
                execution.step_key,
                None if execution.upstream is None else _dump(execution.upstream),
                execution.idempotency_key,
                fingerprint,
                execution.concurrency_key,
                execution.concurrency_limit,
                execution.batch_id,
                execution.batch_limit,
                list(execution.labels),
                first_event.seq,
                first_event.at,
                first_event.type.value,
                first_event.step_key,
                first_event.attempt,
                _dump(first_event.data),
            )
            return
        await tables.Execution.insert(
            tables.Execution(
                id=execution.id,
                workspace_id=execution.workspace_id,
                name=execution.name[:100],
                status=execution.status.value,
                scenario_name=execution.scenario_name,
                scenario_version=execution.scenario_version,
                definition=_dump(execution.definition),
                inputs=_dump(execution.inputs),
                labels=_dump(list(execution.labels)),
                priority=execution.priority,
                timeout_seconds=execution.timeout_seconds,
                grace_seconds=execution.grace_seconds,
                queued_at=execution.queued_at,
                last_seq=first_event.seq,
                created_by=execution.triggered_by[:200],
                mode=execution.mode.value,
                step_key=execution.step_key,
                upstream=None if execution.upstream is None else _dump(execution.upstream),
                idempotency_key=execution.idempotency_key,
                request_fingerprint=fingerprint,
                concurrency_key=execution.concurrency_key,
                concurrency_limit=execution.concurrency_limit,
                batch_id=execution.batch_id,
                batch_limit=execution.batch_limit,
            )
        )
        if execution.labels:
            await tables.ExecutionLabel.insert(
                *[
                    tables.ExecutionLabel(execution_id=execution.id, label=label)
                    for label in execution.labels
                ]
            )
        await self._insert_events([first_event])

    async def execution(
        self, execution_id: str, *, workspace: str | None, with_steps: bool = True
    ) -> Execution | None:
        """The execution, if it is in `workspace`; None (any workspace) only for internal use.

        An execution of another workspace is None, exactly like one that does not exist.
        """
        if workspace is None:
            rows = await self._fetch(
                tables.Execution, "SELECT * FROM runwire_execution WHERE id = {}", execution_id
            )
        else:
            rows = await self._fetch(
                tables.Execution,
                "SELECT * FROM runwire_execution WHERE id = {} AND workspace_id = {}",
                execution_id,
                workspace,
            )
        if not rows:
            return None
        steps = await self.steps(execution_id) if with_steps else ()
        return _execution(rows[0], steps)

    async def steps(self, execution_id: str) -> tuple[StepRun, ...]:
        rows = await tables.StepRun.raw(
            "SELECT * FROM runwire_step_run WHERE execution_id = {} ORDER BY position, attempt",
            execution_id,
        )
        return tuple(_step_run(row) for row in rows)

    async def spans(self, execution_id: str) -> list[Span]:
        """The sub-operations the execution's step attempts reported, in start order."""
        rows = await tables.Span.raw(
            "SELECT * FROM runwire_span WHERE execution_id = {} ORDER BY started_at, id",
            execution_id,
        )
        return [
            Span(
                execution_id=row["execution_id"],
                span_id=row["span_id"],
                parent_id=row["parent_id"],
                step_key=row["step_key"],
                attempt=row["attempt"],
                name=row["name"],
                kind=row["kind"],
                status=row["status"],
                started_at=stored_datetime(row["started_at"]),
                finished_at=optional_stored_datetime(row["finished_at"]),
                attributes=_load(row["attributes"]),
            )
            for row in rows
        ]

    async def executions(
        self, where: ExecutionFilter, first: int, after: Cursor | None
    ) -> Page[Execution]:
        """Newest first, keyset-paginated on (queued_at, id)."""
        clauses: list[str] = ["workspace_id = {}"]
        args: list[Any] = [where.workspace]
        if where.statuses:
            clauses.append(f"status IN ({', '.join('{}' for _ in where.statuses)})")
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
        rows = await self._fetch(tables.Execution, sql, *args)
        items = tuple(_execution(row, ()) for row in rows[:first])
        return Page(items=items, has_next=len(rows) > first)

    async def active_executions(self, workspace: str) -> list[Execution]:
        rows = await tables.Execution.raw(
            "SELECT * FROM runwire_execution WHERE workspace_id = {}"
            f" AND status IN ({_marks(_ACTIVE)}) ORDER BY started_at, id",
            workspace,
            *_ACTIVE,
        )
        return [_execution(row, ()) for row in rows]

    async def queue_counts(self, workspace: str, slots: int) -> QueueCounts:
        """The workspace's queued and running executions; `slots` is this process's runner's."""
        statuses = (ExecutionStatus.QUEUED.value, *_ACTIVE)
        rows = await tables.Execution.raw(
            "SELECT status, COUNT(*) AS n FROM runwire_execution WHERE workspace_id = {}"
            f" AND status IN ({_marks(statuses)}) GROUP BY status",
            workspace,
            *statuses,
        )
        counts = {row["status"]: int(row["n"]) for row in rows}
        running = sum(counts.get(status, 0) for status in _ACTIVE)
        return QueueCounts(
            queued=counts.get(ExecutionStatus.QUEUED.value, 0), running=running, slots=slots
        )

    async def active_counts(self, workspace: str) -> list[ScenarioActiveCounts]:
        """Queued, running and paused executions per scenario (None last: inline ones)."""
        queued, paused = ExecutionStatus.QUEUED.value, ExecutionStatus.PAUSED.value
        statuses = (queued, paused, *_ACTIVE)
        rows = await tables.Execution.raw(
            "SELECT scenario_name, status, COUNT(*) AS n FROM runwire_execution"
            " WHERE workspace_id = {}"
            f" AND status IN ({_marks(statuses)}) GROUP BY scenario_name, status",
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
                running=sum(by_status.get(status, 0) for status in _ACTIVE),
                paused=by_status.get(paused, 0),
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
            rows = await tables.Execution.raw(
                f"SELECT * FROM runwire_execution WHERE id IN ({_marks(chunk)})", *chunk
            )
            found.update((row["id"], _execution(row, ())) for row in rows)
        return found

    async def status_changes(
        self, ranges: Sequence[tuple[str, int, int]]
    ) -> list[tuple[Event, Execution]]:
        """Status events in each (execution_id, after, last] range, with the execution as now."""
        changes: list[tuple[Event, Execution]] = []
        for start in range(0, len(ranges), _IDS_PER_QUERY // 3):
            chunk = ranges[start : start + _IDS_PER_QUERY // 3]
            # One statement for the whole chunk; the (execution_id, seq) index serves each range.
            rows = await tables.Execution.raw(
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
                    data=_load(row["change_data"]),
                )
                changes.append((event, _execution(row, ())))
        return changes

    async def live_executions(self, ended_since: datetime, limit: int) -> list[Execution]:
        """Executions not ended, or ended at or after `ended_since`; newest first, at most limit."""
        unfinished = tuple(s.value for s in ExecutionStatus if s not in EXECUTION_TERMINAL)
        rows = await tables.Execution.raw(
            f"SELECT * FROM runwire_execution WHERE status IN ({_marks(unfinished)})"
            " OR finished_at >= {} ORDER BY queued_at DESC, id DESC LIMIT {}",
            *unfinished,
            ended_since,
            limit,
        )
        return [_execution(row, ()) for row in rows]

    # ---- batches ---------------------------------------------------------------------

    async def create_batch(
        self, batch: Batch, executions: Sequence[tuple[Execution, Event]]
    ) -> None:
        """Insert a batch and all its queued executions in one transaction."""
        async with self._database.write():
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
            for execution, first_event in executions:
                await self._insert_execution(execution, first_event, None)

    async def batch(self, batch_id: str, *, workspace: str) -> Batch | None:
        """The batch, if it is in `workspace` (another workspace's is None, like a missing one)."""
        rows = await tables.Batch.raw(
            "SELECT * FROM runwire_batch WHERE id = {} AND workspace_id = {}", batch_id, workspace
        )
        if not rows:
            return None
        row = rows[0]
        return Batch(
            id=row["id"],
            name=row["name"],
            scenario_name=row["scenario_name"],
            concurrency=row["concurrency"],
            total=row["total"],
            created_at=stored_datetime(row["created_at"]),
            created_by=row["created_by"],
            stopped_at=optional_stored_datetime(row["stopped_at"]),
            workspace_id=row["workspace_id"],
        )

    async def batch_counts(self, batch_id: str) -> dict[ExecutionStatus, int]:
        rows = await tables.Execution.raw(
            "SELECT status, COUNT(*) AS n FROM runwire_execution WHERE batch_id = {}"
            " GROUP BY status",
            batch_id,
        )
        return {ExecutionStatus(row["status"]): int(row["n"]) for row in rows}

    async def unfinished_in_batch(self, batch_id: str) -> list[str]:
        rows = await tables.Execution.raw(
            "SELECT id FROM runwire_execution WHERE batch_id = {}"
            f" AND status NOT IN ({', '.join('{}' for _ in EXECUTION_TERMINAL)})"
            " ORDER BY queued_at DESC, id DESC",
            batch_id,
            *(status.value for status in EXECUTION_TERMINAL),
        )
        return [row["id"] for row in rows]

    async def mark_batch_stopped(self, batch_id: str) -> None:
        await tables.Batch.raw(
            "UPDATE runwire_batch SET stopped_at = COALESCE(stopped_at, {}) WHERE id = {}",
            utc_now(),
            batch_id,
        )

    # ---- the runner's claim and lease --------------------------------------------------

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Execution]:
        """Take up to `limit` unowned queued executions, highest priority then oldest first.

        An execution with a concurrency key (or in a batch) is taken only while fewer than its
        limit of the same key (or batch) are owned by a runner; the rest wait in queue order.
        """
        if limit <= 0:
            return []
        async with self._database.write():
            if self._database.is_postgres:
                # Claims are serialised so that two runners cannot both count a key as free and
                # both take one; a claim is one short transaction, so this costs little.
                await tables.Execution.raw("SELECT pg_advisory_xact_lock({})", _CLAIM_LOCK)
            candidates = await tables.Execution.raw(
                "SELECT id, workspace_id, concurrency_key, concurrency_limit,"
                " batch_id, batch_limit,"
                f" ({_OWNED_WITH_KEY}) AS key_owned, ({_OWNED_IN_BATCH}) AS batch_owned"
                " FROM runwire_execution e WHERE status = {} AND owner IS NULL"
                f" AND (concurrency_key IS NULL OR ({_OWNED_WITH_KEY}) < concurrency_limit)"
                f" AND (batch_id IS NULL OR ({_OWNED_IN_BATCH}) < batch_limit)"
                " ORDER BY priority DESC, queued_at, id LIMIT {}",
                *_OWNED_STATUSES,
                *_OWNED_STATUSES,
                ExecutionStatus.QUEUED.value,
                *_OWNED_STATUSES,
                *_OWNED_STATUSES,
                # Candidates may share a key; read a few more so one busy key cannot starve the
                # slots of this round.
                limit * 3 + 8,
            )
            chosen = _within_limits(candidates, limit)
            if not chosen:
                return []
            rows = await tables.Execution.raw(
                "UPDATE runwire_execution SET owner = {}, lease_expires_at = {}"
                f" WHERE id IN ({', '.join('{}' for _ in chosen)}) RETURNING *",
                owner,
                utc_now() + timedelta(seconds=lease_seconds),
                *chosen,
            )
        executions = [_execution(row, ()) for row in rows]
        executions.sort(key=lambda e: (-e.priority, e.queued_at, e.id))
        return executions

    async def renew_leases(self, owner: str, lease_seconds: float) -> None:
        await tables.Execution.raw(
            "UPDATE runwire_execution SET lease_expires_at = {} WHERE owner = {}",
            utc_now() + timedelta(seconds=lease_seconds),
            owner,
        )

    async def release(self, execution_id: str) -> None:
        await tables.Execution.raw(
            "UPDATE runwire_execution SET owner = NULL, lease_expires_at = NULL WHERE id = {}",
            execution_id,
        )

    async def take_over_expired(self, owner: str, lease_seconds: float) -> list[Execution]:
        """Claim executions whose owner stopped renewing its lease (a crashed process)."""
        now = utc_now()
        async with self._database.write():
            rows = await tables.Execution.raw(
                "UPDATE runwire_execution SET owner = {}, lease_expires_at = {}"
                " WHERE owner IS NOT NULL AND lease_expires_at < {} RETURNING *",
                owner,
                now + timedelta(seconds=lease_seconds),
                now,
            )
        return [_execution(row, ()) for row in rows]

    async def change(
        self,
        execution_id: str,
        decide: Callable[[Execution], Sequence[EventDraft]],
        *,
        workspace: str,
    ) -> list[Event] | None:
        """Append `decide`'s events to an execution no runner owns, atomically.

        `decide` sees the locked execution with its step attempts and returns the events to write
        (or raises, writing nothing). Returns None, writing nothing, when a runner owns the
        execution: only the owner may then write its events. An execution outside `workspace`
        is NotFound, exactly like a missing one.
        """
        lock = " FOR UPDATE" if self._database.is_postgres else ""
        async with self._database.write():
            rows = await tables.Execution.raw(
                f"SELECT * FROM runwire_execution WHERE id = {{}} AND workspace_id = {{}}{lock}",
                execution_id,
                workspace,
            )
            if not rows:
                raise NotFound(f"execution {execution_id} not found")
            if rows[0]["owner"] is not None:
                return None
            execution = _execution(rows[0], await self.steps(execution_id))
            drafts = decide(execution)
            now = utc_now()
            events = [
                Event(
                    execution_id=execution_id,
                    seq=execution.last_seq + index,
                    at=now,
                    type=draft.type,
                    data=draft.data,
                    step_key=draft.step_key,
                    attempt=draft.attempt,
                )
                for index, draft in enumerate(drafts, 1)
            ]
            if events:
                await self._write_events(events)
        return events

    # ---- events ----------------------------------------------------------------------

    async def append_events(self, events: Sequence[Event]) -> None:
        """Persist events and their projections (execution and step rows) in one transaction."""
        async with self._database.write():
            await self._write_events(events)

    async def events(
        self, execution_id: str, after_seq: int, *, before_seq: int | None = None, limit: int = 1000
    ) -> list[Event]:
        """Events with after_seq < seq (< before_seq), in seq order."""
        if before_seq is None:
            rows = await tables.Event.raw(
                "SELECT * FROM runwire_event WHERE execution_id = {} AND seq > {}"
                " ORDER BY seq LIMIT {}",
                execution_id,
                after_seq,
                limit,
            )
        else:
            rows = await tables.Event.raw(
                "SELECT * FROM runwire_event WHERE execution_id = {} AND seq > {} AND seq < {}"
                " ORDER BY seq LIMIT {}",
                execution_id,
                after_seq,
                before_seq,
                limit,
            )
        return [_event(row) for row in rows]

    # ---- control requests and activities ---------------------------------------------

    async def request_control(
        self,
        execution_id: str,
        action: str,
        reason: str,
        actor: str,
        grace: float | None,
        step_key: str | None = None,
    ) -> None:
        await tables.ControlRequest.insert(
            tables.ControlRequest(
                execution_id=execution_id,
                action=action,
                step_key=step_key,
                reason=reason,
                actor=actor,
                grace_seconds=grace,
                requested_at=utc_now(),
            )
        )

    async def pending_controls(self, owner: str) -> list[ControlRequest]:
        """Unhandled control requests for executions that `owner` runs."""
        rows = await tables.ControlRequest.raw(
            "SELECT c.* FROM runwire_control_request c JOIN runwire_execution e"
            " ON e.id = c.execution_id WHERE c.handled_at IS NULL AND e.owner = {}"
            " ORDER BY c.id",
            owner,
        )
        return [
            ControlRequest(
                id=row["id"],
                execution_id=row["execution_id"],
                action=row["action"],
                reason=row["reason"],
                actor=row["actor"],
                grace_seconds=row["grace_seconds"],
                step_key=row["step_key"],
            )
            for row in rows
        ]

    async def mark_controls_handled(self, execution_id: str) -> None:
        await tables.ControlRequest.raw(
            "UPDATE runwire_control_request SET handled_at = {}"
            " WHERE execution_id = {} AND handled_at IS NULL",
            utc_now(),
            execution_id,
        )

    async def record_activity(self, activity: Activity) -> None:
        if isinstance(self._engine, PostgresEngine):
            # Every mutation is audited: the hot path skips Piccolo's query building.
            await self._postgres_execute(
                "INSERT INTO runwire_activity (workspace_id, at, actor, action, result,"
                " execution_id, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                activity.workspace_id,
                activity.at,
                activity.actor[:200],
                activity.action,
                activity.result,
                activity.execution_id,
                _dump(activity.detail),
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
                detail=_dump(activity.detail),
            )
        )

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
        rows = await tables.Activity.raw(sql + " ORDER BY id DESC LIMIT {}", *args, first)
        return [
            (
                row["id"],
                Activity(
                    action=row["action"],
                    actor=row["actor"],
                    execution_id=row["execution_id"],
                    at=stored_datetime(row["at"]),
                    detail=_load(row["detail"]),
                    result=row["result"],
                    workspace_id=row["workspace_id"],
                ),
            )
            for row in rows
        ]

    # ---- internals -------------------------------------------------------------------

    async def _fetch(self, table: type[Table], sql: str, *args: Any) -> Sequence[Any]:
        """Rows of one read (`{}` placeholders): asyncpg itself on Postgres, else Piccolo's raw."""
        if isinstance(self._engine, PostgresEngine):
            # A history page spent more in Piccolo's raw (query building, rows copied into
            # dicts) than in asyncpg's fetch; asyncpg's records read by column name alike.
            numbered = _dollar_numbered(sql)
            transaction = self._engine.current_transaction.get()
            if transaction is not None:
                return list(await transaction.connection.fetch(numbered, *args))
            pool = self._engine.pool
            assert pool is not None, "the Postgres pool is started by Database.open"
            return list(await pool.fetch(numbered, *args))
        rows: list[dict[str, Any]] = await table.raw(sql, *args)
        return rows

    async def _postgres_execute(self, sql: str, *args: Any) -> None:
        """Run one statement with asyncpg itself: in the current write transaction, or pooled."""
        # Piccolo's query building cost more CPU than the database's work on these hot inserts.
        transaction = self._engine.current_transaction.get()
        if transaction is not None:
            await transaction.connection.execute(sql, *args)
            return
        assert isinstance(self._engine, PostgresEngine)
        pool = self._engine.pool
        assert pool is not None, "the Postgres pool is started by Database.open"
        await pool.execute(sql, *args)

    def _connection(self) -> Any:
        """The driver connection of the current write transaction (asyncpg or aiosqlite)."""
        transaction = self._engine.current_transaction.get()
        assert transaction is not None, "only called inside self._database.write()"
        return transaction.connection

    async def _write_events(self, events: Sequence[Event]) -> None:
        await self._insert_events(events)
        await self._project(events)

    async def _insert_events(self, events: Sequence[Event]) -> None:
        records = [
            (
                e.execution_id,
                e.seq,
                e.at,
                e.type.value,
                e.step_key,
                e.attempt,
                _dump(e.data),
            )
            for e in events
        ]
        connection = self._connection()
        if isinstance(self._engine, PostgresEngine):
            # COPY is several times faster than a multi-row INSERT for the hot path.
            await connection.copy_records_to_table(
                "runwire_event", records=records, columns=_EVENT_COLUMNS
            )
        else:
            await connection.executemany(
                f"INSERT INTO runwire_event ({', '.join(_EVENT_COLUMNS)})"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                records,
            )

    async def _project(self, events: Sequence[Event]) -> None:
        """Fold a batch of events into execution, step and span rows: one write per row."""
        executions: dict[str, dict[str, Any]] = {}
        steps: dict[tuple[str, str, int], dict[str, Any]] = {}
        spans: dict[tuple[str, str], tuple[Any, ...]] = {}
        for event in events:
            row = executions.setdefault(
                event.execution_id,
                {
                    "last_seq": 0,
                    "status": None,
                    "error": None,
                    "started": None,
                    "finished": None,
                    "duration": None,
                },
            )
            row["last_seq"] = max(row["last_seq"], event.seq)
            if event.type is EventType.EXECUTION_STATUS:
                # The latest status event decides error, end and duration: a resumed or retried
                # execution is no longer finished and its old error no longer applies.
                status = ExecutionStatus(event.data["status"])
                row["status"] = status.value
                row["error"] = event.data.get("error") or None
                if status is ExecutionStatus.RUNNING and row["started"] is None:
                    row["started"] = event.at
                row["finished"] = event.at if status.is_terminal else None
                row["duration"] = event.data.get("duration_ms") if status.is_terminal else None
            elif event.type is EventType.STEP_STATUS:
                self._project_step(event, steps)
            elif event.type is EventType.SPAN:
                assert event.step_key is not None
                assert event.attempt is not None
                data = event.data
                spans[(event.execution_id, str(data["span_id"]))] = (
                    event.execution_id,
                    str(data["span_id"]),
                    data.get("parent_id"),
                    event.step_key,
                    event.attempt,
                    str(data.get("name", ""))[:200],
                    str(data.get("kind", ""))[:50],
                    str(data.get("status", "")),
                    stored_datetime(data["started_at"]),
                    optional_stored_datetime(data.get("finished_at")),
                    _dump(data.get("attributes") or {}),
                )
        connection = self._connection()
        execution_sql = (
            "UPDATE runwire_execution SET last_seq = ?, status = COALESCE(?, status),"
            " error = CASE WHEN CAST(? AS VARCHAR) IS NULL THEN error ELSE ? END,"
            " finished_at = CASE WHEN CAST(? AS VARCHAR) IS NULL THEN finished_at ELSE ? END,"
            " duration_ms = CASE WHEN CAST(? AS VARCHAR) IS NULL THEN duration_ms ELSE ? END,"
            " started_at = COALESCE(started_at, ?) WHERE id = ?"
        )
        execution_rows = [
            (
                r["last_seq"],
                r["status"],
                r["status"],
                r["error"],
                r["status"],
                r["finished"],
                r["status"],
                r["duration"],
                r["started"],
                execution_id,
            )
            for execution_id, r in executions.items()
        ]
        step_sql = (
            "INSERT INTO runwire_step_run (execution_id, key, attempt, kind, position, status,"
            " started_at, finished_at, exit_code, output, error, assertions, attributes)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (execution_id, key, attempt) DO UPDATE SET status = excluded.status,"
            " started_at = COALESCE(excluded.started_at, runwire_step_run.started_at),"
            " finished_at = COALESCE(excluded.finished_at, runwire_step_run.finished_at),"
            " exit_code = COALESCE(excluded.exit_code, runwire_step_run.exit_code),"
            " output = COALESCE(excluded.output, runwire_step_run.output),"
            " error = COALESCE(excluded.error, runwire_step_run.error),"
            " assertions = COALESCE(excluded.assertions, runwire_step_run.assertions),"
            " attributes = COALESCE(excluded.attributes, runwire_step_run.attributes)"
        )
        step_rows = [
            (
                execution_id,
                key,
                attempt,
                s["kind"],
                s["position"],
                s["status"],
                s["started"],
                s["finished"],
                s["exit_code"],
                s["output"],
                s["error"],
                s["assertions"],
                s["attributes"],
            )
            for (execution_id, key, attempt), s in steps.items()
        ]
        span_sql = (
            "INSERT INTO runwire_span (execution_id, span_id, parent_id, step_key, attempt, name,"
            " kind, status, started_at, finished_at, attributes)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (execution_id, span_id) DO UPDATE SET status = excluded.status,"
            " finished_at = excluded.finished_at, attributes = excluded.attributes"
        )
        postgres = isinstance(self._engine, PostgresEngine)
        for sql, rows in (
            (execution_sql, execution_rows),
            (step_sql, step_rows),
            (span_sql, list(spans.values())),
        ):
            if rows:
                await connection.executemany(_numbered(sql) if postgres else sql, rows)

    @staticmethod
    def _project_step(event: Event, steps: dict[tuple[str, str, int], dict[str, Any]]) -> None:
        assert event.step_key is not None
        assert event.attempt is not None
        step = steps.setdefault(
            (event.execution_id, event.step_key, event.attempt),
            {
                "kind": event.data.get("kind", ""),
                "position": event.data.get("position", 0),
                "started": None,
                "finished": None,
                "exit_code": None,
                "output": None,
                "error": None,
                "assertions": None,
                "attributes": None,
            },
        )
        step_status = StepStatus(event.data["status"])
        step["status"] = step_status.value
        if step_status is StepStatus.RUNNING:
            step["started"] = event.at
        if step_status.is_terminal:
            data = event.data
            step["finished"] = event.at
            step["exit_code"] = data.get("exit_code")
            step["output"] = _dump(data["output"]) if "output" in data else None
            step["error"] = data.get("error")
            step["assertions"] = _dump(data["assertions"]) if "assertions" in data else None
            step["attributes"] = _dump(data["attributes"]) if "attributes" in data else None


def _like_escaped(text: str) -> str:
    """`text` as a LIKE pattern that matches itself only, for ESCAPE '!'."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _marks(values: Sequence[object]) -> str:
    """One `{}` placeholder per value, comma-separated, for an IN list."""
    return ", ".join("{}" for _ in values)


def _within_limits(candidates: list[dict[str, Any]], limit: int) -> list[str]:
    """Candidate ids in queue order, keeping each key's and batch's owned count in bounds.

    Each row says how many of its key and batch runners own already; this adds the ones it
    takes, since candidates of one claim may share a key.
    """
    taken: dict[tuple[str, ...], int] = {}
    chosen: list[str] = []
    for row in candidates:
        groups = []
        if row["concurrency_key"] is not None:
            groups.append(
                (
                    ("key", row["workspace_id"], row["concurrency_key"]),
                    row["key_owned"],
                    row["concurrency_limit"],
                )
            )
        if row["batch_id"] is not None:
            groups.append(
                (
                    ("batch", row["workspace_id"], row["batch_id"]),
                    row["batch_owned"],
                    row["batch_limit"],
                )
            )
        if any(owned + taken.get(group, 0) >= bound for group, owned, bound in groups):
            continue
        for group, _, _ in groups:
            taken[group] = taken.get(group, 0) + 1
        chosen.append(row["id"])
        if len(chosen) == limit:
            break
    return chosen


def _numbered(sql: str) -> str:
    """Turn SQLite's `?` placeholders into Postgres's `$1, $2, …`."""
    parts = sql.split("?")
    return "".join(f"{part}${index}" for index, part in enumerate(parts[:-1], 1)) + parts[-1]


def _dollar_numbered(sql: str) -> str:
    """Turn Piccolo's `{}` placeholders into Postgres's `$1, $2, …`."""
    parts = sql.split("{}")
    return "".join(f"{part}${index}" for index, part in enumerate(parts[:-1], 1)) + parts[-1]


def _dump(value: Any) -> str:
    # Every event's data goes through here on the hot path: msgspec is ~10x faster than json
    # (P1 profile: json.dumps was 18% of persisting and delivering events). Types neither knows
    # become their str(); what msgspec refuses (a lone surrogate) json writes as an escape.
    try:
        return _encode_json(value).decode()
    except (UnicodeEncodeError, msgspec.EncodeError):
        return json.dumps(value, separators=(",", ":"), default=str)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _load(value: Any) -> Any:
    if not isinstance(value, str | bytes):
        return value
    # Rows of a history page carry four JSON columns each: msgspec (Litestar's own JSON library)
    # decodes them ≈ 5x faster. The texts it refuses and json reads (NaN, lone surrogates,
    # overflowing floats: `_dump` can write them) fall back to json, so every value reads as
    # it always did.
    try:
        return _decode_json(value)
    except msgspec.MsgspecError:
        return json.loads(value)


def _scenario(row: Mapping[str, Any]) -> ScenarioVersion:
    return ScenarioVersion(
        name=row["name"],
        version=row["version"],
        description=row["description"],
        definition=_load(row["definition"]),
        created_at=stored_datetime(row["created_at"]),
        workspace_id=row["workspace_id"],
    )


def _execution(row: Mapping[str, Any], steps: Iterable[StepRun]) -> Execution:
    return Execution(
        id=row["id"],
        workspace_id=row["workspace_id"],
        status=ExecutionStatus(row["status"]),
        definition=_load(row["definition"]),
        inputs=_load(row["inputs"]),
        queued_at=stored_datetime(row["queued_at"]),
        scenario_name=row["scenario_name"],
        scenario_version=row["scenario_version"],
        labels=tuple(_load(row["labels"]) or ()),
        priority=row["priority"],
        timeout_seconds=row["timeout_seconds"],
        grace_seconds=row["grace_seconds"],
        started_at=optional_stored_datetime(row["started_at"]),
        finished_at=optional_stored_datetime(row["finished_at"]),
        error=row["error"],
        last_seq=row["last_seq"],
        owner=row["owner"],
        steps=tuple(steps),
        mode=ExecutionMode(row["mode"]),
        step_key=row["step_key"],
        upstream=_load(row["upstream"]),
        idempotency_key=row["idempotency_key"],
        concurrency_key=row["concurrency_key"],
        concurrency_limit=row["concurrency_limit"],
        batch_id=row["batch_id"],
        batch_limit=row["batch_limit"],
        triggered_by=row["created_by"],
        duration_ms=row["duration_ms"],
    )


def _step_run(row: Mapping[str, Any]) -> StepRun:
    return StepRun(
        execution_id=row["execution_id"],
        key=row["key"],
        kind=row["kind"],
        attempt=row["attempt"],
        position=row["position"],
        status=StepStatus(row["status"]),
        started_at=optional_stored_datetime(row["started_at"]),
        finished_at=optional_stored_datetime(row["finished_at"]),
        exit_code=row["exit_code"],
        output=_load(row["output"]),
        error=row["error"],
        assertions=tuple(_load(row["assertions"]) or ()),
        attributes=_load(row["attributes"]),
    )


def _event(row: Mapping[str, Any]) -> Event:
    return Event(
        execution_id=row["execution_id"],
        seq=row["seq"],
        at=stored_datetime(row["at"]),
        type=EventType(row["type"]),
        data=_load(row["data"]),
        step_key=row["step_key"],
        attempt=row["attempt"],
    )
