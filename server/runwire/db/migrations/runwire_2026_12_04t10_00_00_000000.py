"""Suite runs: every case of a suite run N times as one batch, each execution tied to its case."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-04T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "suite runs"

# TIMESTAMPTZ is the declared type Piccolo's SQLite engine converts, as for every other table.
STATEMENTS = (
    "CREATE TABLE runwire_suite_run (id VARCHAR(36) PRIMARY KEY,"
    " workspace_id VARCHAR(36) NOT NULL,"
    " suite_name VARCHAR(100) NOT NULL,"
    " suite_version INTEGER NOT NULL,"
    " batch_id VARCHAR(36) NOT NULL,"
    " repeat INTEGER NOT NULL,"
    " concurrency INTEGER NOT NULL,"
    " labels JSON NOT NULL,"
    " inputs JSON NOT NULL,"
    " cases JSON NOT NULL,"
    " created_at TIMESTAMPTZ NOT NULL,"
    " created_by VARCHAR(200) NOT NULL DEFAULT '')",
    # A suite's runs, newest first.
    "CREATE INDEX runwire_suite_run_suite"
    " ON runwire_suite_run (workspace_id, suite_name, created_at)",
    "CREATE TABLE runwire_suite_run_execution (execution_id VARCHAR(36) PRIMARY KEY,"
    " run_id VARCHAR(36) NOT NULL,"
    " case_index INTEGER NOT NULL,"
    " case_name VARCHAR(200) NOT NULL,"
    " repeat INTEGER NOT NULL,"
    " attempt INTEGER NOT NULL,"
    " expected_status VARCHAR(16) NOT NULL)",
    # One execution per attempt of each repeat of each case.
    "CREATE UNIQUE INDEX runwire_suite_run_execution_case"
    " ON runwire_suite_run_execution (run_id, case_index, repeat, attempt)",
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="runwire", description=DESCRIPTION)

    async def create_suite_runs() -> None:
        engine = engine_finder()
        assert engine is not None
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(create_suite_runs)
    return manager
