"""`/graphql` as a Litestar controller: HTTP and socket authentication, GraphiQL, fan-out."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from litestar import Controller
from litestar.connection import WebSocket
from litestar.datastructures import Headers, State
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, ServiceUnavailableException
from litestar.types import Scope
from strawberry.exceptions import ConnectionRejectionError
from strawberry.litestar import make_graphql_controller
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from runwire.domain.access import Unauthenticated
from runwire.errors import Unavailable
from runwire.faults import is_outage
from runwire.graphql.fanout.compat.litestar import is_disconnected
from runwire.graphql.fanout.compat.strawberry import dependencies_on_the_loop
from runwire.graphql.fanout.sharing import encode_message
from runwire.graphql.fanout.sockets import SharingTransportWSHandler
from runwire.graphql.schema.build import DocumentLimits, build_schema
from runwire.graphql.schema.context import Services
from runwire.http.bearer import bearer_credential, connection_init_credential
from runwire.http.graphiql import graphiql_html
from runwire.settings import Settings


async def context_getter(state: State, scope: Scope) -> dict[str, Any]:
    """HTTP requests authenticate here (bearer header); sockets in `on_ws_connect`."""
    services: Services = state.services
    actor = None
    context: dict[str, Any] = {"services": services}
    if scope["type"] == ScopeType.HTTP and scope["method"] == "POST":
        headers = Headers.from_scope(scope)
        # A caller's W3C trace context: startExecution and startBatch continue its trace.
        context["trace_headers"] = (headers.get("traceparent"), headers.get("tracestate"))
        try:
            actor = await services.core.authenticator.authenticate(bearer_credential(headers))
        except Unauthenticated as error:
            raise NotAuthorizedException(
                error.message, headers={"WWW-Authenticate": 'Bearer realm="runwire"'}
            ) from None
        except Exception as error:
            if not is_outage(error):
                raise
            raise ServiceUnavailableException(
                Unavailable().message, headers={"Retry-After": "1"}
            ) from None
    context["actor"] = actor
    return context


UNAVAILABLE_CLOSE_SECONDS = 2.0
"""How long a socket whose credential could not be checked stays before it is closed (1013)."""
_closing: set[asyncio.Task[None]] = set()


def _close_later(socket: WebSocket[Any, Any, Any]) -> None:
    if is_disconnected(socket):
        return
    task = asyncio.get_running_loop().create_task(
        socket.close(code=1013, reason="the service is unavailable; try again later")
    )
    _closing.add(task)
    task.add_done_callback(_closing.discard)


def graphql_controller(settings: Settings) -> type[Controller]:
    """The controller serving `/graphql`; the per-process services come from `state.services`."""
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
        dependencies = dependencies_on_the_loop(base.dependencies)

        @property
        def graphql_ide_html(self) -> str:
            return graphiql_html()

        def encode_json(self, data: object) -> str | bytes:
            return encode_message(data)

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
            except Exception as error:
                if not is_outage(error):
                    raise
                # The credential cannot be checked now. Refusing (4403) would say it is bad;
                # the socket is acknowledged instead, every operation on it answers UNAVAILABLE,
                # and it is closed "try again later" (1013) a moment after.
                context["unavailable"] = True
                asyncio.get_running_loop().call_later(
                    UNAVAILABLE_CLOSE_SECONDS, _close_later, socket
                )
                return None
            context["actor"] = actor

            async def end() -> None:
                await socket.close(code=4403, reason="credential revoked, expired or role changed")

            # Strawberry reads the socket until the client's close arrives (also after a close
            # the server sends), so its state ends as "disconnect" and the watchdog drops it.
            services.core.sessions.register(actor, end, lambda: is_disconnected(socket))
            return None

    return GraphQLController
