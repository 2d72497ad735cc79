"""A request id per HTTP request or socket: the caller's `X-Request-ID` if sane, else a new one.

It is set in the log context (logs.py) for everything the request does, and an HTTP response
says it back in `X-Request-ID`, so a caller can find the server's lines about its request.
"""

from __future__ import annotations

import re
import uuid

from litestar.enums import ScopeType
from litestar.types import Message, Scope, Send

from runwire import logs

HEADER = b"x-request-id"
# What a proxy or client plausibly sends (UUIDs, hex, trace-ish tokens), and nothing a log
# reader could be fooled by (spaces, quotes, newlines) or that would bloat every line.
_SANE = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")


def tag(scope: Scope, send: Send) -> Send:
    """Set this request's id in the log context; `send` that adds it to an HTTP response."""
    given = next((value for name, value in scope["headers"] if name == HEADER), None)
    if given is not None and _SANE.fullmatch(given):
        found = given.decode("ascii")
    else:
        found = uuid.uuid4().hex
    # Not reset afterwards: uvicorn runs each request and socket in a task of its own, whose
    # context ends with it, and the lines logged after the app returns (an unhandled error,
    # the access line) still belong to this request.
    logs.request_id.set(found)
    if scope["type"] != ScopeType.HTTP:
        return send  # a socket's messages go out as they are: nothing to add to them
    header = (HEADER, found.encode("ascii"))

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), header]
        await send(message)

    return send_with_id
