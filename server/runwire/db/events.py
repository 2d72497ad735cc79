"""The event log: append a batch of events (with their projections), read a range back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from runwire.db.engine import Database
from runwire.db.projection import write_events
from runwire.db.rows import event_of
from runwire.domain.models import Event, Lease


class EventRepository:
    """The only code that reads runwire_event; writes go through `projection`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def append(
        self, events: Sequence[Event], leases: Mapping[str, Lease] | None = None
    ) -> None:
        """Persist events and their projections (execution and step rows) in one transaction.

        An execution named in `leases` must still be held under that lease, checked in the
        same transaction: LeaseLost names those that are not, and nothing is written.
        """
        async with self._database.write():
            await write_events(self._database, events, leases)

    async def stored_through(self, execution_id: str) -> int:
        """The highest seq stored for the execution (0 if none): what a retry may skip."""
        rows = await self._database.fetch(
            "SELECT MAX(seq) AS seq FROM runwire_event WHERE execution_id = {}", execution_id
        )
        return int(rows[0]["seq"] or 0) if rows else 0

    async def events(
        self, execution_id: str, after_seq: int, *, before_seq: int | None = None, limit: int = 1000
    ) -> list[Event]:
        """Events with after_seq < seq (< before_seq), in seq order."""
        if before_seq is None:
            rows = await self._database.fetch(
                "SELECT * FROM runwire_event WHERE execution_id = {} AND seq > {}"
                " ORDER BY seq LIMIT {}",
                execution_id,
                after_seq,
                limit,
            )
        else:
            rows = await self._database.fetch(
                "SELECT * FROM runwire_event WHERE execution_id = {} AND seq > {} AND seq < {}"
                " ORDER BY seq LIMIT {}",
                execution_id,
                after_seq,
                before_seq,
                limit,
            )
        return [event_of(row) for row in rows]
