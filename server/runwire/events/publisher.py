"""Stored events go out here, and only here: to this process's followers, then to the others.

Whatever persists events — the event log's batches of a runner, a domain transition committed by
a mutation, a new execution's first event — hands them to `Publisher.publish` after the commit
(persist, then publish: a client never sees an event a crash could lose).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from runwire.domain.models import Event
from runwire.events.bus import Bus
from runwire.events.hub import Hub
from runwire.events.notices import notices_of, publish_notices
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
