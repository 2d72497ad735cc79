"""Everything Runwire assumes about broadcaster beyond its exported names, in one place.

broadcaster (0.3.x) exports `Broadcast`, `BroadcastBackend` and `Event`. The bus also needs the
type its `subscribe()` yields and the exception that type raises once unsubscribed (both live in
`broadcaster._base`), and the listener task `Broadcast.connect()` starts (kept as
`Broadcast._listener_task`), because broadcaster leaves every subscriber waiting forever when
that task dies. `tests/contract/test_broadcaster.py` fails, naming the assumption, when a release
moves any of them; pyproject.toml's upper bound keeps releases the test has not seen out.
"""

from __future__ import annotations

import asyncio

from broadcaster import Broadcast
from broadcaster._base import Subscriber, Unsubscribed

__all__ = ["Subscriber", "Unsubscribed", "listener_task"]


def listener_task(broadcast: Broadcast) -> asyncio.Task[None]:
    """The task that moves the backend's messages to subscribers (set by `connect()`)."""
    task: asyncio.Task[None] = broadcast._listener_task
    return task
