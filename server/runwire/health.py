"""Whether this process can do its work now: the database, the bus and the schema's
migrations, checked every second; and whether queued work has a runner to run it.

`/ready` (http/health.py) answers from here, and so does the `UNAVAILABLE` error of the API
while a part is down. A change of state is logged once, when it happens; an outage that lasts
is not logged again and again by everything that meets it.

Runners are judged apart from readiness: an API replica serves (and queues) while every worker
is down, and a worker outage must not take the API down with it. So "no runner alive" is a
component that is down without making the process unready, and a warning (see
domain/runners.py) while work has waited longer than a lease for a runner that is not there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from runwire.db.engine import Database
from runwire.domain.runners import QueueHealth, QueueHealthService
from runwire.events.bus import Bus

logger = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
# A probe that hangs (a cut connection that has not failed yet) is a part that is down.
PROBE_SECONDS = 5.0


# How a part's change of state reads in the log, where "the X is unreachable" does not fit.
_GONE = {"migrations": "the database is behind this version's migrations"}
_BACK = {"migrations": "the database has this version's migrations again"}


class ReadOnlyDatabase(ConnectionError):
    """The database answers but refuses writes (set read-only, or a standby)."""


class SchemaBehind(RuntimeError):
    """The database lacks migrations this version of Runwire needs: run `runwire migrate`."""


@dataclass(frozen=True, slots=True)
class ComponentState:
    """One part's state as last checked: up, or down with a short reason (no secrets in it)."""

    up: bool
    reason: str = ""


class Health:
    """The last known state of the database, the bus, the migrations and the queue's runners,
    kept fresh by a checking task."""

    def __init__(
        self,
        checks: dict[str, Callable[[], Awaitable[None]]],
        queue: QueueHealthService | None = None,
    ) -> None:
        self._checks = checks
        self._states = {name: ComponentState(up=True) for name in checks}
        self._queue_service = queue
        # The whole queue as last judged; None until judged, or without a service.
        self.queue: QueueHealth | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        database: Database,
        bus: Bus,
        queue: QueueHealthService | None = None,
        interval: float = CHECK_SECONDS,
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

        async def schema_is_current() -> None:
            # Checked at start too (Database.open refuses to start behind); here it catches a
            # database restored from an older backup, or migrated back, under a running server.
            if pending := await database.pending_migrations():
                raise SchemaBehind(f"{len(pending)} migration(s) not applied")

        checks: dict[str, Callable[[], Awaitable[None]]] = {
            "database": database_answers,
            "bus": bus_listens,
            "migrations": schema_is_current,
        }
        health = cls(checks, queue)
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
            if name != "database" and not self._states["database"].up:
                continue  # what reads the database would only repeat that it is down
            try:
                async with asyncio.timeout(PROBE_SECONDS):
                    await probe()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._set(name, ComponentState(up=False, reason=_reason(error)))
            else:
                self._set(name, ComponentState(up=True))
        if self._queue_service is not None and self._states["database"].up:
            await self._judge_queue(self._queue_service)

    async def _judge_queue(self, service: QueueHealthService) -> None:
        try:
            async with asyncio.timeout(PROBE_SECONDS):
                judged = await service.judge(None)
        except asyncio.CancelledError:
            raise
        except Exception:
            return  # the database's own check says why; the last judgement stands
        before = self.queue
        self.queue = judged
        was = before.warning if before is not None else None
        # Said once when it starts and once when it ends: the count and age in between change
        # every check, and the warning stays readable in /ready and the API meanwhile.
        if judged.warning is not None and was is None:
            logger.warning("queue: %s", judged.warning)
        elif judged.warning is None and was is not None:
            logger.warning(
                "queue: no longer waiting for a runner (%d alive, %d queued)",
                judged.runners_alive,
                judged.waiting.count,
            )

    @property
    def runners(self) -> dict[str, object]:
        """The runners component of /ready: up when one is alive (or this process runs one)."""
        runs_here = self._queue_service is not None and self._queue_service.runs_here
        alive = self.queue.runners_alive if self.queue is not None else 0
        return {"up": runs_here or alive > 0, "alive": alive}

    @property
    def warnings(self) -> list[str]:
        """What an operator should know though this process is ready."""
        if self.queue is None or self.queue.warning is None:
            return []
        return [self.queue.warning]

    async def _check_forever(self, interval: float) -> None:
        while True:
            await self.check()
            await asyncio.sleep(interval)

    def _set(self, name: str, state: ComponentState) -> None:
        before = self._states[name]
        self._states[name] = state
        if state.up and not before.up:
            logger.warning("health: %s", _BACK.get(name, f"the {name} is reachable again"))
        elif not state.up and before.up:
            said = _GONE.get(name, f"the {name} is unreachable")
            logger.error("health: %s (%s)", said, state.reason)


def _reason(error: Exception) -> str:
    """A short reason without secrets: the type, or our own message for the schema."""
    if isinstance(error, SchemaBehind):
        return f"{error}: run `runwire migrate`"
    return type(error).__name__
