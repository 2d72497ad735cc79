"""A server's log in RUNWIRE_LOG_FORMAT=json: one object a line, with the ids of what it is about.

One server, its access log on (so each request has a line of its own to carry its id); it runs
an execution and is sent a WebSocket subscription and bad requests, then its log is read.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from tests.support.graphql import acknowledged, definition, start, wait_for_status
from tests.support.server import Server, running_server

JSON_LOGS = {"RUNWIRE_LOG_FORMAT": "json", "RUNWIRE_ACCESS_LOG": "true"}
# The first start's admin token goes straight to stderr, never through logging (core.py).
BANNER = re.compile(r"\nRunwire created workspace .*? Authorization: Bearer <token>\n\n", re.DOTALL)
ECHO = definition('{key: greet, kind: shell, with: {argv: ["echo", "hello"]}}')


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server("sqlite", tmp_path_factory.mktemp("json-logs"), JSON_LOGS) as found:
        yield found


def _records(server: Server) -> list[dict[str, Any]]:
    """Every line of the server's log, each parsed as JSON (a line that is not fails here)."""
    text = BANNER.sub("\n", server.log.read_text())
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def _records_showing(
    server: Server, found: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """The log once a record satisfies `found` (polled: lines are written as things happen)."""
    async with asyncio.timeout(10):
        while True:
            records = _records(server)
            if any(found(record) for record in records):
                return records
            await asyncio.sleep(0.05)


async def _post(
    server: Server, body: dict[str, Any], request_id: str | None, token: str | None = None
) -> httpx.Response:
    headers = {
        "Authorization": f"Bearer {token or server.token}",
        **({"X-Request-ID": request_id} if request_id else {}),
    }
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(server.graphql_http, json=body, headers=headers)


async def test_every_line_is_json_and_carries_the_ids_it_is_about(server: Server) -> None:
    execution_id = await start(server, definition=ECHO)
    await wait_for_status(server, execution_id, {"SUCCEEDED"})

    given = f"caller-{uuid.uuid4()}"
    answered = await _post(server, {"query": "{ viewer { label } }"}, given)
    assert answered.status_code == 200
    assert answered.headers["X-Request-ID"] == given  # a caller's sane id is kept
    # An id a log reader could be fooled by (spaces, or too long) is replaced by a new one.
    for unfit in ("two words", "x" * 200):
        replaced = await _post(server, {"query": "{ viewer { label } }"}, unfit)
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["X-Request-ID"])
    generated = (await _post(server, {"query": "{ viewer { label } }"}, None)).headers
    assert re.fullmatch(r"[0-9a-f]{32}", generated["X-Request-ID"])

    records = await _records_showing(server, lambda r: r.get("request_id") == given)
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
    # The runner's lines about the execution name it; the request's access line names the id
    # its response said back.
    about = [r for r in records if r.get("execution_id") == execution_id]
    assert [r["message"].split(" by ")[0] for r in about] == [
        "execution claimed",
        "execution succeeded",
    ]
    (access,) = [r for r in records if r.get("request_id") == given]
    assert access["logger"] == "uvicorn.access"
    assert '"POST /graphql HTTP/1.1" 200' in access["message"]


async def test_bad_requests_log_no_line_of_their_own_and_no_traceback(server: Server) -> None:
    bad = {
        "syntax": {"query": "{ viewer { label "},
        "validation": {"query": "{ noSuchField }"},
        "unknown-variable-type": {
            "query": "query($id: ID!) { execution(id: $id) { id } }",
            "variables": {"id": {"not": "an id"}},
        },
    }
    create_viewer = {
        "query": "mutation($input: CreateApiTokenInput!) { createApiToken(input: $input) {"
        " ... on CreateApiTokenSuccess { secret } } }",
        "variables": {"input": {"name": "log-viewer", "role": "VIEWER"}},
    }
    created = await _post(server, create_viewer, None)
    viewer = created.json()["data"]["createApiToken"]["secret"]
    ids = {}
    for name, body in bad.items():
        ids[name] = f"bad-{name}-{uuid.uuid4()}"
        response = await _post(server, body, ids[name])
        assert response.json()["errors"], response.text
    # A permission the caller's role lacks: FORBIDDEN, told the client.
    ids["forbidden"] = f"bad-forbidden-{uuid.uuid4()}"
    refused = await _post(server, {"query": "{ secrets { name } }"}, ids["forbidden"], viewer)
    assert refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN", refused.text
    # Following an execution that does not exist, over a WebSocket: NOT_FOUND, told the client.
    async with acknowledged(server) as socket:
        query = 'subscription { executionEvents(executionId: "no-such-execution") { lastSeq } }'
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        first = json.loads(await socket.recv())
        assert "not found" in json.dumps(first), first

    last = ids["forbidden"]
    records = await _records_showing(server, lambda r: r.get("request_id") == last)
    # Each bad request has its access line, and no other line at INFO or above.
    for name, request_id in ids.items():
        lines = [r for r in records if r.get("request_id") == request_id]
        assert [r["logger"] for r in lines] == ["uvicorn.access"], (name, lines)
    assert not [r for r in records if "exception" in r or "Traceback" in r["message"]]
    # Sockets opening and closing are not news (uvicorn's `websockets` logs them at INFO).
    assert not [r for r in records if r["message"] in ("connection open", "connection closed")]
