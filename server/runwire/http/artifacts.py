"""`GET /artifacts/{id}`: an artifact's content, for the `url` a step run's `artifacts` gives.

Authenticated by the `?ticket=` in that URL (short-lived, signed, for this artifact and the
workspace of whoever asked for it) or by `Authorization: Bearer …`; an API token in the URL is
refused, since URLs end up in logs and histories.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import (
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ServiceUnavailableException,
)
from litestar.params import Parameter

from runwire.core import Core
from runwire.domain.access import Actor, Forbidden, Permission, Unauthenticated
from runwire.domain.identity import TicketMismatch
from runwire.errors import Unavailable
from runwire.faults import is_outage
from runwire.http.bearer import bearer_credential
from runwire.scenarios.limits import unstorable


async def _actor(
    request: Request[object, object, State], core: Core, artifact_id: str, ticket: str | None
) -> Actor:
    if "token" in request.query_params or "access_token" in request.query_params:
        raise NotAuthorizedException(
            "never put an API token in a URL: send it as Authorization: Bearer, or use the"
            " artifact's url (it carries a ticket)"
        )
    try:
        if ticket is not None:
            actor = await core.authenticator.redeem_artifact_ticket(ticket, artifact_id)
        else:
            actor = await core.authenticator.authenticate(bearer_credential(request.headers))
        actor.require(Permission.EXECUTION_READ)
    except Unauthenticated as error:
        raise NotAuthorizedException(
            error.message, headers={"WWW-Authenticate": 'Bearer realm="runwire"'}
        ) from None
    except (Forbidden, TicketMismatch) as error:
        raise PermissionDeniedException(error.message) from None
    return actor


@get("/artifacts/{artifact_id:str}")
async def artifact_download(
    request: Request[object, object, State],
    state: State,
    artifact_id: str,
    ticket: Annotated[str | None, Parameter(query="ticket")] = None,
) -> Response[bytes]:
    core: Core = state.core
    if unstorable(artifact_id) or len(artifact_id) > 36:
        raise NotFoundException("artifact not found")  # no artifact has such an id
    try:
        actor = await _actor(request, core, artifact_id, ticket)
        # Another workspace's artifact answers exactly like a missing one.
        found = await core.store.artifacts.artifact_content(artifact_id, actor.workspace_id)
    except Exception as error:
        if not is_outage(error):
            raise
        raise ServiceUnavailableException(
            Unavailable().message, headers={"Retry-After": "1"}
        ) from None
    if found is None:
        raise NotFoundException(f"artifact {artifact_id} not found (or deleted by retention)")
    artifact, content = found
    return Response(
        content,
        media_type=artifact.media_type,
        headers={
            # Names are checked to be plain file names (domain/artifacts.py): no quoting needed.
            "Content-Disposition": f'attachment; filename="{artifact.name}"',
            # What a step stored is not the API's page: a browser must neither guess another
            # type nor run it (an HTML artifact opened directly gets a sandbox, no scripts).
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
            "Cache-Control": "private, no-store",
        },
    )
