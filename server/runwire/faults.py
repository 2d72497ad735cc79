"""What a failed database call means (out of reach, or refused the data), and reporting it once.

An outage (connection lost or refused, server shutting down, database read-only, too many
connections) passes: callers wait and retry, and report it once, not once per attempt. A
refusal (a value the column cannot hold, a broken constraint) will not pass by retrying the
same statement.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time

import asyncpg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

_OUTAGE = (
    OSError,  # refused, reset, unreachable (ConnectionError is one)
    TimeoutError,
    asyncpg.PostgresConnectionError,  # 08xxx
    asyncpg.InterfaceError,  # the connection closed under the call
    asyncpg.exceptions.InternalClientError,  # a pooled connection left mid-protocol by a cut
    asyncpg.exceptions.OperatorInterventionError,  # 57xxx: shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # 53xxx: too many connections, disk full
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # 25006: the database was set read-only
    RedisConnectionError,  # the Redis bus
    RedisTimeoutError,
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


REPORT_EVERY_SECONDS = 30.0
"""A failure that repeats is reported at most this often, with how many were not."""

_last_reported: dict[tuple[str, str], tuple[float, int]] = {}


def report(logger: logging.Logger, what: str, error: BaseException) -> None:
    """Log that `what` failed: an outage in one line, anything else with its traceback; a
    failure that repeats at most every REPORT_EVERY_SECONDS, saying how often it happened."""
    key = (logger.name, what)
    now = time.monotonic()
    last, suppressed = _last_reported.get(key, (-math.inf, 0))
    if now - last < REPORT_EVERY_SECONDS:
        _last_reported[key] = (last, suppressed + 1)
        return
    _last_reported[key] = (now, 0)
    again = f" ({suppressed} more since the last report)" if suppressed else ""
    if is_outage(error):
        logger.warning("%s failed: %s unreachable (%s)%s", what, _which(error), _name(error), again)
    else:
        logger.error("%s failed%s", what, again, exc_info=error)


def _which(error: BaseException) -> str:
    module = type(error).__module__
    return "the bus" if module.startswith("redis") else "the database"


def _name(error: BaseException) -> str:
    return type(error).__name__
