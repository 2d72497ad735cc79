"""What a newcomer meets at the edge: socket errors, SSE keepalive and casing, no OpenAPI pages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.browser import Browser, PageError, static_site
from tests.support.graphql import acknowledged, definition, gated_step, start
from tests.support.server import Server, free_port, running_server

from runwire.app import cors_config
from runwire.settings import Settings

KEEPALIVE_SECONDS = 0.3
TEXT = definition('{key: hello, kind: shell, with: {argv: ["echo", "hello"]}}')


@pytest.fixture(scope="module")
def allowed_origin() -> str:
    """The origin of a frontend allowed to call the API (its page is served there later)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, allowed_origin: str) -> Iterator[Server]:
    settings = {
        "RUNWIRE_SSE_KEEPALIVE_SECONDS": str(KEEPALIVE_SECONDS),
        "RUNWIRE_CORS_ORIGINS": f"https://app.example.com, {allowed_origin}",
    }
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


# What a page sends: a bearer token in a header (not simple: the browser preflights it).
PREFLIGHT = {"Access-Control-Request-Headers": "authorization, content-type"}
DISALLOWED = "http://evil.example"


async def _preflight(server: Server, path: str, origin: str, method: str) -> httpx.Response:
    headers = {**PREFLIGHT, "Origin": origin, "Access-Control-Request-Method": method}
    async with httpx.AsyncClient() as client:
        return await client.options(f"{server.url}{path}", headers=headers)


@pytest.mark.parametrize(
    ("path", "method"),
    [("/graphql", "POST"), ("/executions/e1/events", "GET"), ("/artifacts/a1", "GET")],
    ids=["graphql", "sse", "artifact"],
)
async def test_preflight_answers_allowed_origins_only(
    server: Server, allowed_origin: str, path: str, method: str
) -> None:
    allowed = await _preflight(server, path, allowed_origin, method)
    assert allowed.status_code in {200, 204}, allowed.text
    assert allowed.headers["access-control-allow-origin"] == allowed_origin
    granted = {h.strip() for h in allowed.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= {h.lower() for h in granted}
    assert method in allowed.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in allowed.headers

    refused = await _preflight(server, path, DISALLOWED, method)
    assert not any(name.startswith("access-control-") for name in refused.headers), refused.headers


async def test_responses_carry_cors_headers_for_allowed_origins_only(
    server: Server, allowed_origin: str
) -> None:
    query = {"query": "{ viewer { label } }"}
    async with httpx.AsyncClient() as client:
        for origin, expected in ((allowed_origin, allowed_origin), (DISALLOWED, None)):
            response = await client.post(
                server.graphql_http, json=query, headers={**server.headers, "Origin": origin}
            )
            assert response.status_code == 200, response.text
            assert response.headers.get("access-control-allow-origin") == expected
        # A refusal too, or the page could not tell an expired token from a network failure.
        refused = await client.post(
            server.graphql_http,
            json=query,
            headers={"Authorization": "Bearer rw_expired", "Origin": allowed_origin},
        )
        assert refused.status_code == 401, refused.text
        assert refused.headers.get("access-control-allow-origin") == allowed_origin
        missing = await client.get(
            f"{server.url}/executions/nope/events",
            headers={**server.headers, "Origin": allowed_origin},
        )
        assert missing.status_code == 404, missing.text
        assert missing.headers.get("access-control-allow-origin") == allowed_origin


def test_no_cors_headers_unless_origins_are_set() -> None:
    assert cors_config(Settings()) is None
    listed = Settings.from_env({"RUNWIRE_CORS_ORIGINS": " https://a.example , http://b:8080,"})
    assert listed.cors_origins == ("https://a.example", "http://b:8080")
    assert Settings.from_env({"RUNWIRE_CORS_ORIGINS": "*"}).cors_origins == ("*",)
    # Not what a browser sends as Origin: it would never match, so it is refused at start.
    for wrong in (
        "https://app.example.com/",
        "app.example.com",
        "https://*.example.com",
        "http://b:x",
    ):
        with pytest.raises(ValueError, match="RUNWIRE_CORS_ORIGINS"):
            Settings.from_env({"RUNWIRE_CORS_ORIGINS": wrong})
    with pytest.raises(ValueError, match="RUNWIRE_SSE_KEEPALIVE_SECONDS"):
        Settings.from_env({"RUNWIRE_SSE_KEEPALIVE_SECONDS": "0"})


FETCH_VIEWER = """
fetch(%(url)s + "/graphql", {
  method: "POST",
  headers: {"Authorization": "Bearer " + %(token)s, "Content-Type": "application/json"},
  body: JSON.stringify({query: "{ viewer { label } }"}),
}).then((response) => response.json())
"""

FIRST_EVENT = """
fetch(%(url)s + "/executions/" + %(id)s + "/events", {
  headers: {"Authorization": "Bearer " + %(token)s},
}).then(async (response) => {
  const reader = response.body.getReader();
  const {value} = await reader.read();
  await reader.cancel();
  return new TextDecoder().decode(value);
})
"""


async def test_a_browser_page_calls_the_api_from_an_allowed_origin_only(
    server: Server, allowed_origin: str, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>frontend</title>")
    execution_id = await start(server, definition=TEXT)
    names = {
        "url": json.dumps(server.url),
        "token": json.dumps(server.token),
        "id": json.dumps(execution_id),
    }
    port = int(allowed_origin.rsplit(":", 1)[1])
    async with Browser.running(tmp_path) as browser:
        with static_site(tmp_path, port) as origin:
            async with browser.page(f"{origin}/index.html") as page:
                answer = await page.evaluate(FETCH_VIEWER % names)
                assert answer == {"data": {"viewer": {"label": "token:bootstrap-admin"}}}, answer
                first = await page.evaluate(FIRST_EVENT % names)
                assert "id: 1" in first, first
        with static_site(tmp_path) as other:
            async with browser.page(f"{other}/index.html") as page:
                with pytest.raises(PageError, match="Failed to fetch"):
                    await page.evaluate(FETCH_VIEWER % names)
                with pytest.raises(PageError, match="Failed to fetch"):
                    await page.evaluate(FIRST_EVENT % names)
