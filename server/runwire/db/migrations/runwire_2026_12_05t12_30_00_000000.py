"""Webhooks: a workspace's subscriptions of URLs to execution events, and the delivery outbox."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-05T12:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "webhooks and their deliveries"

# TIMESTAMPTZ is the declared type Piccolo's SQLite engine converts, as for every other table.
# No foreign keys: deleting a webhook deletes its deliveries and attempts itself (db/webhooks.py),
# and a delivery attempt finishing after that writes to nothing rather than failing. Deliveries
# name their execution without one too: deleting an execution (retention) need not touch the
# outbox, and what was sent about it stays readable until its webhook is deleted.
STATEMENTS = (
    "CREATE TABLE runwire_webhook (id VARCHAR(36) PRIMARY KEY,"
    " workspace_id VARCHAR(36) NOT NULL,"
    " url VARCHAR(2048) NOT NULL,"
    " events TEXT NOT NULL,"
    " description VARCHAR(500) NOT NULL DEFAULT '',"
    " enabled BOOLEAN NOT NULL DEFAULT TRUE,"
    # The signing key: shown once by createWebhook, read only to sign deliveries.
    " secret VARCHAR(100) NOT NULL,"
    " created_at TIMESTAMPTZ NOT NULL,"
    " created_by VARCHAR(200) NOT NULL,"
    " updated_at TIMESTAMPTZ NOT NULL)",
    "CREATE INDEX runwire_webhook_workspace ON runwire_webhook (workspace_id, created_at)",
    "CREATE TABLE runwire_webhook_delivery (id VARCHAR(36) PRIMARY KEY,"
    " webhook_id VARCHAR(36) NOT NULL,"
    " workspace_id VARCHAR(36) NOT NULL,"
    " event VARCHAR(50) NOT NULL,"
    " execution_id VARCHAR(36),"
    # One delivery per webhook, execution and event however often its end is reported;
    # null for redeliveries, which are new rows of their own.
    " dedupe_key VARCHAR(200) UNIQUE,"
    " redelivery_of VARCHAR(36),"
    # The JSON body, fixed when the event happened, so every attempt sends the same bytes.
    " payload TEXT NOT NULL,"
    " status VARCHAR(20) NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " next_attempt_at TIMESTAMPTZ,"
    " claimed_until TIMESTAMPTZ,"
    " response_code INTEGER,"
    " error VARCHAR(1000),"
    " created_at TIMESTAMPTZ NOT NULL,"
    " last_attempt_at TIMESTAMPTZ,"
    " delivered_at TIMESTAMPTZ)",
    "CREATE INDEX runwire_webhook_delivery_due ON runwire_webhook_delivery"
    " (status, next_attempt_at)",
    "CREATE INDEX runwire_webhook_delivery_of_webhook ON runwire_webhook_delivery"
    " (webhook_id, created_at)",
    "CREATE TABLE runwire_webhook_attempt (delivery_id VARCHAR(36) NOT NULL,"
    " number INTEGER NOT NULL,"
    " at TIMESTAMPTZ NOT NULL,"
    " duration_ms INTEGER NOT NULL,"
    " response_code INTEGER,"
    " error VARCHAR(1000),"
    # The start of the receiver's answer, for reading why it refused; never more.
    " response_snippet VARCHAR(500),"
    " PRIMARY KEY (delivery_id, number))",
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="runwire", description=DESCRIPTION)

    async def create_webhooks() -> None:
        engine = engine_finder()
        assert engine is not None
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(create_webhooks)
    return manager
