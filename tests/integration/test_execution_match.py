"""domain.queries.matches (the live list's in-memory filter) selects what the history SQL selects.

Both run on the same stored executions, on SQLite and Postgres, for a filter per field and a few
combinations: a filter field added to one and not the other fails here.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.support import postgres

from runwire.core import Stores
from runwire.db.engine import Database
from runwire.domain.models import Event, EventType, Execution, ExecutionStatus, TriggerType
from runwire.domain.queries import ExecutionFilter, matches

# Every row these tests write belongs to one workspace.
WORKSPACE = "workspace-a"


def where(**fields: Any) -> ExecutionFilter:
    """A history filter of the tests' workspace."""
    return ExecutionFilter(workspace=WORKSPACE, **fields)


BASE = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
S = ExecutionStatus


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    async with contextlib.AsyncExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'match.sqlite'}"
            if request.param == "sqlite"
            else await stack.enter_async_context(postgres.fresh_database())
        )
        database = await stack.enter_async_context(Database.open(url, migrate=True))
        yield Stores.on(database)


@dataclasses.dataclass(frozen=True)
class Spec:
    """One stored execution: how it is started and where it ends."""

    name: str
    status: ExecutionStatus
    minutes: int  # queued this many minutes after BASE
    scenario: str | None = None
    labels: tuple[str, ...] = ()
    error: str | None = None
    duration_ms: int | None = None
    triggered_by: str = "alice"
    batch: str | None = None
    trigger: TriggerType = TriggerType.API


SPECS = [
    Spec("checkout-smoke", S.SUCCEEDED, 0, "checkout", ("nightly", "eu"), duration_ms=1200),
    Spec("checkout-smoke", S.FAILED, 1, "checkout", ("eu",), "Step PING failed", 300),
    Spec("inline 100%_done", S.RUNNING, 2, labels=("adhoc",), triggered_by="bob"),
    Spec("search", S.QUEUED, 3, "search", ("nightly",), batch="b1", trigger=TriggerType.BATCH),
    Spec(
        "search",
        S.CANCELLED,
        4,
        "search",
        (),
        "stopped: not needed",
        50,
        "bob",
        "b1",
        TriggerType.BATCH,
    ),
    Spec("report", S.TIMED_OUT, 5, "report", ("EU-west",), "timed out", 60_000),
]

FILTERS = [
    where(),
    where(statuses=(S.RUNNING, S.QUEUED)),
    where(statuses=(S.SUCCEEDED,)),
    where(scenario="checkout"),
    where(scenario="nope"),
    where(label="eu"),
    where(label="nightly"),
    where(queued_after=BASE + timedelta(minutes=2)),
    where(queued_before=BASE + timedelta(minutes=2)),
    where(search="ping"),  # in the error, another case
    where(search="eu"),  # in labels, any case
    where(search="SMOKE"),  # in the name
    where(search="100%_"),  # taken literally
    where(search="0%"),
    where(search="_"),
    where(batch="b1"),
    where(triggered_by="bob"),
    where(min_duration_ms=300),
    where(max_duration_ms=300),
    where(min_duration_ms=100, max_duration_ms=2000),
    ExecutionFilter(
        workspace=WORKSPACE, statuses=(S.FAILED, S.CANCELLED), label="eu", search="ping"
    ),
    where(scenario="search", batch="b1", triggered_by="bob"),
    where(trigger_types=(TriggerType.BATCH,)),
    where(trigger_types=(TriggerType.SCHEDULE, TriggerType.API)),
    where(trigger_types=(TriggerType.RETRY,)),
]


async def store(stores: Stores, index: int, spec: Spec) -> None:
    execution_id = f"e{index:03d}"
    queued_at = BASE + timedelta(minutes=spec.minutes)
    execution = Execution(
        workspace_id=WORKSPACE,
        id=execution_id,
        status=S.QUEUED,
        definition={"name": spec.name},
        inputs={},
        queued_at=queued_at,
        scenario_name=spec.scenario,
        scenario_version=1 if spec.scenario else None,
        labels=spec.labels,
        triggered_by=spec.triggered_by,
        batch_id=spec.batch,
        trigger_type=spec.trigger,
        last_seq=1,
    )
    first = Event(execution_id, 1, queued_at, EventType.EXECUTION_STATUS, {"status": "QUEUED"})
    await stores.executions.create_execution(execution, first)
    if spec.status is S.QUEUED:
        return
    events = [Event(execution_id, 2, queued_at, EventType.EXECUTION_STATUS, {"status": "RUNNING"})]
    if spec.status is not S.RUNNING:
        data: dict[str, object] = {"status": spec.status.value}
        if spec.error is not None:
            data["error"] = spec.error
        if spec.duration_ms is not None:
            data["duration_ms"] = spec.duration_ms
        events.append(Event(execution_id, 3, queued_at, EventType.EXECUTION_STATUS, data))
    await stores.events.append(events)


async def test_matches_selects_what_history_selects(stores: Stores) -> None:
    for index, spec in enumerate(SPECS):
        await store(stores, index, spec)
    stored = (await stores.history.executions(where(), 100, None)).items
    assert len(stored) == len(SPECS)
    for given in FILTERS:
        selected = {e.id for e in (await stores.history.executions(given, 100, None)).items}
        matched = {e.id for e in stored if matches(given, e)}
        assert matched == selected, given
    # The filters tell the executions apart: not every one selects all or nothing.
    sizes = {len([e for e in stored if matches(given, e)]) for given in FILTERS}
    assert len(sizes) > 3
