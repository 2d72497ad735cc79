"""`GET /executions/{id}/events` as Server-Sent Events: `id:` is the seq, resumable.

Authenticated by `Authorization: Bearer …` or by `?ticket=` from `createEventStreamTicket`
(browsers' EventSource cannot send headers); an API token in the URL is refused, since URLs end
up in logs and histories.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Request, get
from litestar.datastructures import State
from litestar.exceptions import (
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ServiceUnavailableException,
    ValidationException,
)
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from runwire.core import Core
from runwire.domain.access import Actor, Forbidden, Permission, Unauthenticated
from runwire.domain.models import Event
from runwire.errors import Unavailable
from runwire.events.slow_clients import SlowClients
from runwire.faults import is_outage
from runwire.http.bearer import bearer_credential
from runwire.scenarios.limits import unstorable

T = TypeVar("T")


def _after_seq(request: Request[object, object, State], after_seq: int | None) -> int:
    """The later of `?afterSeq=` and `Last-Event-ID` (the last seq the client saw); else 0.

    A browser's EventSource reconnects to the same URL, `?afterSeq=` included, and says how far
    it got in Last-Event-ID: taking the later of the two resumes it instead of replaying.
    """
    last_event_id = request.headers.get("last-event-id")
    if not last_event_id:
        return 0 if after_seq is None else after_seq
    try:
        seen = int(last_event_id)
    except ValueError:
        raise ValidationException("Last-Event-ID must be the integer seq of an event") from None
    return seen if after_seq is None else max(seen, after_seq)


# A comment line: EventSource and SSE readers ignore it, proxies see bytes on the connection.
# (`data=None`: Litestar's default data would make it an empty event.)
_KEEPALIVE = ServerSentEventMessage(comment="keepalive", data=None)


# Objects in an event's data that Runwire itself defines: their keys are camelCased too. Any
# other value is sent as stored, since it may hold the user's own keys (a step's output, an
# agent's tool input, a span's attributes).
_RUNWIRE_OBJECTS = frozenset({"step_totals", "execution_totals"})


@functools.cache
def camel_case(name: str) -> str:
    """`exit_code` as `exitCode`: the casing of the GraphQL fields. (Few names: cached.)"""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def event_payload(event: Event) -> dict[str, object]:
    """An event as SSE `data`: its envelope, then its own fields, every key camelCase."""
    payload: dict[str, object] = {
        "seq": event.seq,
        "at": event.at.isoformat(),
        "type": event.type.value,
        "stepKey": event.step_key,
        "attempt": event.attempt,
    }
    for key, value in event.data.items():
        if key in _RUNWIRE_OBJECTS and isinstance(value, dict):
            value = {camel_case(inner): item for inner, item in value.items()}
        payload[camel_case(key)] = value
    return payload


def _message(event: Event) -> ServerSentEventMessage:
    return ServerSentEventMessage(
        data=msgspec.json.encode(event_payload(event)).decode(),
        event=event.type.value,
        id=str(event.seq),
    )


async def _actor(
    request: Request[object, object, State],
    core: Core,
    execution_id: str,
    ticket: str | None,
) -> Actor:
    if "token" in request.query_params or "access_token" in request.query_params:
        raise NotAuthorizedException(
            "never put an API token in a URL: send it as Authorization: Bearer, or use a ticket"
            " from createEventStreamTicket"
        )
    try:
        if ticket is not None:
            actor = await core.authenticator.redeem_ticket(ticket, execution_id)
        else:
            actor = await core.authenticator.authenticate(bearer_credential(request.headers))
        actor.require(Permission.EXECUTION_READ)
    except Unauthenticated as error:
        raise NotAuthorizedException(
            error.message, headers={"WWW-Authenticate": 'Bearer realm="runwire"'}
        ) from None
    except Forbidden as error:
        raise PermissionDeniedException(error.message) from None
    return actor


@get("/executions/{execution_id:str}/events")
async def execution_events(
    request: Request[object, object, State],
    state: State,
    execution_id: str,
    after_seq: Annotated[int | None, Parameter(query="afterSeq")] = None,
    ticket: Annotated[str | None, Parameter(query="ticket")] = None,
) -> ServerSentEvent:
    core: Core = state.core
    if unstorable(execution_id):
        # No execution has such an id, and the database would refuse the lookup (Postgres).
        raise NotFoundException("execution not found")
    try:
        actor = await _actor(request, core, execution_id, ticket)
        start = _after_seq(request, after_seq)
        # Another workspace's execution answers exactly like a missing one.
        found = await core.store.executions.execution(
            execution_id, workspace=actor.workspace_id, with_steps=False
        )
    except Exception as error:
        if not is_outage(error):
            raise
        # Retryable: an EventSource reconnects by itself; other clients see Retry-After.
        raise ServiceUnavailableException(
            Unavailable().message, headers={"Retry-After": "1"}
        ) from None
    if found is None:
        raise NotFoundException(f"execution {execution_id} not found")
    follow = core.hub.follow(execution_id, start, workspace=actor.workspace_id)
    keepalive_seconds = core.settings.sse_keepalive_seconds

    async def stream() -> AsyncGenerator[ServerSentEventMessage, None]:
        revoked = asyncio.Event()

        async def end() -> None:
            revoked.set()

        stop_watching = core.sessions.register(actor, end, lambda: False)
        # A client that stops reading is cut after a while (the stream ends; it resumes with
        # Last-Event-ID), not waited for (events/slow_clients.py).
        slow_clients: SlowClients | None = state.get("slow_clients")
        watching = (
            contextlib.nullcontext() if slow_clients is None else slow_clients.stream(request.scope)
        )
        try:
            with watching:
                batches = _until(revoked, follow, quiet_seconds=keepalive_seconds)
                async with contextlib.aclosing(batches):
                    async for batch in batches:
                        if batch is None:
                            yield _KEEPALIVE
                            continue
                        for event in batch:
                            yield _message(event)
                if revoked.is_set():
                    yield ServerSentEventMessage(
                        event="error",
                        data="the credential was revoked, expired or its role changed;"
                        " stream closed",
                    )
        finally:
            stop_watching()
            await follow.aclose()

    return ServerSentEvent(stream())


async def _until(
    stop: asyncio.Event, items: AsyncIterator[T], *, quiet_seconds: float | None = None
) -> AsyncGenerator[T | None, None]:
    """`items` until they end or `stop` is set; None after each `quiet_seconds` without one."""
    stopped: asyncio.Future[object] = asyncio.ensure_future(stop.wait())
    following: asyncio.Future[T] | None = None
    try:
        while True:
            if following is None:
                following = asyncio.ensure_future(anext(items))
            waited: set[asyncio.Future[Any]] = {following, stopped}
            await asyncio.wait(waited, timeout=quiet_seconds, return_when=asyncio.FIRST_COMPLETED)
            if stopped.done() and not following.done():
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await following
                return
            if not following.done():
                yield None  # quiet for quiet_seconds; the same next item is awaited again
                continue
            try:
                item = following.result()
            except StopAsyncIteration:
                return
            following = None
            yield item
    finally:
        stopped.cancel()
        # Closed while waiting (the client went away, or was cut): `items` is still running
        # in `following`, and could not be closed after this.
        if following is not None and not following.done():
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await following
