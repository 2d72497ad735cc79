"""Executions: insert queued ones, read one with its step attempts, apply a transition."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime

import asyncpg

from runwire.db import tables
from runwire.db.audit import insert_activity
from runwire.db.engine import Database, marks, optional_stored_datetime
from runwire.db.projection import insert_events, write_events
from runwire.db.rows import (
    dump,
    execution_of,
    queued_execution_values,
    span_of,
    step_run_of,
    trace_columns,
)
from runwire.db.starts import Announce, StartWriter
from runwire.domain.clock import utc_now
from runwire.domain.models import (
    Activity,
    Event,
    EventDraft,
    EventType,
    Execution,
    ExecutionStatus,
    Span,
    StepRun,
    StepStatus,
    duration_between,
)
from runwire.errors import InvalidTransition, NotFound

# A queued execution, its labels and its first event in one statement (one round trip, atomic
# on its own). Columns left out keep their defaults, as Piccolo's insert would set them.
_INSERT_QUEUED = (
    "WITH execution AS (INSERT INTO runwire_execution (id, workspace_id, name, status,"
    " scenario_name, scenario_version, definition, inputs, labels, priority, timeout_seconds,"
    " grace_seconds, queued_at, last_seq, created_by, mode, step_key, upstream, idempotency_key,"
    " request_fingerprint, concurrency_key, concurrency_limit, batch_id, batch_limit,"
    " trace_parent, trace_state, trigger_type)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,"
    " $19, $20, $21, $22, $23, $24, $32, $33, $34)),"
    " label AS (INSERT INTO runwire_execution_label (execution_id, label)"
    " SELECT $1, unnest($25::varchar[]))"
    " INSERT INTO runwire_event (execution_id, seq, at, type, step_key, attempt, data)"
    " VALUES ($1, $26, $27, $28, $29, $30, $31)"
)

# Cancel many executions no runner holds by their status alone: the rows are locked in id order
# (two bulk writers cannot deadlock) and only what the status events need comes back, never the
# definitions or inputs. A row a runner claims meanwhile is re-checked under its lock and left
# out. One with a step waiting for a review is left out too: its review must be closed, which
# `transition_many` does.
_CANCEL_UNOWNED = """
WITH target AS MATERIALIZED (
    SELECT e.id FROM runwire_execution AS e
    WHERE e.id = ANY($1::varchar[]) AND e.workspace_id = $2 AND e.owner IS NULL
        AND e.status = ANY($3::varchar[])
        AND NOT EXISTS (
            SELECT 1 FROM runwire_step_run AS s WHERE s.execution_id = e.id AND s.status = $6
        )
    ORDER BY e.id FOR UPDATE OF e
)
UPDATE runwire_execution AS e SET status = $7, error = $4, finished_at = $5,
    duration_ms = floor(EXTRACT(EPOCH FROM ($5 - e.started_at)) * 1000)::bigint,
    last_seq = e.last_seq + 1
FROM target AS t WHERE e.id = t.id
RETURNING e.id, e.last_seq, e.duration_ms
"""

Decide = Callable[[Execution], Sequence[EventDraft]]


class ExecutionRepository:
    """The execution rows and their step attempts and spans, as one execution sees them."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._starts = StartWriter(database) if database.is_postgres else None
        self._announce: Announce | None = None

    def announce_starts(self, announce: Announce) -> None:
        """Announce each stored start on the bus in its own transaction (the bus is this
        Postgres database): `announce` gives the notices for the new executions' first events."""
        assert self._database.is_postgres, "only a Postgres bus can be notified in a transaction"
        self._announce = announce
        assert self._starts is not None
        self._starts.announce_with(announce)

    @property
    def starts_announced(self) -> bool:
        """Whether `create_execution` announces what it stores on the bus itself (at commit)."""
        return self._announce is not None

    def running(self) -> contextlib.AbstractAsyncContextManager[object]:
        """For the block; leaving it waits for the starts being written."""
        if self._starts is None:
            return contextlib.nullcontext()
        return self._starts.running()

    async def create_execution(
        self,
        execution: Execution,
        first_event: Event,
        fingerprint: str | None = None,
        activity: Activity | None = None,
    ) -> tuple[Execution, bool]:
        """Insert a queued execution, its labels, first event and `activity`; (execution, created).

        With an idempotency key already used, nothing is written and the earlier execution is
        returned with created=False, together with its stored fingerprint for the caller's check.
        """
        if execution.idempotency_key is None and self._starts is not None:
            # Concurrent plain starts share one statement (group commit): nothing to look up.
            await self._starts.write(execution, first_event, fingerprint, activity)
            return execution, True
        try:
            async with self._database.write():
                # Inside the write transaction: on SQLite that serialises concurrent starts; on
                # Postgres a concurrent insert still races, and the unique index decides below.
                if execution.idempotency_key is not None:
                    existing = await self._by_idempotency_key(execution)
                    if existing is not None:
                        return existing, False
                await insert_execution(self._database, execution, first_event, fingerprint)
                if activity is not None:
                    await insert_activity(self._database, activity)
                if self._announce is not None:
                    # Delivered by Postgres at commit, and not at all if it rolls back.
                    for channel, message in self._announce([first_event]):
                        await self._database.execute_postgres(
                            "SELECT pg_notify($1, $2)", channel, message
                        )
        except (asyncpg.UniqueViolationError, sqlite3.IntegrityError):
            if execution.idempotency_key is None:
                raise
            existing = await self._by_idempotency_key(execution)
            if existing is None:
                raise
            return existing, False
        return execution, True

    async def request_fingerprint(self, execution_id: str) -> str | None:
        rows = await self._database.fetch(
            "SELECT request_fingerprint FROM runwire_execution WHERE id = {}", execution_id
        )
        return rows[0]["request_fingerprint"] if rows else None

    async def _by_idempotency_key(self, execution: Execution) -> Execution | None:
        """The execution started earlier in this workspace with this one's idempotency key."""
        rows = await self._database.fetch(
            "SELECT * FROM runwire_execution WHERE workspace_id = {} AND idempotency_key = {}",
            execution.workspace_id,
            execution.idempotency_key,
        )
        return execution_of(rows[0]) if rows else None

    async def execution(
        self, execution_id: str, *, workspace: str | None, with_steps: bool = True
    ) -> Execution | None:
        """The execution, if it is in `workspace`; None (any workspace) only for internal use.

        An execution of another workspace is None, exactly like one that does not exist.
        """
        if workspace is None:
            rows = await self._database.fetch(
                "SELECT * FROM runwire_execution WHERE id = {}", execution_id
            )
        else:
            rows = await self._database.fetch(
                "SELECT * FROM runwire_execution WHERE id = {} AND workspace_id = {}",
                execution_id,
                workspace,
            )
        if not rows:
            return None
        steps = await self.steps(execution_id) if with_steps else ()
        return execution_of(rows[0], steps)

    async def steps(self, execution_id: str) -> tuple[StepRun, ...]:
        rows = await self._database.fetch(
            "SELECT * FROM runwire_step_run WHERE execution_id = {} ORDER BY position, attempt",
            execution_id,
        )
        return tuple(step_run_of(row) for row in rows)

    async def spans(self, execution_id: str) -> list[Span]:
        """The sub-operations the execution's step attempts reported, in start order."""
        rows = await self._database.fetch(
            "SELECT * FROM runwire_span WHERE execution_id = {} ORDER BY started_at, id",
            execution_id,
        )
        return [span_of(row) for row in rows]

    async def transition(
        self, execution_id: str, decide: Decide, *, workspace: str
    ) -> list[Event] | None:
        """Append `decide`'s events to an execution no runner owns, atomically.

        `decide` sees the locked execution with its step attempts and returns the events to write
        (or raises, writing nothing). Returns None, writing nothing, when a runner owns the
        execution: only the owner may then write its events. An execution outside `workspace`
        is NotFound, exactly like a missing one.
        """
        lock = " FOR UPDATE" if self._database.is_postgres else ""
        async with self._database.write():
            rows = await self._database.fetch(
                f"SELECT * FROM runwire_execution WHERE id = {{}} AND workspace_id = {{}}{lock}",
                execution_id,
                workspace,
            )
            if not rows:
                raise NotFound(f"execution {execution_id} not found")
            if rows[0]["owner"] is not None:
                return None
            execution = execution_of(rows[0], await self.steps(execution_id))
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
                for index, draft in enumerate(decide(execution), 1)
            ]
            if events:
                await write_events(self._database, events)
        return events

    async def transition_many(
        self, execution_ids: Sequence[str], decide: Decide, *, workspace: str
    ) -> tuple[list[Event], list[Execution]]:
        """Append `decide`'s events to each of `execution_ids` no runner owns, in one
        transaction: (the events, the ones a runner owns, unchanged and without steps). One
        `decide` refuses (InvalidTransition) is left as it is; ids outside `workspace` are left
        out."""
        if not execution_ids:
            return [], []
        ids = sorted(set(execution_ids))  # locked in id order: two bulk writers cannot deadlock
        lock = " FOR UPDATE" if self._database.is_postgres else ""
        async with self._database.write():
            rows = await self._database.fetch(
                f"SELECT * FROM runwire_execution WHERE workspace_id = {{}}"
                f" AND id IN ({marks(ids)}) ORDER BY id{lock}",
                workspace,
                *ids,
            )
            unowned = [row for row in rows if row["owner"] is None]
            steps = await self._steps_of([row["id"] for row in unowned])
            now = utc_now()
            events: list[Event] = []
            for row in unowned:
                execution = execution_of(row, steps.get(row["id"], ()))
                try:
                    drafts = decide(execution)
                except InvalidTransition:
                    continue
                events.extend(
                    Event(
                        execution_id=execution.id,
                        seq=execution.last_seq + index,
                        at=now,
                        type=draft.type,
                        data=draft.data,
                        step_key=draft.step_key,
                        attempt=draft.attempt,
                    )
                    for index, draft in enumerate(drafts, 1)
                )
            if events:
                await write_events(self._database, events)
        return events, [execution_of(row, ()) for row in rows if row["owner"] is not None]

    async def cancel_unowned(
        self,
        execution_ids: Sequence[str],
        statuses: Sequence[ExecutionStatus],
        error: str,
        *,
        workspace: str,
    ) -> list[Event]:
        """End as CANCELLED (with `error`) each of `execution_ids` that no runner holds, is in
        one of `statuses` and has no step waiting for a review, in one transaction that reads
        only the columns its status event needs; returns those events. The others are left as
        they are (ids outside `workspace` too)."""
        if not execution_ids:
            return []
        now = utc_now()
        async with self._database.write():
            if self._database.is_postgres:
                rows = await self._database.connection().fetch(
                    _CANCEL_UNOWNED,
                    sorted(set(execution_ids)),
                    workspace,
                    [status.value for status in statuses],
                    error,
                    now,
                    StepStatus.WAITING.value,
                    ExecutionStatus.CANCELLED.value,
                )
                ended = [(row["id"], row["last_seq"], row["duration_ms"]) for row in rows]
            else:
                ended = await self._cancel_unowned_sqlite(execution_ids, statuses, now, workspace)
            events = [
                Event(
                    execution_id=execution_id,
                    seq=seq,
                    at=now,
                    type=EventType.EXECUTION_STATUS,
                    # What control's status_event writes for a stop: the same three keys.
                    data={
                        "status": ExecutionStatus.CANCELLED,
                        "error": error,
                        "duration_ms": duration_ms,
                    },
                )
                for execution_id, seq, duration_ms in ended
            ]
            if self._database.is_postgres:
                await insert_events(self._database, events)  # the rows are updated above
            elif events:
                await write_events(self._database, events)
        return events

    async def _cancel_unowned_sqlite(
        self,
        execution_ids: Sequence[str],
        statuses: Sequence[ExecutionStatus],
        now: datetime,
        workspace: str,
    ) -> list[tuple[str, int, int | None]]:
        """(id, seq, duration) of the cancel's events on SQLite, whose write transaction holds
        the database: the rows are updated from the events by the projection."""
        ids = sorted(set(execution_ids))
        rows = await self._database.fetch(
            "SELECT e.id, e.last_seq, e.started_at FROM runwire_execution AS e"
            f" WHERE e.workspace_id = {{}} AND e.owner IS NULL AND e.id IN ({marks(ids)})"
            f" AND e.status IN ({marks(statuses)}) AND NOT EXISTS (SELECT 1 FROM"
            " runwire_step_run AS s WHERE s.execution_id = e.id AND s.status = {})"
            " ORDER BY e.id",
            workspace,
            *ids,
            *(status.value for status in statuses),
            StepStatus.WAITING.value,
        )
        return [
            (
                row["id"],
                row["last_seq"] + 1,
                duration_between(optional_stored_datetime(row["started_at"]), now),
            )
            for row in rows
        ]

    async def _steps_of(self, execution_ids: Sequence[str]) -> dict[str, tuple[StepRun, ...]]:
        if not execution_ids:
            return {}
        rows = await self._database.fetch(
            f"SELECT * FROM runwire_step_run WHERE execution_id IN ({marks(execution_ids)})"
            " ORDER BY execution_id, position, attempt",
            *execution_ids,
        )
        found: dict[str, list[StepRun]] = {}
        for row in rows:
            found.setdefault(row["execution_id"], []).append(step_run_of(row))
        return {execution_id: tuple(runs) for execution_id, runs in found.items()}


async def insert_execution(
    database: Database, execution: Execution, first_event: Event, fingerprint: str | None
) -> None:
    """Insert a queued execution, its labels and its first event (in the current transaction)."""
    if database.is_postgres:
        await database.execute_postgres(
            _INSERT_QUEUED, *_queued_values(execution, first_event, fingerprint)
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
            definition=dump(execution.definition),
            inputs=dump(execution.inputs),
            labels=dump(list(execution.labels)),
            priority=execution.priority,
            timeout_seconds=execution.timeout_seconds,
            grace_seconds=execution.grace_seconds,
            queued_at=execution.queued_at,
            last_seq=first_event.seq,
            created_by=execution.triggered_by[:200],
            mode=execution.mode.value,
            step_key=execution.step_key,
            upstream=None if execution.upstream is None else dump(execution.upstream),
            idempotency_key=execution.idempotency_key,
            request_fingerprint=fingerprint,
            concurrency_key=execution.concurrency_key,
            concurrency_limit=execution.concurrency_limit,
            batch_id=execution.batch_id,
            batch_limit=execution.batch_limit,
            trace_parent=trace_columns(execution)[0],
            trace_state=trace_columns(execution)[1],
            trigger_type=execution.trigger_type.value,
        )
    )
    if execution.labels:
        await tables.ExecutionLabel.insert(
            *[
                tables.ExecutionLabel(execution_id=execution.id, label=label)
                for label in execution.labels
            ]
        )
    await insert_events(database, [first_event])


async def insert_executions(
    database: Database, executions: Sequence[tuple[Execution, Event]]
) -> None:
    """Insert many queued executions with their labels and first events (in the current
    transaction): on Postgres one pipelined statement per execution, a single round trip."""
    if database.is_postgres:
        await database.connection().executemany(
            _INSERT_QUEUED, [_queued_values(e, first, None) for e, first in executions]
        )
        return
    for execution, first_event in executions:
        await insert_execution(database, execution, first_event, None)


def _queued_values(
    execution: Execution, first_event: Event, fingerprint: str | None
) -> tuple[object, ...]:
    """_INSERT_QUEUED's parameters, in order."""
    return (
        *queued_execution_values(execution, first_event.seq, fingerprint),
        list(execution.labels),
        first_event.seq,
        first_event.at,
        first_event.type.value,
        first_event.step_key,
        first_event.attempt,
        dump(first_event.data),
        *trace_columns(execution),
        execution.trigger_type.value,
    )
