"""A server that cannot start says why in one line, with what to do, and exits non-zero.

Each case runs the real `runwire` command with a setting an operator gets wrong: a database
that is not migrated, misspelled or down, a bus that is down, a port in use or not a number.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from tests.support import postgres
from tests.support.server import free_port

RUNWIRE = str(Path(sys.executable).parent / "runwire")
PASSWORD = "hunter2-not-logged"
UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1


def _run(tmp_path: Path, command: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RUNWIRE_DATA_DIR": str(tmp_path / "data"),
        "RUNWIRE_PORT": str(free_port()),
        "RUNWIRE_BUS_URL": "memory://",
        **settings,
    }
    if "RUNWIRE_DATABASE_URL" not in settings:
        env.pop("RUNWIRE_DATABASE_URL", None)  # the embedded SQLite default
    return subprocess.run(
        [RUNWIRE, command], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )


def _one_line(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    """The process failed with exactly one line on stderr, holding each of `expected`."""
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert PASSWORD not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A Postgres database nobody has migrated (not a clone of the migrated template)."""
    name = f"runwire_empty_{secrets.token_hex(6)}"

    async def admin(statement: str) -> None:
        try:
            connection = await asyncpg.connect(f"{postgres.POSTGRES_SERVER}/postgres")
        except (OSError, asyncpg.PostgresError) as error:
            postgres.unavailable("Postgres", error)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        yield f"{postgres.POSTGRES_SERVER}/{name}"
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name}"))


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_an_unmigrated_database(tmp_path: Path, empty_database: str, command: str) -> None:
    name = empty_database.rsplit("/", 1)[1]
    done = _run(tmp_path, command, RUNWIRE_DATABASE_URL=empty_database)
    _one_line(done, f"database {name} is not migrated", "run `runwire migrate`")


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_a_misspelled_database_name_with_its_password_hidden(tmp_path: Path, command: str) -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/runwire_no_such_database"
    done = _run(tmp_path, command, RUNWIRE_DATABASE_URL=url)
    _one_line(
        done,
        "database runwire_no_such_database does not exist",
        "postgresql://postgres:***@127.0.0.1:5432/",
        "RUNWIRE_DATABASE_URL",
    )


@pytest.mark.parametrize("command", ["worker", "migrate"])
def test_an_unreachable_database(tmp_path: Path, command: str) -> None:
    url = f"postgresql://postgres:{PASSWORD}@{UNREACHABLE}/runwire"
    done = _run(tmp_path, command, RUNWIRE_DATABASE_URL=url)
    _one_line(done, "cannot reach the database", "connection refused", "RUNWIRE_DATABASE_URL")


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_an_unreachable_bus(tmp_path: Path, command: str) -> None:
    done = _run(tmp_path, command, RUNWIRE_BUS_URL=f"redis://:{PASSWORD}@{UNREACHABLE}")
    _one_line(done, "cannot reach the bus at redis://:***@", "RUNWIRE_BUS_URL")


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_port_in_use(tmp_path: Path, command: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = _run(tmp_path, command, RUNWIRE_PORT=port)
    _one_line(done, f"127.0.0.1:{port}", "address already in use", "RUNWIRE_PORT or --port")
    # Refused before anything started: no database was made for a server that never ran.
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("command", ["serve", "worker", "migrate"])
def test_a_port_that_is_not_a_number(tmp_path: Path, command: str) -> None:
    done = _run(tmp_path, command, RUNWIRE_PORT="abc")
    _one_line(done, "RUNWIRE_PORT: expected a number, got 'abc'")
