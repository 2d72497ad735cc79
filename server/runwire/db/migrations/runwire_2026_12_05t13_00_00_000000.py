"""Schedules: saved scenarios started on a cron expression in a time zone, or every N seconds."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-05T13:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "schedules, and what triggered each execution"

# TIMESTAMPTZ is the declared type Piccolo's SQLite engine converts, as for every other table.
# The executions a schedule started are found by their `created_by` (schedule:<id>), which is
# indexed already, so there is no table of fires: each fire's idempotency key is its record.
STATEMENTS = (
    "CREATE TABLE runwire_schedule (id VARCHAR(36) PRIMARY KEY,"
    " workspace_id VARCHAR(36) NOT NULL,"
    " name VARCHAR(200) NOT NULL,"
    " scenario VARCHAR(200) NOT NULL,"
    " inputs TEXT NOT NULL,"
    " cron VARCHAR(200),"
    " interval_seconds DOUBLE PRECISION,"
    " time_zone VARCHAR(100) NOT NULL,"
    # Interval slots are anchor + k * interval, the same in every process.
    " anchor TIMESTAMPTZ NOT NULL,"
    " missed VARCHAR(20) NOT NULL,"
    " enabled BOOLEAN NOT NULL,"
    # Null while disabled; what every process's scheduler polls.
    " next_fire_at TIMESTAMPTZ,"
    # Bumped with every change of next_fire_at: the compare-and-set of a fire's advance.
    " revision INTEGER NOT NULL DEFAULT 0,"
    " created_at TIMESTAMPTZ NOT NULL,"
    " created_by VARCHAR(200) NOT NULL,"
    " updated_at TIMESTAMPTZ NOT NULL)",
    "CREATE INDEX runwire_schedule_workspace ON runwire_schedule (workspace_id, created_at)",
    "CREATE INDEX runwire_schedule_due ON runwire_schedule (next_fire_at)",
    # What started each execution (TriggerType). Earlier ones are told apart by what they
    # belong to: a suite run's batch, another batch, else a startExecution (API).
    "ALTER TABLE runwire_execution ADD COLUMN trigger_type VARCHAR(20) NOT NULL DEFAULT 'API'",
    "UPDATE runwire_execution SET trigger_type = 'BATCH' WHERE batch_id IS NOT NULL",
    "UPDATE runwire_execution SET trigger_type = 'SUITE'"
    " WHERE batch_id IN (SELECT batch_id FROM runwire_suite_run)",
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="runwire", description=DESCRIPTION)

    async def create_schedules() -> None:
        engine = engine_finder()
        assert engine is not None
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(create_schedules)
    return manager
