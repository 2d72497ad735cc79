"""`create_app(settings)`: wiring only — lifespan, GraphQL controller, routes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
from collections.abc import AsyncIterator

from litestar import Litestar
from litestar.datastructures import State

from runwire.db.access import AccessRepository
from runwire.db.engine import Database
from runwire.db.metrics import execution_metrics
from runwire.db.repository import Repository
from runwire.domain.access import system_actor
from runwire.domain.batches import BatchService
from runwire.domain.control import ExecutionControl
from runwire.domain.identity import Authenticator, JwtSettings
from runwire.domain.services import ExecutionService
from runwire.domain.sessions import LiveSessions
from runwire.domain.tokens import TokenService
from runwire.events.bus import Bus
from runwire.events.hub import Hub
from runwire.events.log import EventLog
from runwire.graphql.controller import graphql_controller
from runwire.graphql.fanout.send_groups import SendGroups
from runwire.graphql.schema.context import Services
from runwire.http.edge import refuse_deeply_nested_json
from runwire.http.graphiql import graphiql_static_router
from runwire.http.health import health
from runwire.http.sse import execution_events
from runwire.runner.runner import Runner
from runwire.runner.steps import STEP_KINDS
from runwire.scenarios.catalog import examples_directory, load_directory
from runwire.settings import Settings

logger = logging.getLogger(__name__)

# What the first start on an empty database creates.
DEFAULT_ORGANIZATION = "default"
DEFAULT_WORKSPACE = "default"


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
            access = AccessRepository(database)
            issued = await access.bootstrap(DEFAULT_ORGANIZATION, DEFAULT_WORKSPACE)
            if issued is not None:
                _hand_over_admin_token(settings, issued.secret)
            tokens = TokenService(access)
            authenticator = Authenticator(
                tokens,
                access.workspace,
                await access.secret("event-stream-tickets"),
                _identity_provider(settings),
            )
            sessions = await stack.enter_async_context(
                LiveSessions.running(authenticator.still_valid, settings.session_check_seconds)
            )
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
            await _load_scenarios(settings, executions, access)
            app.state.services = Services(
                repository=repository,
                executions=executions,
                control=control,
                batches=BatchService(repository, executions, control, wake_runner),
                hub=hub,
                send_groups=SendGroups(),
                runner_slots=settings.runner_slots if runner else 0,
                access=access,
                tokens=tokens,
                authenticator=authenticator,
                sessions=sessions,
                metrics=execution_metrics,
            )
            _settle_garbage_collector()
            try:
                yield
            finally:
                app.state.services = None

    GraphQLController = graphql_controller(settings)
    return Litestar(
        route_handlers=[GraphQLController, graphiql_static_router(), health, execution_events],
        lifespan=[lifespan],
        state=State({"services": None}),
        request_max_body_size=settings.max_body_bytes,
        before_request=refuse_deeply_nested_json("/graphql"),
    )


# Allocations (net of frees) between young collections. With the default 700, full collections
# came every few seconds while subscriptions were being made and grew to 190-340 ms with 1000 of
# them; at 5,000 each middle collection took ~35 ms. Measured in P2 (1000 subscribers, 16.7k
# deliveries/s): p99 380 ms with the defaults, 123-129 ms at 5,000, 100 ms at 50,000.
_YOUNG_COLLECTION_EVERY = 50_000


def _settle_garbage_collector() -> None:
    """Collect less often, and never rescan what startup made (modules, schema, app).

    A full collection scans every tracked object; with 1000 subscriptions held it paused the
    event loop for up to 340 ms, which was P2's p99 latency. Startup's objects live as long as
    the process, so they are moved out of the collector's sight; cyclic garbage made later is
    still collected, in fewer, larger young collections.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(_YOUNG_COLLECTION_EVERY, 20, 100)


def _hand_over_admin_token(settings: Settings, secret: str) -> None:
    """Write the first admin token to a file only the user can read, and show it once."""
    path = settings.admin_token_file
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(secret + "\n")
    # Straight to the terminal, never through logging: log files outlive this moment.
    sys.stderr.write(
        f"\nRunwire created workspace {DEFAULT_WORKSPACE!r} and its first admin API token"
        f" (shown once):\n\n    {secret}\n\nIt is also in {path.resolve()} (readable only by"
        " you). Send it as: Authorization: Bearer <token>\n\n"
    )
    sys.stderr.flush()


def _identity_provider(settings: Settings) -> JwtSettings | None:
    if settings.jwt_issuer is None and settings.jwt_key is None:
        return None
    if settings.jwt_issuer is None or settings.jwt_key is None:
        raise ValueError("RUNWIRE_JWT_ISSUER and RUNWIRE_JWT_KEY must be set together")
    return JwtSettings(
        issuer=settings.jwt_issuer,
        key=settings.jwt_key,
        algorithms=settings.jwt_algorithms,
        audience=settings.jwt_audience,
        workspace_claim=settings.jwt_workspace_claim,
        role_claim=settings.jwt_role_claim,
    )


async def _load_scenarios(
    settings: Settings, executions: ExecutionService, access: AccessRepository
) -> None:
    """Save shipped examples and the scenarios directory into the default workspace.

    Unchanged files add no version.
    """
    directories = [examples_directory()] if settings.load_examples else []
    if settings.scenarios_dir is not None:
        directories.append(settings.scenarios_dir)
    workspace = await access.workspace(DEFAULT_WORKSPACE)
    if workspace is None:
        if directories:
            logger.warning("no workspace %r: shipped scenarios not loaded", DEFAULT_WORKSPACE)
        return
    for directory in directories:
        for definition in load_directory(directory, STEP_KINDS):
            await executions.save_scenario(definition.source, system_actor(workspace.id))
