"""Shared fixtures: fresh Postgres databases, Redis, and real servers per backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.server import BACKENDS, Server, running_server

pytest_plugins = ["tests.support.fixtures"]


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A real server per backend, shared by the tests of one module."""
    settings = getattr(request.module, "SERVER_SETTINGS", None)
    with running_server(request.param, tmp_path_factory.mktemp(request.param), settings) as found:
        yield found
