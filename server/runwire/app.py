"""`create_app(settings)`: Litestar setup only — the lifespan runs the core; controller, routes."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from litestar import Litestar
from litestar.connection import WebSocket
from litestar.datastructures import Headers, State
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException
from litestar.types import Scope
from strawberry.exceptions import ConnectionRejectionError
from strawberry.litestar import make_graphql_controller
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from runwire.core import Core
from runwire.domain.access import Unauthenticated
from runwire.graphql.context import Services
from runwire.graphql.relay import Relays
from runwire.graphql.schema import DocumentLimits, build_schema
from runwire.graphql.sharing import SharingTransportWSHandler, encode_next_message
from runwire.http.bearer import bearer_credential, connection_init_credential
from runwire.http.edge import refuse_deeply_nested_json
from runwire.http.graphiql import graphiql_html, graphiql_static_router
from runwire.http.health import health
from runwire.http.sse import execution_events
from runwire.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> Litestar:
    """A Litestar app whose lifespan runs the process's core (see core.py) for its lifetime."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with Core.running(settings) as core:
            relays = Relays()
            app.state.core = core
            app.state.services = Services(core=core, relays=relays)
            app.state.followers = lambda: core.hub.follower_count + relays.parked_count
            _settle_garbage_collector()
            try:
                yield
            finally:
                app.state.services = None
                app.state.core = None

    async def context_getter(state: State, scope: Scope) -> dict[str, Any]:
        """HTTP requests authenticate here (bearer header); sockets in `on_ws_connect`."""
        services: Services = state.services
        actor = None
        if scope["type"] == ScopeType.HTTP and scope["method"] == "POST":
            try:
                actor = await services.core.authenticator.authenticate(
                    bearer_credential(Headers.from_scope(scope))
                )
            except Unauthenticated as error:
                raise NotAuthorizedException(
                    error.message, headers={"WWW-Authenticate": 'Bearer realm="runwire"'}
                ) from None
        return {"services": services, "actor": actor}

    base = make_graphql_controller(
        build_schema(
            DocumentLimits(
                max_depth=settings.max_query_depth,
                max_aliases=settings.max_aliases,
                max_tokens=settings.max_tokens,
                introspection=settings.introspection,
            )
        ),
        path="/graphql",
        graphql_ide="graphiql" if settings.graphiql else None,
        # Only POST with a JSON body: no operation over GET (so no mutation from a link or an
        # <img>), no multipart, no form posts.
        allow_queries_via_get=False,
        multipart_uploads_enabled=False,
        context_getter=context_getter,
        # graphql-transport-ws only: the legacy graphql-ws subprotocol is refused, so there is
        # one socket protocol to hold to the rules below.
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        connection_init_wait_timeout=timedelta(seconds=settings.connection_init_timeout_seconds),
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
    )

    class GraphQLController(base):  # type: ignore[valid-type,misc]
        graphql_transport_ws_handler_class = SharingTransportWSHandler

        @property
        def graphql_ide_html(self) -> str:
            return graphiql_html()

        def encode_json(self, data: object) -> str | bytes:
            # A live batch's `next` message reuses the JSON encoded once for all its sockets.
            shared = encode_next_message(data)
            return shared if shared is not None else super().encode_json(data)

        async def on_ws_connect(self, context: dict[str, Any]) -> dict[str, object] | None:
            """Authenticate the socket from connection_init; watch it until it closes."""
            services: Services = context["services"]
            socket: WebSocket[Any, Any, Any] = context["socket"]
            try:
                actor = await services.core.authenticator.authenticate(
                    connection_init_credential(context.get("connection_params"))
                )
            except Unauthenticated as error:
                raise ConnectionRejectionError({"message": error.message}) from None
            context["actor"] = actor

            async def end() -> None:
                await socket.close(code=4403, reason="credential revoked, expired or role changed")

            # Strawberry reads the socket until the client's close arrives (also after a close
            # the server sends), so its state ends as "disconnect" and the watchdog drops it.
            services.core.sessions.register(
                actor, end, lambda: socket.connection_state == "disconnect"
            )
            return None

    return Litestar(
        route_handlers=[GraphQLController, graphiql_static_router(), health, execution_events],
        lifespan=[lifespan],
        state=State({"services": None, "core": None}),
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
