"""The scheduler: fires due schedules for a process's lifetime (domain/schedules.py decides)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from runwire.background import in_background
from runwire.domain.clock import utc_now
from runwire.domain.schedules import ScheduleService, ScheduleStore
from runwire.faults import is_outage

logger = logging.getLogger(__name__)

# The longest a scheduler sleeps: a schedule created or enabled by another process is seen
# within this, and a fire is at most this late.
POLL_SECONDS = 1.0


class Scheduler:
    """Wakes at the next due slot (at most every POLL_SECONDS) and fires what is due."""

    def __init__(self, service: ScheduleService, store: ScheduleStore) -> None:
        self._service = service
        self._store = store

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, service: ScheduleService, store: ScheduleStore) -> AsyncIterator[None]:
        # Every process schedules: the idempotency key of each fire's execution makes two
        # processes firing one slot start one execution, so replicas need no leader.
        scheduler = cls(service, store)
        async with in_background(scheduler._firing(), "runwire-scheduler"):
            yield

    async def _firing(self) -> None:
        while True:
            delay = POLL_SECONDS
            try:
                await self._service.fire_due()
                due = await self._store.next_due_at()
                if due is not None:
                    delay = min(POLL_SECONDS, max(0.0, (due - utc_now()).total_seconds()))
            except Exception as error:
                if not is_outage(error):
                    logger.exception("scheduler: firing due schedules failed")
                # Out of reach: the next round tries again.
            await asyncio.sleep(delay)
