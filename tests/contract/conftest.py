"""Contract tests: each compat module's assumptions, checked against the installed libraries."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.support.inprocess import Served, serving

from runwire.app import create_app
from runwire.settings import Settings


@pytest.fixture
async def runwire(tmp_path: Path) -> AsyncIterator[Served]:
    """The real app (SQLite, memory bus, runner) served in the test's loop, its state in reach."""
    # Steps as the test's user, as on every test server: see OWN_USER_STEPS.
    settings = Settings(data_dir=tmp_path / "data", load_examples=False, step_user="")
    with warnings.catch_warnings():
        # Litestar 2.2x deprecates parameter forms that Strawberry's controller and the SSE route
        # use; `runwire serve` only prints that, and these tests are not about it.
        warnings.simplefilter("ignore", DeprecationWarning)
        app = create_app(settings)
    async with serving(app, settings.admin_token_file) as served:
        yield served
