"""The sender checks the address again at delivery time (DNS rebinding), before any connection."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import httpx
import pytest

from runwire.db.history import HistoryRepository
from runwire.db.reviews import ReviewRepository
from runwire.db.webhooks import WebhookRepository
from runwire.domain.webhooks import Delivery, DeliveryStatus, DueDelivery, WebhookEvent
from runwire.settings import Settings
from runwire.webhook_delivery import WebhookSender

pytestmark = pytest.mark.asyncio


async def test_a_post_to_an_address_refused_now_is_not_sent() -> None:
    # A listening socket on loopback: with private addresses refused, nothing may connect to it.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        # _post reads neither store: they are never opened here.
        sender = WebhookSender(
            Settings(webhook_allow_private=False),
            WebhookRepository.__new__(WebhookRepository),
            HistoryRepository.__new__(HistoryRepository),
            ReviewRepository.__new__(ReviewRepository),
        )
        delivery = Delivery(
            id="d",
            webhook_id="w",
            workspace_id="ws",
            event=WebhookEvent.EXECUTION_FAILED,
            execution_id="e",
            payload="{}",
            status=DeliveryStatus.PENDING,
            attempts=2,
            created_at=datetime.now(UTC),
        )
        async with httpx.AsyncClient() as client:
            attempt = await sender._post(
                client, DueDelivery(delivery, f"http://localhost:{port}/hook", "whsec_x")
            )
        assert attempt.number == 3
        assert attempt.response_code is None
        assert attempt.error is not None
        assert attempt.error.startswith("refused: localhost resolves to ")
        assert "RUNWIRE_WEBHOOK_ALLOW_PRIVATE" in attempt.error
        with pytest.raises(BlockingIOError):
            listener.accept()  # no connection was made
