"""Webhooks, their delivery outbox and each delivery's attempts: the only code on their tables."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from runwire.db.engine import Database, optional_stored_datetime, stored_datetime
from runwire.domain.webhooks import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    DueDelivery,
    Webhook,
    WebhookEvent,
)


class WebhookRepository:
    """runwire_webhook, runwire_webhook_delivery and runwire_webhook_attempt."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def insert_webhook(self, webhook: Webhook, secret: str) -> None:
        await self._database.fetch(
            "INSERT INTO runwire_webhook (id, workspace_id, url, events, description, enabled,"
            " secret, created_at, created_by, updated_at)"
            " VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
            webhook.id,
            webhook.workspace_id,
            webhook.url,
            json.dumps([str(event) for event in webhook.events]),
            webhook.description,
            webhook.enabled,
            secret,
            webhook.created_at,
            webhook.created_by,
            webhook.updated_at,
        )

    async def update_webhook(self, webhook: Webhook) -> None:
        await self._database.fetch(
            "UPDATE runwire_webhook SET url = {}, events = {}, description = {}, enabled = {},"
            " updated_at = {} WHERE id = {} AND workspace_id = {}",
            webhook.url,
            json.dumps([str(event) for event in webhook.events]),
            webhook.description,
            webhook.enabled,
            webhook.updated_at,
            webhook.id,
            webhook.workspace_id,
        )

    async def delete_webhook(self, workspace: str, webhook_id: str) -> bool:
        async with self._database.write():
            rows = await self._database.fetch(
                "DELETE FROM runwire_webhook WHERE id = {} AND workspace_id = {} RETURNING id",
                webhook_id,
                workspace,
            )
            if not rows:
                return False
            await self._database.fetch(
                "DELETE FROM runwire_webhook_attempt WHERE delivery_id IN"
                " (SELECT id FROM runwire_webhook_delivery WHERE webhook_id = {})",
                webhook_id,
            )
            await self._database.fetch(
                "DELETE FROM runwire_webhook_delivery WHERE webhook_id = {}", webhook_id
            )
        return True

    async def webhooks(self, workspace: str) -> list[Webhook]:
        rows = await self._database.fetch(
            f"SELECT {_WEBHOOK_COLUMNS} FROM runwire_webhook WHERE workspace_id = {{}}"
            " ORDER BY created_at, id",
            workspace,
        )
        return [_webhook(row) for row in rows]

    async def workspaces_with_webhooks(self) -> set[str]:
        """The workspaces that have an enabled webhook."""
        rows = await self._database.fetch(
            "SELECT DISTINCT workspace_id FROM runwire_webhook WHERE enabled"
        )
        return {row["workspace_id"] for row in rows}

    async def webhook(self, workspace: str, webhook_id: str) -> Webhook | None:
        rows = await self._database.fetch(
            f"SELECT {_WEBHOOK_COLUMNS} FROM runwire_webhook"
            " WHERE id = {} AND workspace_id = {}",
            webhook_id,
            workspace,
        )
        return _webhook(rows[0]) if rows else None

    async def subscribed(self, workspace: str, event: WebhookEvent) -> list[Webhook]:
        """The workspace's enabled webhooks subscribed to `event`."""
        return [
            webhook
            for webhook in await self.webhooks(workspace)
            if webhook.enabled and event in webhook.events
        ]

    async def enqueue(self, deliveries: Sequence[Delivery], dedupe: bool) -> None:
        """Insert pending deliveries; with `dedupe`, one per webhook, execution and event."""
        for delivery in deliveries:
            key = f"{delivery.webhook_id}:{delivery.execution_id}:{delivery.event}"
            if delivery.subject:
                key += f":{delivery.subject}"
            await self._database.fetch(
                "INSERT INTO runwire_webhook_delivery (id, webhook_id, workspace_id, event,"
                " execution_id, dedupe_key, redelivery_of, payload, status, attempts,"
                " next_attempt_at, created_at)"
                " VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, 0, {}, {})"
                " ON CONFLICT (dedupe_key) DO NOTHING",
                delivery.id,
                delivery.webhook_id,
                delivery.workspace_id,
                str(delivery.event),
                delivery.execution_id,
                key if dedupe else None,
                delivery.redelivery_of,
                delivery.payload,
                str(DeliveryStatus.PENDING),
                delivery.next_attempt_at,
                delivery.created_at,
            )

    async def ended_without_deliveries(
        self, since: datetime, until: datetime, limit: int
    ) -> list[str]:
        """Executions that ended in (since, until] for which a webhook subscribed to their end
        (and created before it) has no delivery: their queueing was lost (a crash between the
        end and the queueing), or is still under way."""
        rows = await self._database.fetch(
            "SELECT e.id FROM runwire_execution e"
            " WHERE e.finished_at > {} AND e.finished_at <= {} AND EXISTS ("
            " SELECT 1 FROM runwire_webhook w WHERE w.workspace_id = e.workspace_id"
            " AND w.enabled AND w.created_at <= e.finished_at"
            """ AND w.events LIKE '%"EXECUTION_' || e.status || '"%'"""
            " AND NOT EXISTS (SELECT 1 FROM runwire_webhook_delivery d"
            " WHERE d.execution_id = e.id AND d.webhook_id = w.id"
            " AND d.event = 'EXECUTION_' || e.status))"
            " ORDER BY e.finished_at LIMIT {}",
            since,
            until,
            limit,
        )
        return [row["id"] for row in rows]

    async def deliveries(self, workspace: str, webhook_id: str, first: int) -> list[Delivery]:
        rows = await self._database.fetch(
            "SELECT * FROM runwire_webhook_delivery WHERE webhook_id = {} AND workspace_id = {}"
            " ORDER BY created_at DESC, id LIMIT {}",
            webhook_id,
            workspace,
            first,
        )
        found = [_delivery(row) for row in rows]
        if not found:
            return []
        attempts = await self._database.fetch(
            "SELECT * FROM runwire_webhook_attempt WHERE delivery_id IN"
            f" ({', '.join('{}' for _ in found)}) ORDER BY delivery_id, number",
            *(delivery.id for delivery in found),
        )
        by_delivery: dict[str, list[DeliveryAttempt]] = {}
        for row in attempts:
            by_delivery.setdefault(row["delivery_id"], []).append(_attempt(row))
        return [_with_attempts(delivery, by_delivery.get(delivery.id, [])) for delivery in found]

    async def delivery(self, workspace: str, delivery_id: str) -> Delivery | None:
        rows = await self._database.fetch(
            "SELECT * FROM runwire_webhook_delivery WHERE id = {} AND workspace_id = {}",
            delivery_id,
            workspace,
        )
        return _delivery(rows[0]) if rows else None

    async def claim_due(self, now: datetime, until: datetime, limit: int) -> list[DueDelivery]:
        """Claim up to `limit` due deliveries until `until`; no other process claims them."""
        # One statement: on SQLite it is atomic by itself; on Postgres SKIP LOCKED lets every
        # process's sender claim at once without waiting on, or taking, the others' rows.
        # A read first: an idle sender looks every second, and on SQLite an UPDATE, even one
        # that changes nothing, takes the database's one write lock from the event log.
        due = await self._database.fetch(
            "SELECT 1 AS due FROM runwire_webhook_delivery WHERE status = {}"
            " AND next_attempt_at <= {} LIMIT 1",
            str(DeliveryStatus.PENDING),
            now,
        )
        if not due:
            return []
        lock = " FOR UPDATE SKIP LOCKED" if self._database.is_postgres else ""
        claimed = await self._database.fetch(
            "UPDATE runwire_webhook_delivery SET claimed_until = {} WHERE id IN"
            " (SELECT id FROM runwire_webhook_delivery WHERE status = {}"
            " AND next_attempt_at <= {} AND (claimed_until IS NULL OR claimed_until < {})"
            f" ORDER BY next_attempt_at LIMIT {{}}{lock}) RETURNING id",
            until,
            str(DeliveryStatus.PENDING),
            now,
            now,
            limit,
        )
        if not claimed:
            return []
        rows = await self._database.fetch(
            "SELECT d.*, w.url AS webhook_url, w.secret AS webhook_secret"
            " FROM runwire_webhook_delivery d JOIN runwire_webhook w ON w.id = d.webhook_id"
            f" WHERE d.id IN ({', '.join('{}' for _ in claimed)})",
            *(row["id"] for row in claimed),
        )
        return [
            DueDelivery(_delivery(row), str(row["webhook_url"]), str(row["webhook_secret"]))
            for row in rows
        ]

    async def record_attempt(
        self,
        delivery: Delivery,
        attempt: DeliveryAttempt,
        status: DeliveryStatus,
        next_attempt_at: datetime | None,
    ) -> None:
        """Store an attempt and the delivery's state after it, releasing the claim."""
        async with self._database.write():
            await self._database.fetch(
                "INSERT INTO runwire_webhook_attempt (delivery_id, number, at, duration_ms,"
                " response_code, error, response_snippet) VALUES ({}, {}, {}, {}, {}, {}, {})"
                " ON CONFLICT (delivery_id, number) DO NOTHING",
                delivery.id,
                attempt.number,
                attempt.at,
                attempt.duration_ms,
                attempt.response_code,
                attempt.error,
                attempt.response_snippet,
            )
            await self._database.fetch(
                "UPDATE runwire_webhook_delivery SET status = {}, attempts = {},"
                " next_attempt_at = {}, claimed_until = NULL, response_code = {}, error = {},"
                " last_attempt_at = {}, delivered_at = {} WHERE id = {}",
                str(status),
                attempt.number,
                next_attempt_at,
                attempt.response_code,
                attempt.error,
                attempt.at,
                attempt.at if status == DeliveryStatus.DELIVERED else None,
                delivery.id,
            )


_WEBHOOK_COLUMNS = (
    "id, workspace_id, url, events, description, enabled, created_at, created_by, updated_at"
)


def _webhook(row: Mapping[str, Any]) -> Webhook:
    return Webhook(
        id=row["id"],
        workspace_id=row["workspace_id"],
        url=row["url"],
        events=tuple(WebhookEvent(event) for event in json.loads(row["events"])),
        description=row["description"],
        enabled=bool(row["enabled"]),
        created_at=stored_datetime(row["created_at"]),
        created_by=row["created_by"],
        updated_at=stored_datetime(row["updated_at"]),
    )


def _delivery(row: Mapping[str, Any]) -> Delivery:
    return Delivery(
        id=row["id"],
        webhook_id=row["webhook_id"],
        workspace_id=row["workspace_id"],
        event=WebhookEvent(row["event"]),
        execution_id=row["execution_id"],
        payload=row["payload"],
        status=DeliveryStatus(row["status"]),
        attempts=int(row["attempts"]),
        created_at=stored_datetime(row["created_at"]),
        next_attempt_at=optional_stored_datetime(row["next_attempt_at"]),
        last_attempt_at=optional_stored_datetime(row["last_attempt_at"]),
        delivered_at=optional_stored_datetime(row["delivered_at"]),
        response_code=row["response_code"],
        error=row["error"],
        redelivery_of=row["redelivery_of"],
    )


def _attempt(row: Mapping[str, Any]) -> DeliveryAttempt:
    return DeliveryAttempt(
        number=int(row["number"]),
        at=stored_datetime(row["at"]),
        duration_ms=int(row["duration_ms"]),
        response_code=row["response_code"],
        error=row["error"],
        response_snippet=row["response_snippet"],
    )


def _with_attempts(delivery: Delivery, attempts: list[DeliveryAttempt]) -> Delivery:
    return replace(delivery, attempt_log=tuple(attempts))
