"""executionMetrics, the history filters and Prometheus' /metrics, through a real server and
real clients (gql, httpx; the exposition parsed by prometheus_client's own parser)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
from gql.transport.exceptions import TransportQueryError
from prometheus_client.parser import text_string_to_metric_families
from tests.support.graphql import STOP, definition, execute, gated_step, start, wait_for_status
from tests.support.server import Server

SCRAPE_TOKEN = secrets.token_hex(16)
SERVER_SETTINGS = {"RUNWIRE_METRICS_TOKEN": SCRAPE_TOKEN}

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"}

METRICS = """
query($since: DateTime!, $until: DateTime!, $scenario: String, $labels: [String!]) {
  executionMetrics(since: $since, until: $until, scenario: $scenario, labels: $labels) {
    since until finished successRate throughputPerMinute measured
    p50DurationMs p95DurationMs maxDurationMs
    counts { status count }
  }
}
"""

HISTORY = """
query($filter: ExecutionFilter, $first: Int!, $after: String) {
  executions(filter: $filter, first: $first, after: $after) {
    edges { node { id name status durationMs finishedAt labels error scenario { name } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


async def _history(server: Server, where: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every execution the history query returns for `where`, following every page."""
    found: list[dict[str, Any]] = []
    after = None
    while True:
        page = (await execute(server, HISTORY, {"filter": where, "first": 2, "after": after}))[
            "executions"
        ]
        found.extend(edge["node"] for edge in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


async def _metrics(
    server: Server, since: datetime, until: datetime, **narrowing: Any
) -> dict[str, Any]:
    variables = {"since": since.isoformat(), "until": until.isoformat(), **narrowing}
    return dict((await execute(server, METRICS, variables))["executionMetrics"])


def _hand_count(executions: list[dict[str, Any]], minutes: float) -> dict[str, Any]:
    """What executionMetrics should say about `executions`, counted here from their fields."""
    statuses = Counter(e["status"] for e in executions)
    durations = sorted(e["durationMs"] for e in executions if e["durationMs"] is not None)

    def nearest_rank(percent: int) -> int | None:
        # The ceil(p * N / 100)-th smallest, with exact fractions.
        if not durations:
            return None
        return durations[math.ceil(Fraction(percent * len(durations), 100)) - 1]

    finished = len(executions)
    return {
        "finished": finished,
        "counts": {status: statuses.get(status, 0) for status in TERMINAL},
        "successRate": statuses["SUCCEEDED"] / finished if finished else None,
        "throughputPerMinute": pytest.approx(finished / minutes),
        "measured": len(durations),
        "p50DurationMs": nearest_rank(50),
        "p95DurationMs": nearest_rank(95),
        "maxDurationMs": max(durations, default=None),
    }


def _as_checked(metrics: dict[str, Any]) -> dict[str, Any]:
    counts = {item["status"]: item["count"] for item in metrics["counts"]}
    assert len(counts) == len(metrics["counts"]) == len(TERMINAL)
    return {
        key: counts if key == "counts" else metrics[key]
        for key in (
            "finished",
            "counts",
            "successRate",
            "throughputPerMinute",
            "measured",
            "p50DurationMs",
            "p95DurationMs",
            "maxDurationMs",
        )
    }


def _in_window(
    executions: list[dict[str, Any]], since: datetime, until: datetime
) -> list[dict[str, Any]]:
    return [
        e
        for e in executions
        if e["finishedAt"] and since <= datetime.fromisoformat(e["finishedAt"]) < until
    ]


async def test_metrics_match_a_hand_count(server: Server) -> None:
    label = f"mix-{secrets.token_hex(4)}"
    slow = f"{label}-slow"
    since = datetime.now(UTC)

    def shell(code: int) -> str:
        return definition(f'{{key: s, kind: shell, with: {{argv: ["sh", "-c", "exit {code}"]}}}}')

    def nap(seconds: float) -> str:
        return definition(f"{{key: nap, kind: sleep, with: {{seconds: {seconds}}}}}")

    ids = [
        await start(server, definition=shell(0), labels=[label]),
        await start(server, definition=shell(0), labels=[label]),
        await start(server, definition=shell(1), labels=[label]),
        await start(server, definition=shell(1), labels=[label]),
        await start(server, definition=nap(0.05), labels=[label]),
        await start(server, definition=nap(0.2), labels=[label, slow]),
        await start(server, definition=nap(0.4), labels=[label, slow]),
        await start(server, scenario="hello", inputs={"name": "metrics"}, labels=[label]),
        await start(
            server,
            definition=definition("{key: late, kind: sleep, timeout: 0.2, with: {seconds: 10}}"),
            labels=[label, slow],
        ),
    ]
    stopped = await start(server, definition=nap(30), labels=[label])
    await wait_for_status(server, stopped, {"RUNNING"})
    assert (await execute(server, STOP, {"id": stopped}))["stopExecution"]["__typename"] == (
        "StopExecutionSuccess"
    )
    ids.append(stopped)
    for execution_id in ids:
        await wait_for_status(server, execution_id, TERMINAL)
    # Every execution above has ended before this instant, so the window is closed: nothing
    # finishing later can change the answer between the metrics and the hand count.
    until = datetime.now(UTC)
    minutes = (until - since).total_seconds() / 60

    everything = await _history(server)
    mine = [e for e in everything if label in e["labels"]]
    assert {e["id"] for e in mine} == set(ids)
    assert {e["status"] for e in mine} == TERMINAL
    assert all(e["durationMs"] is not None for e in mine)

    # The whole window (other tests' executions included, counted the same way).
    measured = await _metrics(server, since, until)
    assert _as_checked(measured) == _hand_count(_in_window(everything, since, until), minutes)
    assert datetime.fromisoformat(measured["since"]) == since
    assert datetime.fromisoformat(measured["until"]) == until

    # Narrowed to this test's executions by label, then by every label given, then by scenario.
    assert _as_checked(await _metrics(server, since, until, labels=[label])) == _hand_count(
        mine, minutes
    )
    slow_ones = [e for e in mine if slow in e["labels"]]
    assert len(slow_ones) == 3
    assert _as_checked(await _metrics(server, since, until, labels=[slow, label])) == _hand_count(
        slow_ones, minutes
    )
    hello = [e for e in mine if e["scenario"] and e["scenario"]["name"] == "hello"]
    assert len(hello) == 1
    assert _as_checked(
        await _metrics(server, since, until, scenario="hello", labels=[label])
    ) == _hand_count(hello, minutes)

    # A window before any of them ended counts nothing.
    empty = await _metrics(server, since - timedelta(hours=2), since - timedelta(hours=1))
    assert _as_checked(empty) == _hand_count([], 60)
    assert empty["successRate"] is None
    assert empty["p50DurationMs"] is None


@pytest.mark.parametrize(
    ("until", "labels", "message"),
    [
        (timedelta(0), None, "until: must be later than since"),
        (timedelta(seconds=-1), None, "until: must be later than since"),
        (timedelta(days=366, seconds=1), None, "until: at most 366 days after since"),
        (timedelta(hours=1), [f"l{n}" for n in range(21)], "labels: at most 20 labels"),
    ],
)
async def test_bad_windows_are_clear_errors(
    server: Server, until: timedelta, labels: list[str] | None, message: str
) -> None:
    since = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(TransportQueryError, match=message) as raised:
        await _metrics(server, since, since + until, labels=labels)
    assert "Internal error" not in str(raised.value)


async def test_search_matches_name_label_and_error_literally(server: Server) -> None:
    token = secrets.token_hex(4)
    ok = '{key: s, kind: shell, with: {argv: ["true"]}}'
    by_name = await start(server, definition=definition(ok, name=f"Nightly-{token}-Checkout"))
    by_label = await start(server, definition=definition(ok), labels=[f"Team-{token}-CHECKOUT"])
    by_error = await start(
        server,
        definition=definition(f'{{key: boom{token}, kind: shell, with: {{argv: ["false"]}}}}'),
    )
    # Names allow no % (labels do), so the % cases are labels.
    percent = await start(server, definition=definition(ok), labels=[f"load {token} 100% ok"])
    lookalike = await start(server, definition=definition(ok), labels=[f"load {token} 1000 ok"])
    underscore = await start(server, definition=definition(ok, name=f"snake{token}_x"))
    not_underscore = await start(server, definition=definition(ok, name=f"snake{token}yx"))
    everything = [by_name, by_label, by_error, percent, lookalike, underscore, not_underscore]
    for execution_id in everything:
        await wait_for_status(server, execution_id, TERMINAL)

    async def search(text: str) -> set[str]:
        return {e["id"] for e in await _history(server, {"search": text})}

    failed = (await _history(server, {"search": f"BOOM{token.upper()}"}))[0]
    assert failed["id"] == by_error
    assert f"boom{token}" in failed["error"]
    assert await search(f"{token}-checkout") == {by_name, by_label}
    assert await search(f"NIGHTLY-{token.upper()}") == {by_name}
    assert await search(f"{token} 100%") == {percent}
    assert await search(f"{token} 100") == {percent, lookalike}
    assert await search(f"snake{token}_") == {underscore}
    assert await search(token) == set(everything)
    # Search combines with the other filters.
    assert await search(f"boom{token}") == {by_error}
    assert {e["id"] for e in await _history(server, {"search": token, "statuses": ["FAILED"]})} == {
        by_error
    }


async def test_triggered_by_and_duration_filters(server: Server) -> None:
    label = f"dur-{secrets.token_hex(4)}"
    short = await start(
        server,
        definition=definition("{key: nap, kind: sleep, with: {seconds: 0}}"),
        labels=[label],
    )
    long = await start(
        server,
        definition=definition("{key: nap, kind: sleep, with: {seconds: 0.5}}"),
        labels=[label],
    )
    for execution_id in (short, long):
        await wait_for_status(server, execution_id, TERMINAL)
    durations = {e["id"]: e["durationMs"] for e in await _history(server, {"label": label})}
    # The 0.5 s nap in whole milliseconds: event-loop timers may fire up to a clock tick early
    # (as test_steering allows), so 499 happens.
    assert durations[long] >= 490 > durations[short]

    async def ids(**where: Any) -> set[str]:
        return {e["id"] for e in await _history(server, {"label": label, **where})}

    assert await ids(minDurationMs=durations[long]) == {long}
    assert await ids(maxDurationMs=durations[short]) == {short}
    assert await ids(minDurationMs=durations[short], maxDurationMs=durations[long]) == {
        short,
        long,
    }
    assert await ids(minDurationMs=durations[long] + 1) == set()
    # Executions started over the API are triggered by the caller: here the admin token.
    assert await ids(triggeredBy="token:bootstrap-admin") == {short, long}
    assert await ids(triggeredBy="someone-else") == set()
    assert await ids(batch="no-such-batch") == set()


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ({"minDurationMs": -1}, "filter.minDurationMs: must not be negative"),
        ({"minDurationMs": 5, "maxDurationMs": 4}, "filter.maxDurationMs: must not be below"),
        ({"search": "x" * 201}, "filter.search: at most 200 characters"),
    ],
)
async def test_bad_filters_are_clear_errors(
    server: Server, where: dict[str, Any], message: str
) -> None:
    with pytest.raises(TransportQueryError, match=message):
        await _history(server, where)


# ---- /metrics ------------------------------------------------------------------------------

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(server: Server, token: str = SCRAPE_TOKEN) -> Series:
    """Every sample of the server's /metrics, by name and labels."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(
            f"{server.url}/metrics", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "_created" not in response.text  # Prometheus would store each as a series of its own
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float:
    """One sample's value; 0 if the series is not there (yet)."""
    return series.get((name, frozenset(labels.items())), 0.0)


def grew(before: Series, after: Series, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def scrape_until(
    server: Server, holds: Callable[[Series], bool], timeout: float = 10
) -> Series:
    """Scrape until `holds` (live counts are up to a second old; a counter moves just after its
    event's commit); fail with the last scrape if it never does."""
    series = await scrape(server)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not holds(series):
                await asyncio.sleep(0.1)
                series = await scrape(server)
    return series


async def test_prometheus_series_count_what_ran(server: Server, tmp_path: Path) -> None:
    before = await scrape(server)
    assert value(before, "runwire_runner_slots") == 8  # the default RUNWIRE_RUNNER_SLOTS
    # The process's own series come along.
    assert value(before, "process_open_fds") > 0
    assert any(name == "python_info" for name, _ in before)

    def shell(code: int) -> str:
        script = f"echo one; echo two; exit {code}"
        return definition(f'{{key: s, kind: shell, with: {{argv: ["sh", "-c", "{script}"]}}}}')

    ran = [
        await start(server, definition=shell(0)),
        await start(server, definition=shell(0)),
        await start(server, definition=shell(1)),
        await start(server, definition=definition("{key: nap, kind: sleep, with: {seconds: 0.3}}")),
        await start(server, scenario="hello", inputs={"name": "metrics"}),
    ]
    ended = [await wait_for_status(server, execution_id, TERMINAL) for execution_id in ran]
    assert [e["status"] for e in ended] == ["SUCCEEDED"] * 2 + ["FAILED"] + ["SUCCEEDED"] * 2
    stored = sum(e["lastSeq"] for e in ended)

    # A gated execution holds a slot and a RUNNING row while an SSE client follows it.
    gate = tmp_path / "gate"
    held = await start(server, definition=definition(gated_step("wait", gate)))
    await wait_for_status(server, held, {"RUNNING"})
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream("GET", f"{server.url}/executions/{held}/events", headers=server.headers),
    ):
        during = await scrape_until(
            server,
            lambda s: (
                value(s, "runwire_executions", workspace="default", status="RUNNING") == 1
                and value(s, "runwire_subscribers") >= 1
            ),
        )
        assert value(during, "runwire_executions", workspace="default", status="RUNNING") == 1
        assert value(during, "runwire_executions", workspace="default", status="QUEUED") == 0
        assert value(during, "runwire_runner_slots_in_use") == 1
        assert value(during, "runwire_subscribers") >= 1
    gate.touch()
    held_end = await wait_for_status(server, held, TERMINAL)
    stored += held_end["lastSeq"]

    after = await scrape_until(
        server,
        lambda s: (
            grew(before, s, "runwire_events_appended_total") >= stored
            and value(s, "runwire_executions", workspace="default", status="RUNNING") == 0
        ),
    )

    def ended_as(status: str, scenario: str = "") -> float:
        return grew(
            before, after, "runwire_executions_ended_total", scenario=scenario, status=status
        )

    assert ended_as("SUCCEEDED") == 4  # two shells, the sleep, the gated one
    assert ended_as("FAILED") == 1
    assert ended_as("SUCCEEDED", scenario="hello") == 1
    # Each was claimed once, for the first time: one wait in the queue each.
    assert grew(before, after, "runwire_queue_wait_seconds_count") == 6

    def attempts(kind: str, status: str) -> float:
        return grew(
            before, after, "runwire_step_attempt_duration_seconds_count", kind=kind, status=status
        )

    assert attempts("shell", "SUCCEEDED") == 4  # two, the gated one, hello's
    assert attempts("shell", "FAILED") == 1
    assert attempts("sleep", "SUCCEEDED") == 1
    slept = grew(
        before, after, "runwire_step_attempt_duration_seconds_sum", kind="sleep", status="SUCCEEDED"
    )
    # uvloop (what uvicorn runs on) fires timers by a millisecond clock cached at the start of
    # each loop turn, so a 0.3 s sleep may measure up to a millisecond or two short of 0.3 s.
    assert 0.29 <= slept < 10
    # Every event of these executions, and nothing else happened meanwhile.
    assert grew(before, after, "runwire_events_appended_total") == stored
    assert grew(before, after, "runwire_event_log_flush_seconds_count") > 0
    # The memory bus brings this process's own notices back to its listener.
    assert grew(before, after, "runwire_bus_lag_seconds_count") > 0
    assert value(after, "runwire_executions", workspace="default", status="PAUSED") == 0
    assert value(after, "runwire_runner_slots_in_use") == 0
    # SQLite has no connection pool to report.
    assert ("runwire_db_pool_size", frozenset()) not in after


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-the-scrape-token"},
        {"Authorization": f"Basic {SCRAPE_TOKEN}"},
        {"Authorization": f"Bearer {SCRAPE_TOKEN}x"},
    ],
    ids=["none", "wrong", "other-scheme", "longer"],
)
async def test_metrics_refuse_a_scrape_without_the_token(
    server: Server, headers: Mapping[str, str]
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{server.url}/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.text == "send Authorization: Bearer <RUNWIRE_METRICS_TOKEN>\n"
    # The admin API token is not the scrape token either.
    async with httpx.AsyncClient(timeout=10) as client:
        assert (
            await client.get(f"{server.url}/metrics", headers=server.headers)
        ).status_code == 401
