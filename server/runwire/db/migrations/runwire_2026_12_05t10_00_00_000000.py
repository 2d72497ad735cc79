"""Trace context of executions: the caller's W3C traceparent and tracestate, if it gave them."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-05T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "trace context of executions"

# Null for executions started without one (all of them before this migration): their trace id
# is their own id's hex digits (domain/trace_context.py), so there is nothing to backfill.
STATEMENTS = [
    "ALTER TABLE runwire_execution ADD COLUMN trace_parent VARCHAR(55)",
    "ALTER TABLE runwire_execution ADD COLUMN trace_state VARCHAR(512)",
]


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="runwire", description=DESCRIPTION)

    async def add_trace_context() -> None:
        engine = engine_finder()
        assert engine is not None
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(add_trace_context)
    return manager
