"""What a newcomer meets at the edge: socket errors, SSE keepalive and casing, no OpenAPI pages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.graphql import acknowledged, definition, gated_step, start
from tests.support.server import Server, running_server

KEEPALIVE_SECONDS = 0.3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = {"RUNWIRE_SSE_KEEPALIVE_SECONDS": str(KEEPALIVE_SECONDS)}
    with running_server("sqlite", tmp_path_factory.mktemp("first-contact"), settings) as found:
        yield found


async def _answer(server: Server, query: object) -> dict[str, object]:
    """The one message a subscribe with `query` gets, on a socket that stays usable after it."""
    async with acknowledged(server) as ws:
        subscribe = {"id": "op", "type": "subscribe", "payload": {"query": query}}
        await ws.send(json.dumps(subscribe))
        answer: dict[str, object] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}
    return answer


def _messages(answer: dict[str, object]) -> list[str]:
    assert answer["type"] == "error", answer
    assert answer["id"] == "op", answer
    payload = answer["payload"]
    assert isinstance(payload, list)
    return [error["message"] for error in payload]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("subscription { executionEvents(", "Syntax Error: Expected Name, found <EOF>."),
        ("", "No GraphQL query found in the request"),
        (None, "No GraphQL query found in the request"),
        (
            ["{ viewer { label } }"],
            "The GraphQL operation's `query` must be a string or null, if provided.",
        ),
        ("subscription { nope }", "Cannot query field 'nope' on type 'Subscription'."),
    ],
    ids=["syntax", "empty", "null", "not-text", "unknown-field"],
)
async def test_a_bad_subscription_gets_an_error_message(
    server: Server, query: object, message: str
) -> None:
    assert _messages(await _answer(server, query)) == [message]
    log = server.log.read_text()
    assert "Traceback" not in log
    assert "Exception in worker task" not in log


@pytest.mark.parametrize(
    "path", ["/schema", "/schema/swagger", "/schema/redoc", "/schema/openapi.json"]
)
async def test_no_openapi_pages(server: Server, path: str) -> None:
    # The API is GraphQL; Litestar's OpenAPI pages were served unauthenticated, from CDNs.
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.url}{path}")
    assert response.status_code == 404, response.text
    assert "Litestar" not in response.text


async def test_a_quiet_sse_stream_gets_keepalive_comments(server: Server, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    execution_id = await start(server, definition=definition(gated_step("quiet", gate)))
    lines: list[str] = []
    try:
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream(
                "GET", f"{server.url}/executions/{execution_id}/events", headers=server.headers
            ) as response,
            asyncio.timeout(20),
        ):
            # Read until two keepalives came in a row: the step prints nothing meanwhile.
            async for line in response.aiter_lines():
                lines.append(line)
                if lines[-4:] == [": keepalive", "", ": keepalive", ""]:
                    break
    finally:
        gate.touch()
    assert lines.count(": keepalive") >= 2
    # Comments are not events: a reader that follows the SSE rules sees only the events.
    assert any(line.startswith("data:") for line in lines)
