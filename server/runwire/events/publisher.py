"""Stored events go out here, and only here: to this process's followers, then to the others.

Whatever persists events — the event log's batches of a runner, a domain transition committed by
a mutation, a new execution's first event — hands them to `Publisher.publish` after the commit
(persist, then publish: a client never sees an event a crash could lose).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from runwire.domain.models import Event
from runwire.events.bus import EVENTS, Bus
from runwire.events.hub import Hub
from runwire.events.notices import encode_notices, notices_of, publish_notices
from runwire.faults import report
from runwire.metrics import Metrics

logger = logging.getLogger(__name__)


class Publisher:
    """Local followers first (lowest latency), then a small notice per execution on the bus."""

    def __init__(self, hub: Hub, bus: Bus, metrics: Metrics | None = None) -> None:
        self._hub = hub
        self._bus = bus
        self._metrics = metrics or Metrics()

    async def publish(self, events: Sequence[Event]) -> None:
        """Announce committed events; a failed notice is logged, never raised (they are stored)."""
        if not events:
            return
        self._metrics.events_stored(len(events))
        self._hub.deliver(events)
        try:
            await publish_notices(self._bus, notices_of(events))
        except Exception as error:
            # The events are safe in the database; remote followers find them on resync.
            report(logger, "publisher: publishing notices", error)

    def deliver_here(self, events: Sequence[Event]) -> None:
        """Committed events whose bus notices went out with them (`notifications`): this
        process's followers only."""
        if not events:
            return
        self._metrics.events_stored(len(events))
        self._hub.deliver(events)

    def notifications(self, events: Sequence[Event]) -> list[tuple[str, str]]:
        """The bus notices of `events` as (wire channel, message), for the statement storing
        them to send with `pg_notify` (see `Bus.is_database`)."""
        now_ms = time.time_ns() // 1_000_000
        return [
            self._bus.notification(EVENTS, message)
            for message in encode_notices(notices_of(events), now_ms)
        ]
