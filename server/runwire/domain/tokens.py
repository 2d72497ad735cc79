"""API tokens and members: create, list, revoke, authenticate; and the first-start bootstrap.

A token's secret is random, shown once, and stored only as its SHA-256: with 256 random bits a
fast hash is as good as a slow one, and it lets a lookup use an index.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from runwire.domain.access import Actor, Permission, Role, Unauthenticated
from runwire.domain.clock import utc_now
from runwire.errors import FieldError, Invalid, NotFound

TOKEN_PREFIX = "rw_"
# How long a checked token is trusted without asking the database again: revocation reaches
# every process within this (plus the watchdog's tick for live subscriptions).
CHECK_SECONDS = 2.0
# last_used_at is written at most this often per token, so reads do not become writes.
_TOUCH_SECONDS = 60.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_TOKEN_LIFETIME = timedelta(days=3650)


@dataclass(frozen=True, slots=True)
class Workspace:
    id: str
    organization_id: str
    name: str


@dataclass(frozen=True, slots=True)
class ApiToken:
    """What is stored about a token; never its secret."""

    id: str
    workspace_id: str
    name: str
    role: Role
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def actor(self) -> Actor:
        return Actor(
            workspace_id=self.workspace_id,
            label=f"token:{self.name}",
            role=self.role,
            token_id=self.id,
            expires_at=self.expires_at,
        )


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token with its secret: the only time the secret exists outside its holder."""

    token: ApiToken
    secret: str


@dataclass(frozen=True, slots=True)
class Member:
    workspace_id: str
    subject: str
    role: Role
    created_at: datetime
    created_by: str


class AccessStore(Protocol):
    """What tokens and members need from persistence (db.access.AccessRepository)."""

    async def workspace(self, id_or_name: str) -> Workspace | None: ...

    async def insert_token(self, token: ApiToken, secret_hash: str) -> None: ...

    async def token_by_hash(self, secret_hash: str) -> ApiToken | None: ...

    async def tokens(self, workspace: str) -> list[ApiToken]: ...

    async def tokens_by_id(self, ids: Sequence[str]) -> dict[str, ApiToken]: ...

    async def revoke_token(
        self, workspace: str, token_id: str, at: datetime
    ) -> ApiToken | None: ...

    async def touch_token(self, token_id: str, at: datetime) -> None: ...

    async def put_member(self, member: Member) -> Member: ...

    async def remove_member(self, workspace: str, subject: str) -> bool: ...

    async def member(self, workspace: str, subject: str) -> Member | None: ...

    async def members(self, workspace: str) -> list[Member]: ...


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_api_token(credential: str) -> bool:
    return credential.startswith(TOKEN_PREFIX)


def new_token(
    workspace_id: str,
    name: str,
    role: Role,
    created_by: str,
    expires_at: datetime | None = None,
) -> IssuedToken:
    """A token value and its secret, validated; not yet stored."""
    errors = []
    if not _NAME.match(name):
        errors.append(
            FieldError("name", "1..100 letters, digits, '.', '_' or '-', starting alphanumeric")
        )
    now = utc_now()
    if expires_at is not None and not now < expires_at <= now + MAX_TOKEN_LIFETIME:
        errors.append(FieldError("expires_at", "must be in the future, within 10 years"))
    if errors:
        raise Invalid(errors)
    token = ApiToken(
        id=str(uuid.uuid4()),
        workspace_id=workspace_id,
        name=name,
        role=role,
        created_at=now,
        created_by=created_by,
        expires_at=expires_at,
    )
    return IssuedToken(token=token, secret=TOKEN_PREFIX + secrets.token_urlsafe(32))


class TokenService:
    """Issues and checks API tokens and manages members; callers have checked `admin`."""

    def __init__(self, store: AccessStore) -> None:
        self._store = store
        # hash -> (token, when it was read); a short cache so a busy client costs no query
        # per request, while a revocation still reaches this process within CHECK_SECONDS.
        self._checked: dict[str, tuple[ApiToken | None, float]] = {}

    async def create(
        self, actor: Actor, name: str, role: Role, expires_at: datetime | None = None
    ) -> IssuedToken:
        """A new token in the actor's workspace; an admin may grant any role, itself included."""
        actor.require(Permission.ADMIN)
        issued = new_token(actor.workspace_id, name, role, actor.label, expires_at)
        await self._store.insert_token(issued.token, hash_secret(issued.secret))
        return issued

    async def list_tokens(self, actor: Actor) -> list[ApiToken]:
        actor.require(Permission.ADMIN)
        return await self._store.tokens(actor.workspace_id)

    async def revoke(self, actor: Actor, token_id: str) -> ApiToken:
        actor.require(Permission.ADMIN)
        revoked = await self._store.revoke_token(actor.workspace_id, token_id, utc_now())
        if revoked is None:
            raise NotFound(f"token {token_id} not found")
        self._checked = {h: v for h, v in self._checked.items() if v[0] and v[0].id != token_id}
        return revoked

    async def authenticate(self, secret: str) -> Actor:
        """The actor a token secret stands for; Unauthenticated if unknown, revoked or expired."""
        secret_hash = hash_secret(secret)
        now = time.monotonic()
        cached = self._checked.get(secret_hash)
        if cached is not None and now - cached[1] < CHECK_SECONDS:
            token = cached[0]
        else:
            token = await self._store.token_by_hash(secret_hash)
            if len(self._checked) > 10_000:
                self._checked.clear()
            self._checked[secret_hash] = (token, now)
        at = utc_now()
        if token is None or not token.usable(at):
            raise Unauthenticated("the token is unknown, revoked or expired")
        if token.last_used_at is None or (at - token.last_used_at).total_seconds() > _TOUCH_SECONDS:
            await self._store.touch_token(token.id, at)
            self._checked[secret_hash] = (replace(token, last_used_at=at), now)
        return token.actor()

    async def usable(self, token_ids: Sequence[str]) -> set[str]:
        """Which of these tokens are still neither revoked nor expired (read fresh)."""
        found = await self._store.tokens_by_id(token_ids)
        now = utc_now()
        return {token_id for token_id, token in found.items() if token.usable(now)}

    async def put_member(self, actor: Actor, subject: str, role: Role) -> Member:
        actor.require(Permission.ADMIN)
        if not 0 < len(subject) <= 200:
            raise Invalid([FieldError("subject", "expected 1..200 characters")])
        return await self._store.put_member(
            Member(actor.workspace_id, subject, role, utc_now(), actor.label)
        )

    async def remove_member(self, actor: Actor, subject: str) -> None:
        actor.require(Permission.ADMIN)
        if not await self._store.remove_member(actor.workspace_id, subject):
            raise NotFound(f"member {subject} not found")

    async def members(self, actor: Actor) -> list[Member]:
        actor.require(Permission.ADMIN)
        return await self._store.members(actor.workspace_id)

    async def member_role(self, workspace_id: str, subject: str) -> Role | None:
        member = await self._store.member(workspace_id, subject)
        return member.role if member else None
