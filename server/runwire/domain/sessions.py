"""Live connections (WebSockets, SSE streams) and a watchdog that ends them when their
credential is revoked or expires, within seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from runwire.domain.access import Actor
from runwire.faults import report

logger = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class _Session:
    actor: Actor
    end: Callable[[], Coroutine[Any, Any, None]]
    gone: Callable[[], bool]


class LiveSessions:
    """Every live connection of this process with the actor it authenticated as."""

    def __init__(
        self, still_valid: Callable[[list[Actor]], Awaitable[list[bool]]], interval: float
    ) -> None:
        self._still_valid = still_valid
        self._interval = interval
        self._sessions: set[_Session] = set()
        self._ending: set[asyncio.Task[None]] = set()

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, still_valid: Callable[[list[Actor]], Awaitable[list[bool]]], interval: float = 1.0
    ) -> AsyncIterator[LiveSessions]:
        sessions = cls(still_valid, interval)
        watchdog = asyncio.create_task(sessions._watch(), name="runwire-session-watchdog")
        try:
            yield sessions
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog

    @property
    def count(self) -> int:
        return len(self._sessions)

    def register(
        self, actor: Actor, end: Callable[[], Coroutine[Any, Any, None]], gone: Callable[[], bool]
    ) -> Callable[[], None]:
        """Watch a connection until `gone()`; `end()` closes it if its credential lapses.

        Returns a function that stops watching it (for connections that know when they end).
        """
        session = _Session(actor, end, gone)
        self._sessions.add(session)
        return lambda: self._sessions.discard(session)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._check()
            except Exception as error:
                # A database hiccup must not end the watchdog; the next tick checks again.
                report(logger, "checking live sessions", error)

    async def _check(self) -> None:
        sessions = [s for s in self._sessions if not s.gone()]
        self._sessions.intersection_update(sessions)
        if not sessions:
            return
        valid = await self._still_valid([s.actor for s in sessions])
        for session, ok in zip(sessions, valid, strict=True):
            if ok:
                continue
            self._sessions.discard(session)
            task = asyncio.create_task(session.end())
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)
