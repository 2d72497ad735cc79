"""Start → follow → history, end to end through a real server with gql clients."""

from __future__ import annotations

import pytest
from tests.support.graphql import definition, execute, follow, start, wait_for_status
from tests.support.server import Server

HISTORY = """
query($filter: ExecutionFilter, $first: Int!, $after: String) {
  executions(filter: $filter, first: $first, after: $after) {
    edges { cursor node { id status labels scenario { name version } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

DETAIL = """
query($id: ID!) {
  execution(id: $id) {
    status durationMs startedAt finishedAt error inputs labels
    scenario { name version }
    steps { key kind status attempt exitCode durationMs output error }
  }
}
"""


async def test_inline_definition_runs_and_streams_every_event(server: Server) -> None:
    text = definition(
        '{key: greet, kind: shell, with: {argv: ["sh", "-c", "echo out; echo err >&2"]}}',
        "{key: nap, kind: sleep, with: {seconds: 0.05}}",
    )
    execution_id = await start(server, definition=text, labels=["smoke"])
    events = await follow(server, execution_id)

    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    statuses = [e["status"] for e in events if e["type"] == "EXECUTION_STATUS"]
    assert statuses == ["QUEUED", "RUNNING", "SUCCEEDED"]
    output = [(e["stream"], e["text"]) for e in events if e["type"] == "OUTPUT"]
    assert "".join(t for s, t in output if s == "stdout") == "out\n"
    assert "".join(t for s, t in output if s == "stderr") == "err\n"

    detail = (await execute(server, DETAIL, {"id": execution_id}))["execution"]
    assert detail["status"] == "SUCCEEDED"
    assert detail["labels"] == ["smoke"]
    assert detail["durationMs"] >= 50
    greet, nap = detail["steps"]
    assert (greet["key"], greet["status"], greet["exitCode"]) == ("greet", "SUCCEEDED", 0)
    assert greet["output"]["stdout"] == "out\n"
    assert (nap["key"], nap["status"], nap["attempt"]) == ("nap", "SUCCEEDED", 1)


async def test_saved_scenario_with_inputs_pins_its_version(server: Server) -> None:
    execution_id = await start(server, scenario="hello", inputs={"name": "Ada"})
    events = await follow(server, execution_id)
    text = "".join(e["text"] for e in events if e["type"] == "OUTPUT")
    assert text == "hello Ada\n"
    detail = (await execute(server, DETAIL, {"id": execution_id}))["execution"]
    assert detail["scenario"]["name"] == "hello"
    assert detail["scenario"]["version"] >= 1
    assert detail["inputs"] == {"name": "Ada"}


async def test_failing_step_fails_the_execution_and_skips_the_rest(server: Server) -> None:
    text = definition(
        '{key: bad, kind: shell, with: {argv: ["sh", "-c", "exit 3"]}}',
        '{key: never, kind: shell, with: {argv: ["true"]}}',
    )
    execution_id = await start(server, definition=text)
    events = await follow(server, execution_id)
    assert events[-1]["status"] == "FAILED"
    assert "exited with code 3" in events[-1]["error"]
    detail = (await execute(server, DETAIL, {"id": execution_id}))["execution"]
    assert [(s["key"], s["status"]) for s in detail["steps"]] == [
        ("bad", "FAILED"),
        ("never", "PENDING"),
    ]
    assert detail["steps"][0]["exitCode"] == 3


async def test_step_timeout_ends_timed_out_naming_the_step(server: Server) -> None:
    text = definition("{key: slow, kind: sleep, timeout: 0.2, with: {seconds: 10}}")
    execution_id = await start(server, definition=text)
    events = await follow(server, execution_id)
    assert events[-1]["status"] == "TIMED_OUT"
    assert "slow" in events[-1]["error"]


async def test_execution_timeout_override(server: Server) -> None:
    text = definition("{key: slow, kind: sleep, with: {seconds: 10}}")
    execution_id = await start(server, definition=text, timeoutSeconds=0.3)
    final = await wait_for_status(server, execution_id, {"TIMED_OUT"})
    assert "during step slow" in final["error"]


async def test_history_filters_and_keyset_pages(server: Server) -> None:
    label = f"page-{server.url[-5:]}"
    ids = [
        await start(
            server,
            definition=definition("{key: a, kind: sleep, with: {seconds: 0}}"),
            labels=[label],
        )
        for _ in range(5)
    ]
    for execution_id in ids:
        await wait_for_status(server, execution_id, {"SUCCEEDED"})

    seen: list[str] = []
    after = None
    while True:
        page = (
            await execute(server, HISTORY, {"filter": {"label": label}, "first": 2, "after": after})
        )["executions"]
        seen.extend(edge["node"]["id"] for edge in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == list(reversed(ids))

    failed = (
        await execute(
            server, HISTORY, {"filter": {"label": label, "statuses": ["FAILED"]}, "first": 10}
        )
    )["executions"]
    assert failed["edges"] == []


@pytest.mark.parametrize("first", [-1, 201])
async def test_page_size_is_capped(server: Server, first: int) -> None:
    from gql.transport.exceptions import TransportQueryError

    with pytest.raises(TransportQueryError, match=r"first: expected 0\.\.200"):
        await execute(server, HISTORY, {"first": first})


async def test_graphiql_of_the_real_server_loads_nothing_from_outside(server: Server) -> None:
    import re

    import httpx

    async with httpx.AsyncClient(base_url=server.url) as client:
        page = await client.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert assets
        assert "https://" not in page.text
        for asset in assets:
            if not asset.startswith("data:"):
                assert (await client.get(asset)).status_code == 200, asset
