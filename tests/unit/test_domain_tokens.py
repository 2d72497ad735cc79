"""API tokens and members: who may manage them, their rules, and authenticating a secret.

The token service reads the wall clock (expiry, last use) through `utc_now` and its cache's age
through `time.monotonic`; a `Clock` stands in for both, so time passes without sleeping.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from tests.support.domain import ADMIN, OUTSIDER, WORKSPACE, Domain

from runwire.domain import tokens
from runwire.domain.access import Actor, Forbidden, Permission, Role, Unauthenticated
from runwire.domain.identity import Authenticator
from runwire.domain.tokens import (
    CHECK_SECONDS,
    MAX_TOKEN_LIFETIME,
    ApiToken,
    IssuedToken,
    Member,
    TokenService,
    hash_secret,
)
from runwire.errors import FieldError, Invalid, NotFound

REFUSED = "the token is unknown, revoked or expired"
# As long as the deployment's real key (48 random bytes, base64): HS256 wants 32 bytes or more.
TICKET_KEY = "k" * 64


@dataclass
class Clock:
    """What the token service reads: `now` for expiry and last use, `monotonic` for its cache."""

    now: datetime
    monotonic: float = 0.0

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.monotonic += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(datetime(2030, 1, 1, 12, 0, tzinfo=UTC))
    monkeypatch.setattr(tokens, "utc_now", lambda: clock.now)
    # Only the token module's `time`: the event loop keeps its own monotonic clock.
    monkeypatch.setattr(tokens, "time", SimpleNamespace(monotonic=lambda: clock.monotonic))
    return clock


async def issue(
    domain: Domain, name: str = "ci", *, expires_in: timedelta | None = None, clock: Clock
) -> IssuedToken:
    expires_at = None if expires_in is None else clock.now + expires_in
    return await domain.tokens.create(ADMIN, name, Role.OPERATOR, expires_at)


# ---- who may manage tokens and members ---------------------------------------------------

AdminCall = Callable[[TokenService, Actor], Awaitable[object]]
ADMIN_CALLS: dict[str, AdminCall] = {
    "create": lambda service, actor: service.create(actor, "ci", Role.VIEWER),
    "list_tokens": lambda service, actor: service.list_tokens(actor),
    "revoke": lambda service, actor: service.revoke(actor, "t-1"),
    "put_member": lambda service, actor: service.put_member(actor, "ann", Role.VIEWER),
    "remove_member": lambda service, actor: service.remove_member(actor, "ann"),
    "members": lambda service, actor: service.members(actor),
}


@pytest.mark.parametrize("call", ADMIN_CALLS)
@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR, Role.EDITOR])
async def test_only_an_admin_manages_tokens_and_members(
    domain: Domain, call: str, role: Role
) -> None:
    with pytest.raises(Forbidden) as refusal:
        await ADMIN_CALLS[call](domain.tokens, replace(ADMIN, role=role))
    assert (refusal.value.permission, refusal.value.role) == (Permission.ADMIN, role)


# ---- creating tokens ---------------------------------------------------------------------


async def test_a_new_token_is_stored_by_the_hash_of_its_secret(
    domain: Domain, clock: Clock
) -> None:
    issued = await issue(domain, expires_in=timedelta(days=30), clock=clock)

    assert issued.secret.startswith("rw_")
    assert len(issued.secret) > 40
    assert issued.token == ApiToken(
        issued.token.id,
        WORKSPACE,
        "ci",
        Role.OPERATOR,
        created_at=clock.now,
        created_by="token:root",
        expires_at=clock.now + timedelta(days=30),
    )
    assert await domain.store.token_by_hash(hash_secret(issued.secret)) == issued.token
    assert await domain.store.token_by_hash(issued.secret) is None
    assert (await issue(domain, clock=clock)).secret != issued.secret


@pytest.mark.parametrize("name", ["", "-ci", ".ci", "ci bot", "ci/bot", "n" * 101, "ç"])
async def test_a_token_name_is_letters_digits_and_dot_dash_underscore(
    domain: Domain, clock: Clock, name: str
) -> None:
    with pytest.raises(Invalid) as refusal:
        await issue(domain, name, clock=clock)
    assert [error.path for error in refusal.value.errors] == ["name"]
    assert await domain.store.tokens(WORKSPACE) == []


@pytest.mark.parametrize("name", ["a", "9", "ci.bot_1-x", "n" * 100])
async def test_names_within_the_rules_are_accepted(domain: Domain, clock: Clock, name: str) -> None:
    assert (await issue(domain, name, clock=clock)).token.name == name


@pytest.mark.parametrize(
    "expires_in",
    [timedelta(0), timedelta(seconds=-1), MAX_TOKEN_LIFETIME + timedelta(microseconds=1)],
    ids=["now", "past", "beyond ten years"],
)
async def test_a_token_expires_in_the_future_within_ten_years(
    domain: Domain, clock: Clock, expires_in: timedelta
) -> None:
    with pytest.raises(Invalid) as refusal:
        await issue(domain, "bad name", expires_in=expires_in, clock=clock)
    assert refusal.value.errors == (
        FieldError("name", "1..100 letters, digits, '.', '_' or '-', starting alphanumeric"),
        FieldError("expires_at", "must be in the future, within 10 years"),
    )


@pytest.mark.parametrize("expires_in", [timedelta(microseconds=1), MAX_TOKEN_LIFETIME])
async def test_expiry_at_the_edges_of_the_window_is_accepted(
    domain: Domain, clock: Clock, expires_in: timedelta
) -> None:
    issued = await issue(domain, expires_in=expires_in, clock=clock)
    assert issued.token.expires_at == clock.now + expires_in


async def test_an_admin_lists_only_its_workspace_s_tokens_oldest_first(
    domain: Domain, clock: Clock
) -> None:
    first = await issue(domain, "first", clock=clock)
    clock.advance(1)
    second = await issue(domain, "second", clock=clock)
    await domain.tokens.create(OUTSIDER, "theirs", Role.ADMIN)

    assert await domain.tokens.list_tokens(ADMIN) == [first.token, second.token]


# ---- revoking and authenticating ---------------------------------------------------------


async def test_a_token_authenticates_as_its_actor(domain: Domain, clock: Clock) -> None:
    issued = await issue(domain, expires_in=timedelta(hours=1), clock=clock)

    actor = await domain.tokens.authenticate(issued.secret)

    assert actor == Actor(
        workspace_id=WORKSPACE,
        label="token:ci",
        role=Role.OPERATOR,
        token_id=issued.token.id,
        expires_at=clock.now + timedelta(hours=1),
    )


async def test_an_unknown_secret_is_unauthenticated(domain: Domain, clock: Clock) -> None:
    with pytest.raises(Unauthenticated, match=REFUSED):
        await domain.tokens.authenticate("rw_not-a-token")


async def test_a_revoked_token_is_refused_at_once_in_this_process(
    domain: Domain, clock: Clock
) -> None:
    issued = await issue(domain, clock=clock)
    await domain.tokens.authenticate(issued.secret)  # now cached

    revoked = await domain.tokens.revoke(ADMIN, issued.token.id)

    assert revoked == replace(issued.token, revoked_at=clock.now, last_used_at=clock.now)
    with pytest.raises(Unauthenticated, match=REFUSED):
        await domain.tokens.authenticate(issued.secret)


async def test_revoking_again_keeps_the_first_revocation(domain: Domain, clock: Clock) -> None:
    issued = await issue(domain, clock=clock)
    first = await domain.tokens.revoke(ADMIN, issued.token.id)
    clock.advance(60)

    assert await domain.tokens.revoke(ADMIN, issued.token.id) == first


async def test_another_workspace_s_token_is_not_found_and_stays_usable(
    domain: Domain, clock: Clock
) -> None:
    issued = await issue(domain, clock=clock)

    with pytest.raises(NotFound, match=f"token {issued.token.id} not found"):
        await domain.tokens.revoke(OUTSIDER, issued.token.id)
    with pytest.raises(NotFound, match="token nope not found"):
        await domain.tokens.revoke(ADMIN, "nope")

    assert (await domain.tokens.authenticate(issued.secret)).token_id == issued.token.id


async def test_a_revocation_elsewhere_reaches_this_process_within_the_check_interval(
    domain: Domain, clock: Clock
) -> None:
    issued = await issue(domain, clock=clock)
    await domain.tokens.authenticate(issued.secret)
    other_process = TokenService(domain.store)

    await other_process.revoke(ADMIN, issued.token.id)

    clock.advance(CHECK_SECONDS / 2)
    await domain.tokens.authenticate(issued.secret)  # still the cached check
    clock.advance(CHECK_SECONDS / 2)
    with pytest.raises(Unauthenticated, match=REFUSED):
        await domain.tokens.authenticate(issued.secret)


async def test_an_expired_token_is_refused_even_while_cached(domain: Domain, clock: Clock) -> None:
    issued = await issue(domain, expires_in=timedelta(seconds=1), clock=clock)
    await domain.tokens.authenticate(issued.secret)

    clock.advance(1)  # exactly at expiry, and within the cache's check interval

    with pytest.raises(Unauthenticated, match=REFUSED):
        await domain.tokens.authenticate(issued.secret)


async def test_last_use_is_written_at_most_once_a_minute(domain: Domain, clock: Clock) -> None:
    issued = await issue(domain, clock=clock)
    first_use = clock.now

    async def last_used() -> datetime | None:
        await domain.tokens.authenticate(issued.secret)
        stored = await domain.store.token_by_hash(hash_secret(issued.secret))
        assert stored is not None
        return stored.last_used_at

    assert await last_used() == first_use
    clock.advance(60)
    assert await last_used() == first_use
    clock.advance(1)
    assert await last_used() == clock.now


async def test_usable_reads_revocation_and_expiry_fresh(domain: Domain, clock: Clock) -> None:
    kept = await issue(domain, "kept", clock=clock)
    revoked = await issue(domain, "revoked", clock=clock)
    expiring = await issue(domain, "expiring", expires_in=timedelta(minutes=1), clock=clock)
    await domain.tokens.revoke(ADMIN, revoked.token.id)
    clock.advance(60)

    ids = [kept.token.id, revoked.token.id, expiring.token.id, "unknown"]
    assert await domain.tokens.usable(ids) == {kept.token.id}


# ---- members -----------------------------------------------------------------------------


async def test_a_member_is_added_with_who_and_when(domain: Domain, clock: Clock) -> None:
    member = await domain.tokens.put_member(ADMIN, "ann", Role.EDITOR)

    assert member == Member(WORKSPACE, "ann", Role.EDITOR, clock.now, "token:root")
    assert await domain.tokens.member_role(WORKSPACE, "ann") is Role.EDITOR
    assert await domain.tokens.member_role(OUTSIDER.workspace_id, "ann") is None


async def test_a_new_role_keeps_when_the_member_was_added(domain: Domain, clock: Clock) -> None:
    added = await domain.tokens.put_member(ADMIN, "ann", Role.VIEWER)
    clock.advance(3600)

    changed = await domain.tokens.put_member(replace(ADMIN, label="user:boss"), "ann", Role.ADMIN)

    assert changed == replace(added, role=Role.ADMIN)
    assert await domain.tokens.members(ADMIN) == [changed]


@pytest.mark.parametrize("subject", ["", "s" * 201])
async def test_a_subject_is_1_to_200_characters(domain: Domain, clock: Clock, subject: str) -> None:
    with pytest.raises(Invalid) as refusal:
        await domain.tokens.put_member(ADMIN, subject, Role.VIEWER)
    assert refusal.value.errors == (FieldError("subject", "expected 1..200 characters"),)


async def test_members_are_listed_and_removed_per_workspace(domain: Domain, clock: Clock) -> None:
    await domain.tokens.put_member(ADMIN, "bob", Role.VIEWER)
    await domain.tokens.put_member(ADMIN, "ann", Role.OPERATOR)
    await domain.tokens.put_member(OUTSIDER, "cy", Role.ADMIN)

    assert [m.subject for m in await domain.tokens.members(ADMIN)] == ["ann", "bob"]
    with pytest.raises(NotFound, match="member ann not found"):
        await domain.tokens.remove_member(OUTSIDER, "ann")
    await domain.tokens.remove_member(ADMIN, "ann")
    with pytest.raises(NotFound, match="member ann not found"):
        await domain.tokens.remove_member(ADMIN, "ann")
    assert [m.subject for m in await domain.tokens.members(ADMIN)] == ["bob"]


# ---- the authenticator, for API tokens and event-stream tickets ------------------------


def authenticator(domain: Domain) -> Authenticator:
    return Authenticator(domain.tokens, domain.store.workspace, TICKET_KEY)


async def test_the_authenticator_takes_api_tokens_and_nothing_else_without_a_provider(
    domain: Domain,
) -> None:
    issued = await domain.tokens.create(ADMIN, "ci", Role.VIEWER)
    checker = authenticator(domain)

    assert (await checker.authenticate(f"  {issued.secret}\n")).label == "token:ci"
    with pytest.raises(Unauthenticated, match="not an API token or an accepted identity token"):
        await checker.authenticate("a.b.c")
    with pytest.raises(Unauthenticated):
        await checker.authenticate("   ")


async def test_a_ticket_opens_one_execution_s_stream_while_its_token_is_valid(
    domain: Domain,
) -> None:
    issued = await domain.tokens.create(ADMIN, "browser", Role.VIEWER)
    checker = authenticator(domain)
    actor = await checker.authenticate(issued.secret)
    ticket, _ = checker.issue_ticket(actor, "e-1")

    assert await checker.redeem_ticket(ticket, "e-1") == actor
    with pytest.raises(Unauthenticated, match="the ticket is for another execution"):
        await checker.redeem_ticket(ticket, "e-2")
    await domain.tokens.revoke(ADMIN, issued.token.id)
    with pytest.raises(Unauthenticated, match="revoked, expired or its role changed"):
        await checker.redeem_ticket(ticket, "e-1")
    with pytest.raises(Unauthenticated, match="invalid ticket"):
        await checker.redeem_ticket(ticket + "x", "e-1")
