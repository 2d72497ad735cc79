"""Indexes for tenancy: every lookup and uniqueness rule is per workspace."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-21T19:34:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "per-workspace indexes, unique token hashes and workspace names"

STATEMENTS = [
    "DROP INDEX runwire_scenario_name_version",
    "CREATE UNIQUE INDEX runwire_scenario_name_version"
    " ON runwire_scenario (workspace_id, name, version)",
    # An idempotency key names one start within its workspace; two tenants may reuse a key.
    "DROP INDEX runwire_execution_idempotency",
    "CREATE UNIQUE INDEX runwire_execution_idempotency"
    " ON runwire_execution (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL",
    # History, the active list and metrics all read one workspace's executions.
    "DROP INDEX runwire_execution_queued",
    "CREATE INDEX runwire_execution_queued"
    " ON runwire_execution (workspace_id, queued_at DESC, id DESC)",
    "DROP INDEX runwire_execution_finished",
    "CREATE INDEX runwire_execution_finished"
    " ON runwire_execution (workspace_id, finished_at, scenario_name)",
    "DROP INDEX runwire_execution_status_queued",
    "CREATE INDEX runwire_execution_status_queued"
    " ON runwire_execution (workspace_id, status, queued_at DESC, id DESC)",
    "DROP INDEX runwire_execution_scenario",
    "CREATE INDEX runwire_execution_scenario"
    " ON runwire_execution (workspace_id, scenario_name, queued_at DESC, id DESC)",
    "CREATE INDEX runwire_batch_workspace ON runwire_batch (workspace_id, created_at)",
    "CREATE INDEX runwire_activity_workspace ON runwire_activity (workspace_id, id)",
    "CREATE UNIQUE INDEX runwire_workspace_name ON runwire_workspace (name)",
    "CREATE UNIQUE INDEX runwire_member_subject ON runwire_member (workspace_id, subject)",
    "CREATE UNIQUE INDEX runwire_api_token_secret ON runwire_api_token (secret_hash)",
    "CREATE INDEX runwire_api_token_workspace ON runwire_api_token (workspace_id, created_at)",
]


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="runwire", description=DESCRIPTION)

    async def create_indexes() -> None:
        engine = engine_finder()
        assert engine is not None
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(create_indexes)
    return manager
