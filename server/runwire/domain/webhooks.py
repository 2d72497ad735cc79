"""Webhooks: a workspace subscribes URLs to execution events; each event is a signed delivery.

Deliveries are an outbox: a row is written when an execution ends (or a review step asks for a
decision) and a background sender
(webhook_delivery.py) posts it, retrying with backoff, so a receiver never slows a runner.
The signing secret is shown once, by create; it is stored as given (not encrypted), like
workspace secrets, because every process that sends must sign (see docs/webhooks.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

from runwire.domain.access import Actor, Permission
from runwire.domain.clock import utc_now
from runwire.domain.models import Execution, ExecutionStatus
from runwire.domain.reviews import Review
from runwire.errors import FieldError, Invalid, NotFound

MAX_URL_CHARS = 2048
MAX_DESCRIPTION_CHARS = 500
MAX_DELIVERIES_PAGE = 100
SECRET_PREFIX = "whsec_"

# Never reachable, whatever the settings: link-local (where cloud metadata services answer,
# 169.254.169.254 and AWS's IPv6 fd00:ec2::254), unspecified and multicast addresses.
_METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)


class WebhookEvent(StrEnum):
    """What a webhook subscribes to: an execution ending, by how it ended, or a review step
    waiting for a decision."""

    EXECUTION_SUCCEEDED = "EXECUTION_SUCCEEDED"
    EXECUTION_FAILED = "EXECUTION_FAILED"
    EXECUTION_CANCELLED = "EXECUTION_CANCELLED"
    EXECUTION_TIMED_OUT = "EXECUTION_TIMED_OUT"
    REVIEW_REQUESTED = "REVIEW_REQUESTED"

    @classmethod
    def of_end(cls, status: ExecutionStatus) -> WebhookEvent | None:
        """The event an execution ending in `status` is (None if it has not ended)."""
        return cls.__members__.get(f"EXECUTION_{status}") if status.is_terminal else None

    @property
    def wire_name(self) -> str:
        """As the payload's `type` says it: `execution.succeeded`."""
        return self.value.lower().replace("_", ".", 1)


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"  # waiting for its next attempt
    DELIVERED = "DELIVERED"  # a 2xx answer
    FAILED = "FAILED"  # gave up after the last attempt


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    workspace_id: str
    url: str
    events: tuple[WebhookEvent, ...]
    description: str
    enabled: bool
    created_at: datetime
    created_by: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    number: int
    at: datetime
    duration_ms: int
    response_code: int | None
    error: str | None
    response_snippet: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    webhook_id: str
    workspace_id: str
    event: WebhookEvent
    execution_id: str | None
    payload: str
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None = None
    last_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    response_code: int | None = None
    error: str | None = None
    redelivery_of: str | None = None
    attempt_log: tuple[DeliveryAttempt, ...] = field(default=())
    # What of the execution it is about, when one execution can have several of the event (a
    # review's step and attempt): part of the key that keeps it to one delivery per webhook.
    subject: str = ""


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A claimed delivery with what sending it needs: where, and the key to sign with."""

    delivery: Delivery
    url: str
    secret: str


class WebhookStore(Protocol):
    async def insert_webhook(self, webhook: Webhook, secret: str) -> None: ...
    async def webhooks(self, workspace: str) -> list[Webhook]: ...
    async def webhook(self, workspace: str, webhook_id: str) -> Webhook | None: ...
    async def update_webhook(self, webhook: Webhook) -> None: ...
    async def delete_webhook(self, workspace: str, webhook_id: str) -> bool: ...
    async def subscribed(self, workspace: str, event: WebhookEvent) -> list[Webhook]: ...
    async def enqueue(self, deliveries: Sequence[Delivery], dedupe: bool) -> None: ...
    async def deliveries(self, workspace: str, webhook_id: str, first: int) -> list[Delivery]: ...
    async def delivery(self, workspace: str, delivery_id: str) -> Delivery | None: ...


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`v1=` and the hex HMAC-SHA256 of `{timestamp}.{body}` keyed with the whole secret."""
    signed = str(timestamp).encode() + b"." + body
    return "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def address_refusal(address: str, allow_private: bool) -> str | None:
    """Why a webhook may not be sent to this IP address (None: it may)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA:
        return f"{ip} is a cloud metadata address"
    if ip.is_link_local or ip.is_unspecified or ip.is_multicast:
        return f"{ip} is a link-local, unspecified or multicast address"
    if not allow_private and not ip.is_global:
        return (
            f"{ip} is a loopback or private address (allowed only with"
            " RUNWIRE_WEBHOOK_ALLOW_PRIVATE=true)"
        )
    return None


def url_errors(url: str) -> list[FieldError]:
    """What is wrong with the URL's form: http(s), a host, no credentials, bounded."""
    if len(url) > MAX_URL_CHARS:
        return [FieldError("url", f"at most {MAX_URL_CHARS} characters")]
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as error:
        return [FieldError("url", f"not a URL: {error}")]
    if parts.scheme not in ("http", "https"):
        return [FieldError("url", "must be an http:// or https:// URL")]
    if not parts.hostname:
        return [FieldError("url", "must name a host")]
    if parts.username is not None or parts.password is not None:
        return [FieldError("url", "must not carry credentials; verify the signature instead")]
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        return [FieldError("url", "must not contain spaces or control characters")]
    return []


async def resolved_addresses(host: str, port: int) -> list[str]:
    """Every address `host` resolves to now (empty if it resolves to none)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def destination_refusal(url: str, allow_private: bool) -> tuple[str | None, list[str]]:
    """(why not, addresses): the URL's host resolved now, each address checked."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await resolved_addresses(host, port)
    if not addresses:
        return f"{host} does not resolve", []
    for address in addresses:
        if (refusal := address_refusal(address, allow_private)) is not None:
            return f"{host} resolves to {refusal}", addresses
    return None, addresses


def payload_of(
    execution: Execution, event: WebhookEvent, event_id: str, review: Review | None = None
) -> str:
    """The JSON body every attempt of this event's delivery sends, byte for byte."""
    occurred = review.requested_at if review is not None else execution.finished_at
    body: dict[str, Any] = {
        "id": event_id,
        "type": event.wire_name,
        "occurredAt": _iso(occurred or utc_now()),
        "workspaceId": execution.workspace_id,
        "execution": {
            "id": execution.id,
            "status": str(execution.status),
            "name": execution.name,
            "scenario": execution.scenario_name,
            "scenarioVersion": execution.scenario_version,
            "labels": list(execution.labels),
            "error": execution.error,
            "queuedAt": _iso(execution.queued_at),
            "startedAt": None if execution.started_at is None else _iso(execution.started_at),
            "finishedAt": None if execution.finished_at is None else _iso(execution.finished_at),
            "durationMs": execution.duration_ms,
            "triggeredBy": execution.triggered_by,
        },
    }
    if review is not None:
        request = review.request
        body["review"] = {
            "stepKey": review.step_key,
            "attempt": review.attempt,
            "title": request.get("title"),
            "decisions": request.get("decisions"),
            "requestedAt": _iso(review.requested_at),
            "expiresAt": None if review.expires_at is None else _iso(review.expires_at),
        }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def deliveries_for(execution: Execution, webhooks: Sequence[Webhook]) -> list[Delivery]:
    """One pending delivery per webhook subscribed to how the execution ended."""
    event = WebhookEvent.of_end(execution.status)
    if event is None:
        return []
    return _deliveries(execution, event, webhooks, None)


def review_deliveries(
    execution: Execution, reviews: Sequence[Review], webhooks: Sequence[Webhook]
) -> list[Delivery]:
    """One pending delivery per review waiting and webhook subscribed to REVIEW_REQUESTED."""
    return [
        delivery
        for review in reviews
        for delivery in _deliveries(execution, WebhookEvent.REVIEW_REQUESTED, webhooks, review)
    ]


def _deliveries(
    execution: Execution, event: WebhookEvent, webhooks: Sequence[Webhook], review: Review | None
) -> list[Delivery]:
    now = utc_now()
    occurred = (review.requested_at if review is not None else execution.finished_at) or now
    found = []
    for webhook in webhooks:
        if event not in webhook.events or not webhook.enabled:
            continue
        if webhook.created_at > occurred:
            continue  # a webhook hears of what happens once it exists
        delivery_id = str(uuid.uuid4())
        found.append(
            Delivery(
                id=delivery_id,
                webhook_id=webhook.id,
                workspace_id=webhook.workspace_id,
                event=event,
                execution_id=execution.id,
                payload=payload_of(execution, event, delivery_id, review),
                status=DeliveryStatus.PENDING,
                attempts=0,
                created_at=now,
                next_attempt_at=now,
                subject="" if review is None else f"{review.step_key}#{review.attempt}",
            )
        )
    return found


class WebhookService:
    """Create, change, delete webhooks and read or redeliver their deliveries; all need `admin`."""

    def __init__(
        self,
        store: WebhookStore,
        allow_private: bool,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._allow_private = allow_private
        # Told when a delivery is queued here, so this process's sender tries it at once.
        self._wake = wake

    async def create(
        self, actor: Actor, url: str, events: Sequence[WebhookEvent], description: str
    ) -> tuple[Webhook, str]:
        """The new webhook and its signing secret, which nothing returns again."""
        actor.require(Permission.ADMIN)
        await self._check(url, events, description)
        now = utc_now()
        webhook = Webhook(
            id=str(uuid.uuid4()),
            workspace_id=actor.workspace_id,
            url=url,
            events=tuple(dict.fromkeys(events)),
            description=description,
            enabled=True,
            created_at=now,
            created_by=actor.label[:200],
            updated_at=now,
        )
        secret = new_secret()
        await self._store.insert_webhook(webhook, secret)
        return webhook, secret

    async def webhooks(self, actor: Actor) -> list[Webhook]:
        actor.require(Permission.ADMIN)
        return await self._store.webhooks(actor.workspace_id)

    async def update(
        self,
        actor: Actor,
        webhook_id: str,
        *,
        url: str | None = None,
        events: Sequence[WebhookEvent] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> Webhook:
        """Change what is given; the secret stays."""
        actor.require(Permission.ADMIN)
        webhook = await self._get(actor, webhook_id)
        changed = Webhook(
            id=webhook.id,
            workspace_id=webhook.workspace_id,
            url=webhook.url if url is None else url,
            events=webhook.events if events is None else tuple(dict.fromkeys(events)),
            description=webhook.description if description is None else description,
            enabled=webhook.enabled if enabled is None else enabled,
            created_at=webhook.created_at,
            created_by=webhook.created_by,
            updated_at=utc_now(),
        )
        await self._check(
            changed.url, changed.events, changed.description, check_url=url is not None
        )
        await self._store.update_webhook(changed)
        return changed

    async def delete(self, actor: Actor, webhook_id: str) -> None:
        """Delete the webhook with its deliveries; what is in flight is sent no more."""
        actor.require(Permission.ADMIN)
        if not await self._store.delete_webhook(actor.workspace_id, webhook_id):
            raise NotFound(f"webhook {webhook_id} not found")

    async def deliveries(self, actor: Actor, webhook_id: str, first: int) -> list[Delivery]:
        """The webhook's latest deliveries, newest first, with their attempts.

        None for a webhook this workspace does not have, another's included (as `activities`
        of an execution id answers).
        """
        actor.require(Permission.ADMIN)
        if not 1 <= first <= MAX_DELIVERIES_PAGE:
            raise Invalid([FieldError("first", f"must be 1 to {MAX_DELIVERIES_PAGE}")])
        return await self._store.deliveries(actor.workspace_id, webhook_id, first)

    async def redeliver(self, actor: Actor, delivery_id: str) -> Delivery:
        """Send a delivery's payload again, as a new delivery with attempts of its own."""
        actor.require(Permission.ADMIN)
        original = await self._store.delivery(actor.workspace_id, delivery_id)
        if original is None:
            raise NotFound(f"webhook delivery {delivery_id} not found")
        now = utc_now()
        again = Delivery(
            id=str(uuid.uuid4()),
            webhook_id=original.webhook_id,
            workspace_id=original.workspace_id,
            event=original.event,
            execution_id=original.execution_id,
            payload=original.payload,
            status=DeliveryStatus.PENDING,
            attempts=0,
            created_at=now,
            next_attempt_at=now,
            redelivery_of=original.redelivery_of or original.id,
        )
        await self._store.enqueue([again], dedupe=False)
        if self._wake is not None:
            self._wake()
        return again

    async def _get(self, actor: Actor, webhook_id: str) -> Webhook:
        # Another workspace's webhook is NotFound, exactly like a missing one.
        webhook = await self._store.webhook(actor.workspace_id, webhook_id)
        if webhook is None:
            raise NotFound(f"webhook {webhook_id} not found")
        return webhook

    async def _check(
        self,
        url: str,
        events: Sequence[WebhookEvent],
        description: str,
        *,
        check_url: bool = True,
    ) -> None:
        errors: list[FieldError] = []
        if check_url:
            errors += url_errors(url)
            if not errors:
                refusal, _ = await destination_refusal(url, self._allow_private)
                if refusal is not None:
                    errors.append(FieldError("url", f"refused: {refusal}"))
        if not events:
            errors.append(FieldError("events", "name at least one event"))
        if len(description) > MAX_DESCRIPTION_CHARS:
            errors.append(FieldError("description", f"at most {MAX_DESCRIPTION_CHARS} characters"))
        if "\x00" in description:
            errors.append(FieldError("description", "must not contain NUL"))
        if errors:
            raise Invalid(errors)
