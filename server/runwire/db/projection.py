"""Events written into the log, and folded into the execution, step, span and review rows they
change.

Both run inside the caller's write transaction, so an event and what it changes commit together:
the rows never disagree with the log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runwire.db.engine import (
    Database,
    marks,
    numbered,
    optional_stored_datetime,
    stored_datetime,
)
from runwire.db.rows import dump
from runwire.domain.agents import UsageTotals, reported
from runwire.domain.models import Event, EventType, ExecutionStatus, Lease, StepStatus
from runwire.errors import LeaseLost
from runwire.scenarios.reviews import REVIEW_KIND

_EVENT_COLUMNS = ("execution_id", "seq", "at", "type", "step_key", "attempt", "data")

_EXECUTION_SQL = (
    "UPDATE runwire_execution SET last_seq = ?, status = COALESCE(?, status),"
    " error = CASE WHEN CAST(? AS VARCHAR) IS NULL THEN error ELSE ? END,"
    " finished_at = CASE WHEN CAST(? AS VARCHAR) IS NULL THEN finished_at ELSE ? END,"
    " duration_ms = CASE WHEN CAST(? AS VARCHAR) IS NULL THEN duration_ms ELSE ? END,"
    " started_at = COALESCE(started_at, ?),"
    " usage_calls = usage_calls + ?, usage_input = usage_input + ?,"
    " usage_output = usage_output + ?, usage_cached = usage_cached + ?,"
    " usage_reasoning = usage_reasoning + ?, usage_cost_usd = usage_cost_usd + ?,"
    " usage_unpriced = usage_unpriced + ? WHERE id = ?"
)
# The same update for a whole batch on Postgres, which is also the lease check: a row whose
# execution is given an owner (and generation) is updated only while it has that lease, and
# RETURNING says which rows were.
_EXECUTION_POSTGRES_SQL = """
WITH batch AS (
    SELECT * FROM unnest(
        $1::varchar[], $2::integer[], $3::varchar[], $4::text[], $5::timestamptz[],
        $6::bigint[], $7::timestamptz[], $8::varchar[], $9::integer[], $10::integer[],
        $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::float8[], $16::integer[]
    ) AS b(id, last_seq, status, error, finished_at, duration_ms, started_at, owner, generation,
        usage_calls, usage_input, usage_output, usage_cached, usage_reasoning, usage_cost_usd,
        usage_unpriced)
), held AS MATERIALIZED (
    SELECT e.id FROM runwire_execution AS e JOIN batch AS b ON b.id = e.id
    WHERE b.owner IS NULL OR (e.owner = b.owner AND e.lease_generation = b.generation)
    ORDER BY e.id FOR UPDATE OF e
)
UPDATE runwire_execution AS e SET last_seq = b.last_seq, status = COALESCE(b.status, e.status),
    error = CASE WHEN b.status IS NULL THEN e.error ELSE b.error END,
    finished_at = CASE WHEN b.status IS NULL THEN e.finished_at ELSE b.finished_at END,
    duration_ms = CASE WHEN b.status IS NULL THEN e.duration_ms ELSE b.duration_ms END,
    started_at = COALESCE(e.started_at, b.started_at),
    usage_calls = e.usage_calls + b.usage_calls, usage_input = e.usage_input + b.usage_input,
    usage_output = e.usage_output + b.usage_output,
    usage_cached = e.usage_cached + b.usage_cached,
    usage_reasoning = e.usage_reasoning + b.usage_reasoning,
    usage_cost_usd = e.usage_cost_usd + b.usage_cost_usd,
    usage_unpriced = e.usage_unpriced + b.usage_unpriced
FROM batch AS b JOIN held AS h ON h.id = b.id
WHERE e.id = b.id
RETURNING e.id
"""
_STEP_SQL = (
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
# A review step's WAITING event asks for a review; its end (decided, timed out, stopped, skipped)
# closes it. The workspace comes from the execution's row, which events do not repeat.
_REVIEW_ASKED_SQL = (
    "INSERT INTO runwire_review (execution_id, step_key, attempt, workspace_id, status, title,"
    " request, requested_at, expires_at)"
    " SELECT id, ?, ?, workspace_id, 'PENDING', ?, ?, ?, ? FROM runwire_execution WHERE id = ?"
    " ON CONFLICT (execution_id, step_key, attempt) DO NOTHING"
)
_REVIEW_CLOSED_SQL = (
    "UPDATE runwire_review SET status = ?, decision = ?, answer = ?, comment = ?, decided_by = ?,"
    " decided_at = ? WHERE execution_id = ? AND step_key = ? AND attempt = ? AND status = 'PENDING'"
)
# A USAGE event adds to its attempt's row, which its RUNNING status event wrote before it (in
# this batch or an earlier one: the upsert above runs first).
_STEP_USAGE_SQL = (
    "UPDATE runwire_step_run SET usage_calls = usage_calls + ?, usage_input = usage_input + ?,"
    " usage_output = usage_output + ?, usage_cached = usage_cached + ?,"
    " usage_reasoning = usage_reasoning + ?, usage_cost_usd = usage_cost_usd + ?,"
    " usage_unpriced = usage_unpriced + ? WHERE execution_id = ? AND key = ? AND attempt = ?"
)
_SPAN_SQL = (
    "INSERT INTO runwire_span (execution_id, span_id, parent_id, step_key, attempt, name,"
    " kind, status, started_at, finished_at, attributes)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (execution_id, span_id) DO UPDATE SET status = excluded.status,"
    " finished_at = excluded.finished_at, attributes = excluded.attributes"
)


async def write_events(
    database: Database, events: Sequence[Event], leases: Mapping[str, Lease] | None = None
) -> None:
    """Insert `events` and project them, in the current write transaction.

    An execution named in `leases` must still be held under that lease: LeaseLost names those
    that are not, raised before any event is inserted (the caller's transaction rolls back).
    The execution rows are updated first because that statement is also the lease check.
    """
    executions, steps, usage, spans, review_events = _fold(events)
    await _update_executions(database, executions, leases or {})
    await insert_events(database, events)
    connection = database.connection()
    asked, closed = _reviews(review_events)
    for sql, rows in (
        (_STEP_SQL, steps),
        (_STEP_USAGE_SQL, usage),
        (_SPAN_SQL, spans),
        (_REVIEW_ASKED_SQL, asked),
        (_REVIEW_CLOSED_SQL, closed),
    ):
        if rows:
            await connection.executemany(numbered(sql) if database.is_postgres else sql, rows)


async def insert_events(database: Database, events: Sequence[Event]) -> None:
    """Insert `events` into the log, in the current write transaction."""
    records = [
        (e.execution_id, e.seq, e.at, e.type.value, e.step_key, e.attempt, dump(e.data))
        for e in events
    ]
    connection = database.connection()
    if database.is_postgres:
        # COPY is several times faster than a multi-row INSERT for the hot path.
        await connection.copy_records_to_table(
            "runwire_event", records=records, columns=_EVENT_COLUMNS
        )
    else:
        await connection.executemany(
            f"INSERT INTO runwire_event ({', '.join(_EVENT_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            records,
        )


def _fold(
    events: Sequence[Event],
) -> tuple[
    dict[str, dict[str, Any]],
    list[tuple[Any, ...]],
    list[tuple[Any, ...]],
    list[tuple[Any, ...]],
    list[Event],
]:
    """Fold a batch of events into what changes per execution, step rows, the usage to add to
    step rows, span rows, and the review steps' status events (for the review rows)."""
    executions: dict[str, dict[str, Any]] = {}
    steps: dict[tuple[str, str, int], dict[str, Any]] = {}
    step_usage: dict[tuple[str, str, int], UsageTotals] = {}
    spans: dict[tuple[str, str], tuple[Any, ...]] = {}
    reviews: list[Event] = []
    for event in events:
        row = executions.get(event.execution_id)
        if row is None:  # not setdefault: its default would be built for every event (P1)
            row = executions[event.execution_id] = {
                "last_seq": 0,
                "status": None,
                "error": None,
                "started": None,
                "finished": None,
                "duration": None,
                "usage": UsageTotals(),
            }
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
            _project_step(event, steps)
            if event.data.get("kind") == REVIEW_KIND:
                reviews.append(event)
        elif event.type is EventType.USAGE:
            usage = reported(event.data)
            row["usage"] = row["usage"].plus(usage)
            if event.step_key is not None and event.attempt is not None:
                key = (event.execution_id, event.step_key, event.attempt)
                step_usage[key] = step_usage.get(key, UsageTotals()).plus(usage)
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
                dump(data.get("attributes") or {}),
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
    usage_rows = [
        (*_usage_values(usage), execution_id, key, attempt)
        for (execution_id, key, attempt), usage in step_usage.items()
    ]
    return executions, step_rows, usage_rows, list(spans.values()), reviews


def _reviews(events: Sequence[Event]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The review rows a batch's review step events open, and the ones they close."""
    asked: list[tuple[Any, ...]] = []
    closed: list[tuple[Any, ...]] = []
    for event in events:
        data = event.data
        status = StepStatus(data["status"])
        if status is StepStatus.WAITING and "review" in data:
            request = data["review"]
            asked.append(
                (
                    event.step_key,
                    event.attempt,
                    str(request.get("title", ""))[:200],
                    dump(request),
                    event.at,
                    optional_stored_datetime(data.get("expires_at")),
                    event.execution_id,
                )
            )
        elif status.is_terminal:
            # Stopped or skipped without a decision: closed as CANCELLED.
            outcome = data.get("review") or {}
            answer = outcome.get("values")
            closed.append(
                (
                    outcome.get("status", "CANCELLED"),
                    outcome.get("decision"),
                    None if answer is None else dump(answer),
                    outcome.get("comment"),
                    outcome.get("decided_by"),
                    event.at,
                    event.execution_id,
                    event.step_key,
                    event.attempt,
                )
            )
    return asked, closed


def _usage_values(usage: UsageTotals) -> tuple[int, int, int, int, int, float, int]:
    """What a batch adds to the usage_* columns, in their order."""
    return (
        usage.calls,
        usage.input,
        usage.output,
        usage.cached,
        usage.reasoning,
        usage.cost_usd,
        usage.unpriced,
    )


async def _update_executions(
    database: Database, executions: dict[str, dict[str, Any]], leases: Mapping[str, Lease]
) -> None:
    """Update the execution rows the batch changes, if the leases in `leases` are still held."""
    if not executions:
        return
    connection = database.connection()
    if database.is_postgres:
        # One statement checks, locks and updates (a round trip more per batch costs the event
        # path latency under load). Rows are locked in id order, so two writers of overlapping
        # executions cannot deadlock; a takeover changing a lease waits for this commit, or this
        # statement sees the new lease after the takeover's and leaves the row out.
        ids = sorted(executions)
        rows = [executions[execution_id] for execution_id in ids]
        held_by = [leases.get(execution_id) for execution_id in ids]
        usage = [_usage_values(r["usage"]) for r in rows]
        updated = await connection.fetch(
            _EXECUTION_POSTGRES_SQL,
            ids,
            [r["last_seq"] for r in rows],
            [r["status"] for r in rows],
            [r["error"] for r in rows],
            [r["finished"] for r in rows],
            [r["duration"] for r in rows],
            [r["started"] for r in rows],
            [lease.owner if lease else None for lease in held_by],
            [lease.generation if lease else None for lease in held_by],
            # The usage_* arrays: one per column, in _usage_values's order.
            *(list(column) for column in zip(*usage, strict=True)),
        )
        _require_held(leases, {row["id"] for row in updated})
        return
    if leases:
        # SQLite's write transaction is exclusive already: a read is the check.
        ids = sorted(leases)
        found = await database.fetch(
            f"SELECT id, owner, lease_generation FROM runwire_execution WHERE id IN ({marks(ids)})",
            *ids,
        )
        _require_held(
            leases,
            {
                row["id"]
                for row in found
                if Lease(row["owner"] or "", row["lease_generation"]) == leases[row["id"]]
            },
        )
    await connection.executemany(
        _EXECUTION_SQL,
        [
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
                *_usage_values(r["usage"]),
                execution_id,
            )
            for execution_id, r in executions.items()
        ],
    )


def _require_held(leases: Mapping[str, Lease], held: set[str]) -> None:
    if lost := frozenset(leases) - held:
        raise LeaseLost(lost)


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
    if step_status is StepStatus.RUNNING or step_status is StepStatus.WAITING:
        step["started"] = event.at
    if step_status.is_terminal:
        data = event.data
        step["finished"] = event.at
        step["exit_code"] = data.get("exit_code")
        step["output"] = dump(data["output"]) if "output" in data else None
        step["error"] = data.get("error")
        step["assertions"] = dump(data["assertions"]) if "assertions" in data else None
        step["attributes"] = dump(data["attributes"]) if "attributes" in data else None
