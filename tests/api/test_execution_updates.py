"""The live list: executionUpdates over a real websocket, and activeExecutionCounts."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from tests.support.graphql import STOP, definition, execute, start, wait_for_status, ws_transport
from tests.support.server import Server, running_pair

# Two slots: a third held execution stays QUEUED.
SERVER_SETTINGS = {"RUNWIRE_RUNNER_SLOTS": "2", "RUNWIRE_GRACE_SECONDS": "0.2"}

UPDATES = """
subscription Updates($filter: ExecutionFilter) {
  executionUpdates(filter: $filter) {
    status at kind
    execution { id status name error durationMs labels lastSeq }
  }
}
"""

COUNTS = "{ activeExecutionCounts { scenario queued running paused } }"
PAUSE = "mutation($id: ID!) { pauseExecution(id: $id) { __typename } }"

# Long enough that RUNNING and the end are separate changes, short enough for a quick test.
NAP = definition("{key: nap, kind: sleep, with: {seconds: 0.3}}", name="nap")
HOLD = definition("{key: hold, kind: sleep, with: {seconds: 60}}", name="hold")

Update = dict[str, Any]


class Watch:
    """The updates one executionUpdates subscription has delivered so far."""

    def __init__(self) -> None:
        self.updates: list[Update] = []
        self.task: asyncio.Task[None] | None = None

    def statuses(self, execution_id: str) -> list[str]:
        return [u["status"] for u in self.updates if u["execution"]["id"] == execution_id]

    def ids(self) -> set[str]:
        return {u["execution"]["id"] for u in self.updates}

    async def until(self, done: Callable[[Update], bool], timeout: float = 30) -> Update:
        """The first delivered update for which done(update) holds, waiting for it."""
        async with asyncio.timeout(timeout):
            while True:
                for update in self.updates:
                    if done(update):
                        return update
                assert self.task is not None
                if self.task.done():
                    self.task.result()  # the subscription failed: raise its error
                    raise AssertionError(f"subscription ended early: {self.updates}")
                await asyncio.sleep(0.02)


def reached(execution_id: str, status: str) -> Callable[[Update], bool]:
    return lambda u: u["execution"]["id"] == execution_id and u["status"] == status


async def followers(server: Server) -> int:
    async with httpx.AsyncClient() as client:
        return int((await client.get(f"{server.url}/health")).json()["followers"])


@contextlib.asynccontextmanager
async def watching(server: Server, filter: dict[str, Any] | None = None) -> AsyncIterator[Watch]:
    """An executionUpdates subscription, registered on the server when this enters."""
    watch = Watch()
    before = await followers(server)

    async def run() -> None:
        async with Client(transport=ws_transport(server)) as session:
            request = GraphQLRequest(UPDATES, variable_values={"filter": filter})
            async for message in session.subscribe(request):
                watch.updates.append(message["executionUpdates"])

    watch.task = asyncio.create_task(run())
    try:
        # No message confirms a subscription; the server's count of live subscribers does.
        async with asyncio.timeout(10):
            while await followers(server) == before:
                if watch.task.done():
                    watch.task.result()
                await asyncio.sleep(0.02)
        yield watch
    finally:
        watch.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch.task


async def test_a_filtered_subscriber_sees_only_matching_executions(server: Server) -> None:
    label = f"watched-{secrets.token_hex(3)}"
    async with watching(server) as everything, watching(server, {"label": label}) as mine:
        other = await start(server, definition=NAP, labels=["other"])
        await everything.until(reached(other, "SUCCEEDED"))
        # Changes reach each subscriber in order: anything of `other` would come before these.
        watched = await start(server, definition=NAP, labels=[label])
        end = await mine.until(reached(watched, "SUCCEEDED"))

    assert mine.ids() == {watched}
    assert mine.statuses(watched) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert everything.statuses(other) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert end["kind"] == "CHANGED"
    assert end["execution"]["status"] == "SUCCEEDED"
    assert end["execution"]["name"] == "nap"
    assert end["execution"]["labels"] == [label]
    assert end["execution"]["durationMs"] >= 250  # the 0.3 s nap, give or take rounding
    assert end["execution"]["error"] is None


async def test_a_status_filter_also_reports_leaving_it(server: Server) -> None:
    async with watching(server, {"statuses": ["RUNNING"]}) as running:
        first = await start(server, definition=NAP)
        await running.until(reached(first, "SUCCEEDED"))
        second = await start(server, definition=NAP)
        await running.until(reached(second, "SUCCEEDED"))
    # Entering RUNNING, and the change that ends it (so a list of running ones can drop it).
    assert running.statuses(first) == ["RUNNING", "SUCCEEDED"]
    assert running.statuses(second) == ["RUNNING", "SUCCEEDED"]


async def test_a_late_subscriber_hears_an_execution_leave_the_filter(server: Server) -> None:
    """A list read after subscribing shows what already ran; its end must reach the list too."""
    held = await start(server, definition=HOLD)
    await wait_for_status(server, held, {"RUNNING"})
    async with watching(server, {"statuses": ["RUNNING"]}) as running:
        await execute(server, STOP, {"id": held})
        await running.until(reached(held, "STOPPING"))
    # The change that takes it out of RUNNING (a list of running ones drops it), and no more.
    assert running.statuses(held) == ["STOPPING"]


async def test_a_started_execution_is_announced_as_queued(server: Server) -> None:
    async with watching(server) as everything:
        execution_id = await start(server, definition=NAP)
        await everything.until(reached(execution_id, "SUCCEEDED"))
    assert everything.statuses(execution_id) == ["QUEUED", "RUNNING", "SUCCEEDED"]


async def test_a_bad_filter_is_an_error_naming_the_field(server: Server) -> None:
    async with Client(transport=ws_transport(server)) as session:
        request = GraphQLRequest(UPDATES, variable_values={"filter": {"search": "x" * 201}})
        with pytest.raises(TransportQueryError, match=r"filter\.search"):
            async for _ in session.subscribe(request):
                pass


async def test_active_counts_per_scenario(server: Server) -> None:
    scenario = f"held-{secrets.token_hex(3)}"
    saved = await execute(
        server,
        "mutation($d: String!) { createScenario(definition: $d) { __typename } }",
        {"d": HOLD.replace("name: hold", f"name: {scenario}")},
    )
    assert saved["createScenario"]["__typename"] == "ScenarioSuccess"
    held = [await start(server, scenario=scenario) for _ in range(2)]
    for execution_id in held:
        await wait_for_status(server, execution_id, {"RUNNING"})
    # Both slots are taken: these wait.
    waiting = [await start(server, scenario=scenario), await start(server, definition=HOLD)]
    try:
        counts = (await execute(server, COUNTS))["activeExecutionCounts"]
        assert counts == [
            {"scenario": scenario, "queued": 1, "running": 2, "paused": 0},
            {"scenario": None, "queued": 1, "running": 0, "paused": 0},
        ]
        queue = (await execute(server, "{ queue { queued running slots } }"))["queue"]
        assert queue == {"queued": 2, "running": 2, "slots": 2}

        # A control transition (pausing a queued execution) is counted, and announced live.
        async with watching(server) as everything:
            paused = await execute(server, PAUSE, {"id": waiting[1]})
            assert paused["pauseExecution"]["__typename"] == "PauseExecutionSuccess", paused
            update = await everything.until(reached(waiting[1], "PAUSED"))
        assert update["execution"]["status"] == "PAUSED"
        counts = (await execute(server, COUNTS))["activeExecutionCounts"]
        assert counts[1] == {"scenario": None, "queued": 0, "running": 0, "paused": 1}
    finally:
        for execution_id in [*waiting, *held]:
            await execute(server, STOP, {"id": execution_id})
        for execution_id in [*waiting, *held]:
            await wait_for_status(server, execution_id, {"CANCELLED"})
    assert (await execute(server, COUNTS))["activeExecutionCounts"] == []


@pytest.fixture(scope="module", params=["postgres", "redis"])
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    """A runner process and an API-only process (no runner) sharing one database and bus."""
    backend = str(request.param)
    directory = tmp_path_factory.mktemp(f"pair-{backend}")
    with running_pair(backend, directory) as pair:
        yield pair


async def test_updates_from_a_runner_in_another_process(pair: tuple[Server, Server]) -> None:
    runner, api_only = pair
    async with watching(api_only) as remote, watching(runner) as local:
        execution_id = await start(api_only, definition=NAP)
        await remote.until(reached(execution_id, "SUCCEEDED"))
        # A later execution of the same runner: its updates follow any repeat of the first's
        # (the runner's own notices come back to it over the bus, and must not show twice).
        later = await start(api_only, definition=NAP)
        for watch in (remote, local):
            await watch.until(reached(later, "SUCCEEDED"))
    for watch in (remote, local):
        assert watch.statuses(execution_id) == ["QUEUED", "RUNNING", "SUCCEEDED"]
        assert watch.statuses(later) == ["QUEUED", "RUNNING", "SUCCEEDED"]
