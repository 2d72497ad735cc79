"""Retention policies: which ended executions a workspace keeps; the sweep deletes the rest.

A policy's limits are each optional (null: no limit); a workspace without one keeps everything.
An ended execution expires when it is older than `keep_days` or not among the workspace's newest
`keep_executions` ended ones. With `keep_failed_days` set, failed ones (FAILED, TIMED_OUT) follow
only that age instead, so they can be kept longer than the rest (README "Deletion and retention").
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from runwire.domain.access import Actor, Permission
from runwire.domain.clock import utc_now
from runwire.errors import FieldError, Invalid

# Executions deleted per transaction: small enough that no writer waits long on the tables.
SWEEP_BATCH = 500
# The least breath between two transactions of one sweep, so writers queued behind one get in.
# The pause is at least as long as the transaction took, so a sweep holds the database (SQLite's
# one writer, Postgres's locks) at most half the time, however slow the disk.
SWEEP_PAUSE_SECONDS = 0.02
MAX_KEEP_DAYS = 36500
MAX_KEEP_EXECUTIONS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """What a workspace keeps; None is no limit."""

    keep_days: int | None = None
    keep_executions: int | None = None
    keep_failed_days: int | None = None
    updated_at: datetime | None = None
    updated_by: str = ""

    @property
    def keeps_everything(self) -> bool:
        return (
            self.keep_days is None
            and self.keep_executions is None
            and (self.keep_failed_days is None)
        )

    def errors(self) -> list[FieldError]:
        """Each limit at least 1 and bounded; failed ones kept no shorter than the rest."""
        found = [
            *_bounded("keepDays", self.keep_days, MAX_KEEP_DAYS),
            *_bounded("keepExecutions", self.keep_executions, MAX_KEEP_EXECUTIONS),
            *_bounded("keepFailedDays", self.keep_failed_days, MAX_KEEP_DAYS),
        ]
        if (
            not found
            and self.keep_days is not None
            and self.keep_failed_days is not None
            and self.keep_failed_days < self.keep_days
        ):
            found.append(
                FieldError("keepFailedDays", f"must be at least keepDays ({self.keep_days})")
            )
        return found

    def rules(self, now: datetime) -> SweepRules:
        """The cut-offs the sweep deletes by, as of `now`."""
        return SweepRules(
            older_than=_before(now, self.keep_days),
            keep_newest=self.keep_executions,
            failed_older_than=_before(now, self.keep_failed_days),
        )


@dataclass(frozen=True, slots=True)
class SweepRules:
    """An ended execution expires when it finished before `older_than`, or is not among the
    `keep_newest` latest ended; a failed one, when `failed_older_than` is set, only when it
    finished before that."""

    older_than: datetime | None
    keep_newest: int | None
    failed_older_than: datetime | None

    def expires(self, failed: bool, finished_at: datetime, newer_ended: int) -> bool:
        """Whether an ended execution with `newer_ended` later-ended ones in its workspace goes."""
        if failed and self.failed_older_than is not None:
            return finished_at < self.failed_older_than
        too_old = self.older_than is not None and finished_at < self.older_than
        too_many = self.keep_newest is not None and newer_ended >= self.keep_newest
        return too_old or too_many


def _before(now: datetime, days: int | None) -> datetime | None:
    return None if days is None else now - timedelta(days=days)


def _bounded(path: str, value: int | None, most: int) -> list[FieldError]:
    if value is None or 1 <= value <= most:
        return []
    return [FieldError(path, f"must be between 1 and {most} (or null: no limit), got {value}")]


class RetentionStore(Protocol):
    """Where policies are kept and expired executions deleted (db/deletion.py)."""

    async def retention_policy(self, workspace: str) -> RetentionPolicy: ...

    async def put_retention_policy(self, workspace: str, policy: RetentionPolicy) -> None: ...

    async def retention_policies(self) -> list[tuple[str, RetentionPolicy]]:
        """Every workspace's policy that limits something."""
        ...

    async def delete_expired(self, workspace: str, rules: SweepRules, limit: int) -> int:
        """Delete at most `limit` expired executions in one transaction; how many."""
        ...


class RetentionService:
    """Reads and sets policies (setting needs admin), and sweeps by them."""

    def __init__(
        self,
        store: RetentionStore,
        batch: int = SWEEP_BATCH,
        pause_seconds: float = SWEEP_PAUSE_SECONDS,
    ) -> None:
        self._store = store
        self._batch = batch
        self._pause_seconds = pause_seconds

    async def policy(self, actor: Actor) -> RetentionPolicy:
        actor.require(Permission.EXECUTION_READ)
        return await self._store.retention_policy(actor.workspace_id)

    async def set_policy(self, actor: Actor, policy: RetentionPolicy) -> RetentionPolicy:
        actor.require(Permission.ADMIN)
        if errors := policy.errors():
            raise Invalid(errors)
        stored = RetentionPolicy(
            keep_days=policy.keep_days,
            keep_executions=policy.keep_executions,
            keep_failed_days=policy.keep_failed_days,
            updated_at=utc_now(),
            updated_by=actor.label,
        )
        await self._store.put_retention_policy(actor.workspace_id, stored)
        return stored

    async def sweep(self) -> int:
        """Delete every expired execution of every workspace now, in bounded batches; how many."""
        deleted = 0
        for workspace, policy in await self._store.retention_policies():
            rules = policy.rules(utc_now())
            while True:
                began = time.monotonic()
                done = await self._store.delete_expired(workspace, rules, self._batch)
                deleted += done
                if done < self._batch:
                    break
                await asyncio.sleep(max(self._pause_seconds, time.monotonic() - began))
        return deleted
