"""A real server for the client tests, on SQLite unless a module's SERVER_BACKENDS names more."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.server import DEFAULT_BACKEND, Server, running_server

SETTINGS = {"RUNWIRE_RUNNER_SLOTS": "4", "RUNWIRE_GRACE_SECONDS": "0.2"}


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A real server, shared by the tests of one module (and backend)."""
    backend = getattr(request, "param", DEFAULT_BACKEND)
    directory = tmp_path_factory.mktemp(f"client-{backend}")
    with running_server(backend, directory, SETTINGS) as found:
        yield found
