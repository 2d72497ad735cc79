"""Broadcaster backends that keep the bus's guarantees: live once subscribed, healing on loss.

Stock broadcaster 0.3.1 backends are not used (see ARCHITECTURE.md): the postgres and redis ones
share the LISTEN connection with NOTIFY, can report ready before the channel is registered, and
hang every subscriber silently when their connection dies; the memory one connects nothing to
anything else in the process. These backends reconnect with bounded
backoff, re-subscribe, and then emit a `ResyncEvent` per channel, because notices sent while
disconnected are lost and followers must re-read the database.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from collections.abc import Iterable
from typing import Any, ClassVar
from urllib.parse import urlsplit

import asyncpg
from broadcaster import BroadcastBackend, Event
from redis import asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from runwire.errors import RunwireError

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
"""Seconds to open a connection and have the subscription confirmed."""
HEARTBEAT = 15.0
"""Idle seconds after which the listener checks its connection (catches half-open TCP)."""
BACKOFF_FIRST, BACKOFF_CAP = 0.05, 2.0

_PG_LOST = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
)
_PG_RETRYABLE = (*_PG_LOST, asyncpg.PostgresError)
_REDIS_LOST = (OSError, TimeoutError, RedisConnectionError, RedisTimeoutError)


class ResyncEvent(Event):
    """Notices on this channel may have been lost; followers must re-read the database."""

    def __init__(self, channel: str) -> None:
        super().__init__(channel=channel, message="")


def backend_for(url: str) -> Backend:
    """The backend for a bus URL: memory://, postgres(ql)://, redis(s)://."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryBackend(url)
    if scheme in ("postgres", "postgresql"):
        return PostgresBackend(url)
    if scheme in ("redis", "rediss"):
        return RedisBackend(url)
    raise ValueError(f"unsupported bus URL scheme {scheme!r}")  # never echo the URL: passwords


class _Backoff:
    """Jittered exponential delays between reconnect attempts, capped at BACKOFF_CAP seconds."""

    def __init__(self) -> None:
        self._delay = BACKOFF_FIRST

    async def sleep(self) -> None:
        await asyncio.sleep(self._delay * random.uniform(0.5, 1.0))
        self._delay = min(self._delay * 2, BACKOFF_CAP)


class MemoryBackend(BroadcastBackend):
    """In-process: every backend on the same memory:// URL sees every publish (stock's do not)."""

    _peers: ClassVar[dict[str, set[MemoryBackend]]] = {}

    def __init__(self, url: str) -> None:
        self._url = url
        self._channels: set[str] = set()
        self._published: asyncio.Queue[Event] = asyncio.Queue()

    async def connect(self) -> None:
        self._peers.setdefault(self._url, set()).add(self)

    async def disconnect(self) -> None:
        peers = self._peers.get(self._url, set())
        peers.discard(self)
        if not peers:
            self._peers.pop(self._url, None)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)  # idempotent: the bus subscribes before broadcaster does

    async def subscribe_all(self, channels: Iterable[str]) -> None:
        self._channels.update(channels)

    @property
    def connected(self) -> bool:
        return True

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    async def publish(self, channel: str, message: Any) -> None:
        for peer in list(self._peers.get(self._url, ())):
            peer._published.put_nowait(Event(channel=channel, message=message))

    async def next_published(self) -> Event:
        while True:
            event = await self._published.get()
            if event.channel in self._channels:
                return event


class PostgresBackend(BroadcastBackend):
    """LISTEN on one dedicated connection; NOTIFY through a small pool (never the LISTEN one)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._channels: set[str] = set()
        self._conn: Any = None  # the LISTEN connection; None while reconnecting
        self._pool: Any = None
        self._lock = asyncio.Lock()  # one operation at a time on the LISTEN connection
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()  # None: connection lost

    async def connect(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._url,
            min_size=1,
            max_size=4,
            timeout=CONNECT_TIMEOUT,
            server_settings={"application_name": "runwire-bus-publisher"},
        )
        try:
            self._conn = await self._open()
        except BaseException:
            await self._pool.close()
            raise

    async def disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await _close_pg(conn)
        if self._pool is not None:
            await _close_pg(self._pool)

    async def subscribe(self, channel: str) -> None:
        async with self._lock:
            if channel not in self._channels:
                # LISTEN outside a transaction is in effect when this returns: ready means live.
                await self._conn.add_listener(channel, self._on_notify)
                self._channels.add(channel)

    async def subscribe_all(self, channels: Iterable[str]) -> None:
        for channel in channels:
            await self.subscribe(channel)

    @property
    def connected(self) -> bool:
        """Whether the LISTEN connection is up (not lost, not being replaced)."""
        return self._conn is not None and not self._conn.is_closed()

    async def unsubscribe(self, channel: str) -> None:
        async with self._lock:
            if channel in self._channels:
                self._channels.discard(channel)
                if self._conn is not None:
                    with contextlib.suppress(*_PG_LOST):
                        await self._conn.remove_listener(channel, self._on_notify)

    async def publish(self, channel: str, message: Any) -> None:
        # One retry: a pool connection killed since its last use fails once, then is replaced.
        # A duplicate notice is harmless (followers drop seen seqs); a lost one stalls them.
        for attempt in (1, 2):
            try:
                await self._pool.execute("SELECT pg_notify($1, $2)", channel, message)
                return
            except _PG_LOST:
                if attempt == 2:
                    raise

    async def next_published(self) -> Event:
        while True:
            try:
                async with asyncio.timeout(HEARTBEAT):
                    event = await self._queue.get()
            except TimeoutError:
                lost = not await self._alive()
            else:
                if event is not None:
                    return event
                # A loss report can be stale (its connection was already replaced): check.
                lost = self._conn is None or self._conn.is_closed()
            if lost:
                await self._reconnect()
                for channel in self._channels:
                    self._queue.put_nowait(ResyncEvent(channel))

    async def _open(self) -> Any:
        conn = await asyncpg.connect(
            self._url,
            timeout=CONNECT_TIMEOUT,
            server_settings={"application_name": "runwire-bus-listener"},
        )
        try:
            # Registered before LISTEN so a loss at any later moment wakes next_published.
            conn.add_termination_listener(self._on_terminated)
            for channel in self._channels:
                await conn.add_listener(channel, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def _reconnect(self) -> None:
        async with self._lock:
            old, self._conn = self._conn, None  # from here on, old's termination is ignored
            if old is not None:
                old.terminate()
            backoff = _Backoff()
            while True:
                try:
                    self._conn = await self._open()
                except _PG_RETRYABLE as exc:
                    logger.warning("bus: Postgres LISTEN reconnect failed: %s", type(exc).__name__)
                    await backoff.sleep()
                else:
                    logger.info("bus: Postgres LISTEN connection restored")
                    return

    async def _alive(self) -> bool:
        async with self._lock:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await self._conn.fetchval("SELECT 1")
            except _PG_LOST:
                return False
            return True

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self._queue.put_nowait(Event(channel=channel, message=payload))

    def _on_terminated(self, conn: Any) -> None:
        if conn is self._conn:
            logger.warning("bus: Postgres LISTEN connection lost; reconnecting")
            self._queue.put_nowait(None)


async def _close_pg(closable: Any) -> None:
    """Close an asyncpg connection or pool gracefully, or forcibly if that hangs or fails."""
    try:
        async with asyncio.timeout(5):
            await closable.close()
    except (*_PG_LOST, TimeoutError):
        closable.terminate()


class RedisBackend(BroadcastBackend):
    """SUBSCRIBE on its own connection, confirmed before subscribe() returns; PUBLISH via a pool."""

    def __init__(self, url: str) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=4, timeout=5)
        self._publisher = aioredis.Redis.from_pool(pool)
        # No silent built-in retry on the listener: a reconnect must be seen, to emit a resync.
        self._listener = aioredis.Redis.from_url(
            url,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_keepalive=True,
            client_name="runwire-bus-listener",
        )
        self._channels: set[str] = set()
        self._pubsub: PubSub | None = None
        self._pending: collections.deque[Event] = collections.deque()
        self._ready = asyncio.Event()  # set once subscribed; only then may the reader read
        self._awaiting_pong = False

    async def connect(self) -> None:
        try:
            await self._publisher.ping()  # fail at startup, not at the first publish
        except BaseException:
            await self.disconnect()
            raise

    async def disconnect(self) -> None:
        if self._pubsub is not None:
            await _close_pubsub(self._pubsub)
        await self._listener.aclose()
        await self._publisher.aclose()

    async def subscribe(self, channel: str) -> None:
        await self.subscribe_all([channel])

    async def subscribe_all(self, channels: Iterable[str]) -> None:
        """Subscribe to every channel at once, before the reader starts: later ones are refused."""
        wanted = set(channels)
        if wanted <= self._channels:
            return
        if self._ready.is_set():
            # Confirmations are read by the reader once it runs: channels are all given up front.
            raise RunwireError("the Redis bus backend subscribes to its channels once, at connect")
        self._pubsub = await self._open(sorted(wanted))
        self._channels.update(wanted)
        self._ready.set()

    @property
    def connected(self) -> bool:
        """Whether the subscription's connection is up (not lost, not being replaced)."""
        return self._pubsub is not None

    async def unsubscribe(self, channel: str) -> None:
        # Only local: disconnect() closes the connection, and a send here could race the reader.
        self._channels.discard(channel)

    async def publish(self, channel: str, message: Any) -> None:
        await self._publisher.publish(channel, message)

    async def next_published(self) -> Event:
        await self._ready.wait()
        while not self._pending:
            assert self._pubsub is not None
            try:
                message = await self._pubsub.get_message(timeout=HEARTBEAT)
                if message is None:
                    if self._awaiting_pong:  # a whole heartbeat without the PONG: half-open
                        raise RedisConnectionError("no reply to PING")
                    self._awaiting_pong = True
                    await self._pubsub.ping()
                else:
                    self._take(message)
            except _REDIS_LOST as exc:
                await self._reconnect(exc)
        return self._pending.popleft()

    async def _open(self, channels: Iterable[str]) -> PubSub:
        """A pubsub connection whose subscriptions the server has confirmed."""
        pubsub = self._listener.pubsub()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await pubsub.subscribe(*channels)
                unconfirmed = set(channels)
                while unconfirmed:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None and message["type"] == "subscribe":
                        unconfirmed.discard(_text(message["channel"]))
                    elif message is not None:
                        self._take(message)
        except BaseException:
            await _close_pubsub(pubsub)
            raise
        return pubsub

    async def _reconnect(self, exc: BaseException) -> None:
        logger.warning("bus: Redis subscription lost (%s); reconnecting", type(exc).__name__)
        if self._pubsub is not None:
            await _close_pubsub(self._pubsub)
            self._pubsub = None
        self._awaiting_pong = False
        backoff = _Backoff()
        while self._pubsub is None:
            try:
                self._pubsub = await self._open(self._channels)
            except _REDIS_LOST as retry_exc:
                logger.warning("bus: Redis reconnect failed: %s", type(retry_exc).__name__)
                await backoff.sleep()
        logger.info("bus: Redis subscription restored")
        self._pending.extendleft(ResyncEvent(channel) for channel in self._channels)

    def _take(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "message":
            self._pending.append(Event(_text(message["channel"]), _text(message["data"])))
        elif kind == "pong":
            self._awaiting_pong = False
        elif kind == "subscribe":
            # A confirmation outside _open means the client re-subscribed behind our back.
            self._pending.append(ResyncEvent(_text(message["channel"])))


Backend = MemoryBackend | PostgresBackend | RedisBackend
"""The bus's backends: broadcaster's interface, plus subscribing to all channels at once."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _close_pubsub(pubsub: PubSub) -> None:
    with contextlib.suppress(*_REDIS_LOST):
        await pubsub.aclose()  # type: ignore[no-untyped-call]
