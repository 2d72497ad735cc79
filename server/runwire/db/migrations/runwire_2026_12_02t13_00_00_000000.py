"""Workspace secrets: values steps receive by name."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-02T13:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "workspace secrets"

# TIMESTAMPTZ is the declared type Piccolo's SQLite engine converts, as for every other table.
_COLUMNS = (
    " workspace_id VARCHAR(36) NOT NULL,"
    " name VARCHAR(128) NOT NULL,"
    " value TEXT NOT NULL,"
    " created_at TIMESTAMPTZ NOT NULL,"
    " updated_at TIMESTAMPTZ NOT NULL,"
    " updated_by VARCHAR(200) NOT NULL DEFAULT '')"
)
POSTGRES = "CREATE TABLE runwire_workspace_secret (id SERIAL PRIMARY KEY," + _COLUMNS
SQLITE = "CREATE TABLE runwire_workspace_secret (id INTEGER PRIMARY KEY AUTOINCREMENT," + _COLUMNS
INDEX = (
    "CREATE UNIQUE INDEX runwire_workspace_secret_name"
    " ON runwire_workspace_secret (workspace_id, name)"
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="runwire", description=DESCRIPTION)

    async def create_secrets() -> None:
        engine = engine_finder()
        assert engine is not None
        await engine.run_ddl(SQLITE if engine.engine_type == "sqlite" else POSTGRES)
        await engine.run_ddl(INDEX)

    manager.add_raw(create_secrets)
    return manager
