"""Indexes for steering: idempotency, concurrency limits, batches, metrics and spans."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-21T18:19:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "indexes for steering, batches and metrics"

STATEMENTS = [
    # Concurrent starts with one key must collide here, so exactly one execution is created.
    "CREATE UNIQUE INDEX runwire_execution_idempotency ON runwire_execution (idempotency_key)"
    " WHERE idempotency_key IS NOT NULL",
    # The claim counts what runs per concurrency key and per batch.
    "CREATE INDEX runwire_execution_concurrency ON runwire_execution (concurrency_key, status)"
    " WHERE concurrency_key IS NOT NULL",
    "CREATE INDEX runwire_execution_batch ON runwire_execution (batch_id, status)"
    " WHERE batch_id IS NOT NULL",
    # Metrics read finished executions in a time window.
    "CREATE INDEX runwire_execution_finished ON runwire_execution (finished_at, scenario_name)",
    "CREATE INDEX runwire_execution_created_by ON runwire_execution (created_by, queued_at DESC)",
    "CREATE INDEX runwire_span_attempt ON runwire_span (execution_id, step_key, attempt)",
    "CREATE UNIQUE INDEX runwire_span_id ON runwire_span (execution_id, span_id)",
]


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="runwire", description=DESCRIPTION)

    async def create_indexes() -> None:
        engine = engine_finder()
        assert engine is not None
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(create_indexes)
    return manager
