"""What a failed database call means: the database is out of reach, or it refused the data.

An outage (connection lost or refused, server shutting down, database read-only, too many
connections) passes: callers wait and retry, and report it once, not once per attempt. A
refusal (a value the column cannot hold, a broken constraint) will not pass by retrying the
same statement.
"""

from __future__ import annotations

import sqlite3

import asyncpg

_OUTAGE = (
    OSError,  # refused, reset, unreachable (ConnectionError is one)
    TimeoutError,
    asyncpg.PostgresConnectionError,  # 08xxx
    asyncpg.InterfaceError,  # the connection closed under the call
    asyncpg.exceptions.OperatorInterventionError,  # 57xxx: shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # 53xxx: too many connections, disk full
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # 25006: the database was set read-only
)
_REFUSAL = (
    asyncpg.exceptions.DataError,  # 22xxx: a value the column cannot hold
    asyncpg.exceptions.IntegrityConstraintViolationError,  # 23xxx: a constraint says no
    sqlite3.IntegrityError,
    sqlite3.DataError,
)


def is_outage(error: BaseException) -> bool:
    """Whether the database could not be reached or written just now (worth waiting for)."""
    if isinstance(error, sqlite3.OperationalError):
        # "database is locked", "disk I/O error", "unable to open database file"
        return True
    return isinstance(error, _OUTAGE)


def is_refusal(error: BaseException) -> bool:
    """Whether the database refused the data itself: the same write would fail again."""
    return isinstance(error, _REFUSAL)
