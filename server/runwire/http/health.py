"""`GET /health`: answers 200 once the lifespan has started every part of the server."""

from __future__ import annotations

from litestar import get
from litestar.datastructures import State


@get("/health", sync_to_thread=False)
def health(state: State) -> dict[str, object]:
    if state.get("core") is None:
        return {"status": "starting"}
    # Live followers (subscriptions and SSE streams, including those whose batches another
    # subscription sends for them): lets operators and tests see that a disconnected client
    # left nothing behind.
    return {"status": "ok", "followers": state.followers()}
