"""Retention policies: how long each workspace keeps its ended executions."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-05T12:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "retention policies"

# A null limit is no limit; a workspace without a row keeps everything (the default).
STATEMENTS = (
    "CREATE TABLE runwire_retention_policy (workspace_id VARCHAR(36) PRIMARY KEY,"
    " keep_days INTEGER,"
    " keep_executions INTEGER,"
    " keep_failed_days INTEGER,"
    " updated_at TIMESTAMPTZ NOT NULL,"
    " updated_by VARCHAR(200) NOT NULL DEFAULT '')",
    # The sweep finds a workspace's oldest ended executions, and the newest N to keep, here.
    "CREATE INDEX runwire_execution_retention ON runwire_execution (workspace_id, finished_at, id)",
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="runwire", description=DESCRIPTION)

    async def create_retention_policies() -> None:
        engine = engine_finder()
        assert engine is not None
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(create_retention_policies)
    return manager
