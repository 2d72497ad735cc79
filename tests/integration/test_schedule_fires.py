"""Schedules on a real Postgres: two schedulers (each with its own Core, so its own pool, as two
processes) fire one 1-second schedule through 100 slots, driven by an injected clock, and start
exactly one execution per slot."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.support import postgres

from runwire.core import Core
from runwire.db.engine import Database
from runwire.db.migrations import runwire_2026_12_05t13_00_00_000000 as backfill
from runwire.domain.access import Actor, Role
from runwire.domain.executions import StartRequest
from runwire.domain.schedules import (
    MissedFirePolicy,
    ScheduleInput,
    ScheduleService,
    fire_time_of,
)
from runwire.errors import Invalid
from runwire.runner.steps import step_kinds
from runwire.settings import Settings

WORKSPACE = "workspace-schedules"
ADMIN = Actor(workspace_id=WORKSPACE, label="test", role=Role.ADMIN)
SCENARIO = json.dumps(
    {
        "name": "ticker",
        "inputs": {"target": {"type": "string"}},
        "steps": [{"key": "a", "kind": "sleep", "with": {"seconds": 0}}],
    }
)
# Far ahead of the real clock, so the Cores' own schedulers never find these slots due.
START = datetime(2031, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@contextlib.asynccontextmanager
async def two_cores(tmp_path: Path) -> AsyncIterator[tuple[Core, Core]]:
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(postgres.fresh_database())
        async with Database.open(url, migrate=True):
            pass
        cores = []
        for index in range(2):
            config = Settings(
                database_url=url,
                bus_url=f"memory://{uuid.uuid4().hex}",
                data_dir=tmp_path / f"data{index}",
                load_examples=False,
                runner_enabled=False,
                step_user="",
            )
            cores.append(await stack.enter_async_context(Core.running(config, step_kinds(config))))
        yield cores[0], cores[1]


@pytest.fixture
async def cores(tmp_path: Path) -> AsyncIterator[tuple[Core, Core]]:
    async with two_cores(tmp_path) as found:
        yield found


async def test_two_schedulers_fire_100_slots_with_no_double_start(
    cores: tuple[Core, Core],
) -> None:
    first, second = cores
    await first.scenarios.save(SCENARIO, ADMIN)
    clock = Clock(START)
    one, two = (
        ScheduleService(core.store.schedules, core.scenarios, core.executions, clock)
        for core in cores
    )
    schedule = await one.create(
        ScheduleInput(
            name="every second",
            scenario="ticker",
            inputs={"target": "prod"},
            interval_seconds=1,
            missed=MissedFirePolicy.RUN_ONCE,
        ),
        ADMIN,
    )
    started = 0
    for slot in range(1, 101):
        # Both processes wake for the slot at once (the second a little later on odd slots).
        clock.now = START + timedelta(seconds=slot, milliseconds=5)
        counts = await asyncio.gather(one.fire_due(), two.fire_due())
        started += sum(counts)
    runs = await one.runs(schedule, 100)
    assert len(runs) == 100
    fire_times = {run.fire_at for run in runs}
    assert fire_times == {START + timedelta(seconds=slot) for slot in range(1, 101)}
    rows = await first.database.fetch(
        "SELECT COUNT(*) AS n FROM runwire_execution WHERE created_by = {}",
        schedule.trigger_label,
    )
    assert rows[0]["n"] == 100
    assert all(run.execution.inputs == {"target": "prod"} for run in runs)
    # Each process saw every slot due and asked for its start; the key made 100 of 200 asks.
    assert 100 <= started <= 200
    stored = await second.schedules.get(schedule.id, ADMIN)
    assert stored.next_fire_at == START + timedelta(seconds=101)


async def test_downtime_follows_the_policy_and_disabled_schedules_do_not_fire(
    cores: tuple[Core, Core],
) -> None:
    first, _ = cores
    await first.scenarios.save(SCENARIO, ADMIN)
    clock = Clock(START)
    service = ScheduleService(first.store.schedules, first.scenarios, first.executions, clock)
    skip = await service.create(
        ScheduleInput(name="skip", scenario="ticker", inputs={"target": "x"}, cron="0 * * * *"),
        ADMIN,
    )
    once = await service.create(
        ScheduleInput(
            name="once",
            scenario="ticker",
            inputs={"target": "x"},
            cron="0 * * * *",
            missed=MissedFirePolicy.RUN_ONCE,
        ),
        ADMIN,
    )
    off = await service.create(
        ScheduleInput(name="off", scenario="ticker", inputs={"target": "x"}, interval_seconds=1),
        ADMIN,
    )
    await service.set_enabled(off.id, False, ADMIN)
    clock.now = START + timedelta(hours=5, minutes=20)  # five hourly slots passed while down
    assert await service.fire_due() == 1
    assert await service.runs(skip, 10) == []
    [ran] = await service.runs(once, 10)
    assert ran.fire_at == START + timedelta(hours=5)
    assert await service.runs(off, 10) == []
    assert (await service.get(skip.id, ADMIN)).next_fire_at == START + timedelta(hours=6)
    assert service.next_fire_times(await service.get(off.id, ADMIN), 3) == []
    now = await service.run_now(off.id, ADMIN)
    assert now.triggered_by == off.trigger_label
    assert fire_time_of(now) is None


BAD_INPUT = [
    ({"cron": "61 * * * *"}, "cron"),
    ({"cron": "* * * * *", "time_zone": "Mars/Olympus"}, "time_zone"),
    ({"interval_seconds": 0.5}, "interval_seconds"),
    ({"cron": "* * * * *", "interval_seconds": 5}, "cron"),
    ({"interval_seconds": 5, "scenario": "nope"}, "scenario"),
    ({"interval_seconds": 5, "inputs": {}}, "inputs.target"),
    ({"interval_seconds": 5, "inputs": {"target": "x", "extra": 1}}, "inputs.extra"),
]


async def test_bad_input_names_the_field(cores: tuple[Core, Core]) -> None:
    first, _ = cores
    await first.scenarios.save(SCENARIO, ADMIN)
    for given, field in BAD_INPUT:
        fields: dict[str, Any] = {"name": "bad", "scenario": "ticker", "inputs": {"target": "x"}}
        with pytest.raises(Invalid) as raised:
            await first.schedules.create(ScheduleInput(**{**fields, **given}), ADMIN)
        assert field in {error.path for error in raised.value.errors}, (given, raised.value)
    assert await first.schedules.in_workspace(ADMIN) == []


async def test_the_migration_tells_earlier_executions_triggers_by_what_they_belong_to(
    cores: tuple[Core, Core],
) -> None:
    first, _ = cores
    await first.scenarios.save(SCENARIO, ADMIN)
    plain, batched, of_suite = [
        (
            await first.executions.start(
                StartRequest(scenario="ticker", inputs={"target": n}), ADMIN
            )
        ).id
        for n in ("plain", "batched", "suite")
    ]
    database = first.database
    # As rows written before the column: a batch's member, a suite run's member, all "API".
    await database.fetch("UPDATE runwire_execution SET trigger_type = 'API'")
    await database.fetch(
        "UPDATE runwire_execution SET batch_id = 'batch-plain' WHERE id = {}", batched
    )
    await database.fetch(
        "UPDATE runwire_execution SET batch_id = 'batch-suite' WHERE id = {}", of_suite
    )
    await database.fetch(
        "INSERT INTO runwire_suite_run (id, workspace_id, suite_name, suite_version, batch_id,"
        " repeat, concurrency, labels, inputs, cases, created_at)"
        " VALUES ('run', {}, 's', 1, 'batch-suite', 1, 1, {}, {}, {}, {})",
        WORKSPACE,
        "[]",
        "{}",
        "[]",
        START,
    )
    for statement in backfill.STATEMENTS:
        if statement.startswith("UPDATE runwire_execution"):
            await database.fetch(statement)
    rows = await database.fetch(
        "SELECT id, trigger_type FROM runwire_execution WHERE id IN ({}, {}, {})",
        plain,
        batched,
        of_suite,
    )
    assert {row["id"]: row["trigger_type"] for row in rows} == {
        plain: "API",
        batched: "BATCH",
        of_suite: "SUITE",
    }
