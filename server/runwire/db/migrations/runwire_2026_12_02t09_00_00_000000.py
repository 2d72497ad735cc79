"""The fencing token: a lease generation on every execution."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-02T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "lease generation (fencing token) of executions"

STATEMENTS = [
    "ALTER TABLE runwire_execution ADD COLUMN lease_generation INTEGER NOT NULL DEFAULT 0",
]


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="runwire", description=DESCRIPTION)

    async def add_generation() -> None:
        engine = engine_finder()
        assert engine is not None
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(add_generation)
    return manager
