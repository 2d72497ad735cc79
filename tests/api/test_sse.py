"""Server-Sent Events: id is the seq; resume from Last-Event-ID or ?afterSeq=."""

from __future__ import annotations

import json
from typing import Any

import httpx
from tests.support.graphql import definition, start
from tests.support.server import Server

TEXT = definition('{key: lines, kind: shell, with: {argv: ["sh", "-c", "seq 1 50"]}}')


async def _read(
    server: Server, path: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream(
            "GET", f"{server.url}{path}", headers={**server.headers, **(headers or {})}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        current: dict[str, Any] = {}
        async for line in response.aiter_lines():
            if line.startswith("id:"):
                current["id"] = int(line[3:].strip())
            elif line.startswith("event:"):
                current["event"] = line[6:].strip()
            elif line.startswith("data:"):
                current["data"] = json.loads(line[5:].strip())
            elif not line and current:
                events.append(current)
                current = {}
    return events


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.capitalize() for part in rest)


async def test_sse_streams_to_the_end_and_resumes(server: Server) -> None:
    execution_id = await start(server, definition=TEXT)
    events = await _read(server, f"/executions/{execution_id}/events")
    ids = [event["id"] for event in events]
    assert ids == list(range(1, len(ids) + 1))
    assert events[-1]["data"]["status"] == "SUCCEEDED"
    assert all(event["data"]["seq"] == event["id"] for event in events)
    output = "".join(e["data"]["text"] for e in events if e["event"] == "OUTPUT")
    assert output == "".join(f"{i}\n" for i in range(1, 51))
    # One casing, the GraphQL fields': camelCase keys, however the event is stored.
    assert all(key == _camel(key) for event in events for key in event["data"]), events
    finished = [e["data"] for e in events if e["event"] == "STEP_STATUS"][-1]
    assert (finished["status"], finished["exitCode"]) == ("SUCCEEDED", 0), finished
    assert isinstance(events[-1]["data"]["durationMs"], int), events[-1]

    resumed = await _read(
        server, f"/executions/{execution_id}/events", {"Last-Event-ID": str(ids[-3])}
    )
    assert [event["id"] for event in resumed] == ids[-2:]
    by_query = await _read(server, f"/executions/{execution_id}/events?afterSeq={ids[-4]}")
    assert [event["id"] for event in by_query] == ids[-3:]
    # An EventSource reconnecting to its ?afterSeq= URL says how far it got: no replay.
    reconnected = await _read(
        server,
        f"/executions/{execution_id}/events?afterSeq={ids[-4]}",
        {"Last-Event-ID": str(ids[-2])},
    )
    assert [event["id"] for event in reconnected] == ids[-1:]
    behind = await _read(
        server,
        f"/executions/{execution_id}/events?afterSeq={ids[-2]}",
        {"Last-Event-ID": str(ids[-4])},
    )
    assert [event["id"] for event in behind] == ids[-1:]


async def test_sse_unknown_execution_is_404_without_a_trace(server: Server) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.url}/executions/nope/events", headers=server.headers)
    assert response.status_code == 404
    assert "Traceback" not in response.text
