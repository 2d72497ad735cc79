"""A real server per database backend for the client tests; the client's own bus is irrelevant."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.server import Server, running_server

SETTINGS = {"RUNWIRE_RUNNER_SLOTS": "4", "RUNWIRE_GRACE_SECONDS": "0.2"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A real server on SQLite and on Postgres, shared by the tests of one module."""
    directory = tmp_path_factory.mktemp(f"client-{request.param}")
    with running_server(request.param, directory, SETTINGS) as found:
        yield found
