"""The process's one database engine: open it, bind every table to it, migrate, run statements."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiosqlite
from piccolo.apps.migrations.commands.base import BaseMigrationManager
from piccolo.apps.migrations.commands.forwards import run_forwards
from piccolo.apps.migrations.tables import Migration
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType, dict_factory
from piccolo.querystring import QueryString
from piccolo.table import Table

from runwire.db import piccolo_conf
from runwire.db.tables import ALL_TABLES
from runwire.errors import RunwireError
from runwire.settings import redacted_url

# Piccolo's migration runner locates its engine through this module; setting the name here (not
# in settings.py) keeps it an internal detail rather than a user-facing setting.
os.environ.setdefault("PICCOLO_CONF", "runwire.db.piccolo_conf")


class DatabaseUrlInvalid(RunwireError):
    """The database URL is not a SQLite or Postgres URL."""


class DatabaseNotMigrated(RunwireError):
    """The database schema is behind this version of Runwire."""


@dataclass(frozen=True, slots=True)
class Database:
    """The engine every table of this process is bound to."""

    engine: Engine[Any]
    url: str

    @property
    def is_postgres(self) -> bool:
        return isinstance(self.engine, PostgresEngine)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str, *, migrate: bool = False) -> AsyncIterator[Database]:
        """Bind all tables to the engine for `url` (with a pool on Postgres) for the block."""
        engine = engine_for(url)
        bind(engine)
        if isinstance(engine, SQLiteEngine):
            # WAL lets readers (subscribers, history) proceed while the event log writes.
            await engine.run_ddl("PRAGMA journal_mode=WAL")
        database = cls(engine=engine, url=url)
        if migrate:
            await database.migrate()
        elif pending := await database.pending_migrations():
            raise DatabaseNotMigrated(
                f"{len(pending)} migration(s) not applied to {redacted_url(url)}:"
                " run `runwire migrate`"
            )
        if isinstance(engine, PostgresEngine):
            await engine.start_connection_pool(min_size=2, max_size=20, reset=_keep_session)
        try:
            yield database
        finally:
            if isinstance(engine, PostgresEngine):
                await engine.close_connection_pool()

    def pool_size(self) -> int:
        """Connections the Postgres pool holds now (0 on SQLite, which has no pool)."""
        pool = self.engine.pool if isinstance(self.engine, PostgresEngine) else None
        return 0 if pool is None else int(pool.get_size())

    def pool_in_use(self) -> int:
        """Connections of the Postgres pool lent out now (0 on SQLite)."""
        pool = self.engine.pool if isinstance(self.engine, PostgresEngine) else None
        return 0 if pool is None else int(pool.get_size() - pool.get_idle_size())

    def write(self) -> Any:
        """A write transaction; on SQLite IMMEDIATE, so two writers queue instead of deadlock."""
        if isinstance(self.engine, SQLiteEngine):
            return SQLiteTransaction(self.engine, TransactionType.immediate)
        assert isinstance(self.engine, PostgresEngine)
        return PostgresTransaction(self.engine)

    def snapshot(self) -> Any:
        """A read-only transaction that reads one snapshot from its first read to its end."""
        if isinstance(self.engine, SQLiteEngine):
            # In WAL mode a deferred transaction reads one snapshot from its first read to its
            # end, and takes no write lock, so the event log keeps writing meanwhile.
            return SQLiteTransaction(self.engine, TransactionType.deferred)
        assert isinstance(self.engine, PostgresEngine)
        return PostgresTransaction(self.engine, isolation="repeatable_read", readonly=True)

    async def fetch(
        self, sql: str, *args: Any, statement_timeout: float | None = None
    ) -> Sequence[Mapping[str, Any]]:
        """The rows of one statement with `{}` placeholders, in the current transaction if any.

        Rows read by column name: asyncpg's records on Postgres, dicts on SQLite. A
        `statement_timeout` (Postgres) is the driver's: the statement is cancelled on the server
        and the connection stays usable, which cancelling the awaiting task does not promise.
        """
        if isinstance(self.engine, PostgresEngine):
            # Piccolo's query building and row copying cost more than asyncpg's own fetch
            # (a history page spent most of its time there), so Postgres goes straight to it.
            numbered = dollar_numbered(sql)
            transaction = self.engine.current_transaction.get()
            if transaction is not None:
                connection = transaction.connection
                return list(await connection.fetch(numbered, *args, timeout=statement_timeout))
            pool = self.engine.pool
            assert pool is not None, "the Postgres pool is started by Database.open"
            return list(await pool.fetch(numbered, *args, timeout=statement_timeout))
        rows: list[dict[str, Any]] = await self.engine.run_querystring(QueryString(sql, *args))
        return rows

    async def execute_postgres(self, sql: str, *args: Any) -> None:
        """One Postgres statement (`$n` placeholders) in the current transaction, else pooled."""
        assert isinstance(self.engine, PostgresEngine)
        transaction = self.engine.current_transaction.get()
        if transaction is not None:
            await transaction.connection.execute(sql, *args)
            return
        pool = self.engine.pool
        assert pool is not None, "the Postgres pool is started by Database.open"
        await pool.execute(sql, *args)

    def connection(self) -> Any:
        """The driver connection (asyncpg or aiosqlite) of the current write transaction."""
        transaction = self.engine.current_transaction.get()
        assert transaction is not None, "only inside Database.write()"
        return transaction.connection

    async def migrate(self) -> None:
        """Apply every Piccolo migration that has not run yet."""
        with contextlib.redirect_stdout(None):
            result = await run_forwards(app_name="runwire")
        if not result.success:
            raise RunwireError(f"migration failed: {result.message}")

    async def pending_migrations(self) -> list[str]:
        """Migration ids in this package that the database has not applied."""
        manager = BaseMigrationManager()
        app = manager.get_app_config("runwire")
        known = manager.get_migration_ids(
            manager.get_migration_modules(app.resolved_migrations_folder_path)
        )
        if not await Migration.table_exists():
            return list(known)
        applied = await Migration.get_migrations_which_ran(app_name="runwire")
        return sorted(set(known) - set(applied))


class PostgresTransaction:
    """One transaction on one pooled connection, given back whatever became of the connection.

    Piccolo's own transaction neither releases its connection nor stops being the task's current
    transaction when COMMIT or ROLLBACK fails, which is what a cut connection does: the pool then
    loses a connection for good, and the task keeps using the dead one for every later query.
    This one sets itself as Piccolo's current transaction (Piccolo's queries inside it read only
    its `connection`), and always undoes both. Inside another, it joins that one.
    """

    def __init__(
        self, engine: PostgresEngine, *, isolation: str | None = None, readonly: bool = False
    ) -> None:
        self._engine = engine
        self._isolation = isolation
        self._readonly = readonly
        self._joined = False
        self.connection: Any = None

    async def __aenter__(self) -> PostgresTransaction:
        outer = self._engine.current_transaction.get()
        if outer is not None:
            self._joined = True
            self.connection = outer.connection
            return self
        pool = self._engine.pool
        assert pool is not None, "the Postgres pool is started by Database.open"
        self.connection = await pool.acquire()
        try:
            self._transaction = self.connection.transaction(
                isolation=self._isolation, readonly=self._readonly
            )
            await self._transaction.start()
        except BaseException:
            await _give_back(pool, self.connection)
            raise
        self._token = self._engine.current_transaction.set(self)  # type: ignore[arg-type]
        return self

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> None:
        if self._joined:
            return
        pool = self._engine.pool
        assert pool is not None
        try:
            if exception is None:
                await self._transaction.commit()
            else:
                with contextlib.suppress(Exception):  # the connection may be gone: it rolls back
                    await self._transaction.rollback()
        finally:
            self._engine.current_transaction.reset(self._token)
            await _give_back(pool, self.connection)


class SQLiteTransaction:
    """One transaction on a connection of its own, closed whatever becomes of the transaction.

    Piccolo's SQLite transaction leaves its connection open when BEGIN fails or is cancelled (a
    writer cancelled while BEGIN IMMEDIATE waits for the lock) and when ROLLBACK fails. Such a
    connection keeps aiosqlite's worker thread, which keeps the process from exiting, and once
    its BEGIN IMMEDIATE gets the lock it holds the database's write lock until the process ends.
    This one closes the connection on every path, and, like Piccolo's, is the engine's current
    transaction for the block (Piccolo's queries inside it use its `connection`). Inside another,
    it joins that one.
    """

    def __init__(self, engine: SQLiteEngine, transaction_type: TransactionType) -> None:
        self._engine = engine
        self._transaction_type = transaction_type
        self._joined = False
        self.connection: Any = None

    async def __aenter__(self) -> SQLiteTransaction:
        outer = self._engine.current_transaction.get()
        if outer is not None:
            self._joined = True
            self.connection = outer.connection
            return self
        # aiosqlite stops the connection's thread itself if opening it fails or is cancelled.
        self.connection = await aiosqlite.connect(**self._engine.connection_kwargs)
        try:
            self.connection.row_factory = dict_factory
            await self.connection.execute("PRAGMA foreign_keys = 1")
            await self.connection.execute(f"BEGIN {self._transaction_type.value}")
        except BaseException:
            # Queued behind the BEGIN in the connection's thread, without waiting for it: a
            # BEGIN IMMEDIATE still waiting for the lock may get it later, and is then rolled back
            # as the connection closes. (Waiting here could wait out the whole busy timeout.)
            self.connection.stop()
            raise
        self._token = self._engine.current_transaction.set(self)  # type: ignore[arg-type]
        return self

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> None:
        if self._joined:
            return
        try:
            if exception is None:
                await self.connection.execute("COMMIT")
            else:
                with contextlib.suppress(Exception):  # closing rolls back whatever is left
                    await self.connection.execute("ROLLBACK")
        finally:
            self._engine.current_transaction.reset(self._token)
            # aiosqlite's close stops the thread in its own `finally`, cancelled or not.
            await self.connection.close()


async def _give_back(pool: Any, connection: Any) -> None:
    """Return a connection to the pool; one that cannot go back is closed for good."""
    try:
        await pool.release(connection)
    except Exception:
        connection.terminate()


def engine_for(url: str) -> Engine[Any]:
    """A Piccolo engine for a SQLAlchemy-style SQLite URL or a Postgres URL."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # sqlite:////abs/path.sqlite → /abs/path.sqlite; sqlite:///rel.sqlite → rel.sqlite
        path = url[len("sqlite:///") :]
        if not path:
            raise DatabaseUrlInvalid(f"no file path in database URL {redacted_url(url)}")
        # The database is the server's alone: a new file 0600 in a new directory 0700 (SQLite
        # gives its -wal and -shm files the database file's mode).
        Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        return SQLiteEngine(path=path, timeout=30)
    if parts.scheme in {"postgres", "postgresql"}:
        return PostgresEngine(config={"dsn": url})
    raise DatabaseUrlInvalid(f"unsupported database URL {redacted_url(url)}")


def stored_datetime(value: Any) -> datetime:
    """A timestamp as the engine returns it: a datetime (asyncpg) or its text (SQLite)."""
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def optional_stored_datetime(value: Any) -> datetime | None:
    return None if value is None else stored_datetime(value)


def bind(engine: Engine[Any]) -> None:
    """Point every table (ours and Piccolo's migration table) at `engine`."""
    piccolo_conf.DB = engine
    tables: list[type[Table]] = [*ALL_TABLES, Migration]
    for table in tables:
        table._meta.db = engine


def numbered(sql: str) -> str:
    """SQLite's `?` placeholders as Postgres's `$1, $2, …`."""
    parts = sql.split("?")
    return "".join(f"{part}${index}" for index, part in enumerate(parts[:-1], 1)) + parts[-1]


def dollar_numbered(sql: str) -> str:
    """Piccolo's `{}` placeholders as Postgres's `$1, $2, …`."""
    parts = sql.split("{}")
    return "".join(f"{part}${index}" for index, part in enumerate(parts[:-1], 1)) + parts[-1]


async def _keep_session(connection: Any) -> None:
    """Nothing to reset when a connection returns to the pool (asyncpg rolls back an open
    transaction first, in any case).

    asyncpg's default reset sends `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`
    on every release — after each transaction and each statement outside one: a round trip
    each time, about an eighth of a start's CPU. Runwire leaves none of that behind on a pooled
    connection: its only advisory lock is transaction-scoped (the claim), the bus LISTENs on a
    connection of its own, and it sets no session variables and keeps no cursors open.
    """


def marks(values: Sequence[object]) -> str:
    """One `{}` placeholder per value, comma-separated, for an IN list."""
    return ", ".join("{}" for _ in values)
