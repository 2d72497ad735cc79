"""The queue's SQL: claim queued executions under a lease, renew, release, take over, and the
control requests (stop, pause, resume, skip) addressed to whichever runner owns an execution."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from runwire.db import tables
from runwire.db.engine import Database, marks, numbered
from runwire.db.rows import execution_of
from runwire.domain.clock import utc_now
from runwire.domain.models import Execution, ExecutionStatus, Lease

# What counts against a concurrency key or batch limit: executions a runner holds. A PAUSED one
# holds nothing until it is resumed and claimed again.
_OWNED_STATUSES = (
    ExecutionStatus.QUEUED.value,
    ExecutionStatus.RUNNING.value,
    ExecutionStatus.PAUSING.value,
    ExecutionStatus.STOPPING.value,
)
_OWNED_WITH_KEY = (
    # Concurrency keys are per workspace: one tenant's key never holds back another's runs.
    "SELECT COUNT(*) FROM runwire_execution a WHERE a.concurrency_key = e.concurrency_key"
    " AND a.workspace_id = e.workspace_id AND a.owner IS NOT NULL AND a.status IN ({}, {}, {}, {})"
)
_OWNED_IN_BATCH = (
    "SELECT COUNT(*) FROM runwire_execution a WHERE a.batch_id = e.batch_id"
    " AND a.owner IS NOT NULL AND a.status IN ({}, {}, {}, {})"
)
_CLAIM_LOCK = 0x52554E57  # "RUNW": the advisory lock key of the claim
# Leases renewed per statement: short transactions that hold few rows locked at a time, within
# SQLite's limit on a statement's parameters.
_RENEWAL_CHUNK = 500


@dataclass(frozen=True, slots=True)
class ControlRequest:
    """A stored request for the runner that owns an execution."""

    id: int
    execution_id: str
    action: str
    reason: str
    actor: str
    grace_seconds: float | None
    step_key: str | None = None


class ExecutionQueue:
    """Queued executions become a runner's by claim, and stay its while it renews their lease."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Execution]:
        """Take up to `limit` unowned queued executions, highest priority then oldest first.

        An execution with a concurrency key (or in a batch) is taken only while fewer than its
        limit of the same key (or batch) are owned by a runner; the rest wait in queue order.
        """
        if limit <= 0:
            return []
        async with self._database.write():
            if self._database.is_postgres:
                # Claims are serialised so that two runners cannot both count a key as free and
                # both take one; a claim is one short transaction, so this costs little.
                await self._database.fetch("SELECT pg_advisory_xact_lock({})", _CLAIM_LOCK)
            candidates = await self._database.fetch(
                "SELECT id, workspace_id, concurrency_key, concurrency_limit,"
                " batch_id, batch_limit,"
                f" ({_OWNED_WITH_KEY}) AS key_owned, ({_OWNED_IN_BATCH}) AS batch_owned"
                " FROM runwire_execution e WHERE status = {} AND owner IS NULL"
                f" AND (concurrency_key IS NULL OR ({_OWNED_WITH_KEY}) < concurrency_limit)"
                f" AND (batch_id IS NULL OR ({_OWNED_IN_BATCH}) < batch_limit)"
                " ORDER BY priority DESC, queued_at, id LIMIT {}",
                *_OWNED_STATUSES,
                *_OWNED_STATUSES,
                ExecutionStatus.QUEUED.value,
                *_OWNED_STATUSES,
                *_OWNED_STATUSES,
                # Candidates may share a key; read a few more so one busy key cannot starve the
                # slots of this round.
                limit * 3 + 8,
            )
            chosen = _within_limits(candidates, limit)
            if not chosen:
                return []
            # The candidates were read unlocked: a pause or stop of a queued execution may have
            # committed since. The update sees each row as it is now and takes only the ones
            # still queued and unowned (else a paused execution would run, a stopped one start).
            # Locked in id order (see renew_leases).
            lock = " ORDER BY id FOR UPDATE" if self._database.is_postgres else ""
            rows = await self._database.fetch(
                "UPDATE runwire_execution SET owner = {}, lease_expires_at = {},"
                " lease_generation = lease_generation + 1"
                " WHERE id IN (SELECT id FROM runwire_execution"
                f" WHERE id IN ({marks(chosen)}) AND status = {{}} AND owner IS NULL{lock})"
                " RETURNING *",
                owner,
                utc_now() + timedelta(seconds=lease_seconds),
                *chosen,
                ExecutionStatus.QUEUED.value,
            )
        executions = [execution_of(row) for row in rows]
        executions.sort(key=lambda e: (-e.priority, e.queued_at, e.id))
        return executions

    async def renew_leases(
        self,
        owner: str,
        leases: Mapping[str, Lease],
        lease_seconds: float,
        statement_timeout: float | None = None,
    ) -> set[str]:
        """Extend the given leases of `owner`; the ids it still held (the others were taken).

        In chunks of `_RENEWAL_CHUNK` rows, each its own short transaction: one UPDATE over
        10,000 held rows kept them all locked while it ran, and the event log's projection of
        any of them waited behind it (P7 logged the runner's own leases taken over).
        """
        ids = sorted(leases)
        still_held: set[str] = set()
        for start in range(0, len(ids), _RENEWAL_CHUNK):
            chunk = ids[start : start + _RENEWAL_CHUNK]
            rows = await self._renew_chunk(owner, chunk, lease_seconds, statement_timeout)
            still_held.update(
                row["id"] for row in rows if leases[row["id"]].generation == row["lease_generation"]
            )
        return still_held

    async def _renew_chunk(
        self,
        owner: str,
        ids: list[str],
        lease_seconds: float,
        statement_timeout: float | None,
    ) -> Sequence[Mapping[str, Any]]:
        expires = utc_now() + timedelta(seconds=lease_seconds)
        if self._database.is_postgres:
            # Rows are locked in id order, as the event log's projection and every bulk change
            # lock them: in the plan's order, a renewal over many rows and a projection each
            # waited for a row the other held, and Postgres failed one of them (a deadlock).
            # One array parameter, not one placeholder per id: the statement is the same
            # prepared one for every chunk.
            return await self._database.fetch(
                "UPDATE runwire_execution SET lease_expires_at = {}"
                " WHERE id IN (SELECT id FROM runwire_execution"
                " WHERE owner = {} AND id = ANY({}::varchar[]) ORDER BY id FOR UPDATE)"
                " RETURNING id, lease_generation",
                expires,
                owner,
                ids,
                statement_timeout=statement_timeout,
            )
        return await self._database.fetch(
            "UPDATE runwire_execution SET lease_expires_at = {}"
            f" WHERE owner = {{}} AND id IN ({marks(ids)}) RETURNING id, lease_generation",
            expires,
            owner,
            *ids,
            statement_timeout=statement_timeout,
        )

    async def check_writable(self, statement_timeout: float | None = None) -> None:
        """Raise unless the database takes writes now (a read-only one still answers reads)."""
        # An UPDATE that matches no row: refused by a read-only database, free otherwise.
        await self._database.fetch(
            "UPDATE runwire_execution SET lease_generation = lease_generation WHERE id IS NULL",
            statement_timeout=statement_timeout,
        )

    async def release(self, execution_id: str, lease: Lease) -> bool:
        """Let go of an execution held under `lease`; False if that lease no longer holds it."""
        rows = await self._database.fetch(
            "UPDATE runwire_execution SET owner = NULL, lease_expires_at = NULL"
            " WHERE id = {} AND owner = {} AND lease_generation = {} RETURNING id",
            execution_id,
            lease.owner,
            lease.generation,
        )
        return bool(rows)

    async def take_over_expired(
        self,
        owner: str,
        lease_seconds: float,
        margin_seconds: float,
        keep: Collection[str] = (),
    ) -> list[tuple[Execution, str]]:
        """Claim executions whose owner stopped renewing (a crashed or cut-off process), each
        with the owner it had; not those of `keep` that `owner` holds itself.

        Only leases expired for `margin_seconds` already: their runner gave up on them before
        they expired (see Runner), so nothing of it still runs or writes when they change hands.
        """
        now = utc_now()
        async with self._database.write():
            # In id order, like every other lock of many executions (see renew_leases).
            lock = " ORDER BY id FOR UPDATE" if self._database.is_postgres else ""
            expired = await self._database.fetch(
                "SELECT id, owner FROM runwire_execution"
                f" WHERE owner IS NOT NULL AND lease_expires_at < {{}}{lock}",
                now - timedelta(seconds=margin_seconds),
            )
            previous = {
                row["id"]: row["owner"]
                for row in expired
                if not (row["owner"] == owner and row["id"] in keep)
            }
            if not previous:
                return []
            ids = sorted(previous)
            rows = await self._database.fetch(
                "UPDATE runwire_execution SET owner = {}, lease_expires_at = {},"
                " lease_generation = lease_generation + 1"
                f" WHERE id IN ({marks(ids)}) RETURNING *",
                owner,
                now + timedelta(seconds=lease_seconds),
                *ids,
            )
        return [(execution_of(row), previous[row["id"]]) for row in rows]

    async def request_control(
        self,
        execution_id: str,
        action: str,
        reason: str,
        actor: str,
        grace: float | None,
        step_key: str | None = None,
    ) -> None:
        """Store a request for the execution's runner; it applies it when signalled or polling."""
        await tables.ControlRequest.insert(
            tables.ControlRequest(
                execution_id=execution_id,
                action=action,
                step_key=step_key,
                reason=reason,
                actor=actor,
                grace_seconds=grace,
                requested_at=utc_now(),
            )
        )

    async def request_controls(
        self, execution_ids: Sequence[str], action: str, reason: str, actor: str
    ) -> None:
        if not execution_ids:
            return
        now = utc_now()
        async with self._database.write():
            sql = (
                "INSERT INTO runwire_control_request (execution_id, action, reason, actor,"
                " requested_at) VALUES (?, ?, ?, ?, ?)"
            )
            await self._database.connection().executemany(
                numbered(sql) if self._database.is_postgres else sql,
                [(execution_id, action, reason, actor, now) for execution_id in execution_ids],
            )

    async def pending_controls(self, owner: str) -> list[ControlRequest]:
        """Unhandled control requests for executions that `owner` runs."""
        rows = await self._database.fetch(
            "SELECT c.* FROM runwire_control_request c JOIN runwire_execution e"
            " ON e.id = c.execution_id WHERE c.handled_at IS NULL AND e.owner = {}"
            " ORDER BY c.id",
            owner,
        )
        return [
            ControlRequest(
                id=row["id"],
                execution_id=row["execution_id"],
                action=row["action"],
                reason=row["reason"],
                actor=row["actor"],
                grace_seconds=row["grace_seconds"],
                step_key=row["step_key"],
            )
            for row in rows
        ]

    async def mark_controls_handled(self, execution_id: str) -> None:
        await self._database.fetch(
            "UPDATE runwire_control_request SET handled_at = {}"
            " WHERE execution_id = {} AND handled_at IS NULL",
            utc_now(),
            execution_id,
        )


def _within_limits(candidates: Sequence[Mapping[str, Any]], limit: int) -> list[str]:
    """Candidate ids in queue order, keeping each key's and batch's owned count in bounds.

    Each row says how many of its key and batch runners own already; this adds the ones it
    takes, since candidates of one claim may share a key.
    """
    taken: dict[tuple[str, ...], int] = {}
    chosen: list[str] = []
    for row in candidates:
        groups = []
        if row["concurrency_key"] is not None:
            groups.append(
                (
                    ("key", row["workspace_id"], row["concurrency_key"]),
                    row["key_owned"],
                    row["concurrency_limit"],
                )
            )
        if row["batch_id"] is not None:
            groups.append(
                (
                    ("batch", row["workspace_id"], row["batch_id"]),
                    row["batch_owned"],
                    row["batch_limit"],
                )
            )
        if any(owned + taken.get(group, 0) >= bound for group, owned, bound in groups):
            continue
        for group, _, _ in groups:
            taken[group] = taken.get(group, 0) + 1
        chosen.append(row["id"])
        if len(chosen) == limit:
            break
    return chosen
