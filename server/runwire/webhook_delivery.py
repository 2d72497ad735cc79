"""Webhook delivery: queue a delivery when an execution ends or waits for a review, and post
what is due, signed.

Every process runs one sender. Each claims due rows from the outbox (db/webhooks.py) for a
while, posts them with a timeout, never following redirects, and records the attempt; a failed
one is tried again after an exponential backoff with jitter, up to `webhook_max_attempts`. The
runner only calls `ended`, which queues the rows in a task of its own: a slow or failing
receiver never slows an execution.

Queueing happens after the end is stored, not in its transaction, so a crash between the two
would lose the deliveries; every sender therefore also looks, now and then, for executions that
ended in the last hour without the deliveries their webhooks subscribe to, and queues those (the
outbox's unique key makes queueing twice harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from runwire.background import in_background
from runwire.db.history import HistoryRepository
from runwire.db.reviews import ReviewRepository
from runwire.db.webhooks import WebhookRepository
from runwire.domain.clock import utc_now
from runwire.domain.models import Execution, ExecutionStatus
from runwire.domain.reviews import ReviewStatus
from runwire.domain.webhooks import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    DueDelivery,
    Webhook,
    WebhookEvent,
    deliveries_for,
    destination_refusal,
    review_deliveries,
    signature,
)
from runwire.faults import is_outage
from runwire.settings import Settings

logger = logging.getLogger(__name__)

# A retry waits RETRY_SECONDS x 2^(attempt-1), at most this long, give or take JITTER.
MAX_RETRY_DELAY = timedelta(minutes=30)
JITTER = 0.2
# Deliveries one process posts at once, and claims per look.
IN_FLIGHT = 8
# Bytes of a receiver's answer kept with the attempt, to read why it refused.
SNIPPET_BYTES = 500
MAX_ERROR_CHARS = 1000
# A claim outlives the attempt's timeout by this much, so only a dead process's claim expires.
_CLAIM_MARGIN_SECONDS = 30.0
_MAX_POLL_SECONDS = 1.0
_SHUTDOWN_SECONDS = 2.0
# The look for ends whose queueing was lost: how often, how far back, and how recent an end is
# left to the usual path (queued a moment after the end is stored).
MISSED_SWEEP_SECONDS = 30.0
MISSED_LOOKBACK = timedelta(hours=1)
MISSED_GRACE = timedelta(seconds=10)
_MISSED_PER_SWEEP = 200
# Reported ends queued per read of their executions.
_QUEUED_PER_READ = 500


def retry_delay(attempt: int, first_delay: float) -> float:
    """Seconds before the attempt after `attempt` (1-based): doubling, capped, jittered."""
    delay = min(MAX_RETRY_DELAY.total_seconds(), first_delay * 2.0 ** (attempt - 1))
    return delay * random.uniform(1 - JITTER, 1 + JITTER)


class WebhookSender:
    """Queues deliveries of ended executions and posts due ones; one per process."""

    def __init__(
        self,
        settings: Settings,
        store: WebhookRepository,
        executions: HistoryRepository,
        reviews: ReviewRepository,
    ) -> None:
        self._settings = settings
        self._store = store
        self._executions = executions
        self._reviews = reviews
        # Reported ends not yet queued, and the task queueing them.
        self._ended: set[str] = set()
        self._queueing: asyncio.Task[None] | None = None
        self._due = asyncio.Event()
        self._pending: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._failing = False

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        settings: Settings,
        store: WebhookRepository,
        executions: HistoryRepository,
        reviews: ReviewRepository,
    ) -> AsyncIterator[WebhookSender]:
        """Send for the block; leaving it stops (claims of unfinished attempts expire)."""
        sender = cls(settings, store, executions, reviews)
        async with httpx.AsyncClient(
            follow_redirects=False,
            timeout=settings.webhook_timeout_seconds,
            trust_env=False,  # no proxy from the environment: the address checked is the one used
            headers={"User-Agent": "Runwire-Webhooks/1"},
        ) as client:
            try:
                async with (
                    in_background(sender._sending(client), "runwire-webhook-sender"),
                    in_background(sender._sweeping(), "runwire-webhook-missed-ends"),
                ):
                    yield sender
            finally:
                if sender._pending:
                    await asyncio.wait(sender._pending, timeout=_SHUTDOWN_SECONDS)
                for pending in sender._pending:
                    pending.cancel()

    def ended(self, execution_id: str) -> None:
        """Queue the deliveries of the execution's end, if it has ended, or of its reviews, if it
        waits for them (its events are stored). Ends reported together are queued together: a
        stopped batch of thousands costs a few reads, not a few per execution."""
        self._ended.add(execution_id)
        if self._queueing is None or self._queueing.done():
            self._queueing = self._spawn(self._queue_ended(), "webhook-queue")

    def wake(self) -> None:
        """Look for due deliveries now (one was queued in this process)."""
        self._due.set()

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def _queue_ended(self) -> None:
        while self._ended:
            ids = sorted(self._ended)[:_QUEUED_PER_READ]
            self._ended.difference_update(ids)
            await self._queue(ids)

    async def _queue(self, execution_ids: Sequence[str]) -> None:
        try:
            if not await self._store.workspaces_with_webhooks():
                return  # the common case: no webhooks anywhere, nothing to read
            executions = await self._executions.executions_by_id(execution_ids)
            by_workspace: dict[str, list[Execution]] = {}
            for execution in executions.values():
                by_workspace.setdefault(execution.workspace_id, []).append(execution)
            deliveries = []
            for workspace, found in by_workspace.items():
                webhooks = [w for w in await self._store.webhooks(workspace) if w.enabled]
                for execution in found if webhooks else ():
                    deliveries.extend(await self._deliveries(execution, webhooks))
            if deliveries:
                await self._store.enqueue(deliveries, dedupe=True)
                self.wake()
        except Exception as error:
            # Found again by the look for missed ends (_sweeping), unless it is over an hour old.
            logger.warning(
                "webhook deliveries of %d execution(s) not queued: %s",
                len(execution_ids),
                type(error).__name__ if is_outage(error) else error,
            )

    async def _deliveries(self, execution: Execution, webhooks: list[Webhook]) -> list[Delivery]:
        if execution.status is ExecutionStatus.WAITING:
            asking = [w for w in webhooks if WebhookEvent.REVIEW_REQUESTED in w.events]
            if not asking:
                return []
            pending = await self._reviews.reviews(
                execution.workspace_id,
                status=ReviewStatus.PENDING,
                execution_id=execution.id,
                first=100,
            )
            return review_deliveries(execution, pending, asking)
        # Paused or handed over: nothing (whoever ends it queues its deliveries).
        return deliveries_for(execution, webhooks)

    async def _sweeping(self) -> None:
        """Queue the deliveries of recent ends that have none (see the module's docstring)."""
        while True:
            try:
                await self.queue_missed()
            except Exception as error:
                if not is_outage(error):
                    logger.exception("webhooks: looking for ends without deliveries failed")
            await asyncio.sleep(MISSED_SWEEP_SECONDS)

    async def queue_missed(self) -> int:
        """Queue deliveries for ends of the last hour that lack them; how many ends there were."""
        now = utc_now()
        missed = await self._store.ended_without_deliveries(
            now - MISSED_LOOKBACK, now - MISSED_GRACE, _MISSED_PER_SWEEP
        )
        for execution_id in missed:
            logger.warning("webhook deliveries of execution %s were missing: queued", execution_id)
        await self._queue(missed)
        return len(missed)

    async def _sending(self, client: httpx.AsyncClient) -> None:
        poll = max(0.05, min(_MAX_POLL_SECONDS, self._settings.webhook_retry_seconds))
        while True:
            self._due.clear()
            claimed: list[DueDelivery] = []
            try:
                now = utc_now()
                claim_for = self._settings.webhook_timeout_seconds + _CLAIM_MARGIN_SECONDS
                claimed = await self._store.claim_due(
                    now, now + timedelta(seconds=claim_for), IN_FLIGHT
                )
                self._failing = False
            except Exception as error:
                if not self._failing:
                    self._failing = True
                    logger.warning(
                        "webhook sender: reading due deliveries failed (%s)",
                        type(error).__name__ if is_outage(error) else error,
                    )
            for due in claimed:
                await self._slots.acquire()
                self._spawn(self._attempt_once(client, due), f"webhook-delivery-{due.delivery.id}")
            if len(claimed) < IN_FLIGHT:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._due.wait(), poll)

    async def _attempt_once(self, client: httpx.AsyncClient, due: DueDelivery) -> None:
        try:
            attempt = await self._post(client, due)
            delivery = due.delivery
            if attempt.response_code is not None and 200 <= attempt.response_code < 300:
                status, next_at = DeliveryStatus.DELIVERED, None
            elif attempt.number >= self._settings.webhook_max_attempts:
                status, next_at = DeliveryStatus.FAILED, None
                logger.warning(
                    "webhook %s: delivery %s failed after %d attempts (%s)",
                    delivery.webhook_id,
                    delivery.id,
                    attempt.number,
                    attempt.error or f"HTTP {attempt.response_code}",
                )
            else:
                status = DeliveryStatus.PENDING
                next_at = attempt.at + timedelta(
                    seconds=retry_delay(attempt.number, self._settings.webhook_retry_seconds)
                )
            await self._store.record_attempt(delivery, attempt, status, next_at)
        except Exception as error:
            # Its claim expires and another look tries it again.
            logger.warning(
                "webhook delivery %s: recording the attempt failed (%s)",
                due.delivery.id,
                type(error).__name__ if is_outage(error) else error,
            )
        finally:
            self._slots.release()
            self.wake()

    async def _post(self, client: httpx.AsyncClient, due: DueDelivery) -> DeliveryAttempt:
        """One POST of the delivery to the address its host resolves to now, if allowed."""
        delivery = due.delivery
        number = delivery.attempts + 1
        at = utc_now()
        started = time.monotonic()

        def attempt(
            code: int | None, error: str | None, snippet: str | None = None
        ) -> DeliveryAttempt:
            return DeliveryAttempt(
                number=number,
                at=at,
                duration_ms=int((time.monotonic() - started) * 1000),
                response_code=code,
                error=None if error is None else error[:MAX_ERROR_CHARS],
                response_snippet=snippet,
            )

        # Checked again now, not only when the webhook was saved: a name may resolve elsewhere
        # since (DNS rebinding). The post then goes to the address checked, not a new lookup.
        refusal, addresses = await destination_refusal(
            due.url, self._settings.webhook_allow_private
        )
        if refusal is not None:
            return attempt(None, f"refused: {refusal}")
        parts = urlsplit(due.url)
        address = addresses[0]
        host = f"[{address}]" if ":" in address else address
        port = f":{parts.port}" if parts.port else ""
        pinned = urlunsplit((parts.scheme, host + port, parts.path or "/", parts.query, ""))
        body = delivery.payload.encode()
        timestamp = int(time.time())
        headers = {
            "Host": parts.netloc,
            "Content-Type": "application/json",
            "Runwire-Webhook-Id": delivery.webhook_id,
            "Runwire-Delivery-Id": delivery.id,
            "Runwire-Event": delivery.event.wire_name,
            "Runwire-Timestamp": str(timestamp),
            "Runwire-Signature": signature(due.secret, timestamp, body),
        }
        extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
        try:
            async with client.stream(
                "POST", pinned, content=body, headers=headers, extensions=extensions
            ) as response:
                snippet = b""
                async for chunk in response.aiter_raw():
                    snippet += chunk
                    if len(snippet) >= SNIPPET_BYTES:
                        break
                text = snippet[:SNIPPET_BYTES].decode(errors="replace").replace("\x00", "")
                code = response.status_code
                error = None if 200 <= code < 300 else f"HTTP {code}"
                if 300 <= code < 400:
                    error = f"HTTP {code}: redirects are not followed"
                return attempt(code, error, text or None)
        except httpx.TimeoutException:
            return attempt(None, f"no answer within {self._settings.webhook_timeout_seconds:g}s")
        except httpx.HTTPError as error:
            return attempt(None, f"{type(error).__name__}: {error}")
