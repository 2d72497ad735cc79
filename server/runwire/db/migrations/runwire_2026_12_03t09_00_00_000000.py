"""Usage totals on execution and step attempt rows: tokens and cost, kept as usage is reported."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-03T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "usage totals of executions and step attempts"

# usage_cost_usd sums what was priced; usage_unpriced counts reports without a price, so a total
# whose cost is unknown reads as null, never as a partial sum.
_COLUMNS = (
    "usage_calls INTEGER NOT NULL DEFAULT 0",
    "usage_input BIGINT NOT NULL DEFAULT 0",
    "usage_output BIGINT NOT NULL DEFAULT 0",
    "usage_cached BIGINT NOT NULL DEFAULT 0",
    "usage_reasoning BIGINT NOT NULL DEFAULT 0",
    "usage_cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0",
    "usage_unpriced INTEGER NOT NULL DEFAULT 0",
)
# No step kind reported usage before this migration, so there is nothing to backfill.
STATEMENTS = [
    f"ALTER TABLE {table} ADD COLUMN {column}"
    for table in ("runwire_execution", "runwire_step_run")
    for column in _COLUMNS
]


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="runwire", description=DESCRIPTION)

    async def add_usage() -> None:
        engine = engine_finder()
        assert engine is not None
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(add_usage)
    return manager
