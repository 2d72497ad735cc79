"""Ends whose webhook deliveries were never queued (a crash between storing the end and queueing)
are found and queued by the sender's sweep, once, on SQLite and Postgres."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from tests.support import postgres

from runwire.core import Stores
from runwire.db.engine import Database
from runwire.domain.clock import utc_now
from runwire.domain.webhooks import Webhook, WebhookEvent
from runwire.settings import Settings
from runwire.webhook_delivery import WebhookSender

WORKSPACE = "workspace-hooks"
OTHER = "workspace-without-hooks"


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    async with contextlib.AsyncExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'hooks.sqlite'}"
            if request.param == "sqlite"
            else await stack.enter_async_context(postgres.fresh_database())
        )
        database = await stack.enter_async_context(Database.open(url, migrate=True))
        yield Stores.on(database)


async def webhook(stores: Stores, events: tuple[WebhookEvent, ...], created: datetime) -> str:
    webhook_id = str(uuid.uuid4())
    await stores.webhooks.insert_webhook(
        Webhook(
            id=webhook_id,
            workspace_id=WORKSPACE,
            url="http://127.0.0.1:9/hook",
            events=events,
            description="",
            enabled=True,
            created_at=created,
            created_by="test",
            updated_at=created,
        ),
        "whsec_test",
    )
    return webhook_id


async def ended(stores: Stores, workspace: str, status: str, finished: datetime) -> str:
    """An execution stored as ended, with nothing queued for it: what a crash leaves."""
    execution_id = str(uuid.uuid4())
    await stores.webhooks._database.fetch(
        "INSERT INTO runwire_execution (id, workspace_id, name, status, queued_at, started_at,"
        " finished_at) VALUES ({}, {}, {}, {}, {}, {}, {})",
        execution_id,
        workspace,
        "ended",
        status,
        finished - timedelta(seconds=1),
        finished - timedelta(seconds=1),
        finished,
    )
    return execution_id


async def test_the_sweep_queues_each_missed_end_once(stores: Stores) -> None:
    now = utc_now()
    succeeded = await webhook(stores, (WebhookEvent.EXECUTION_SUCCEEDED,), now - timedelta(hours=2))
    failed_only = await webhook(stores, (WebhookEvent.EXECUTION_FAILED,), now - timedelta(hours=2))
    # Created after the end: it never hears of ends from before it existed.
    newer = await webhook(stores, (WebhookEvent.EXECUTION_SUCCEEDED,), now - timedelta(minutes=1))
    missed = await ended(stores, WORKSPACE, "SUCCEEDED", now - timedelta(minutes=5))
    await ended(stores, WORKSPACE, "SUCCEEDED", now - timedelta(hours=2))  # before the look-back
    await ended(stores, WORKSPACE, "SUCCEEDED", now - timedelta(seconds=1))  # the usual path's
    await ended(stores, OTHER, "SUCCEEDED", now - timedelta(minutes=5))  # no webhooks there
    sender = WebhookSender(Settings(), stores.webhooks, stores.history, stores.reviews)

    assert await sender.queue_missed() == 1
    [delivery] = await stores.webhooks.deliveries(WORKSPACE, succeeded, 10)
    assert (delivery.execution_id, delivery.event) == (missed, WebhookEvent.EXECUTION_SUCCEEDED)
    assert await stores.webhooks.deliveries(WORKSPACE, failed_only, 10) == []
    assert await stores.webhooks.deliveries(WORKSPACE, newer, 10) == []
    # Queued now: the next sweep finds nothing, and queueing it again adds nothing.
    assert await sender.queue_missed() == 0
    await sender._queue([missed])
    assert len(await stores.webhooks.deliveries(WORKSPACE, succeeded, 10)) == 1
