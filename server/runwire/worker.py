"""`create_worker_app(settings)`: a runner-only process's app: `/health`, `/ready`, `/metrics`.

A worker runs executions for API replicas that have no runner (`RUNWIRE_RUNNER=false`): they
queue work and serve clients, it claims and runs. Its HTTP side exists for orchestrators'
probes and Prometheus only; GraphQL and SSE stay on the API replicas.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from litestar import Litestar
from litestar.datastructures import State

from runwire.core import Core
from runwire.http.error_log import UnexpectedErrorsLogged
from runwire.http.health import health, ready
from runwire.http.metrics import metrics
from runwire.settings import Settings

logger = logging.getLogger(__name__)


def create_worker_app(settings: Settings) -> Litestar:
    """A Litestar app whose lifespan runs the process's core, runner included, for its lifetime."""
    settings = settings.with_overrides(runner_enabled=True)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Leaving this block is the runner's drain on SIGTERM, as in `runwire serve`.
        async with Core.running(settings) as core:
            assert core.runner is not None
            app.state.core = core
            # Nobody follows executions here; /health reports the hub's count all the same.
            app.state.followers = lambda: core.hub.follower_count
            # The owner is what the database records on each claimed execution: this line ties
            # a claim to a process (and its container) in the logs.
            logger.info(
                "worker %s: running up to %d executions at once",
                core.runner.owner,
                core.runner_slots,
            )
            try:
                yield
            finally:
                app.state.core = None

    return Litestar(
        route_handlers=[health, ready, metrics],
        lifespan=[lifespan],
        state=State({"core": None}),
        # Probes and metrics only: no OpenAPI pages to serve or to keep in memory.
        openapi_config=None,
        logging_config=UnexpectedErrorsLogged(),
    )
