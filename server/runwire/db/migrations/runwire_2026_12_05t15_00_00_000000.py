"""Suite runs started exactly once (an idempotency key), and schedules that start suites."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-05T15:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "idempotency keys and triggers of suite runs; schedules of suites"

SUITE_RUNS = (
    # As for executions: a key names one start within its workspace, so the unique index decides
    # between concurrent starts with one key (a schedule's fire in several processes).
    "ALTER TABLE runwire_suite_run ADD COLUMN idempotency_key VARCHAR(200)",
    "ALTER TABLE runwire_suite_run ADD COLUMN request_fingerprint VARCHAR(64)",
    "CREATE UNIQUE INDEX runwire_suite_run_idempotency"
    " ON runwire_suite_run (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL",
    # API (startSuiteRun) or SCHEDULE; every earlier run was started by startSuiteRun.
    "ALTER TABLE runwire_suite_run ADD COLUMN trigger_type VARCHAR(20) NOT NULL DEFAULT 'API'",
    # A schedule's runs, newest first: found by their `created_by` (schedule:<id>).
    "CREATE INDEX runwire_suite_run_creator"
    " ON runwire_suite_run (workspace_id, created_by, created_at)",
)

# A schedule starts a scenario or a suite: exactly one of the two columns is set.
POSTGRES_SCHEDULES = (
    "ALTER TABLE runwire_schedule ALTER COLUMN scenario DROP NOT NULL",
    "ALTER TABLE runwire_schedule ADD COLUMN suite VARCHAR(200)",
)
# SQLite cannot drop a NOT NULL: the table is built again with the same rows and indexes.
_COLUMNS = (
    "id, workspace_id, name, scenario, inputs, cron, interval_seconds, time_zone, anchor,"
    " missed, enabled, next_fire_at, revision, created_at, created_by, updated_at"
)
SQLITE_SCHEDULES = (
    "CREATE TABLE runwire_schedule_new (id VARCHAR(36) PRIMARY KEY,"
    " workspace_id VARCHAR(36) NOT NULL,"
    " name VARCHAR(200) NOT NULL,"
    " scenario VARCHAR(200),"
    " suite VARCHAR(200),"
    " inputs TEXT NOT NULL,"
    " cron VARCHAR(200),"
    " interval_seconds DOUBLE PRECISION,"
    " time_zone VARCHAR(100) NOT NULL,"
    " anchor TIMESTAMPTZ NOT NULL,"
    " missed VARCHAR(20) NOT NULL,"
    " enabled BOOLEAN NOT NULL,"
    " next_fire_at TIMESTAMPTZ,"
    " revision INTEGER NOT NULL DEFAULT 0,"
    " created_at TIMESTAMPTZ NOT NULL,"
    " created_by VARCHAR(200) NOT NULL,"
    " updated_at TIMESTAMPTZ NOT NULL)",
    f"INSERT INTO runwire_schedule_new ({_COLUMNS}) SELECT {_COLUMNS} FROM runwire_schedule",
    "DROP TABLE runwire_schedule",
    "ALTER TABLE runwire_schedule_new RENAME TO runwire_schedule",
    "CREATE INDEX runwire_schedule_workspace ON runwire_schedule (workspace_id, created_at)",
    "CREATE INDEX runwire_schedule_due ON runwire_schedule (next_fire_at)",
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="runwire", description=DESCRIPTION)

    async def suite_runs_and_schedules() -> None:
        engine = engine_finder()
        assert engine is not None
        schedules = SQLITE_SCHEDULES if engine.engine_type == "sqlite" else POSTGRES_SCHEDULES
        for statement in (*SUITE_RUNS, *schedules):
            await engine.run_ddl(statement)

    manager.add_raw(suite_runs_and_schedules)
    return manager
