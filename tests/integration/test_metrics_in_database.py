"""Metrics and history filters in the database, on SQLite and Postgres, with chosen durations."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from tests.support import postgres

from runwire.core import Stores
from runwire.db.engine import Database
from runwire.domain.models import Event, EventType, Execution, ExecutionStatus
from runwire.domain.queries import Cursor, ExecutionFilter, MetricsQuery
from runwire.errors import Invalid
from runwire.metrics import Metrics

# Every row these tests write belongs to one workspace.
WORKSPACE = "workspace-a"


def where(**fields: Any) -> ExecutionFilter:
    """A history filter of the tests' workspace."""
    return ExecutionFilter(workspace=WORKSPACE, **fields)


BASE = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
_ids = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    async with contextlib.AsyncExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'metrics.sqlite'}"
            if request.param == "sqlite"
            else await stack.enter_async_context(postgres.fresh_database())
        )
        database = await stack.enter_async_context(Database.open(url, migrate=True))
        yield Stores.on(database)


async def _execution(
    stores: Stores,
    *,
    finished_at: datetime | None,
    status: ExecutionStatus = ExecutionStatus.SUCCEEDED,
    duration_ms: int | None = None,
    name: str = "job",
    scenario: str | None = None,
    labels: tuple[str, ...] = (),
    error: str | None = None,
    triggered_by: str = "",
    batch: str | None = None,
    queued_at: datetime | None = None,
) -> str:
    """An execution queued, run and (unless finished_at is None) ended the way the runner does."""
    execution_id = f"e{next(_ids):05d}"
    queued_at = queued_at or (finished_at or BASE) - timedelta(minutes=5)
    execution = Execution(
        workspace_id=WORKSPACE,
        id=execution_id,
        status=ExecutionStatus.QUEUED,
        definition={"name": name},
        inputs={},
        queued_at=queued_at,
        scenario_name=scenario,
        scenario_version=1 if scenario else None,
        labels=labels,
        triggered_by=triggered_by,
        batch_id=batch,
        last_seq=1,
    )
    queued = Event(execution_id, 1, queued_at, EventType.EXECUTION_STATUS, {"status": "QUEUED"})
    await stores.executions.create_execution(execution, queued)
    running_at = queued_at + timedelta(seconds=1)
    events = [Event(execution_id, 2, running_at, EventType.EXECUTION_STATUS, {"status": "RUNNING"})]
    if finished_at is not None:
        data: dict[str, object] = {"status": status.value}
        if error is not None:
            data["error"] = error
        if duration_ms is not None:
            data["duration_ms"] = duration_ms
        events.append(Event(execution_id, 3, finished_at, EventType.EXECUTION_STATUS, data))
    await stores.events.append(events)
    return execution_id


def _window(minutes: float = 60, **narrowing: object) -> MetricsQuery:
    return MetricsQuery(
        workspace=WORKSPACE, since=BASE, until=BASE + timedelta(minutes=minutes), **narrowing
    )  # type: ignore[arg-type]


async def test_counts_and_nearest_rank_percentiles(stores: Stores) -> None:
    durations = [10 * n for n in range(1, 21)]  # 10, 20, …, 200
    random.Random(7).shuffle(durations)
    for index, duration in enumerate(durations):
        status = ExecutionStatus.FAILED if index % 4 == 0 else ExecutionStatus.SUCCEEDED
        await _execution(
            stores,
            finished_at=BASE + timedelta(seconds=index),
            status=status,
            duration_ms=duration,
        )
    # Finished without a duration (cancelled before it ran): counted, but not measured.
    await _execution(
        stores, finished_at=BASE + timedelta(minutes=1), status=ExecutionStatus.CANCELLED
    )
    # Still running, and finished outside the window: neither counts.
    await _execution(stores, finished_at=None)
    await _execution(stores, finished_at=BASE - timedelta(microseconds=1), duration_ms=1)
    await _execution(stores, finished_at=BASE + timedelta(minutes=60), duration_ms=99999)

    found = await stores.metrics.execution_metrics(_window())

    assert found.counts == {
        ExecutionStatus.SUCCEEDED: 15,
        ExecutionStatus.FAILED: 5,
        ExecutionStatus.CANCELLED: 1,
        ExecutionStatus.TIMED_OUT: 0,
    }
    assert found.finished == 21
    assert found.success_rate == pytest.approx(15 / 21)
    assert found.throughput_per_minute == pytest.approx(21 / 60)
    assert found.measured == 20
    # Nearest rank: p50 of 20 is the 10th smallest, p95 the 19th.
    assert found.percentiles_ms == {50: 100, 95: 190}
    assert found.max_ms == 200


@pytest.mark.parametrize(
    ("durations", "p50", "p95"),
    [
        ([42], 42, 42),
        ([5, 1], 1, 5),
        ([3, 1, 2], 2, 3),
        ([7, 7, 7, 1], 7, 7),
        (list(range(1, 101)), 50, 95),
        (list(range(1, 102)), 51, 96),
    ],
)
async def test_percentiles_on_small_and_tied_samples(
    stores: Stores, durations: list[int], p50: int, p95: int
) -> None:
    for index, duration in enumerate(durations):
        await _execution(stores, finished_at=BASE + timedelta(seconds=index), duration_ms=duration)
    found = await stores.metrics.execution_metrics(_window(minutes=120))
    assert found.percentiles_ms == {50: p50, 95: p95}
    assert found.max_ms == max(durations)


async def test_an_empty_window_is_zeros_and_nulls(stores: Stores) -> None:
    await _execution(stores, finished_at=BASE - timedelta(hours=2), duration_ms=10)
    found = await stores.metrics.execution_metrics(_window())
    assert set(found.counts.values()) == {0}
    assert found.finished == 0
    assert found.success_rate is None
    assert found.throughput_per_minute == 0
    assert found.measured == 0
    assert found.percentiles_ms == {50: None, 95: None}
    assert found.max_ms is None


async def test_scenario_and_every_label_narrow(stores: Stores) -> None:
    at = BASE + timedelta(minutes=1)
    await _execution(stores, finished_at=at, duration_ms=1, scenario="a", labels=("x", "y"))
    await _execution(stores, finished_at=at, duration_ms=2, scenario="a", labels=("x",))
    await _execution(stores, finished_at=at, duration_ms=3, scenario="b", labels=("x", "y"))
    await _execution(stores, finished_at=at, duration_ms=4)

    async def measured(**narrowing: object) -> list[int | None]:
        found = await stores.metrics.execution_metrics(_window(**narrowing))
        return [found.finished, found.max_ms]

    assert await measured() == [4, 4]
    assert await measured(scenario="a") == [2, 2]
    assert await measured(labels=("x",)) == [3, 3]
    assert await measured(labels=("x", "y")) == [2, 3]
    assert await measured(labels=("y", "x", "y")) == [2, 3]
    assert await measured(scenario="a", labels=("x", "y")) == [1, 1]
    assert await measured(labels=("x", "nope")) == [0, None]
    assert await measured(scenario="nope") == [0, None]


async def test_bounds_are_half_open_and_offsets_are_instants(stores: Stores) -> None:
    await _execution(stores, finished_at=BASE, duration_ms=1)
    await _execution(stores, finished_at=BASE + timedelta(hours=1), duration_ms=2)
    plus_two = timezone(timedelta(hours=2))
    query = MetricsQuery(
        workspace=WORKSPACE,
        since=BASE.astimezone(plus_two),
        until=(BASE + timedelta(hours=1)).astimezone(plus_two),
    )
    found = await stores.metrics.execution_metrics(query)
    assert (found.finished, found.max_ms) == (1, 1)
    naive = MetricsQuery(
        workspace=WORKSPACE, since=BASE.replace(tzinfo=None), until=datetime(2030, 1, 1, 13)
    )
    assert (await stores.metrics.execution_metrics(naive)).finished == 1


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        (BASE, BASE, "until: must be later than since"),
        (BASE, BASE - timedelta(seconds=1), "until: must be later than since"),
        (BASE, BASE + timedelta(days=366, seconds=1), "until: at most 366 days after since"),
        # Year 1 at +05:00 is before the earliest instant UTC can represent.
        (
            datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
            BASE,
            "since: out of the representable range of times",
        ),
    ],
)
def test_bad_windows_are_invalid(since: datetime, until: datetime, message: str) -> None:
    with pytest.raises(Invalid, match=f"^{message}$"):
        MetricsQuery(workspace=WORKSPACE, since=since, until=until)


def test_a_full_leap_year_is_a_valid_window() -> None:
    MetricsQuery(workspace=WORKSPACE, since=BASE, until=BASE + timedelta(days=366))


async def _ids_matching(stores: Stores, where: ExecutionFilter) -> set[str]:
    page = await stores.history.executions(where, 50, None)
    assert not page.has_next
    return {item.id for item in page.items}


async def test_search_matches_name_label_and_error_case_insensitively(
    stores: Stores,
) -> None:
    at = BASE + timedelta(minutes=1)
    by_name = await _execution(stores, finished_at=at, name="Nightly-Checkout")
    by_label = await _execution(stores, finished_at=at, labels=("team-CHECKOUT",))
    by_error = await _execution(
        stores, finished_at=at, status=ExecutionStatus.FAILED, error="checkout refused"
    )
    await _execution(stores, finished_at=at, name="other", labels=("misc",))

    found = await _ids_matching(stores, where(search="CheckOut"))
    assert found == {by_name, by_label, by_error}
    assert await _ids_matching(stores, where(search="nightly-")) == {by_name}
    assert await _ids_matching(stores, where(search="REFUSED")) == {by_error}


async def test_search_wildcards_and_escape_are_literal(stores: Stores) -> None:
    at = BASE + timedelta(minutes=1)
    percent = await _execution(stores, finished_at=at, name="load 100% done")
    underscore = await _execution(stores, finished_at=at, name="snake_case")
    bang = await _execution(stores, finished_at=at, name="wow!%")
    await _execution(stores, finished_at=at, name="load 1000 done")
    await _execution(stores, finished_at=at, name="snakeXcase")

    assert await _ids_matching(stores, where(search="100%")) == {percent}
    assert await _ids_matching(stores, where(search="%")) == {
        percent,
        bang,
    }
    assert await _ids_matching(stores, where(search="e_c")) == {underscore}
    assert await _ids_matching(stores, where(search="!%")) == {bang}


async def test_batch_triggered_by_and_duration_filters(stores: Stores) -> None:
    at = BASE + timedelta(minutes=1)
    fast = await _execution(stores, finished_at=at, duration_ms=100, triggered_by="ada")
    mid = await _execution(stores, finished_at=at, duration_ms=500, batch="b1")
    slow = await _execution(stores, finished_at=at, duration_ms=900, batch="b1")
    running = await _execution(stores, finished_at=None, triggered_by="ada")

    assert await _ids_matching(stores, where(triggered_by="ada")) == {fast, running}
    assert await _ids_matching(stores, where(batch="b1")) == {
        mid,
        slow,
    }
    assert await _ids_matching(stores, where(min_duration_ms=500)) == {mid, slow}
    assert await _ids_matching(stores, where(max_duration_ms=500)) == {fast, mid}
    both = ExecutionFilter(
        workspace=WORKSPACE, min_duration_ms=500, max_duration_ms=500, batch="b1"
    )
    assert await _ids_matching(stores, both) == {mid}


async def test_keyset_pages_through_a_search(stores: Stores) -> None:
    matching = [
        await _execution(
            stores,
            finished_at=BASE + timedelta(minutes=n),
            queued_at=BASE + timedelta(seconds=n // 2),  # pairs share a queued_at
            name=f"match {n}",
        )
        for n in range(7)
    ]
    for n in range(7):
        await _execution(stores, finished_at=BASE, queued_at=BASE + timedelta(seconds=n))

    seen: list[str] = []
    after = None
    while True:
        page = await stores.history.executions(where(search="MATCH"), 2, after)
        seen.extend(item.id for item in page.items)
        if not page.has_next:
            break
        last = page.items[-1]
        after = Cursor(last.queued_at, last.id)
    # Newest queued first; within a shared queued_at, the larger id first.
    assert seen == list(reversed(matching))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        # The domain names fields by its own names; the schema's names are the GraphQL layer's.
        ({"min_duration_ms": -1}, "min_duration_ms: must not be negative"),
        ({"min_duration_ms": 5, "max_duration_ms": 4}, "max_duration_ms: must not be below"),
        ({"search": "x" * 201}, "search: at most 200 characters"),
        (
            {"queued_after": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))},
            "queued_after: out of the representable range of times",
        ),
    ],
)
def test_bad_filters_are_invalid(fields: dict[str, object], message: str) -> None:
    with pytest.raises(Invalid, match=message):
        where(**fields)


async def test_live_counts_are_executions_not_ended_by_workspace_and_status(
    stores: Stores,
) -> None:
    ops = await stores.access.create_workspace("org", "ops")
    running = [await _execution(stores, finished_at=None) for _ in range(2)]
    await _execution(stores, finished_at=BASE)  # ended: not counted
    await _queued(stores, ops.id)
    counts = await stores.metrics.live_counts()
    live = ("QUEUED", "RUNNING", "PAUSING", "PAUSED", "WAITING", "STOPPING")
    # A workspace is shown by name; rows of one that has none (here) by its id.
    assert sorted(counts) == sorted(
        [("ops", status, int(status == "QUEUED")) for status in live]
        + [(WORKSPACE, "RUNNING", len(running))]
    )


async def test_scrapes_share_one_count_until_it_is_old(stores: Stores) -> None:
    reads = 0

    async def counted() -> list[tuple[str, str, int]]:
        nonlocal reads
        reads += 1
        return await stores.metrics.live_counts()

    await _execution(stores, finished_at=None)
    metrics = Metrics(live_counts_max_age=60)
    metrics.count_live_executions(counted)
    texts = await asyncio.gather(*(metrics.exposition() for _ in range(5)))
    assert reads == 1
    assert all(
        b'runwire_executions{status="RUNNING",workspace="workspace-a"} 1.0' in t for t in texts
    )
    await _execution(stores, finished_at=None)
    # While the count is young, the same figures, read no more.
    assert b'{status="RUNNING",workspace="workspace-a"} 1.0' in await metrics.exposition()
    assert reads == 1
    fresh = Metrics(live_counts_max_age=0)
    fresh.count_live_executions(counted)
    assert b'runwire_executions{status="RUNNING",workspace="workspace-a"} 2.0' in (
        await fresh.exposition()
    )
    assert reads == 2


async def test_a_count_that_fails_leaves_the_series_out(tmp_path: Path) -> None:
    # A database that went away: the other series are still served.
    database_file = tmp_path / "gone.sqlite"
    async with Database.open(f"sqlite:///{database_file}", migrate=True) as database:
        stores = Stores.on(database)
        await stores.access.create_workspace("org", "ops")
        metrics = Metrics(live_counts_max_age=0)
        metrics.count_live_executions(stores.metrics.live_counts)
        assert b"runwire_executions{" in await metrics.exposition()
        async with database.write():
            await database.fetch("DROP TABLE runwire_execution")
        text = await metrics.exposition()
    assert b"runwire_executions{" not in text
    assert b"runwire_events_appended_total 0.0" in text


async def _queued(stores: Stores, workspace: str) -> str:
    execution_id = f"e{next(_ids):05d}"
    execution = Execution(
        workspace_id=workspace,
        id=execution_id,
        status=ExecutionStatus.QUEUED,
        definition={"name": "waiting"},
        inputs={},
        queued_at=BASE,
        last_seq=1,
    )
    queued = Event(execution_id, 1, BASE, EventType.EXECUTION_STATUS, {"status": "QUEUED"})
    await stores.executions.create_execution(execution, queued)
    return execution_id
