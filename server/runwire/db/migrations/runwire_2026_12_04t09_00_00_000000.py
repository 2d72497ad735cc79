"""Suites: named, versioned sets of cases."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-04T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "suites"

# TIMESTAMPTZ is the declared type Piccolo's SQLite engine converts, as for every other table.
_ID = {"postgres": "SERIAL PRIMARY KEY", "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT"}
_SUITE = (
    "CREATE TABLE runwire_suite (id {id},"
    " workspace_id VARCHAR(36) NOT NULL,"
    " name VARCHAR(100) NOT NULL,"
    " version INTEGER NOT NULL,"
    " description TEXT NOT NULL DEFAULT '',"
    " tags JSON NOT NULL,"
    " definition JSON NOT NULL,"
    " created_at TIMESTAMPTZ NOT NULL,"
    " created_by VARCHAR(200) NOT NULL DEFAULT '')"
)
INDEXES = (
    # One row per version; also finds the latest version of a name.
    "CREATE UNIQUE INDEX runwire_suite_version ON runwire_suite (workspace_id, name, version)",
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="runwire", description=DESCRIPTION)

    async def create_suites() -> None:
        engine = engine_finder()
        assert engine is not None
        await engine.run_ddl(_SUITE.format(id=_ID[engine.engine_type]))
        for statement in INDEXES:
            await engine.run_ddl(statement)

    manager.add_raw(create_suites)
    return manager
