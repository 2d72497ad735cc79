"""`create_app(settings)`: wiring only — lifespan, GraphQL controller, routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from strawberry.litestar import make_graphql_controller
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from runwire.db.engine import Database
from runwire.db.repository import Repository
from runwire.domain.batches import BatchService
from runwire.domain.control import ExecutionControl
from runwire.domain.services import ExecutionService
from runwire.events.bus import Bus
from runwire.events.hub import Hub
from runwire.events.log import EventLog
from runwire.graphql.context import Services
from runwire.graphql.schema import build_schema
from runwire.http.graphiql import graphiql_html, graphiql_static_router
from runwire.http.health import health
from runwire.http.sse import execution_events
from runwire.runner.runner import Runner
from runwire.runner.steps import STEP_KINDS
from runwire.scenarios.catalog import examples_directory, load_directory
from runwire.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> Litestar:
    """A Litestar app whose lifespan opens the database, bus, hub, event log and runner."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            database = await stack.enter_async_context(
                Database.open(
                    settings.effective_database_url,
                    # The embedded default migrates itself; shared Postgres uses `runwire migrate`
                    # once, so replicas starting together do not race on the schema.
                    migrate=settings.effective_database_url.startswith("sqlite"),
                )
            )
            repository = Repository(database)
            bus = await stack.enter_async_context(Bus.connect(settings.bus_url))
            hub = await stack.enter_async_context(
                Hub.running(repository, bus, settings.subscriber_buffer)
            )
            log = await stack.enter_async_context(
                EventLog.running(repository, bus, hub.deliver, settings.flush_interval_ms / 1000)
            )
            runner: Runner | None = None
            if settings.runner_enabled:
                runner = await stack.enter_async_context(
                    Runner.running(repository, log, STEP_KINDS, settings)
                )

            announcing: set[asyncio.Task[None]] = set()

            def wake_runner() -> None:
                if runner is not None:
                    runner.wake()
                # Runners in other processes hear of queued work on the bus, not at their poll.
                task = asyncio.get_running_loop().create_task(log.announce_queued())
                announcing.add(task)
                task.add_done_callback(announcing.discard)

            async def apply_controls(execution_id: str, last_seq: int) -> None:
                # This process's runner applies every pending request, this one included; a
                # runner in another process hears of it on the bus.
                if runner is not None:
                    await runner.apply_controls()
                await log.announce_control(execution_id, last_seq)

            if runner is not None:
                hub.on_control = runner.wake

            executions = ExecutionService(repository, STEP_KINDS, wake_runner, log.announce)
            control = ExecutionControl(
                repository, STEP_KINDS, log.announce, wake_runner, apply_controls
            )
            await _load_scenarios(settings, executions)
            app.state.services = Services(
                repository=repository,
                executions=executions,
                control=control,
                batches=BatchService(repository, executions, control, wake_runner),
                hub=hub,
                runner_slots=settings.runner_slots if runner else 0,
            )
            try:
                yield
            finally:
                app.state.services = None

    async def context_getter(state: State) -> dict[str, Any]:
        return {"services": state.services, "actor": "anonymous"}

    base = make_graphql_controller(
        build_schema(),
        path="/graphql",
        graphql_ide="graphiql" if settings.graphiql else None,
        allow_queries_via_get=False,
        context_getter=context_getter,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
        connection_init_wait_timeout=timedelta(seconds=10),
        max_subscriptions_per_connection=100,
    )

    class GraphQLController(base):  # type: ignore[valid-type,misc]
        @property
        def graphql_ide_html(self) -> str:
            return graphiql_html()

    return Litestar(
        route_handlers=[GraphQLController, graphiql_static_router(), health, execution_events],
        lifespan=[lifespan],
        state=State({"services": None}),
    )


async def _load_scenarios(settings: Settings, executions: ExecutionService) -> None:
    """Save shipped examples and the scenarios directory; unchanged files add no version."""
    directories = [examples_directory()] if settings.load_examples else []
    if settings.scenarios_dir is not None:
        directories.append(settings.scenarios_dir)
    for directory in directories:
        for definition in load_directory(directory, STEP_KINDS):
            await executions.save_scenario(definition.source, "system")
