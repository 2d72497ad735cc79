"""Runner presence: one row per runner, refreshed every heartbeat, removed on a clean stop."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from runwire.db.engine import Database, stored_datetime
from runwire.domain.runners import RunnerPresence

# Records of runners that died without removing theirs are kept this long after they stopped
# counting (for an operator reading the table), then deleted by the next runner that starts.
_KEEP_DEAD = timedelta(days=1)


class RunnerRepository:
    """The `runwire_runner` table: one row per runner process, keyed by its lease owner."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def record_runner(self, presence: RunnerPresence) -> None:
        """Insert or refresh the runner's record (a refresh keeps its started_at)."""
        await self._database.fetch(
            "INSERT INTO runwire_runner"
            " (id, host, pid, started_at, last_seen_at, alive_until, slots, busy)"
            " VALUES ({}, {}, {}, {}, {}, {}, {}, {}) ON CONFLICT (id) DO UPDATE SET"
            " last_seen_at = excluded.last_seen_at, alive_until = excluded.alive_until,"
            " slots = excluded.slots, busy = excluded.busy",
            presence.id,
            presence.host[:255],
            presence.pid,
            presence.started_at,
            presence.last_seen_at,
            presence.alive_until,
            presence.slots,
            presence.busy,
        )

    async def forget_dead_runners(self, now: datetime) -> None:
        """Delete the records of runners that died without removing theirs, a day on."""
        await self._database.fetch(
            "DELETE FROM runwire_runner WHERE alive_until < {}", now - _KEEP_DEAD
        )

    async def remove_runner(self, runner_id: str) -> None:
        await self._database.fetch("DELETE FROM runwire_runner WHERE id = {}", runner_id)

    async def runners(self, now: datetime) -> list[RunnerPresence]:
        """The runners alive at `now`, oldest first."""
        rows = await self._database.fetch(
            "SELECT * FROM runwire_runner WHERE alive_until > {} ORDER BY started_at, id", now
        )
        return [_presence_of(row) for row in rows]


def _presence_of(row: Mapping[str, Any]) -> RunnerPresence:
    return RunnerPresence(
        id=row["id"],
        host=row["host"],
        pid=int(row["pid"]),
        started_at=stored_datetime(row["started_at"]),
        last_seen_at=stored_datetime(row["last_seen_at"]),
        alive_until=stored_datetime(row["alive_until"]),
        slots=int(row["slots"]),
        busy=int(row["busy"]),
    )
