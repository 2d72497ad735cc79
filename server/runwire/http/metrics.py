"""`GET /metrics`: the process's Prometheus series, for a scraper holding RUNWIRE_METRICS_TOKEN.

Never open: the series name workspaces and scenarios. Without the setting the route answers 404
with a line naming it; with it, a request must send `Authorization: Bearer <token>` (compared in
constant time) or get 401.
"""

from __future__ import annotations

import hmac

from litestar import Request, Response, get
from litestar.datastructures import State

from runwire.core import Core
from runwire.metrics import CONTENT_TYPE

_OFF = (
    "/metrics is off: set RUNWIRE_METRICS_TOKEN on the server and scrape with"
    " Authorization: Bearer <that token>\n"
)


@get("/metrics", include_in_schema=False)
async def metrics(request: Request[object, object, State], state: State) -> Response[bytes | str]:
    """The series in Prometheus' text format; 404 when off, 401 without the scrape token."""
    core: Core | None = state.get("core")
    if core is None:
        return Response("starting\n", status_code=503, media_type="text/plain")
    token = core.settings.metrics_token
    if token is None:
        return Response(_OFF, status_code=404, media_type="text/plain")
    if not _holds(request.headers.get("authorization", ""), token):
        return Response(
            "send Authorization: Bearer <RUNWIRE_METRICS_TOKEN>\n",
            status_code=401,
            media_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return Response(await core.metrics.exposition(), media_type=CONTENT_TYPE)


def _holds(header: str, token: str) -> bool:
    """Whether the header is `Bearer <token>`; the comparison takes as long whatever matches."""
    scheme, _, credential = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credential.strip().encode(), token.encode()
    )
