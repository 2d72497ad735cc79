"""Two server processes on one Postgres: events and stops cross the bus and the database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.graphql import STOP, definition, execute, follow, start, wait_for_status
from tests.support.server import Server, running_pair

CHATTY = definition(
    '{key: chat, kind: shell, with: {argv: ["sh", "-c",'
    ' "for i in $(seq 1 40); do echo line $i; sleep 0.01; done"]}}'
)


@pytest.fixture(scope="module", params=["postgres", "redis"])
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    """A runner process and an API-only process (no runner) sharing one database and bus."""
    backend = str(request.param)
    directory = tmp_path_factory.mktemp(f"pair-{backend}")
    # A runner that polls rarely: starts and control requests must reach it on the bus.
    with running_pair(backend, directory, {"RUNWIRE_POLL_SECONDS": "20"}) as pair:
        yield pair


async def test_followers_on_another_process_see_every_event(
    pair: tuple[Server, Server],
) -> None:
    runner, api_only = pair
    ids = [await start(api_only, definition=CHATTY) for _ in range(3)]

    async def late(execution_id: str, delay: float, after: int) -> list[int]:
        await asyncio.sleep(delay)
        return [e["seq"] for e in await follow(api_only, execution_id, after)]

    jobs = [late(i, delay, after) for i in ids for delay, after in ((0, 0), (0.2, 0), (0.3, 5))]
    async with asyncio.timeout(60):
        results = await asyncio.gather(*jobs)
    query = "query($id: ID!) { execution(id: $id) { lastSeq status } }"
    for index, execution_id in enumerate(ids):
        found = (await execute(runner, query, {"id": execution_id}))["execution"]
        assert found["status"] == "SUCCEEDED"
        for (_, after), seqs in zip(
            ((0, 0), (0.2, 0), (0.3, 5)), results[index * 3 : index * 3 + 3], strict=True
        ):
            assert seqs == list(range(after + 1, found["lastSeq"] + 1))


async def test_stop_through_another_process_reaches_the_runner(
    pair: tuple[Server, Server], tmp_path: Path
) -> None:
    runner, api_only = pair
    text = definition('{key: wait, kind: shell, with: {argv: ["sleep", "60"]}}')
    execution_id = await start(api_only, definition=text)
    await wait_for_status(api_only, execution_id, {"RUNNING"})
    result = (await execute(api_only, STOP, {"id": execution_id, "reason": "remote"}))[
        "stopExecution"
    ]
    assert result["__typename"] == "StopExecutionSuccess"
    final = await wait_for_status(runner, execution_id, {"CANCELLED"}, timeout=15)
    assert "remote" in final["error"]


async def test_pause_resume_and_retry_through_another_process(
    pair: tuple[Server, Server], tmp_path: Path
) -> None:
    runner, api_only = pair
    marker = tmp_path / "ready"
    text = definition(
        "{key: first, kind: sleep, with: {seconds: 2}}",
        f'{{key: check, kind: shell, with: {{argv: ["test", "-f", "{marker}"]}}}}',
    )
    execution_id = await start(api_only, definition=text)
    await wait_for_status(api_only, execution_id, {"RUNNING"})

    pause = "mutation($id: ID!) { pauseExecution(id: $id) { __typename } }"
    assert (await execute(api_only, pause, {"id": execution_id}))["pauseExecution"] == {
        "__typename": "PauseExecutionSuccess"
    }
    await wait_for_status(runner, execution_id, {"PAUSED"}, timeout=15)

    resume = "mutation($id: ID!) { resumeExecution(id: $id) { __typename } }"
    await execute(api_only, resume, {"id": execution_id})
    await wait_for_status(runner, execution_id, {"FAILED"}, timeout=15)

    marker.touch()
    retry = 'mutation($id: ID!) { retryStep(executionId: $id, stepKey: "check") { __typename } }'
    assert (await execute(api_only, retry, {"id": execution_id}))["retryStep"] == {
        "__typename": "RetryStepSuccess"
    }
    await wait_for_status(runner, execution_id, {"SUCCEEDED"}, timeout=15)
