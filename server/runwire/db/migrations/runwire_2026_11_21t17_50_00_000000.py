"""Indexes and unique constraints, as raw DDL that both SQLite and Postgres accept."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-21T17:50:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "indexes and unique constraints"

STATEMENTS = [
    # Gapless per-execution seqs: a duplicate seq must fail the whole flush, not slip in.
    "CREATE UNIQUE INDEX runwire_event_execution_seq ON runwire_event (execution_id, seq)",
    "CREATE UNIQUE INDEX runwire_scenario_name_version ON runwire_scenario (name, version)",
    "CREATE UNIQUE INDEX runwire_step_run_attempt ON runwire_step_run (execution_id, key, attempt)",
    # History is read newest first with a (queued_at, id) keyset cursor.
    "CREATE INDEX runwire_execution_queued ON runwire_execution (queued_at DESC, id DESC)",
    "CREATE INDEX runwire_execution_status_queued"
    " ON runwire_execution (status, queued_at DESC, id DESC)",
    # The runner's claim: queued executions by priority, then age.
    "CREATE INDEX runwire_execution_claim"
    " ON runwire_execution (status, priority DESC, queued_at, id)",
    "CREATE INDEX runwire_execution_scenario"
    " ON runwire_execution (scenario_name, queued_at DESC, id DESC)",
    "CREATE INDEX runwire_execution_label_label ON runwire_execution_label (label, execution_id)",
    "CREATE INDEX runwire_execution_label_execution ON runwire_execution_label (execution_id)",
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
