"""Whether this process can do its work now: the database and the bus, checked every second.

`/ready` (http/health.py) answers from here, and so does the `UNAVAILABLE` error of the API
while a part is down. A change of state is logged once, when it happens; an outage that lasts
is not logged again and again by everything that meets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from runwire.db.engine import Database
from runwire.events.bus import Bus

logger = logging.getLogger(__name__)

CHECK_SECONDS = 1.0


class ReadOnlyDatabase(ConnectionError):
    """The database answers but refuses writes (set read-only, or a standby)."""


@dataclass(frozen=True, slots=True)
class ComponentState:
    """One part's state as last checked: up, or down with a short reason (no secrets in it)."""

    up: bool
    reason: str = ""


class Health:
    """The last known state of the database and the bus, kept fresh by a checking task."""

    def __init__(self, checks: dict[str, Callable[[], Awaitable[None]]]) -> None:
        self._checks = checks
        self._states = {name: ComponentState(up=True) for name in checks}

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, database: Database, bus: Bus, interval: float = CHECK_SECONDS
    ) -> AsyncIterator[Health]:
        """Check every `interval` seconds for the block."""

        async def database_answers() -> None:
            if not database.is_postgres:
                await database.fetch("SELECT 1")
                return
            # A database set read-only answers reads: what Runwire needs is writes.
            rows = await database.fetch(
                "SELECT current_setting('transaction_read_only') AS ro", statement_timeout=interval
            )
            if rows[0]["ro"] == "on":
                raise ReadOnlyDatabase("the database is read-only")

        async def bus_listens() -> None:
            if not bus.listening:
                raise ConnectionError("the bus listener is reconnecting or stopped")

        health = cls({"database": database_answers, "bus": bus_listens})
        checking = asyncio.create_task(health._check_forever(interval), name="runwire-health")
        try:
            yield health
        finally:
            checking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checking

    @property
    def ready(self) -> bool:
        return all(state.up for state in self._states.values())

    @property
    def components(self) -> dict[str, ComponentState]:
        return dict(self._states)

    def down(self) -> list[str]:
        """The parts that are down now, by name."""
        return [name for name, state in self._states.items() if not state.up]

    async def check(self) -> None:
        """Check every part once, now."""
        for name, probe in self._checks.items():
            try:
                await probe()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._set(name, ComponentState(up=False, reason=type(error).__name__))
            else:
                self._set(name, ComponentState(up=True))

    async def _check_forever(self, interval: float) -> None:
        while True:
            await self.check()
            await asyncio.sleep(interval)

    def _set(self, name: str, state: ComponentState) -> None:
        before = self._states[name]
        self._states[name] = state
        if state.up and not before.up:
            logger.warning("health: the %s is reachable again", name)
        elif not state.up and before.up:
            logger.error("health: the %s is unreachable (%s)", name, state.reason)
