"""Fresh Postgres databases and a checked Redis URL for tests, on 127.0.0.1 (as in dev and CI).

Test databases are clones (`CREATE DATABASE … TEMPLATE`) of one migrated template per set of
migrations, named by their hash: migrating each database cost more than many of the tests that
used it. A changed migration (or Piccolo version) names a new template, built by `runwire migrate`;
tests/integration/test_template_database.py checks that a clone has exactly the schema that
`runwire migrate` makes of an empty database today.

When a server is unreachable the test is skipped, unless RUNWIRE_REQUIRE_POSTGRES=1 (set it in CI):
then it fails. The one flag covers Redis too, so CI cannot pass by silently skipping either.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import NoReturn

import asyncpg
import pytest
from redis import asyncio as aioredis
from redis.exceptions import RedisError

POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/0"
REQUIRE_ENV = "RUNWIRE_REQUIRE_POSTGRES"
_UNREACHABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

MIGRATIONS = Path(__file__).resolve().parents[2] / "server" / "runwire" / "db" / "migrations"
TEMPLATE_PREFIX = "runwire_template_"
# Held (a session lock of the admin connection) while a run looks for, builds or drops templates:
# two runs starting together build one template, and never drop one the other is building.
_TEMPLATE_LOCK = 0x52575450  # "RWTP"
_BUILDING = "_building"
# A template is marked with the time a run last started using it. Another migration set's
# template (another branch's run may still be cloning it) is dropped once unused for this long.
_LAST_USED = "runwire test template, last used "
_STALE_AFTER = timedelta(hours=1)
# This process's template, once ensured: a run checks for it once, not per database.
_template: str | None = None


def unavailable(server: str, exc: BaseException) -> NoReturn:
    """Skip the test, or fail it when RUNWIRE_REQUIRE_POSTGRES=1."""
    reason = f"{server} is unreachable on 127.0.0.1: {type(exc).__name__}: {exc}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)")
    pytest.skip(reason)


def template_name(migrations: Path = MIGRATIONS) -> str:
    """The template database's name for these migration files and this Piccolo version."""
    digest = hashlib.sha256(version("piccolo").encode())
    for path in sorted(migrations.glob("*.py")):
        digest.update(b"\0" + path.name.encode() + b"\0" + path.read_bytes())
    return TEMPLATE_PREFIX + digest.hexdigest()[:16]


@asynccontextmanager
async def admin() -> AsyncIterator[asyncpg.Connection]:
    """A connection to the server's `postgres` database (skips or fails when unreachable)."""
    try:
        connection = await asyncpg.connect(f"{POSTGRES_SERVER}/postgres", timeout=3)
    except _UNREACHABLE as exc:
        unavailable("Postgres", exc)
    try:
        yield connection
    finally:
        await connection.close()


async def create_database(name: str, *, migrated: bool = True) -> str:
    """Create database `name`, a clone of the migrated template or else empty; its URL."""
    global _template
    async with admin() as connection:
        if not migrated:
            await connection.execute(f'CREATE DATABASE "{name}"')
            return f"{POSTGRES_SERVER}/{name}"
        template = _template or await _ensure_template(connection)
        try:
            await connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        except asyncpg.InvalidCatalogNameError:
            # A run of another migration set dropped it as stale: build it again, once.
            template = await _ensure_template(connection)
            await connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        _template = template
    return f"{POSTGRES_SERVER}/{name}"


async def drop_database(name: str) -> None:
    """Drop database `name`, ending any connection a failed test left open."""
    async with admin() as connection:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def fresh_database(
    prefix: str = "runwire_test", *, migrated: bool = True
) -> AsyncIterator[str]:
    """A new database with a random name, migrated unless told otherwise; dropped afterwards."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    url = await create_database(name, migrated=migrated)
    try:
        yield url
    finally:
        await drop_database(name)


async def ensure_template(migrations: Path = MIGRATIONS) -> str:
    """The name of the migrated template of `migrations`, built first if it is missing."""
    async with admin() as connection:
        return await _ensure_template(connection, migrations)


async def _ensure_template(connection: asyncpg.Connection, migrations: Path = MIGRATIONS) -> str:
    """The template's name, after building it if it is missing; under the lock."""
    name = template_name(migrations)
    await connection.execute("SELECT pg_advisory_lock($1)", _TEMPLATE_LOCK)
    try:
        rows = await connection.fetch(
            "SELECT datname, shobj_description(oid, 'pg_database') AS note FROM pg_database"
            " WHERE starts_with(datname, $1)",
            TEMPLATE_PREFIX,
        )
        found = {row["datname"]: row["note"] for row in rows}
        if name not in found:
            await _build(connection, name)
        now = datetime.now(UTC)
        await connection.execute(
            f"COMMENT ON DATABASE \"{name}\" IS '{_LAST_USED}{now.isoformat()}'"
        )
        for other, note in found.items():
            # Under the lock no one is building: a "_building" one is a crashed run's leftover.
            if other != name and (
                other.endswith(_BUILDING) or _unused_since(note) < now - _STALE_AFTER
            ):
                await connection.execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _TEMPLATE_LOCK)
    return name


async def _build(connection: asyncpg.Connection, name: str) -> None:
    """Migrate a new database with `runwire migrate`, then give it the template's name.

    It gets the name only once complete, so a run that dies half-way leaves no template behind
    that looks whole. The migrating process has exited before the rename: nothing stays
    connected to a template (CREATE DATABASE … TEMPLATE refuses one with connections).
    """
    building = name + _BUILDING
    await connection.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
    await connection.execute(f'CREATE DATABASE "{building}"')
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runwire.cli",
        "migrate",
        env={**os.environ, "RUNWIRE_DATABASE_URL": f"{POSTGRES_SERVER}/{building}"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        await connection.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
        raise RuntimeError(f"`runwire migrate` failed building {name}:\n{output.decode()}")
    await connection.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')


def _unused_since(note: str | None) -> datetime:
    """When a template was last used, from its comment; long ago if it has none."""
    if note is not None and note.startswith(_LAST_USED):
        try:
            return datetime.fromisoformat(note.removeprefix(_LAST_USED))
        except ValueError:
            pass
    return datetime.min.replace(tzinfo=UTC)


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
