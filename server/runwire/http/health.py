"""`GET /health`: answers 200 once the lifespan has started every part of the server."""

from __future__ import annotations

from litestar import get
from litestar.datastructures import State


@get("/health", sync_to_thread=False)
def health(state: State) -> dict[str, object]:
    services = state.get("services")
    if services is None:
        return {"status": "starting"}
    # Live followers (subscriptions and SSE streams): lets operators and tests see that a
    # disconnected client left nothing behind. Parked subscriptions are followed by senders.
    followers = services.hub.follower_count + services.send_groups.parked_count
    return {"status": "ok", "followers": followers}
