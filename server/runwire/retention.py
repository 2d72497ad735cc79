"""Retention: artifacts older than `RUNWIRE_ARTIFACT_RETENTION_DAYS`, and executions beyond their
workspace's retention policy, are deleted now and then."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from runwire.background import in_background
from runwire.domain.artifacts import ArtifactStore
from runwire.domain.clock import utc_now
from runwire.domain.retention import RetentionService
from runwire.faults import is_outage

logger = logging.getLogger(__name__)

# How often retention sweeps: hourly, or a tenth of the retention when that is shorter (tests).
_SWEEP_SECONDS = 3600.0
_MIN_SWEEP_SECONDS = 1.0


class ArtifactRetention:
    """Deletes artifacts older than the retention, now and then, for a process's lifetime."""

    def __init__(self, store: ArtifactStore, retention: timedelta) -> None:
        self._store = store
        self._retention = retention

    @property
    def sweep_seconds(self) -> float:
        return max(_MIN_SWEEP_SECONDS, min(_SWEEP_SECONDS, self._retention.total_seconds() / 10))

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, store: ArtifactStore, days: float) -> AsyncIterator[None]:
        """Sweep every while for the block; `days` 0 (or less) keeps artifacts for ever."""
        if days <= 0:
            yield
            return
        retention = cls(store, timedelta(days=days))
        async with in_background(retention._sweeping(), "runwire-artifact-retention"):
            yield

    async def sweep(self) -> int:
        """Delete what is older than the retention now; how many were deleted."""
        return await self._store.delete_artifacts_before(utc_now() - self._retention)

    async def _sweeping(self) -> None:
        # Every process sweeps: a DELETE by age is idempotent, so replicas need no coordination.
        while True:
            try:
                if deleted := await self.sweep():
                    logger.info("artifact retention: deleted %d artifacts", deleted)
            except Exception as error:
                if not is_outage(error):
                    logger.exception("artifact retention sweep failed")
                # Out of reach: the next sweep tries again.
            await asyncio.sleep(self.sweep_seconds)


# How often the executions sweep runs: policies are in days, so a few times an hour is prompt.
EXECUTION_SWEEP_SECONDS = 600.0


class ExecutionRetention:
    """Deletes ended executions beyond their workspace's policy, at start and every while."""

    def __init__(self, service: RetentionService, every_seconds: float) -> None:
        self._service = service
        self._every_seconds = every_seconds

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, service: RetentionService, every_seconds: float = EXECUTION_SWEEP_SECONDS
    ) -> AsyncIterator[None]:
        retention = cls(service, every_seconds)
        async with in_background(retention._sweeping(), "runwire-execution-retention"):
            yield

    async def _sweeping(self) -> None:
        # Every process sweeps: each batch skips what another process has locked (Postgres) or
        # waits its turn (SQLite), and deleting what is already gone deletes nothing.
        while True:
            try:
                if deleted := await self._service.sweep():
                    logger.info("execution retention: deleted %d executions", deleted)
            except Exception as error:
                if not is_outage(error):
                    logger.exception("execution retention sweep failed")
            await asyncio.sleep(self._every_seconds)
