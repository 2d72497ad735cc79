"""Token lifecycle on every transport: bad credentials refused, live connections cut on revocation
or expiry, identity-provider JWTs, SSE tickets, and the first-start admin token."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.support.graphql import STOP, definition, execute, start, wait_for_status
from tests.support.server import Server, database, running_server
from websockets.asyncio.client import connect

ISSUER = "https://idp.test"
# No output and no end in sight: a subscription to it stays open until something closes it.
LONG = definition('{key: wait, kind: shell, with: {argv: ["sleep", "30"]}}')
QUICK = definition('{key: hi, kind: shell, with: {argv: ["echo", "hi"]}}')
VIEWER = "query { viewer { label role workspaceName } }"
FOLLOW_SEQ = (
    "subscription($id: ID!) { executionEvents(executionId: $id) { lastSeq events { seq type } } }"
)
CREATE_TOKEN = """
mutation($input: CreateApiTokenInput!) {
  createApiToken(input: $input) {
    __typename
    ... on CreateApiTokenSuccess { secret token { id name role expiresAt } }
    ... on Error { message }
  }
}
"""
REVOKE_TOKEN = """
mutation($id: ID!) {
  revokeApiToken(id: $id) {
    __typename
    ... on RevokeApiTokenSuccess { token { id revokedAt } }
    ... on Error { message }
  }
}
"""
TICKET = """
mutation($id: ID!) {
  createEventStreamTicket(executionId: $id) {
    __typename
    ... on EventStreamTicketSuccess { ticket url expiresAt }
    ... on Error { message }
  }
}
"""
SET_MEMBER_ROLE = """
mutation($subject: String!, $role: Role!) {
  setMemberRole(subject: $subject, role: $role) {
    __typename
    ... on MemberSuccess { member { subject role } }
    ... on Error { message }
  }
}
"""
REMOVE_MEMBER = """
mutation($subject: String!) {
  removeMember(subject: $subject) {
    __typename
    ... on RemoveMemberSuccess { subject }
    ... on Error { message }
  }
}
"""
# How fast a live connection must be closed once its credential lapses: the server checks every
# RUNWIRE_SESSION_CHECK_SECONDS (0.2 here); the rest is slack for a loaded CI machine.
CLOSE_WITHIN_SECONDS = 3.0
# Five watchdog ticks: a connection still open after this was checked and kept, not overlooked.
SEVERAL_TICKS_SECONDS = 1.0


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class IdentityProvider:
    """An RSA key pair standing in for an external identity provider."""

    key: rsa.RSAPrivateKey
    public_pem: bytes

    @classmethod
    def generate(cls) -> IdentityProvider:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(key=key, public_pem=public_pem)

    def claims(self, **changes: Any) -> dict[str, Any]:
        """A valid operator's claims; a change to None drops that claim."""
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": "alice",
            "exp": int(time.time()) + 600,
            "runwire_workspace": "default",
            "runwire_role": "operator",
        }
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def token(self, algorithm: str = "RS256", **changes: Any) -> str:
        return jwt.encode(self.claims(**changes), self.key, algorithm=algorithm)


def _unsigned(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A JWT built by hand: PyJWT itself refuses to make these two attacks."""
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    if secret is None:
        return f"{signing_input}."
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _connect(server: Server) -> connect:
    """A graphql-transport-ws socket to the server (the only subprotocol it speaks)."""
    return websockets.connect(
        server.graphql_ws, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    )


def _cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "runwire.cli", *args],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done


def _cli_token(server: Server, name: str, *options: str) -> tuple[str, str]:
    """(id, secret) of a viewer token made by `runwire token create`."""
    done = _cli(server, "token", "create", "--name", name, "--role", "viewer", *options)
    found = re.search(r"token (\S+) \(viewer\)", done.stderr)
    assert found, done.stderr
    return found.group(1), done.stdout.strip()


def _graphql(server: Server, document: str, variables: dict[str, Any] | None = None) -> Any:
    """A query as the admin, for fixtures (which run outside the tests' event loop)."""
    response = httpx.post(
        server.graphql_http,
        json={"query": document, "variables": variables or {}},
        headers=server.headers,
        timeout=30,
    )
    body = response.json()
    assert response.status_code == 200, body
    assert "errors" not in body, body
    return body["data"]


def _api_token(server: Server, name: str, role: str = "VIEWER") -> tuple[str, str]:
    """(id, secret) of a token made by the createApiToken mutation."""
    result = _graphql(server, CREATE_TOKEN, {"input": {"name": name, "role": role}})
    created = result["createApiToken"]
    assert created["__typename"] == "CreateApiTokenSuccess", created
    return created["token"]["id"], created["secret"]


def _revoke(server: Server, token_id: str) -> None:
    revoked = _graphql(server, REVOKE_TOKEN, {"id": token_id})["revokeApiToken"]
    assert revoked["__typename"] == "RevokeApiTokenSuccess", revoked


def _cli_token_revoked(server: Server, name: str) -> tuple[str, float]:
    """The secret of a viewer token the CLI made, seen working, then revoked with the CLI; and
    the monotonic time after which the server has seen the revocation."""
    token_id, secret = _cli_token(server, name)
    assert _viewer_status(server, secret) == 200
    _cli(server, "token", "revoke", token_id)
    # The CLI is another process: the server learns of it when its token check cache
    # (domain.tokens.CHECK_SECONDS) runs out.
    return secret, time.monotonic() + 2.1


def _viewer_status(server: Server, token: str) -> int:
    return httpx.post(
        server.graphql_http, json={"query": VIEWER}, headers=_bearer(token), timeout=10
    ).status_code


@pytest.fixture(scope="module")
def idp() -> IdentityProvider:
    return IdentityProvider.generate()


@pytest.fixture(scope="module")
def server(idp: IdentityProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One SQLite server that also accepts the test identity provider's JWTs."""
    directory = tmp_path_factory.mktemp("tokens")
    key_file = directory / "idp.pem"
    key_file.write_bytes(idp.public_pem)
    settings = {
        "RUNWIRE_JWT_ISSUER": ISSUER,
        "RUNWIRE_JWT_KEY": f"@{key_file}",
        "RUNWIRE_JWT_ALGORITHMS": "RS256",
        "RUNWIRE_SESSION_CHECK_SECONDS": "0.2",
    }
    with running_server("sqlite", directory, settings) as found:
        yield found


@pytest.fixture(scope="module")
def finished(server: Server) -> str:
    """An execution that has ended, for streams that must run to their end."""
    execution_id: str = asyncio.run(start(server, definition=QUICK))
    asyncio.run(wait_for_status(server, execution_id, {"SUCCEEDED"}))
    return execution_id


# Each refused credential, with a stem of the reason the server gives over HTTP and SSE: proof
# that it was refused for the flaw it was built with, not for some other one.
BAD_CREDENTIALS = {
    "absent": "send authorization",
    "api-token-revoked-by-mutation": "revoked",
    "api-token-revoked-by-cli": "revoked",
    "api-token-expired": "expired",
    "api-token-unknown": "unknown",
    "bearer-without-token": "must be: bearer",
    "basic-scheme": "must be: bearer",
    "no-scheme": "must be: bearer",
    "bearer-random-text": "not an api token",
    "jwt-expired": "expired",
    "jwt-without-exp": '"exp"',
    "jwt-wrong-signature": "signature verification failed",
    "jwt-alg-none": "alg value is not allowed",
    "jwt-hs256-signed-with-public-key": "alg value is not allowed",
    "jwt-rs512-not-configured": "alg value is not allowed",
    "jwt-wrong-issuer": "issuer",
    "jwt-without-workspace": "no runwire_workspace claim",
    "jwt-unknown-workspace": "does not exist",
    "jwt-unknown-role": "unknown role",
    "jwt-without-role-not-a-member": "not a member",
}


@pytest.fixture(scope="module")
def bad_credentials(server: Server, idp: IdentityProvider) -> dict[str, str | None]:
    """Each refused credential as the value of an Authorization header (None: no header)."""
    # The CLI's tokens are made side by side: each is another process, and the waits below (for
    # the expiry, for the server's cache) then run out together.
    with ThreadPoolExecutor(1) as pool:
        revoking_by_cli = pool.submit(_cli_token_revoked, server, "revoked-by-cli")
        # About 2.6 s, short enough to wait out here. It is not asked to work first: on a loaded
        # machine the CLI's own exit can outlast its life, and its refusal names the reason
        # ("expired", BAD_CREDENTIALS), which only a token the server knows can get.
        _, expiring = _cli_token(server, "expiring", "--expires-in-days", "0.00003")
        expired_after = time.monotonic() + 0.00003 * 86400 + 0.2

        by_mutation_id, by_mutation = _api_token(server, "revoked-by-mutation")
        assert _viewer_status(server, by_mutation) == 200
        _revoke(server, by_mutation_id)

        by_cli, cache_stale_after = revoking_by_cli.result()

    other_key = IdentityProvider.generate()
    algorithm_confusion = _unsigned(
        {"alg": "HS256", "typ": "JWT"}, idp.claims(), secret=idp.public_pem
    )
    credentials: dict[str, str | None] = {
        "absent": None,
        "api-token-revoked-by-mutation": f"Bearer {by_mutation}",
        "api-token-revoked-by-cli": f"Bearer {by_cli}",
        "api-token-expired": f"Bearer {expiring}",
        "api-token-unknown": "Bearer rw_garbage",
        "bearer-without-token": "Bearer",
        "basic-scheme": "Basic abc",
        "no-scheme": "xyzzy",
        "bearer-random-text": "Bearer this is not a token at all",
        "jwt-expired": f"Bearer {idp.token(exp=int(time.time()) - 60)}",
        "jwt-without-exp": f"Bearer {idp.token(exp=None)}",
        "jwt-wrong-signature": f"Bearer {other_key.token()}",
        "jwt-alg-none": f"Bearer {_unsigned({'alg': 'none', 'typ': 'JWT'}, idp.claims(), None)}",
        "jwt-hs256-signed-with-public-key": f"Bearer {algorithm_confusion}",
        "jwt-rs512-not-configured": f"Bearer {idp.token(algorithm='RS512')}",
        "jwt-wrong-issuer": f"Bearer {idp.token(iss='https://evil.test')}",
        "jwt-without-workspace": f"Bearer {idp.token(runwire_workspace=None)}",
        "jwt-unknown-workspace": f"Bearer {idp.token(runwire_workspace='nowhere')}",
        "jwt-unknown-role": f"Bearer {idp.token(runwire_role='superuser')}",
        "jwt-without-role-not-a-member": f"Bearer {idp.token(sub='nobody', runwire_role=None)}",
    }
    assert set(credentials) == set(BAD_CREDENTIALS)
    time.sleep(max(0.0, expired_after - time.monotonic(), cache_stale_after - time.monotonic()))
    return credentials


def _assert_refused_response(response: httpx.Response, header: str | None, reason: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    assert reason in response.json()["detail"].lower()
    assert "Traceback" not in response.text
    # A refusal never echoes the credential back (it may be a real secret sent to the wrong place).
    if header is not None and len(secret := header.removeprefix("Bearer ")) > 8:
        assert secret not in response.text


async def _refused_over_http(
    server: Server, header: str | None, execution_id: str, reason: str
) -> None:
    headers = {} if header is None else {"Authorization": header}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(server.graphql_http, json={"query": VIEWER}, headers=headers)
    _assert_refused_response(response, header, reason)


async def _refused_over_sse(
    server: Server, header: str | None, execution_id: str, reason: str
) -> None:
    headers = {} if header is None else {"Authorization": header}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(
            f"{server.url}/executions/{execution_id}/events", headers=headers
        )
    _assert_refused_response(response, header, reason)


async def _until_closed(
    socket: websockets.ClientConnection, timeout: float = 10
) -> list[dict[str, Any]]:
    """Every message until the server closes the socket."""
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                received.append(json.loads(await socket.recv()))
    return received


async def _refused_over_websocket(
    server: Server, header: str | None, execution_id: str, reason: str
) -> None:
    # strawberry closes with its own reason ("Forbidden"), so only the code tells here.
    init: dict[str, Any] = {"type": "connection_init"}
    if header is not None:
        init["payload"] = {"Authorization": header}
    async with _connect(server) as socket:
        await socket.send(json.dumps(init))
        received = await _until_closed(socket)
    assert received == []
    assert socket.close_code == 4403


TRANSPORTS = {
    "http": _refused_over_http,
    "websocket": _refused_over_websocket,
    "sse": _refused_over_sse,
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("credential", BAD_CREDENTIALS)
async def test_bad_credential_is_refused(
    server: Server,
    bad_credentials: dict[str, str | None],
    finished: str,
    credential: str,
    transport: str,
) -> None:
    reason = BAD_CREDENTIALS[credential]
    await TRANSPORTS[transport](server, bad_credentials[credential], finished, reason)


async def _accepted_everywhere(server: Server, token: str, execution_id: str) -> dict[str, Any]:
    """Use `token` on HTTP, WebSocket and SSE; the viewer it stands for."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            server.graphql_http, json={"query": VIEWER}, headers=_bearer(token)
        )
        assert response.status_code == 200, response.text
        sse = await client.get(
            f"{server.url}/executions/{execution_id}/events", headers=_bearer(token)
        )
        assert sse.status_code == 200, sse.text
        assert '"status":"SUCCEEDED"' in sse.text
    async with _connect(server) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": _bearer(token)}))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        subscribe = {"query": FOLLOW_SEQ, "variables": {"id": execution_id}}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        types: list[str] = []
        async with asyncio.timeout(10):
            while not types or types[-1] == "next":
                types.append(json.loads(await socket.recv())["type"])
        assert types[-1] == "complete", types
        assert "next" in types, types
    viewer: dict[str, Any] = response.json()["data"]["viewer"]
    return viewer


async def test_identity_provider_jwt_maps_claims_to_workspace_and_role(
    server: Server, idp: IdentityProvider, finished: str
) -> None:
    viewer = await _accepted_everywhere(server, idp.token(), finished)
    assert viewer == {"label": "user:alice", "role": "OPERATOR", "workspaceName": "default"}
    # operator: may start executions (of saved scenarios: an inline command needs an editor),
    # may not mint tokens.
    execution_id = await start(server, scenario="hello", token=idp.token())
    await wait_for_status(server, execution_id, {"SUCCEEDED"})
    denied = await execute(
        server, CREATE_TOKEN, {"input": {"name": "x", "role": "ADMIN"}}, token=idp.token()
    )
    assert denied["createApiToken"]["__typename"] == "PermissionDeniedError"


async def test_jwt_without_role_claim_takes_the_members_role(
    server: Server, idp: IdentityProvider, finished: str
) -> None:
    token = idp.token(sub="bob", runwire_role=None)
    await _refused_over_http(server, f"Bearer {token}", finished, "not a member")
    member = await execute(server, SET_MEMBER_ROLE, {"subject": "bob", "role": "EDITOR"})
    assert member["setMemberRole"] == {
        "__typename": "MemberSuccess",
        "member": {"subject": "bob", "role": "EDITOR"},
    }
    viewer = await _accepted_everywhere(server, token, finished)
    assert viewer == {"label": "user:bob", "role": "EDITOR", "workspaceName": "default"}


async def test_api_token_from_the_cli_works_everywhere(server: Server, finished: str) -> None:
    _, secret = _cli_token(server, "cli-viewer")
    assert secret.startswith("rw_")
    viewer = await _accepted_everywhere(server, secret, finished)
    assert viewer == {"label": "token:cli-viewer", "role": "VIEWER", "workspaceName": "default"}


async def test_websocket_accepts_the_token_key_in_connection_init(server: Server) -> None:
    async with _connect(server) as socket:
        await socket.send(
            json.dumps({"type": "connection_init", "payload": {"token": server.token}})
        )
        assert json.loads(await socket.recv())["type"] == "connection_ack"


async def test_an_api_token_in_the_sse_url_is_refused_even_when_valid(
    server: Server, finished: str
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for name in ("token", "access_token"):
            response = await client.get(
                f"{server.url}/executions/{finished}/events", params={name: server.token}
            )
            assert response.status_code == 401, response.text
            assert "Traceback" not in response.text
            assert server.token not in response.text


@contextlib.asynccontextmanager
async def _long_execution(server: Server) -> AsyncIterator[str]:
    """A running execution that only ends when stopped (at the end of the block)."""
    execution_id = await start(server, definition=LONG)
    try:
        await wait_for_status(server, execution_id, {"RUNNING"})
        yield execution_id
    finally:
        await execute(server, STOP, {"id": execution_id, "reason": "test over"})


@contextlib.asynccontextmanager
async def _subscribed(
    server: Server, token: str, execution_id: str
) -> AsyncIterator[websockets.ClientConnection]:
    """A graphql-transport-ws socket following `execution_id`, past its first message."""
    async with _connect(server) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": _bearer(token)}))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        subscribe = {"query": FOLLOW_SEQ, "variables": {"id": execution_id}}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        assert json.loads(await socket.recv())["type"] == "next"
        yield socket


async def test_revoking_a_token_closes_its_live_subscription(server: Server) -> None:
    token_id, secret = _api_token(server, "live-viewer")
    async with (
        _long_execution(server) as execution_id,
        _subscribed(server, secret, execution_id) as socket,
    ):
        revoked = await execute(server, REVOKE_TOKEN, {"id": token_id})
        assert revoked["revokeApiToken"]["__typename"] == "RevokeApiTokenSuccess"
        revoked_at = time.monotonic()
        received = await _until_closed(socket)
        took = time.monotonic() - revoked_at
    assert socket.close_code == 4403
    assert all(message["type"] == "next" for message in received), received
    assert took < CLOSE_WITHIN_SECONDS, f"closed {took:.2f}s after revocation"


async def test_revoking_a_token_by_cli_ends_its_sse_stream_with_an_error(server: Server) -> None:
    token_id, secret = _cli_token(server, "live-sse")
    events: list[dict[str, str]] = []
    async with (
        _long_execution(server) as execution_id,
        httpx.AsyncClient(timeout=30) as client,
        client.stream(
            "GET", f"{server.url}/executions/{execution_id}/events", headers=_bearer(secret)
        ) as response,
        # Without revocation the stream would run until the 30 s sleep ends.
        asyncio.timeout(15),
    ):
        assert response.status_code == 200
        current: dict[str, str] = {}
        revoked_at: float | None = None
        async for line in response.aiter_lines():
            if line and ":" in line:
                field, _, value = line.partition(":")
                current[field] = value.strip()
            elif not line and current:
                events.append(current)
                current = {}
                if revoked_at is None:
                    # Another process revokes it; the watchdog reads revocations fresh.
                    await asyncio.to_thread(_cli, server, "token", "revoke", token_id)
                    revoked_at = time.monotonic()
        assert revoked_at is not None
        took = time.monotonic() - revoked_at
    assert events[0]["id"] == "1"
    assert events[-1]["event"] == "error", events
    assert "revoked" in events[-1]["data"]
    assert took < CLOSE_WITHIN_SECONDS, f"stream ended {took:.2f}s after revocation"


async def test_an_expiring_jwt_closes_its_live_subscription_after_exp(
    server: Server, idp: IdentityProvider
) -> None:
    async with _long_execution(server) as execution_id:
        expires = int(time.time()) + 3
        async with _subscribed(server, idp.token(exp=expires), execution_id) as socket:
            await _until_closed(socket)
            closed = time.time()
    assert socket.close_code == 4403
    # Not before exp (one tick of slack for clock granularity), and promptly after it.
    assert expires - 0.05 <= closed < expires + CLOSE_WITHIN_SECONDS, closed - expires


def _ticket(server: Server, execution_id: str) -> dict[str, Any]:
    created = _graphql(server, TICKET, {"id": execution_id})["createEventStreamTicket"]
    assert created["__typename"] == "EventStreamTicketSuccess", created
    return dict(created)


async def test_event_stream_ticket_opens_one_execution_only(server: Server, finished: str) -> None:
    ticket = _ticket(server, finished)
    assert ticket["url"] == f"/executions/{finished}/events?ticket={ticket['ticket']}"
    expires_in = datetime.fromisoformat(ticket["expiresAt"]) - datetime.now(UTC)
    assert timedelta(seconds=30) < expires_in <= timedelta(seconds=61)
    assert server.token not in ticket["url"]
    other = await start(server, definition=QUICK)
    await wait_for_status(server, other, {"SUCCEEDED"})
    header, claims, signature = ticket["ticket"].split(".")
    retargeted = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    retargeted["exe"] = other
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    async with httpx.AsyncClient(timeout=10) as client:
        # No header at all: the ticket alone opens the stream, to its end.
        opened = await client.get(f"{server.url}{ticket['url']}")
        assert opened.status_code == 200, opened.text
        assert '"status":"SUCCEEDED"' in opened.text
        refused = {
            "another execution": f"/executions/{other}/events?ticket={ticket['ticket']}",
            "claims changed": f"/executions/{other}/events?ticket={header}."
            f"{_b64url(json.dumps(retargeted).encode())}.{signature}",
            "signature changed": f"/executions/{finished}/events?ticket={header}.{claims}."
            f"{flipped}",
            "not a ticket": f"/executions/{finished}/events?ticket=rw_garbage",
        }
        for case, path in refused.items():
            response = await client.get(f"{server.url}{path}")
            assert response.status_code == 401, (case, response.text)
            assert "Traceback" not in response.text


async def test_revoking_a_token_ends_its_ticket_stream_and_refuses_the_ticket(
    server: Server,
) -> None:
    token_id, secret = _api_token(server, "ticket-holder")
    async with (
        _long_execution(server) as execution_id,
        httpx.AsyncClient(timeout=30) as client,
    ):
        created = await execute(server, TICKET, {"id": execution_id}, token=secret)
        url = f"{server.url}{created['createEventStreamTicket']['url']}"
        lines: list[str] = []
        async with client.stream("GET", url) as response, asyncio.timeout(15):
            assert response.status_code == 200
            revoked_at: float | None = None
            async for line in response.aiter_lines():
                lines.append(line)
                if revoked_at is None and line.startswith("id:"):
                    await execute(server, REVOKE_TOKEN, {"id": token_id})
                    revoked_at = time.monotonic()
            assert revoked_at is not None
            took = time.monotonic() - revoked_at
        assert "event: error" in lines, lines
        assert took < CLOSE_WITHIN_SECONDS, f"stream ended {took:.2f}s after revocation"
        refused = await client.get(url)
    assert refused.status_code == 401, refused.text
    assert "revoked" in refused.json()["detail"]


async def _set_member_role(server: Server, subject: str, role: str) -> None:
    result = await execute(server, SET_MEMBER_ROLE, {"subject": subject, "role": role})
    assert result["setMemberRole"]["__typename"] == "MemberSuccess", result


async def _remove_member(server: Server, subject: str) -> None:
    result = await execute(server, REMOVE_MEMBER, {"subject": subject})
    assert result["removeMember"] == {"__typename": "RemoveMemberSuccess", "subject": subject}


async def _member_jwt(server: Server, idp: IdentityProvider, subject: str, role: str) -> str:
    """A JWT without a role claim for a new member `subject` of the default workspace."""
    await _set_member_role(server, subject, role)
    return idp.token(sub=subject, runwire_role=None)


async def _role_over_http(server: Server, token: str) -> str:
    viewer = await execute(server, VIEWER, token=token)
    return str(viewer["viewer"]["role"])


async def _closed_after(
    socket: websockets.ClientConnection, lapse: Callable[[], Awaitable[None]]
) -> float:
    """Seconds from the end of `lapse()` until the server closed the socket with 4403."""
    await lapse()
    lapsed_at = time.monotonic()
    received = await _until_closed(socket)
    took = time.monotonic() - lapsed_at
    assert socket.close_code == 4403, (socket.close_code, socket.close_reason)
    assert all(message["type"] == "next" for message in received), received
    return took


async def _assert_stays_open(socket: websockets.ClientConnection) -> None:
    """The server keeps the socket open across several watchdog ticks and still answers."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(SEVERAL_TICKS_SECONDS):
            await socket.wait_closed()
    assert socket.close_code is None, (socket.close_code, socket.close_reason)
    async with asyncio.timeout(5):
        await (await socket.ping())


async def _sse_until_end(
    response: httpx.Response, lapse: Callable[[], Awaitable[None]]
) -> tuple[list[dict[str, str]], float]:
    """Every event of a stream, with `lapse()` run after the first; seconds from then to the end."""
    assert response.status_code == 200, response.status_code
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    lapsed_at: float | None = None
    # Unless `lapse` ends it, the stream runs until the 30 s sleep ends.
    async with asyncio.timeout(15):
        async for line in response.aiter_lines():
            if line and ":" in line:
                field, _, value = line.partition(":")
                current[field] = value.strip()
            elif not line and current:
                events.append(current)
                current = {}
                if lapsed_at is None:
                    await lapse()
                    lapsed_at = time.monotonic()
    assert lapsed_at is not None, events
    return events, time.monotonic() - lapsed_at


async def test_removing_a_member_closes_their_live_subscription(
    server: Server, idp: IdentityProvider
) -> None:
    token = await _member_jwt(server, idp, "carol", "OPERATOR")
    async with (
        _long_execution(server) as execution_id,
        _subscribed(server, token, execution_id) as socket,
    ):
        took = await _closed_after(socket, lambda: _remove_member(server, "carol"))
    assert took < CLOSE_WITHIN_SECONDS, f"closed {took:.2f}s after the member was removed"
    # Reconnecting with the same JWT gets nowhere either.
    await _refused_over_http(server, f"Bearer {token}", "", "not a member")


# A narrower and a wider role: either way the open connection holds a role the member no longer
# has, and reconnecting picks up the new one.
@pytest.mark.parametrize("new_role", ["VIEWER", "ADMIN"])
async def test_changing_a_members_role_closes_their_live_subscription(
    server: Server, idp: IdentityProvider, new_role: str
) -> None:
    subject = f"dave-to-{new_role.lower()}"
    token = await _member_jwt(server, idp, subject, "OPERATOR")
    async with (
        _long_execution(server) as execution_id,
        _subscribed(server, token, execution_id) as socket,
    ):
        took = await _closed_after(socket, lambda: _set_member_role(server, subject, new_role))
    assert took < CLOSE_WITHIN_SECONDS, f"closed {took:.2f}s after the role changed"
    assert await _role_over_http(server, token) == new_role


async def test_removing_a_member_ends_their_sse_stream_with_an_error(
    server: Server, idp: IdentityProvider
) -> None:
    token = await _member_jwt(server, idp, "erin", "VIEWER")
    async with (
        _long_execution(server) as execution_id,
        httpx.AsyncClient(timeout=30) as client,
        client.stream(
            "GET", f"{server.url}/executions/{execution_id}/events", headers=_bearer(token)
        ) as response,
    ):
        events, took = await _sse_until_end(response, lambda: _remove_member(server, "erin"))
    assert events[0]["id"] == "1"
    assert events[-1]["event"] == "error", events
    assert took < CLOSE_WITHIN_SECONDS, f"stream ended {took:.2f}s after the member was removed"


async def test_removing_a_member_ends_their_ticket_stream_and_refuses_the_ticket(
    server: Server, idp: IdentityProvider
) -> None:
    token = await _member_jwt(server, idp, "frank", "VIEWER")
    async with (
        _long_execution(server) as execution_id,
        httpx.AsyncClient(timeout=30) as client,
    ):
        created = await execute(server, TICKET, {"id": execution_id}, token=token)
        url = f"{server.url}{created['createEventStreamTicket']['url']}"
        async with client.stream("GET", url) as response:
            events, took = await _sse_until_end(response, lambda: _remove_member(server, "frank"))
        refused = await client.get(url)
    assert events[-1]["event"] == "error", events
    assert took < CLOSE_WITHIN_SECONDS, f"stream ended {took:.2f}s after the member was removed"
    # The ticket outlives the stream by up to a minute; the membership it names does not.
    assert refused.status_code == 401, refused.text


async def test_a_members_subscription_stays_open_while_the_membership_is_unchanged(
    server: Server, idp: IdentityProvider
) -> None:
    token = await _member_jwt(server, idp, "grace", "OPERATOR")
    async with (
        _long_execution(server) as execution_id,
        _subscribed(server, token, execution_id) as socket,
    ):
        await _assert_stays_open(socket)
        # Writing the same role again, and changes to other members, leave the role as it was.
        await _set_member_role(server, "grace", "OPERATOR")
        await _set_member_role(server, "grace-colleague", "VIEWER")
        await _remove_member(server, "grace-colleague")
        await _assert_stays_open(socket)


async def test_a_role_claim_is_not_tied_to_a_same_named_membership(
    server: Server, idp: IdentityProvider
) -> None:
    await _set_member_role(server, "heidi", "VIEWER")
    token = idp.token(sub="heidi", runwire_role="operator")
    # The claim wins over the membership, so the membership is no part of this credential.
    assert await _role_over_http(server, token) == "OPERATOR"
    async with (
        _long_execution(server) as execution_id,
        _subscribed(server, token, execution_id) as socket,
    ):
        await _remove_member(server, "heidi")
        await _assert_stays_open(socket)
    assert await _role_over_http(server, token) == "OPERATOR"


async def test_token_listing_shows_use_and_revocation_never_a_secret(server: Server) -> None:
    listing = """
    query { apiTokens { id name role createdAt createdBy expiresAt lastUsedAt revokedAt } }
    """
    token_id, secret = _api_token(server, "listed")

    async def listed() -> dict[str, Any]:
        result = await execute(server, listing)
        assert secret not in json.dumps(result)
        [found] = [t for t in result["apiTokens"] if t["id"] == token_id]
        return dict(found)

    before = await listed()
    assert before["lastUsedAt"] is None
    assert before["revokedAt"] is None
    assert before["role"] == "VIEWER"
    assert before["createdBy"].startswith("token:")
    assert _viewer_status(server, secret) == 200
    used = await listed()
    assert used["lastUsedAt"] is not None
    assert used["revokedAt"] is None
    await execute(server, REVOKE_TOKEN, {"id": token_id})
    assert (await listed())["revokedAt"] is not None

    fields = await execute(server, '{ __type(name: "ApiToken") { fields { name } } }')
    names = {field["name"].lower() for field in fields["__type"]["fields"]}
    assert not {name for name in names if "secret" in name or "hash" in name}, names

    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    refused = await execute(
        server, CREATE_TOKEN, {"input": {"name": "stale", "role": "VIEWER", "expiresAt": past}}
    )
    assert refused["createApiToken"]["__typename"] == "ValidationError"


def test_first_start_hands_over_one_admin_token_and_a_restart_keeps_it(tmp_path: Path) -> None:
    token_file = tmp_path / "data" / "admin-token"
    with running_server("sqlite", tmp_path) as first:
        assert first.token.startswith("rw_")
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
        assert first.log.read_text().count(first.token) == 1
    with running_server("sqlite", tmp_path) as second:
        restarted_log = second.log.read_text()
        assert first.token not in restarted_log
        assert "shown once" not in restarted_log
        assert token_file.read_text().strip() == first.token
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
        response = httpx.post(
            second.graphql_http, json={"query": VIEWER}, headers=_bearer(first.token)
        )
        assert response.json()["data"]["viewer"]["role"] == "ADMIN"
        listed = _cli(second, "workspace", "list").stdout.splitlines()
        assert [line.split("\t")[0] for line in listed] == ["default"]


def test_two_processes_starting_together_bootstrap_once(tmp_path: Path) -> None:
    with database("postgres") as url, contextlib.ExitStack() as stack:
        # Migrated beforehand (a clone of the migrated template), as deployments migrate once
        # before starting replicas: the race is the bootstrap's alone.
        assert url is not None
        managers = [
            running_server("postgres", tmp_path / name, database_url=url, token="")
            for name in ("a", "b")
        ]
        with ThreadPoolExecutor(2) as pool:
            starting = [pool.submit(manager.__enter__) for manager in managers]
        servers = []
        for manager, future in zip(managers, starting, strict=True):
            if future.exception() is None:
                servers.append(future.result())
                stack.push(manager.__exit__)
        for future in starting:
            future.result()

        written = [s for s in ("a", "b") if (tmp_path / s / "data" / "admin-token").exists()]
        assert len(written) == 1, written
        token = (tmp_path / written[0] / "data" / "admin-token").read_text().strip()
        assert sum(server.log.read_text().count(token) for server in servers) == 1
        for server in servers:
            response = httpx.post(
                server.graphql_http,
                json={"query": "{ viewer { role workspaceName } apiTokens { name } }"},
                headers=_bearer(token),
            )
            assert response.json()["data"] == {
                "viewer": {"role": "ADMIN", "workspaceName": "default"},
                "apiTokens": [{"name": "bootstrap-admin"}],
            }
        listed = _cli(servers[0], "workspace", "list").stdout.splitlines()
        assert [line.split("\t")[0] for line in listed] == ["default"]
        assert asyncio.run(_organizations(url)) == 1


async def _organizations(url: str) -> int:
    connection = await asyncpg.connect(url, timeout=3)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM runwire_organization"))
    finally:
        await connection.close()
