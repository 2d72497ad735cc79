"""Webhooks in the schema: subscribe URLs to execution events, read and redeliver deliveries.

Everything needs `admin`. The signing secret is returned by createWebhook only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from runwire.domain import webhooks
from runwire.domain.access import Permission
from runwire.errors import RunwireError
from runwire.graphql.schema.auth import authorized
from runwire.graphql.schema.context import Info, core
from runwire.graphql.schema.errors import ErrorType, to_error

WebhookEvent = strawberry.enum(
    webhooks.WebhookEvent,
    description="An event a webhook subscribes to: how an execution ended, or a review requested.",
)
WebhookDeliveryStatus = strawberry.enum(
    webhooks.DeliveryStatus,
    description="PENDING: waiting for its next attempt; DELIVERED: a 2xx answer; FAILED: gave up.",
)


@strawberry.type(description="A URL subscribed to events; its signing secret is never shown.")
class Webhook:
    id: strawberry.ID
    url: str
    events: list[WebhookEvent]  # type: ignore[valid-type]
    description: str
    enabled: bool
    created_at: datetime
    created_by: str
    updated_at: datetime

    @classmethod
    def of(cls, found: webhooks.Webhook) -> Webhook:
        return cls(
            id=strawberry.ID(found.id),
            url=found.url,
            events=list(found.events),
            description=found.description,
            enabled=found.enabled,
            created_at=found.created_at,
            created_by=found.created_by,
            updated_at=found.updated_at,
        )


@strawberry.type(description="One POST of a delivery and what the receiver answered.")
class WebhookDeliveryAttempt:
    number: int
    at: datetime
    duration_ms: int
    response_code: int | None
    error: str | None
    response_snippet: str | None = strawberry.field(
        description="At most the first 500 bytes of the receiver's answer."
    )


@strawberry.type(description="One event sent to one webhook, with each attempt.")
class WebhookDelivery:
    id: strawberry.ID
    webhook_id: strawberry.ID
    event: WebhookEvent  # type: ignore[valid-type]
    execution_id: strawberry.ID | None
    status: WebhookDeliveryStatus  # type: ignore[valid-type]
    attempts: int
    response_code: int | None = strawberry.field(description="Of the latest attempt.")
    error: str | None = strawberry.field(description="Of the latest attempt.")
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    redelivery_of: strawberry.ID | None
    payload: str = strawberry.field(description="The JSON body every attempt sends.")
    attempt_log: list[WebhookDeliveryAttempt]

    @classmethod
    def of(cls, found: webhooks.Delivery) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(found.id),
            webhook_id=strawberry.ID(found.webhook_id),
            event=found.event,
            execution_id=None if found.execution_id is None else strawberry.ID(found.execution_id),
            status=found.status,
            attempts=found.attempts,
            response_code=found.response_code,
            error=found.error,
            created_at=found.created_at,
            last_attempt_at=found.last_attempt_at,
            next_attempt_at=found.next_attempt_at,
            delivered_at=found.delivered_at,
            redelivery_of=None
            if found.redelivery_of is None
            else strawberry.ID(found.redelivery_of),
            payload=found.payload,
            attempt_log=[
                WebhookDeliveryAttempt(
                    number=a.number,
                    at=a.at,
                    duration_ms=a.duration_ms,
                    response_code=a.response_code,
                    error=a.error,
                    response_snippet=a.response_snippet,
                )
                for a in found.attempt_log
            ],
        )


@strawberry.input
class CreateWebhookInput:
    url: str = strawberry.field(
        description="http(s); not link-local or a metadata address; loopback and private"
        " addresses only with RUNWIRE_WEBHOOK_ALLOW_PRIVATE=true."
    )
    events: list[WebhookEvent]  # type: ignore[valid-type]
    description: str = ""


@strawberry.input(description="Fields left out stay as they are.")
class UpdateWebhookInput:
    id: strawberry.ID
    url: str | None = None
    events: list[WebhookEvent] | None = None  # type: ignore[valid-type]
    description: str | None = None
    enabled: bool | None = None


@strawberry.type
class CreateWebhookSuccess:
    webhook: Webhook
    secret: str = strawberry.field(
        description="Signs every delivery (docs/webhooks.md). Shown this once; store it now."
    )


@strawberry.type
class UpdateWebhookSuccess:
    webhook: Webhook


@strawberry.type
class DeleteWebhookSuccess:
    id: strawberry.ID


@strawberry.type
class RedeliverWebhookDeliverySuccess:
    delivery: WebhookDelivery


CreateWebhookResult = Annotated[
    CreateWebhookSuccess | ErrorType, strawberry.union("CreateWebhookResult")
]
UpdateWebhookResult = Annotated[
    UpdateWebhookSuccess | ErrorType, strawberry.union("UpdateWebhookResult")
]
DeleteWebhookResult = Annotated[
    DeleteWebhookSuccess | ErrorType, strawberry.union("DeleteWebhookResult")
]
RedeliverWebhookDeliveryResult = Annotated[
    RedeliverWebhookDeliverySuccess | ErrorType, strawberry.union("RedeliverWebhookDeliveryResult")
]


@strawberry.type
class WebhookQueries:
    @strawberry.field(description="The workspace's webhooks, oldest first (admin).")
    async def webhooks(self, info: Info) -> list[Webhook]:
        actor = authorized(info, Permission.ADMIN)
        return [Webhook.of(found) for found in await core(info).webhooks.webhooks(actor)]

    @strawberry.field(
        description="A webhook's latest deliveries, newest first (admin); none for an unknown id."
    )
    async def webhook_deliveries(
        self,
        info: Info,
        webhook_id: strawberry.ID,
        first: Annotated[
            int, strawberry.argument(description=f"At most {webhooks.MAX_DELIVERIES_PAGE}.")
        ] = 20,
    ) -> list[WebhookDelivery]:
        actor = authorized(info, Permission.ADMIN)
        found = await core(info).webhooks.deliveries(actor, str(webhook_id), first)
        return [WebhookDelivery.of(delivery) for delivery in found]


@strawberry.type
class WebhookMutations:
    @strawberry.mutation(
        description="Subscribe a URL to execution events (admin); returns its signing secret once."
    )
    async def create_webhook(self, info: Info, input: CreateWebhookInput) -> CreateWebhookResult:
        try:
            actor = authorized(info, Permission.ADMIN)
            webhook, secret = await core(info).webhooks.create(
                actor,
                input.url,
                [webhooks.WebhookEvent(event) for event in input.events],
                input.description,
            )
        except RunwireError as error:
            return to_error(error)
        return CreateWebhookSuccess(webhook=Webhook.of(webhook), secret=secret)

    @strawberry.mutation(
        description="Change a webhook's URL, events, description or state (admin)."
    )
    async def update_webhook(self, info: Info, input: UpdateWebhookInput) -> UpdateWebhookResult:
        try:
            actor = authorized(info, Permission.ADMIN)
            webhook = await core(info).webhooks.update(
                actor,
                str(input.id),
                url=input.url,
                events=None
                if input.events is None
                else [webhooks.WebhookEvent(event) for event in input.events],
                description=input.description,
                enabled=input.enabled,
            )
        except RunwireError as error:
            return to_error(error)
        return UpdateWebhookSuccess(webhook=Webhook.of(webhook))

    @strawberry.mutation(description="Delete a webhook and its deliveries (admin).")
    async def delete_webhook(self, info: Info, id: strawberry.ID) -> DeleteWebhookResult:
        try:
            actor = authorized(info, Permission.ADMIN)
            await core(info).webhooks.delete(actor, str(id))
        except RunwireError as error:
            return to_error(error)
        return DeleteWebhookSuccess(id=id)

    @strawberry.mutation(description="Send a delivery's payload again, as a new delivery (admin).")
    async def redeliver_webhook_delivery(
        self, info: Info, id: strawberry.ID
    ) -> RedeliverWebhookDeliveryResult:
        try:
            actor = authorized(info, Permission.ADMIN)
            delivery = await core(info).webhooks.redeliver(actor, str(id))
        except RunwireError as error:
            return to_error(error)
        return RedeliverWebhookDeliverySuccess(delivery=WebhookDelivery.of(delivery))
