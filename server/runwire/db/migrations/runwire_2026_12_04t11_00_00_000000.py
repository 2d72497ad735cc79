"""Suite baselines: which run of a suite others are compared with, and who set it when."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-04T11:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "suite baselines"

# TIMESTAMPTZ is the declared type Piccolo's SQLite engine converts, as for every other table.
_ID = {"postgres": "SERIAL PRIMARY KEY", "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT"}
_BASELINE = (
    "CREATE TABLE runwire_suite_baseline (id {id},"
    " workspace_id VARCHAR(36) NOT NULL,"
    " suite_name VARCHAR(100) NOT NULL,"
    " run_id VARCHAR(36) NOT NULL,"
    " set_at TIMESTAMPTZ NOT NULL,"
    " set_by VARCHAR(200) NOT NULL DEFAULT '')"
)
INDEXES = (
    # A suite's history, newest first; the newest is its baseline.
    "CREATE INDEX runwire_suite_baseline_suite"
    " ON runwire_suite_baseline (workspace_id, suite_name, id)",
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="runwire", description=DESCRIPTION)

    async def create_baselines() -> None:
        engine = engine_finder()
        assert engine is not None
        await engine.run_ddl(_BASELINE.format(id=_ID[engine.engine_type]))
        for statement in INDEXES:
            await engine.run_ddl(statement)

    manager.add_raw(create_baselines)
    return manager
