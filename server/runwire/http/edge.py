"""Request guards in front of the GraphQL endpoint, for what Strawberry does not check."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from itertools import accumulate
from typing import Any

from litestar import Request
from litestar.exceptions import ClientException

# JSON nested deeper than this is refused before it is parsed: Python's json raises
# RecursionError near 1000 levels, which Strawberry does not catch (a bare 500), and anything
# later recursing over deeply nested variables (inputs, templating) would fail the same way.
# Requests themselves need a handful of levels; inputs a few dozen at most.
MAX_JSON_NESTING = 100

# A string literal, to its closing quote or, unterminated, to the end: every quote starts at
# most one match and matches are never retried, so the scan stays linear in the body.
_STRING = re.compile(rb'"(?:[^"\\]++|\\[\s\S]?)*+(?:"|\Z)')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_nesting(body: bytes) -> int:
    """How deep arrays and objects nest in `body`, read as JSON (linear time, no parsing)."""
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def refuse_deeply_nested_json(
    path: str, limit: int = MAX_JSON_NESTING
) -> Callable[[Request[Any, Any, Any]], Awaitable[None]]:
    """A before-request hook: a JSON POST to `path` nested deeper than `limit` gets a 400."""

    async def refuse(request: Request[Any, Any, Any]) -> None:
        if request.method != "POST" or request.url.path != path:
            return
        media_type, _ = request.content_type
        if "json" not in media_type:
            return
        # Litestar keeps the body for the handler, and enforces the size limit while reading.
        body = await request.body()
        # Cheap first: fewer opening brackets than the limit cannot nest deeper than it.
        if body.count(b"[") + body.count(b"{") <= limit:
            return
        if (depth := json_nesting(body)) > limit:
            raise ClientException(
                f"request body nests JSON {depth} levels deep; at most {limit} are allowed"
            )

    return refuse
