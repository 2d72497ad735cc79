"""When to try a lost subscription again, and when to give up."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from runwire_client.errors import ConnectionFailedError


class Reconnects:
    """Backoff between attempts (0.1 s doubling to 2 s, randomised) within a time budget.

    The budget counts from the last working connection, so a long follow survives any number
    of short outages but not one that lasts longer than the budget.
    """

    def __init__(
        self,
        budget: float,
        *,
        first: float = 0.1,
        cap: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._budget = budget
        self._first = first
        self._cap = cap
        self._clock = clock
        self._delay = first
        self._working_at = clock()
        self.attempts = 0

    def connected(self) -> None:
        """The server acknowledged a connection: the budget starts again."""
        self._working_at = self._clock()

    def progressed(self) -> None:
        """Events arrived: the next failure waits the shortest time again."""
        self._delay = self._first

    async def wait(self, problem: str) -> None:
        """Sleep before the next attempt; ConnectionFailedError once the budget is spent."""
        # Randomised so that many clients cut off together do not come back together.
        delay = random.uniform(self._delay / 2, self._delay)
        if self._clock() + delay - self._working_at > self._budget:
            raise ConnectionFailedError(
                f"gave up after {self.attempts} reconnect attempts in {self._budget:g}s"
                f" without a working connection; last problem: {problem}"
            )
        self.attempts += 1
        self._delay = min(self._delay * 2, self._cap)
        await asyncio.sleep(delay)
