"""Artifacts of step attempts: their content is a row, so any process can serve them."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-03T12:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "artifacts of step attempts"

# TIMESTAMPTZ is the declared type Piccolo's SQLite engine converts, as for every other table.
_COLUMNS = (
    "CREATE TABLE runwire_artifact (id VARCHAR(36) PRIMARY KEY,"
    " workspace_id VARCHAR(36) NOT NULL,"
    " execution_id VARCHAR(36) NOT NULL,"
    " step_key VARCHAR(100) NOT NULL,"
    " attempt INTEGER NOT NULL,"
    " name VARCHAR(128) NOT NULL,"
    " media_type VARCHAR(100) NOT NULL,"
    " bytes BIGINT NOT NULL,"
    " created_at TIMESTAMPTZ NOT NULL,"
)
POSTGRES = _COLUMNS + " content BYTEA NOT NULL)"
SQLITE = _COLUMNS + " content BLOB NOT NULL)"
INDEXES = (
    # One name per attempt (storing it again replaces it); also serves a step run's list.
    "CREATE UNIQUE INDEX runwire_artifact_name"
    " ON runwire_artifact (execution_id, step_key, attempt, name)",
    # Retention deletes by age.
    "CREATE INDEX runwire_artifact_created_at ON runwire_artifact (created_at)",
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="runwire", description=DESCRIPTION)

    async def create_artifacts() -> None:
        engine = engine_finder()
        assert engine is not None
        await engine.run_ddl(SQLITE if engine.engine_type == "sqlite" else POSTGRES)
        for statement in INDEXES:
            await engine.run_ddl(statement)

    manager.add_raw(create_artifacts)
    return manager
