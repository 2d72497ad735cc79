"""Fresh Postgres databases and a checked Redis URL for tests, on 127.0.0.1 (as in dev and CI).

When a server is unreachable the test is skipped, unless RUNWIRE_REQUIRE_POSTGRES=1 (set it in CI):
then it fails. The one flag covers Redis too, so CI cannot pass by silently skipping either.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NoReturn

import asyncpg
import pytest
from redis import asyncio as aioredis
from redis.exceptions import RedisError

POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/0"
REQUIRE_ENV = "RUNWIRE_REQUIRE_POSTGRES"
_UNREACHABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def unavailable(server: str, exc: BaseException) -> NoReturn:
    """Skip the test, or fail it when RUNWIRE_REQUIRE_POSTGRES=1."""
    reason = f"{server} is unreachable on 127.0.0.1: {type(exc).__name__}: {exc}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)")
    pytest.skip(reason)


@asynccontextmanager
async def fresh_database(prefix: str = "runwire_test") -> AsyncIterator[str]:
    """Create an empty database with a random name; yield its URL; drop it afterwards."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    try:
        admin = await asyncpg.connect(f"{POSTGRES_SERVER}/postgres", timeout=3)
    except _UNREACHABLE as exc:
        unavailable("Postgres", exc)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{POSTGRES_SERVER}/{name}"
        finally:
            # FORCE: a test that failed mid-way may leave connections open.
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def redis_url() -> str:
    """The test Redis URL, after checking the server answers PING."""
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
    try:
        await client.ping()
    except (OSError, RedisError) as exc:
        unavailable("Redis", exc)
    finally:
        await client.aclose()
    return REDIS_URL
