"""`GET /executions/{id}/events` as Server-Sent Events: `id:` is the seq, resumable."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated

import msgspec
from litestar import Request, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from runwire.domain.models import Event
from runwire.graphql.context import Services


def _after_seq(request: Request[object, object, State], after_seq: int | None) -> int:
    """`?afterSeq=` wins; otherwise `Last-Event-ID` (the last seq the client saw); else 0."""
    if after_seq is not None:
        return after_seq
    last_event_id = request.headers.get("last-event-id")
    if not last_event_id:
        return 0
    try:
        return int(last_event_id)
    except ValueError:
        raise ValidationException("Last-Event-ID must be the integer seq of an event") from None


def _message(event: Event) -> ServerSentEventMessage:
    payload = {
        "seq": event.seq,
        "at": event.at.isoformat(),
        "type": event.type.value,
        "stepKey": event.step_key,
        "attempt": event.attempt,
        **event.data,
    }
    return ServerSentEventMessage(
        data=msgspec.json.encode(payload).decode(), event=event.type.value, id=str(event.seq)
    )


@get("/executions/{execution_id:str}/events")
async def execution_events(
    request: Request[object, object, State],
    state: State,
    execution_id: str,
    after_seq: Annotated[int | None, Parameter(query="afterSeq")] = None,
) -> ServerSentEvent:
    services: Services = state.services
    start = _after_seq(request, after_seq)
    if await services.repository.execution(execution_id, with_steps=False) is None:
        raise NotFoundException(f"execution {execution_id} not found")

    async def stream() -> AsyncGenerator[ServerSentEventMessage, None]:
        async for batch in services.hub.follow(execution_id, start):
            for event in batch:
                yield _message(event)

    return ServerSentEvent(stream())
