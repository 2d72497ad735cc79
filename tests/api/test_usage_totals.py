"""Usage totals where a user looks: execution, step attempts, batches, metrics, and live updates.

The app is the real one (runner, event log, hub, GraphQL over uvicorn) on SQLite and Postgres,
with one step kind more, registered only here: `report`, which reports usage through the runner's
StepContext.usage as the llm and agent kinds do, and can wait for the test to let it end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import warnings
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from prometheus_client.parser import text_string_to_metric_families
from tests.support import postgres
from tests.support.graphql import definition, execute, start, wait_for_status, ws_transport
from tests.support.inprocess import Served, serving

from runwire.app import create_app
from runwire.domain.agents import Usage
from runwire.domain.clock import utc_now
from runwire.runner.steps import step_kinds
from runwire.runner.steps.base import StepContext, StepResult
from runwire.settings import Settings

# runwire-fake-* is priced at $1 per million input and $4 per million output tokens.
PRICED = "runwire-fake-small"
UNPRICED = "nobody-prices-this-model"
SCRAPE_TOKEN = secrets.token_hex(16)

USAGE = "usage { calls tokensInput tokensOutput tokensCached tokensReasoning costUsd unpriced }"
EXECUTION = f"""
query($id: ID!) {{
  execution(id: $id) {{ status lastSeq {USAGE} steps {{ key attempt status {USAGE} }} }}
}}
"""
UPDATES = f"""
subscription($filter: ExecutionFilter) {{
  executionUpdates(filter: $filter) {{ kind status execution {{ id status lastSeq {USAGE} }} }}
}}
"""


class ReportStep:
    """Reports the usages its `with.reports` lists, each between the gates it names, if any:
    `after` opens before it reports, `gate` before it ends."""

    name = "report"
    runs_processes = False

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    def parse(self, params: Any, path: str) -> Any:
        return params

    def idempotent(self, params: Any) -> bool:
        return False

    async def run(self, params: Any, context: StepContext) -> StepResult:
        if "after" in params:
            await self.gate(params["after"]).wait()
        for report in params.get("reports", []):
            context.usage(
                Usage(
                    model=report["model"],
                    input=report["input"],
                    output=report["output"],
                    cached=report.get("cached", 0),
                    reasoning=report.get("reasoning", 0),
                )
            )
        if "gate" in params:
            await self.gate(params["gate"]).wait()
        return StepResult(output="reported")


def reporting(
    key: str, *reports: tuple[str, int, int], after: str | None = None, gate: str | None = None
) -> str:
    """A `report` step in flow style."""
    body: dict[str, Any] = {
        "reports": [{"model": model, "input": i, "output": o} for model, i, o in reports]
    }
    if after is not None:
        body["after"] = after
    if gate is not None:
        body["gate"] = gate
    return f"{{key: {key}, kind: report, with: {json.dumps(body)}}}"


def cost(input: int, output: int) -> float:
    return (input * 1.0 + output * 4.0) / 1_000_000


@pytest.fixture(params=["sqlite", "postgres"])
async def served(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Served]:
    async with contextlib.AsyncExitStack() as stack:
        url = None
        if request.param == "postgres":
            url = await stack.enter_async_context(postgres.fresh_database())
        settings = Settings(
            data_dir=tmp_path / "data",
            load_examples=False,
            step_user="",  # steps as the test's user: see OWN_USER_STEPS
            metrics_token=SCRAPE_TOKEN,
            **({} if url is None else {"database_url": url}),
        )
        step = ReportStep()
        with warnings.catch_warnings():
            # As in tests/contract/conftest.py: Litestar's deprecations, printed by `serve`.
            warnings.simplefilter("ignore", DeprecationWarning)
            app = create_app(settings, {**step_kinds(settings), "report": step})
        app.state.report_step = step
        yield await stack.enter_async_context(serving(app, settings.admin_token_file))


def gate(served: Served, name: str) -> asyncio.Event:
    step: ReportStep = served.app.state.report_step
    return step.gate(name)


@contextlib.asynccontextmanager
async def watching(served: Served, label: str) -> AsyncIterator[list[dict[str, Any]]]:
    """executionUpdates for executions with `label`, as a real client receives them."""
    received: list[dict[str, Any]] = []
    subscribed = asyncio.Event()

    async def run() -> None:
        async with Client(transport=ws_transport(served)) as session:
            request = GraphQLRequest(UPDATES, variable_values={"filter": {"label": label}})
            subscribed.set()
            async for message in session.subscribe(request):
                received.append(message["executionUpdates"])

    task = asyncio.create_task(run())
    try:
        async with asyncio.timeout(10):
            await subscribed.wait()
            # No message confirms a subscription; the hub's count of watchers does.
            while served.app.state.core.hub.watcher_count == 0:
                assert not task.done(), task
                await asyncio.sleep(0.02)
        yield received
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(
    received: list[dict[str, Any]], done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            for update in received:
                if done(update):
                    return update
            await asyncio.sleep(0.02)


async def test_totals_are_stored_per_attempt_and_execution_and_sent_live(served: Served) -> None:
    label = f"live-{secrets.token_hex(4)}"
    async with watching(served, label) as received:
        execution_id = await start(
            served,
            definition=definition(
                reporting("first", (PRICED, 1000, 500), after="go"),
                # After the first: a step without `needs` depends on the one before it.
                reporting("second", (PRICED, 2000, 100), (PRICED, 300, 20), gate="second"),
            ),
            labels=[label],
        )
        running = await until(received, lambda u: u["status"] == "RUNNING")
        assert running["execution"]["usage"]["calls"] == 0
        gate(served, "go").set()

        # While the second step waits, a subscriber sees the totals of all three reports
        # without asking: a CHANGED update with the status it already had (no status changed
        # since RUNNING, so only a usage change sends it).
        live = await until(received, lambda u: u["execution"]["usage"]["calls"] == 3)
        assert live["kind"] == "CHANGED"
        assert live["status"] == live["execution"]["status"] == "RUNNING"
        usage = live["execution"]["usage"]
        assert (usage["tokensInput"], usage["tokensOutput"]) == (3300, 620)
        assert usage["costUsd"] == pytest.approx(cost(3300, 620))
        assert usage["unpriced"] == 0

        # A query reads the same from the rows: the running attempt's too, before it ends.
        found = (await execute(served, EXECUTION, {"id": execution_id}))["execution"]
        assert found["status"] == "RUNNING"
        assert found["usage"] == usage
        steps = {step["key"]: step for step in found["steps"]}
        assert steps["first"]["status"] == "SUCCEEDED"
        assert steps["first"]["usage"]["calls"] == 1
        assert steps["first"]["usage"]["costUsd"] == pytest.approx(cost(1000, 500))
        assert steps["second"]["status"] == "RUNNING"
        assert steps["second"]["usage"]["calls"] == 2
        assert steps["second"]["usage"]["tokensInput"] == 2300
        assert steps["second"]["usage"]["costUsd"] == pytest.approx(cost(2300, 120))

        gate(served, "second").set()
        await wait_for_status(served, execution_id, {"SUCCEEDED"})
        ended = await until(received, lambda u: u["status"] == "SUCCEEDED")
        assert ended["execution"]["usage"] == usage

    found = (await execute(served, EXECUTION, {"id": execution_id}))["execution"]
    assert found["usage"] == usage
    assert sum(step["usage"]["calls"] for step in found["steps"]) == 3


async def test_many_small_reports_are_coalesced_for_the_live_list(served: Served) -> None:
    label = f"stream-{secrets.token_hex(4)}"
    reports = [(PRICED, 10, 1)] * 200
    async with watching(served, label) as received:
        execution_id = await start(
            served,
            definition=definition(reporting("chatty", *reports, after="go", gate="chatty")),
            labels=[label],
        )
        await until(received, lambda u: u["status"] == "RUNNING")
        gate(served, "go").set()
        await until(received, lambda u: u["execution"]["usage"]["calls"] == 200)
        gate(served, "chatty").set()
        await until(received, lambda u: u["status"] == "SUCCEEDED")
    # 200 reports in a moment: besides the status changes, one usage update per interval (the
    # reports may straddle one or two interval ends), not one per report.
    usage = [u["execution"]["usage"]["calls"] for u in received if u["status"] == "RUNNING"][1:]
    assert 1 <= len(usage) <= 3, usage
    assert usage[-1] == 200
    seqs = [u["execution"]["lastSeq"] for u in received if u["execution"]["id"] == execution_id]
    assert seqs == sorted(seqs)


async def test_unpriced_usage_makes_every_cost_null_never_zero(served: Served) -> None:
    label = f"unpriced-{secrets.token_hex(4)}"
    since = utc_now() - timedelta(minutes=1)
    execution_id = await start(
        served,
        definition=definition(
            reporting("priced", (PRICED, 1000, 1000)),
            reporting("unknown", (UNPRICED, 50, 5)),
        ),
        labels=[label],
    )
    await wait_for_status(served, execution_id, {"SUCCEEDED"})
    found = (await execute(served, EXECUTION, {"id": execution_id}))["execution"]
    assert found["usage"] == {
        "calls": 2,
        "tokensInput": 1050,
        "tokensOutput": 1005,
        "tokensCached": 0,
        "tokensReasoning": 0,
        "costUsd": None,
        "unpriced": 1,
    }
    steps = {step["key"]: step["usage"] for step in found["steps"]}
    assert steps["priced"]["costUsd"] == pytest.approx(cost(1000, 1000))
    assert steps["unknown"]["costUsd"] is None
    assert steps["unknown"]["unpriced"] == 1

    metrics = await execute(
        served,
        f"query($since: DateTime!, $until: DateTime!, $labels: [String!])"
        f" {{ executionMetrics(since: $since, until: $until, labels: $labels)"
        f" {{ finished {USAGE} }} }}",
        {
            "since": since.isoformat(),
            "until": (utc_now() + timedelta(minutes=1)).isoformat(),
            "labels": [label],
        },
    )
    assert metrics["executionMetrics"]["finished"] == 1
    assert metrics["executionMetrics"]["usage"] == found["usage"]

    # Prometheus' counters (this app's runner ran nothing else): every token, and the cost of
    # what had a price; the unpriced usage adds nothing to the cost.
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(
            f"{served.url}/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}
        )
    assert response.status_code == 200
    series = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    inline = ("scenario", "")
    assert series["runwire_llm_tokens_total", (("kind", "input"), inline)] == 1050
    assert series["runwire_llm_tokens_total", (("kind", "output"), inline)] == 1005
    assert series["runwire_llm_cost_usd_total", (inline,)] == pytest.approx(cost(1000, 1000))


BATCH = """
mutation($input: StartBatchInput!) {
  startBatch(input: $input) { __typename ... on BatchSuccess { batch { id } } }
}
"""
BATCH_USAGE = f"query($id: ID!) {{ batch(id: $id) {{ total succeeded {USAGE} }} }}"


async def test_batch_and_metrics_totals_sum_their_executions(served: Served) -> None:
    label = f"batch-{secrets.token_hex(4)}"
    since = utc_now() - timedelta(minutes=1)
    started = await execute(
        served,
        BATCH,
        {
            "input": {
                "definition": definition(reporting("talk", (PRICED, 100, 10))),
                "runs": [{"inputs": {}}, {"inputs": {}}, {"inputs": {}}],
                "concurrency": 3,
                "labels": [label],
            }
        },
    )
    assert started["startBatch"]["__typename"] == "BatchSuccess", started
    batch_id = started["startBatch"]["batch"]["id"]

    async with asyncio.timeout(15):
        while True:
            batch = (await execute(served, BATCH_USAGE, {"id": batch_id}))["batch"]
            if batch["succeeded"] == batch["total"]:
                break
            await asyncio.sleep(0.05)
    assert batch["usage"]["calls"] == 3
    assert (batch["usage"]["tokensInput"], batch["usage"]["tokensOutput"]) == (300, 30)
    assert batch["usage"]["costUsd"] == pytest.approx(3 * cost(100, 10))

    metrics = await execute(
        served,
        f"query($since: DateTime!, $until: DateTime!, $labels: [String!])"
        f" {{ executionMetrics(since: $since, until: $until, labels: $labels)"
        f" {{ finished {USAGE} }} }}",
        {
            "since": since.isoformat(),
            "until": (utc_now() + timedelta(minutes=1)).isoformat(),
            "labels": [label],
        },
    )
    assert metrics["executionMetrics"]["finished"] == 3
    assert metrics["executionMetrics"]["usage"] == batch["usage"]

    # Nothing reported: zero tokens and a cost of 0 that is known, not null.
    empty = await execute(
        served,
        f"query($since: DateTime!, $until: DateTime!)"
        f' {{ executionMetrics(since: $since, until: $until, labels: ["none-{label}"])'
        f" {{ {USAGE} }} }}",
        {"since": since.isoformat(), "until": (utc_now() + timedelta(minutes=1)).isoformat()},
    )
    assert empty["executionMetrics"]["usage"]["calls"] == 0
    assert empty["executionMetrics"]["usage"]["costUsd"] == 0
