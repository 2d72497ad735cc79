"""Pytest fixtures `postgres_url`, `empty_postgres_url` and `redis_url`; enable them with:

pytest_plugins = ["tests.support.fixtures"]
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.support import postgres


@pytest.fixture(name="postgres_url")
async def postgres_url_fixture() -> AsyncIterator[str]:
    """A fresh migrated database for this test (a clone of the run's template), dropped after."""
    async with postgres.fresh_database() as url:
        yield url


@pytest.fixture(name="empty_postgres_url")
async def empty_postgres_url_fixture() -> AsyncIterator[str]:
    """A fresh database without any table, for tests of migrating; dropped afterwards."""
    async with postgres.fresh_database(migrated=False) as url:
        yield url


@pytest.fixture(name="redis_url")
async def redis_url_fixture() -> str:
    """The test Redis URL (shared server: use random channel or key names per test)."""
    return await postgres.redis_url()
