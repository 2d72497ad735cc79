"""`create_app(settings)`: Litestar setup only — the lifespan runs the core; controller, routes."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.types import LifeSpanReceive, LifeSpanScope, LifeSpanSend, Receive, Scope, Send

from runwire.core import Core
from runwire.events.slow_clients import SlowClients, keep_server_send
from runwire.graphql.controller import graphql_controller
from runwire.graphql.fanout.send_groups import SendGroups
from runwire.graphql.schema.context import Services
from runwire.http import request_ids
from runwire.http.artifacts import artifact_download
from runwire.http.console import console_assets_router, console_page
from runwire.http.edge import refuse_deeply_nested_json
from runwire.http.error_log import UnexpectedErrorsLogged
from runwire.http.graphiql import graphiql_static_router
from runwire.http.health import health, ready
from runwire.http.metrics import metrics
from runwire.http.sse import execution_events
from runwire.http.suite_reports import suite_run_json, suite_run_junit
from runwire.runner.steps.base import StepKind
from runwire.settings import Settings


def create_app(settings: Settings, kinds: Mapping[str, StepKind[Any]] | None = None) -> Litestar:
    """A Litestar app whose lifespan runs the process's core (see core.py) for its lifetime.

    `kinds` replaces the shipped step kinds (as `Core.running` takes them), for embedding.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with (
            Core.running(settings, kinds) as core,
            SlowClients.running(settings.subscriber_stall_seconds) as slow_clients,
        ):
            send_groups = SendGroups(slow_clients)
            app.state.core = core
            app.state.slow_clients = slow_clients
            app.state.services = Services(core=core, send_groups=send_groups)
            # Live followers: the hub's, and subscriptions whose batches a sender sends for them,
            # less those whose clients do not read (behind, or cut and not gone yet).
            app.state.followers = lambda: max(
                0,
                core.hub.follower_count
                + send_groups.parked_count
                - slow_clients.stalled_subscriptions,
            )
            core.metrics.watch_subscribers(app.state.followers)
            _settle_garbage_collector()
            try:
                yield
            finally:
                app.state.services = None
                app.state.core = None

    return _App(
        route_handlers=[
            graphql_controller(settings),
            graphiql_static_router(),
            console_page,
            console_assets_router(),
            health,
            ready,
            metrics,
            execution_events,
            artifact_download,
            suite_run_junit,
            suite_run_json,
        ],
        lifespan=[lifespan],
        state=State({"services": None, "core": None, "slow_clients": None}),
        request_max_body_size=settings.max_body_bytes,
        before_request=refuse_deeply_nested_json("/graphql"),
        logging_config=UnexpectedErrorsLogged(),
        cors_config=cors_config(settings),
        # The API is GraphQL (its schema is at /graphql): no OpenAPI pages, which Litestar would
        # serve unauthenticated at /schema and load from CDNs.
        openapi_config=None,
    )


def cors_config(settings: Settings) -> CORSConfig | None:
    """Browser pages of the allowed origins may call the API; none allowed: no CORS headers.

    A page authenticates with an Authorization header (a token it holds, never a cookie), so
    credentials are never allowed, and `*` (any origin) lets no page act as its visitor. Sockets
    are not subject to CORS: they authenticate in connection_init.
    """
    if not settings.cors_origins:
        return None
    return CORSConfig(
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "POST"],
        # Last-Event-ID: an SSE reader built on fetch resumes with it.
        allow_headers=["authorization", "content-type", "last-event-id"],
        allow_credentials=False,
        # An artifact's name; how long to wait before retrying a 503.
        expose_headers=["Content-Disposition", "Retry-After"],
        max_age=600,
    )


class _App(Litestar):
    async def __call__(
        self,
        scope: Scope | LifeSpanScope,
        receive: Receive | LifeSpanReceive,
        send: Send | LifeSpanSend,
    ) -> None:
        # Slow clients are found by the server's own connection objects (before any wrapper
        # of Litestar's): see events/slow_clients.py.
        keep_server_send(scope, send)
        if scope["type"] in ("http", "websocket"):
            send = request_ids.tag(scope, cast("Send", send))
        await super().__call__(scope, receive, send)


# Allocations (net of frees) between young collections. With the default 700, full collections
# came every few seconds while subscriptions were being made, each longer the more were held;
# P2's p99 fell with every step up to this value (bench/RESULTS.md).
_YOUNG_COLLECTION_EVERY = 50_000


def _settle_garbage_collector() -> None:
    """Collect less often, and never rescan what startup made (modules, schema, app).

    A full collection scans every tracked object; with 1000 subscriptions held its pause of the
    event loop was P2's p99 latency. Startup's objects live as long as
    the process, so they are moved out of the collector's sight; cyclic garbage made later is
    still collected, in fewer, larger young collections.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(_YOUNG_COLLECTION_EVERY, 20, 100)
