"""What `runwire serve`, `worker` and `migrate` need before they start, each failure one line.

A database that is down, misspelled or not migrated, or a bus that is down, is an operator's
setting to fix, not a crash: it is reported as `StartupProblem` with what to do, and the CLI
prints that line and exits non-zero. The checks open the database and the bus as the core does,
so they fail the way it would; whatever they do not foresee still fails as itself.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from urllib.parse import urlsplit

import asyncpg

from runwire.db.engine import Database, DatabaseNotMigrated
from runwire.errors import RunwireError
from runwire.events.bus import Bus
from runwire.settings import Settings, redacted_url

_PICCOLO_CONNECT_WARNINGS = r".*Unable to (fetch server version|connect to database)"


class StartupProblem(RunwireError):
    """The server cannot start."""


async def check(settings: Settings) -> None:
    """Raise StartupProblem if the configured database or bus cannot serve this process."""
    url = settings.effective_database_url
    # The embedded SQLite database is made and migrated by the server itself.
    if not url.startswith("sqlite"):
        with database_problems(url):
            async with Database.open(url):
                pass
    if urlsplit(settings.bus_url).scheme != "memory":
        with bus_problems(settings.bus_url):
            async with Bus.connect(settings.bus_url):
                pass


@contextlib.contextmanager
def database_problems(url: str) -> Iterator[None]:
    """Turn the errors of opening the database at `url` that an operator fixes into one line."""
    shown = redacted_url(url)
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "(none)"
    try:
        with warnings.catch_warnings():
            # Piccolo warns in colour of what the error below says in one line.
            warnings.filterwarnings("ignore", message=_PICCOLO_CONNECT_WARNINGS, category=Warning)
            yield
    except DatabaseNotMigrated:
        raise StartupProblem(f"database {name} is not migrated: run `runwire migrate`") from None
    except asyncpg.InvalidCatalogNameError:
        raise StartupProblem(
            f"database {name} does not exist at {shown}: create it (`createdb {name}`) or fix"
            " the name in RUNWIRE_DATABASE_URL"
        ) from None
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError):
        raise StartupProblem(
            f"the database at {shown} refused user {parts.username or '(none)'}: check the"
            " credentials in RUNWIRE_DATABASE_URL"
        ) from None
    except OSError as error:
        raise StartupProblem(
            f"cannot reach the database at {shown} ({_reason(error)}): start Postgres or fix"
            " RUNWIRE_DATABASE_URL"
        ) from None


@contextlib.contextmanager
def bus_problems(url: str) -> Iterator[None]:
    """Turn the errors of connecting to the bus at `url` that an operator fixes into one line."""
    import redis.exceptions

    shown = redacted_url(url)
    try:
        yield
    except ValueError as error:  # an unknown scheme
        raise StartupProblem(f"RUNWIRE_BUS_URL: {error}") from None
    except (OSError, redis.exceptions.ConnectionError) as error:
        raise StartupProblem(
            f"cannot reach the bus at {shown} ({_reason(error)}): start it (Redis or Postgres)"
            " or fix RUNWIRE_BUS_URL"
        ) from None


def _reason(error: BaseException) -> str:
    """The OS's words for a connection failure ("connection refused"), without the drivers'
    wrapping of them."""
    found: BaseException | None = error
    while found is not None:
        if isinstance(found, OSError) and found.errno:
            return os.strerror(found.errno).lower()
        found = found.__cause__ or found.__context__
    return str(error) or type(error).__name__
