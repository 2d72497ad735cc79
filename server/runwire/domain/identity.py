"""Turning a credential into an actor: API tokens, identity-provider JWTs, and SSE tickets.

Every transport (HTTP bearer, WebSocket connection_init, SSE) goes through `Authenticator`, so
the rules are the same everywhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from runwire.domain.access import Actor, Role, Unauthenticated
from runwire.domain.clock import utc_now
from runwire.domain.tokens import TokenService, Workspace, looks_like_api_token
from runwire.errors import RunwireError

# Asymmetric algorithms only for identity providers: a shared secret would let anyone who holds
# it mint tokens for any workspace, and mixing families invites algorithm confusion.
IDP_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"})
TICKET_AUDIENCE = "runwire:event-stream"
TICKET_SECONDS = 60
ARTIFACT_TICKET_AUDIENCE = "runwire:artifact"
# Long enough to follow a link from a page rendered a while ago, short enough that a URL left in
# a log or a history is useless soon after.
ARTIFACT_TICKET_SECONDS = 300


@dataclass(frozen=True, slots=True)
class JwtSettings:
    """An external identity provider: whose tokens to accept and how claims map to access."""

    issuer: str
    key: str
    algorithms: tuple[str, ...] = ("RS256",)
    audience: str | None = None
    workspace_claim: str = "runwire_workspace"
    role_claim: str = "runwire_role"

    def __post_init__(self) -> None:
        unknown = set(self.algorithms) - IDP_ALGORITHMS
        if unknown or not self.algorithms:
            raise ValueError(
                f"JWT algorithms {sorted(unknown) or '(none)'} not allowed;"
                f" use some of {sorted(IDP_ALGORITHMS)}"
            )


class TicketMismatch(RunwireError):
    """The ticket is valid but for something else."""


class Authenticator:
    """Checks credentials; knows nothing about HTTP or WebSockets."""

    def __init__(
        self,
        tokens: TokenService,
        workspace: Callable[[str], Awaitable[Workspace | None]],
        ticket_key: str,
        idp: JwtSettings | None = None,
    ) -> None:
        self._tokens = tokens
        self._workspace = workspace
        self._ticket_key = ticket_key
        self._idp = idp

    async def authenticate(self, credential: str) -> Actor:
        """The actor for an API token or an identity-provider JWT; Unauthenticated otherwise."""
        credential = credential.strip()
        if not credential:
            raise Unauthenticated()
        if looks_like_api_token(credential):
            return await self._tokens.authenticate(credential)
        if self._idp is not None and credential.count(".") == 2:
            return await self._from_jwt(credential, self._idp)
        raise Unauthenticated("the token is not an API token or an accepted identity token")

    async def still_valid(self, actors: list[Actor]) -> list[bool]:
        """For live connections: is each actor's credential still neither revoked nor expired?"""
        token_ids = sorted({a.token_id for a in actors if a.token_id is not None})
        usable = await self._tokens.usable(token_ids) if token_ids else set()
        # A role that came from membership must still be the member's role.
        members = {
            (a.workspace_id, a.member_subject): await self._tokens.member_role(
                a.workspace_id, a.member_subject
            )
            for a in actors
            if a.member_subject is not None
        }
        now = utc_now()
        return [
            (actor.token_id is None or actor.token_id in usable)
            and (actor.expires_at is None or now < actor.expires_at)
            and (
                actor.member_subject is None
                or members[(actor.workspace_id, actor.member_subject)] is actor.role
            )
            for actor in actors
        ]

    def issue_ticket(self, actor: Actor, execution_id: str) -> tuple[str, datetime]:
        """A short-lived signed ticket to open one execution's event stream (for EventSource)."""
        return self._issue(actor, TICKET_AUDIENCE, TICKET_SECONDS, {"exe": execution_id})

    async def redeem_ticket(self, ticket: str, execution_id: str) -> Actor:
        """The actor a ticket was issued to, if it is for this execution and still valid."""
        claims = self._decode(ticket, TICKET_AUDIENCE, "exe")
        if claims["exe"] != execution_id:
            raise Unauthenticated("the ticket is for another execution")
        return await self._ticket_actor(claims)

    def issue_artifact_ticket(self, actor: Actor, artifact_id: str) -> tuple[str, datetime]:
        """A short-lived signed ticket to download one artifact (a link, without a header)."""
        return self._issue(
            actor, ARTIFACT_TICKET_AUDIENCE, ARTIFACT_TICKET_SECONDS, {"art": artifact_id}
        )

    async def redeem_artifact_ticket(self, ticket: str, artifact_id: str) -> Actor:
        """The actor an artifact ticket was issued to; TicketMismatch if another artifact's."""
        claims = self._decode(ticket, ARTIFACT_TICKET_AUDIENCE, "art")
        if claims["art"] != artifact_id:
            raise TicketMismatch("the ticket is for another artifact")
        return await self._ticket_actor(claims)

    def _issue(
        self, actor: Actor, audience: str, seconds: float, scope: dict[str, str]
    ) -> tuple[str, datetime]:
        expires_at = utc_now() + timedelta(seconds=seconds)
        claims: dict[str, Any] = {
            "aud": audience,
            "exp": expires_at,
            "sub": actor.label,
            "wsp": actor.workspace_id,
            "rol": actor.role.value,
            **scope,
        }
        if actor.token_id is not None:
            claims["tid"] = actor.token_id
        if actor.expires_at is not None:
            claims["cre"] = int(actor.expires_at.timestamp())
        if actor.member_subject is not None:
            claims["msb"] = actor.member_subject
        return jwt.encode(claims, self._ticket_key, algorithm="HS256"), expires_at

    def _decode(self, ticket: str, audience: str, scope: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                ticket,
                self._ticket_key,
                algorithms=["HS256"],
                audience=audience,
                options={"require": ["exp", "aud", "sub", "wsp", "rol", scope]},
            )
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"invalid ticket: {error}") from None
        return claims

    async def _ticket_actor(self, claims: dict[str, Any]) -> Actor:
        credential_expiry = claims.get("cre")
        actor = Actor(
            workspace_id=str(claims["wsp"]),
            label=str(claims["sub"]),
            role=Role(claims["rol"]),
            token_id=claims.get("tid"),
            expires_at=None
            if credential_expiry is None
            else datetime.fromtimestamp(int(credential_expiry), UTC),
            member_subject=claims.get("msb"),
        )
        # The token it was issued for may have been revoked since (or the membership changed).
        if not (await self.still_valid([actor]))[0]:
            raise Unauthenticated(
                "the credential this ticket was issued for is revoked, expired or its role changed"
            )
        return actor

    async def _from_jwt(self, credential: str, idp: JwtSettings) -> Actor:
        try:
            claims = jwt.decode(
                credential,
                idp.key,
                algorithms=list(idp.algorithms),
                issuer=idp.issuer,
                audience=idp.audience,
                options={
                    "require": ["exp", "iss", "sub"],
                    "verify_aud": idp.audience is not None,
                },
            )
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"invalid identity token: {error}") from None
        subject = str(claims["sub"])
        workspace_ref = claims.get(idp.workspace_claim)
        if not isinstance(workspace_ref, str):
            raise Unauthenticated(f"the identity token has no {idp.workspace_claim} claim")
        workspace = await self._workspace(workspace_ref)
        if workspace is None:
            raise Unauthenticated(f"workspace {workspace_ref} does not exist")
        claimed_role = claims.get(idp.role_claim)
        role: Role | None
        if claimed_role is not None:
            try:
                role = Role(claimed_role)
            except ValueError:
                raise Unauthenticated(f"unknown role {claimed_role!r}") from None
        else:
            role = await self._tokens.member_role(workspace.id, subject)
        if role is None:
            raise Unauthenticated(f"{subject} is not a member of workspace {workspace.name}")
        return Actor(
            workspace_id=workspace.id,
            label=f"user:{subject}",
            role=role,
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            member_subject=subject if claimed_role is None else None,
        )
