"""Events written into the log, and folded into the execution, step and span rows they change.

Both run inside the caller's write transaction, so an event and what it changes commit together:
the rows never disagree with the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runwire.db.engine import Database, numbered, optional_stored_datetime, stored_datetime
from runwire.db.rows import dump
from runwire.domain.models import Event, EventType, ExecutionStatus, StepStatus

_EVENT_COLUMNS = ("execution_id", "seq", "at", "type", "step_key", "attempt", "data")

_EXECUTION_SQL = (
    "UPDATE runwire_execution SET last_seq = ?, status = COALESCE(?, status),"
    " error = CASE WHEN CAST(? AS VARCHAR) IS NULL THEN error ELSE ? END,"
    " finished_at = CASE WHEN CAST(? AS VARCHAR) IS NULL THEN finished_at ELSE ? END,"
    " duration_ms = CASE WHEN CAST(? AS VARCHAR) IS NULL THEN duration_ms ELSE ? END,"
    " started_at = COALESCE(started_at, ?) WHERE id = ?"
)
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
_SPAN_SQL = (
    "INSERT INTO runwire_span (execution_id, span_id, parent_id, step_key, attempt, name,"
    " kind, status, started_at, finished_at, attributes)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (execution_id, span_id) DO UPDATE SET status = excluded.status,"
    " finished_at = excluded.finished_at, attributes = excluded.attributes"
)


async def write_events(database: Database, events: Sequence[Event]) -> None:
    """Insert `events` and project them, in the current write transaction."""
    await insert_events(database, events)
    await project(database, events)


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


async def project(database: Database, events: Sequence[Event]) -> None:
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
            _project_step(event, steps)
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
    connection = database.connection()
    for sql, rows in (
        (_EXECUTION_SQL, execution_rows),
        (_STEP_SQL, step_rows),
        (_SPAN_SQL, list(spans.values())),
    ):
        if rows:
            await connection.executemany(numbered(sql) if database.is_postgres else sql, rows)


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
        step["output"] = dump(data["output"]) if "output" in data else None
        step["error"] = data.get("error")
        step["assertions"] = dump(data["assertions"]) if "assertions" in data else None
        step["attributes"] = dump(data["attributes"]) if "attributes" in data else None
