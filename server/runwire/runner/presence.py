"""A runner's record in the database, so every process can tell whether a runner is alive.

Recorded when the runner starts claiming, refreshed every heartbeat with how busy it is, and
removed when it stops claiming (the start of its drain): a queued execution waits for an
alive runner only while one is there to claim it. A runner killed without removing its record
stops counting once its heartbeat is older than its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from runwire.domain.clock import utc_now
from runwire.domain.runners import RunnerPresence, RunnerStore
from runwire.runner.runner import Runner
from runwire.settings import Settings

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def announced(runner: Runner, store: RunnerStore, settings: Settings) -> AsyncIterator[None]:
    """Keep `runner`'s record fresh for the block; remove it when the block ends."""
    started_at = utc_now()
    host, pid = socket.gethostname(), os.getpid()
    lease = timedelta(seconds=settings.lease_seconds)

    def presence(now: datetime) -> RunnerPresence:
        return RunnerPresence(
            id=runner.owner,
            host=host,
            pid=pid,
            started_at=started_at,
            last_seen_at=now,
            alive_until=now + lease,
            slots=runner.slots,
            busy=runner.busy,
        )

    async def refresh_forever() -> None:
        failing = False
        while True:
            try:
                await store.record_runner(presence(utc_now()))
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # The runner itself reports the database's outages; its record just ages out.
                if not failing:
                    logger.debug("runner presence not recorded (%s)", type(error).__name__)
                failing = True
            else:
                failing = False
            await asyncio.sleep(settings.heartbeat_seconds)

    await store.forget_dead_runners(started_at)
    await store.record_runner(presence(started_at))
    refreshing = asyncio.create_task(refresh_forever(), name="runwire-runner-presence")
    try:
        yield
    finally:
        refreshing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refreshing
        try:
            # Bounded: a database out of reach at shutdown must not hold the drain up; the
            # record then ages out within the lease.
            async with asyncio.timeout(settings.heartbeat_seconds * 2):
                await store.remove_runner(runner.owner)
        except Exception as error:  # a read-only or unreachable database: nothing to undo
            logger.warning("runner presence not removed (%s); it ages out", type(error).__name__)
