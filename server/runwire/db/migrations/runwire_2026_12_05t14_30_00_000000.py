"""Webhook deliveries found by their execution: the sweep for ends whose queueing was lost."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-05T14:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "webhook deliveries by execution"

# webhook_delivery.WebhookSender.queue_missed asks, per recent end, whether each subscribed
# webhook has its delivery.
STATEMENTS = (
    "CREATE INDEX runwire_webhook_delivery_of_execution ON runwire_webhook_delivery"
    " (execution_id, webhook_id)",
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="runwire", description=DESCRIPTION)

    async def index_deliveries() -> None:
        engine = engine_finder()
        assert engine is not None
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(index_deliveries)
    return manager
