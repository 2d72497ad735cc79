"""Group commit of new executions on Postgres: the starts that arrive together, one statement.

A start is its execution row, labels, first event, audit row and the bus notices that announce it.
Starts arriving while a batch is being written (or in the same turn of the event loop) wait and go
together in the next statement: one round trip and one transaction for all of them, however many
requests are in flight. Every caller waits for its own start's commit: a success is only returned
once the row is stored, and a batch that fails gives each of its callers an error (a refused row
is written again alone, so one bad start does not fail its neighbours).

The notices travel as `pg_notify` in the same statement when the bus is this database: Postgres
delivers them at commit, so persist-then-publish holds without a second round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from runwire.db.engine import Database
from runwire.db.rows import dump, queued_execution_values, trace_columns
from runwire.domain.models import Activity, Event, Execution
from runwire.faults import is_outage

logger = logging.getLogger(__name__)

Announce = Callable[[Sequence[Event]], Sequence[tuple[str, str]]]
"""The (channel, message) bus notices announcing these stored events (and the queued work)."""

MAX_BATCH = 256
"""Starts in one statement at most; more waiting go in the next one, right after."""

_EXECUTION_COLUMNS = (
    ("id", "varchar"),
    ("workspace_id", "varchar"),
    ("name", "varchar"),
    ("status", "varchar"),
    ("scenario_name", "varchar"),
    ("scenario_version", "int"),
    ("definition", "json"),
    ("inputs", "json"),
    ("labels", "json"),
    ("priority", "int"),
    ("timeout_seconds", "float8"),
    ("grace_seconds", "float8"),
    ("queued_at", "timestamptz"),
    ("last_seq", "int"),
    ("created_by", "varchar"),
    ("mode", "varchar"),
    ("step_key", "varchar"),
    ("upstream", "json"),
    ("idempotency_key", "varchar"),
    ("request_fingerprint", "varchar"),
    ("concurrency_key", "varchar"),
    ("concurrency_limit", "int"),
    ("batch_id", "varchar"),
    ("batch_limit", "int"),
    ("trace_parent", "varchar"),
    ("trace_state", "varchar"),
    ("trigger_type", "varchar"),
)
_LABEL_COLUMNS = (("execution_id", "varchar"), ("label", "varchar"))
_EVENT_COLUMNS = (
    ("execution_id", "varchar"),
    ("seq", "int"),
    ("at", "timestamptz"),
    ("type", "varchar"),
    ("step_key", "varchar"),
    ("attempt", "int"),
    ("data", "json"),
)
_ACTIVITY_COLUMNS = (
    ("workspace_id", "varchar"),
    ("at", "timestamptz"),
    ("actor", "varchar"),
    ("action", "varchar"),
    ("result", "varchar"),
    ("execution_id", "varchar"),
    ("detail", "json"),
)
_NOTICE_COLUMNS = (("channel", "text"), ("message", "text"))


def _unnest(columns: Sequence[tuple[str, str]], first: int) -> tuple[str, str]:
    """(column list, `unnest($first::t[], …)`) for one array parameter per column."""
    names = ", ".join(name for name, _ in columns)
    arrays = ", ".join(f"${first + i}::{kind}[]" for i, (_, kind) in enumerate(columns))
    return names, f"unnest({arrays})"


def _statement() -> str:
    parameter = 1
    parts: list[str] = []
    for name, table, columns in (
        ("execution", "runwire_execution", _EXECUTION_COLUMNS),
        ("label", "runwire_execution_label", _LABEL_COLUMNS),
        ("event", "runwire_event", _EVENT_COLUMNS),
        ("activity", "runwire_activity", _ACTIVITY_COLUMNS),
    ):
        names, rows = _unnest(columns, parameter)
        parameter += len(columns)
        parts.append(f"{name} AS (INSERT INTO {table} ({names}) SELECT * FROM {rows})")
    _, notices = _unnest(_NOTICE_COLUMNS, parameter)
    # Data-modifying WITH parts run exactly once whether or not the query reads them; the
    # notifications are queued by the statement and delivered by Postgres at its commit.
    return (
        f"WITH {', '.join(parts)}"
        f" SELECT count(pg_notify(channel, message)) FROM {notices} AS notice(channel, message)"
    )


_INSERT_STARTS = _statement()


@dataclass(slots=True)
class _Start:
    execution: Execution
    first_event: Event
    fingerprint: str | None
    activity: Activity | None
    stored: asyncio.Future[None] = field(repr=False)


class StartWriter:
    """Writes concurrent starts in shared statements, each caller awaiting its own commit."""

    def __init__(self, database: Database, announce: Announce | None = None) -> None:
        assert database.is_postgres, "group commit is Postgres's; SQLite writes one at a time"
        self._database = database
        self._announce = announce
        self._waiting: list[_Start] = []
        self._writing: asyncio.Task[None] | None = None

    @property
    def announces(self) -> bool:
        """Whether stored starts are announced on the bus by their own statement."""
        return self._announce is not None

    def announce_with(self, announce: Announce) -> None:
        """Send `announce`'s notices in each batch's statement (the bus is this database)."""
        self._announce = announce

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[StartWriter]:
        """For the block; leaving it waits for the batch being written (its callers wait too)."""
        try:
            yield self
        finally:
            if self._writing is not None:
                await asyncio.wait([self._writing])

    async def write(
        self,
        execution: Execution,
        first_event: Event,
        fingerprint: str | None,
        activity: Activity | None,
    ) -> None:
        """Store the start with the others waiting; returns once committed, raises if not."""
        loop = asyncio.get_running_loop()
        start = _Start(execution, first_event, fingerprint, activity, loop.create_future())
        self._waiting.append(start)
        if self._writing is None:
            # A task of its own, not the first caller's: a caller cancelled (its client gone)
            # must not cancel the statement the others wait on. It first runs on the loop's next
            # turn, so every start queued in this turn joins the first batch.
            self._writing = loop.create_task(self._write_waiting(), name="runwire-start-writer")
        await start.stored

    async def _write_waiting(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[:MAX_BATCH]
                del self._waiting[:MAX_BATCH]
                await self._write_batch(batch)
        except BaseException as error:
            # Cancelled (the process is stopping): nobody waiting may take it for a success.
            for start in self._waiting:
                _settle(start, error)
            self._waiting.clear()
            raise
        finally:
            self._writing = None

    async def _write_batch(self, batch: list[_Start]) -> None:
        try:
            await self._insert(batch)
        except asyncio.CancelledError as error:
            for start in batch:
                _settle(start, error)
            raise
        except Exception as error:
            if len(batch) == 1 or is_outage(error):
                # Nothing of the batch is stored (one statement): every caller gets the error.
                for start in batch:
                    _settle(start, error)
                return
            # A row the database refused (or a bug) fails only its own caller: alone, each
            # start is written again and answered on its own.
            logger.warning(
                "starts: a batch of %d was refused (%s); writing them one by one",
                len(batch),
                type(error).__name__,
            )
            for start in batch:
                try:
                    await self._insert([start])
                except Exception as alone:
                    _settle(start, alone)
                else:
                    _settle(start, None)
            return
        for start in batch:
            _settle(start, None)

    async def _insert(self, batch: Sequence[_Start]) -> None:
        executions = [start.execution for start in batch]
        events = [start.first_event for start in batch]
        activities = [start.activity for start in batch if start.activity is not None]
        notices = list(self._announce(events)) if self._announce is not None else []
        labels = [(e.id, label) for e in executions for label in e.labels]
        tables: tuple[tuple[Sequence[Sequence[object]], Sequence[tuple[str, str]]], ...] = (
            ([_execution_row(start) for start in batch], _EXECUTION_COLUMNS),
            (labels, _LABEL_COLUMNS),
            ([_event_row(event) for event in events], _EVENT_COLUMNS),
            ([_activity_row(activity) for activity in activities], _ACTIVITY_COLUMNS),
            (notices, _NOTICE_COLUMNS),
        )
        arguments: list[list[object]] = []
        for rows, columns in tables:
            # One array per column (unnest's arguments), each as long as the table's rows.
            arguments.extend([[row[i] for row in rows] for i in range(len(columns))])
        await self._database.execute_postgres(_INSERT_STARTS, *arguments)


def _settle(start: _Start, error: BaseException | None) -> None:
    if start.stored.done():  # its caller was cancelled
        return
    if error is None:
        start.stored.set_result(None)
    else:
        start.stored.set_exception(error)


def _execution_row(start: _Start) -> tuple[object, ...]:
    execution = start.execution
    return (
        *queued_execution_values(execution, start.first_event.seq, start.fingerprint),
        *trace_columns(execution),
        execution.trigger_type.value,
    )


def _event_row(event: Event) -> tuple[object, ...]:
    return (
        event.execution_id,
        event.seq,
        event.at,
        event.type.value,
        event.step_key,
        event.attempt,
        dump(event.data),
    )


def _activity_row(activity: Activity) -> tuple[object, ...]:
    return (
        activity.workspace_id,
        activity.at,
        activity.actor[:200],
        activity.action,
        activity.result,
        activity.execution_id,
        dump(activity.detail),
    )
