"""Runner presence: each runner's record, refreshed every heartbeat, so any process can tell
whether a runner is alive to claim what is queued."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-05T09:19:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "runner presence"

# TIMESTAMPTZ is the declared type Piccolo's SQLite engine converts, as for every other table.
STATEMENTS = (
    "CREATE TABLE runwire_runner (id VARCHAR(100) PRIMARY KEY,"
    " host VARCHAR(255) NOT NULL,"
    " pid INTEGER NOT NULL,"
    " started_at TIMESTAMPTZ NOT NULL,"
    " last_seen_at TIMESTAMPTZ NOT NULL,"
    " alive_until TIMESTAMPTZ NOT NULL,"
    " slots INTEGER NOT NULL,"
    " busy INTEGER NOT NULL DEFAULT 0)",
    # The alive ones: every /ready check and queue query reads by it.
    "CREATE INDEX runwire_runner_alive ON runwire_runner (alive_until)",
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="runwire", description=DESCRIPTION)

    async def create_runners() -> None:
        engine = engine_finder()
        assert engine is not None
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(create_runners)
    return manager
