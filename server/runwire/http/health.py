"""`GET /health` (the process is up) and `GET /ready` (it can do its work: database, bus and
migrations; with the queue's runners and any warning in the body)."""

from __future__ import annotations

from litestar import Response, get
from litestar.datastructures import State

from runwire.core import Core


@get("/health", sync_to_thread=False)
def health(state: State) -> dict[str, object]:
    """Liveness: 200 once started, also while a dependency is down (restarting would not help)."""
    core: Core | None = state.get("core")
    if core is None:
        return {"status": "starting"}
    # Live followers (subscriptions and SSE streams, including those whose batches another
    # subscription sends for them): lets operators and tests see that a disconnected client
    # left nothing behind.
    return {
        "status": "ok" if core.health.ready else "degraded",
        "followers": state.followers(),
        "down": core.health.down(),
    }


@get("/ready", sync_to_thread=False)
def ready(state: State) -> Response[dict[str, object]]:
    """Readiness: 200 when the database, the bus and the migrations are up, else 503 naming
    what is not. No runner alive is reported (`runners.up` false, and a warning once work waits
    for one) but is no 503: this process serves and queues meanwhile."""
    core: Core | None = state.get("core")
    if core is None:
        return Response({"ready": False, "down": ["starting"]}, status_code=503)
    components: dict[str, object] = {
        name: {"up": component.up, **({"reason": component.reason} if component.reason else {})}
        for name, component in core.health.components.items()
    }
    components["runners"] = core.health.runners
    body: dict[str, object] = {
        "ready": core.health.ready,
        "components": components,
        "warnings": core.health.warnings,
    }
    return Response(body, status_code=200 if core.health.ready else 503)
