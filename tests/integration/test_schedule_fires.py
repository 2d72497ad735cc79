"""Schedules on a real Postgres: two schedulers (each with its own Core, so its own pool, as two
processes) fire one 1-second schedule through 100 slots, driven by an injected clock, and start
exactly one execution per slot; a suite schedule likewise starts exactly one suite run per slot,
as concurrent startSuiteRun calls with one idempotency key start one run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.support import postgres

from runwire.core import Core
from runwire.db.engine import Database
from runwire.db.migrations import runwire_2026_12_05t13_00_00_000000 as backfill
from runwire.db.migrations import runwire_2026_12_05t15_00_00_000000 as suite_targets
from runwire.db.schedules import ScheduleRepository
from runwire.domain.access import Actor, Role
from runwire.domain.executions import StartRequest
from runwire.domain.models import SuiteRun, TriggerType
from runwire.domain.schedules import (
    MissedFirePolicy,
    Schedule,
    ScheduleInput,
    ScheduleService,
    Timing,
    fire_key,
    fire_time_of,
)
from runwire.domain.suites import SuiteRunRequest
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
# Two cases of the scenario; a suite schedule's inputs override `target` in both.
SUITE = json.dumps(
    {
        "name": "nightly",
        "cases": [
            {"name": "prod", "scenario": "ticker", "inputs": {"target": "prod"}},
            {"name": "staging", "scenario": "ticker", "inputs": {"target": "staging"}},
        ],
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
        ScheduleService(core.store.schedules, core.scenarios, core.executions, core.suites, clock)
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
    service = ScheduleService(
        first.store.schedules, first.scenarios, first.executions, first.suites, clock
    )
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


def services(cores: tuple[Core, Core], clock: Clock) -> list[ScheduleService]:
    return [
        ScheduleService(core.store.schedules, core.scenarios, core.executions, core.suites, clock)
        for core in cores
    ]


async def test_two_schedulers_start_each_fire_of_a_suite_schedule_once(
    cores: tuple[Core, Core],
) -> None:
    first, _ = cores
    await first.scenarios.save(SCENARIO, ADMIN)
    await first.suites.save(SUITE, ADMIN)
    clock = Clock(START)
    one, two = services(cores, clock)
    schedule = await one.create(
        ScheduleInput(
            name="nightly suite",
            suite="nightly",
            inputs={"target": "canary"},
            interval_seconds=1,
            missed=MissedFirePolicy.RUN_ONCE,
        ),
        ADMIN,
    )
    assert (schedule.scenario, schedule.suite) == (None, "nightly")
    slots = 60
    for slot in range(1, slots + 1):
        clock.now = START + timedelta(seconds=slot, milliseconds=5)
        await asyncio.gather(one.fire_due(), two.fire_due())

    label = schedule.trigger_label
    database = first.database
    rows = await database.fetch(
        "SELECT idempotency_key, trigger_type, batch_id FROM runwire_suite_run"
        " WHERE created_by = {}",
        label,
    )
    assert sorted(row["idempotency_key"] for row in rows) == sorted(
        fire_key(schedule.id, START + timedelta(seconds=slot)) for slot in range(1, slots + 1)
    )
    assert {row["trigger_type"] for row in rows} == {"SCHEDULE"}
    # A start that lost to the other process's wrote nothing: no stray batch, no execution.
    batches = await database.fetch(
        "SELECT COUNT(*) AS n FROM runwire_batch WHERE created_by = {}", label
    )
    assert batches[0]["n"] == slots
    executions = await database.fetch(
        "SELECT trigger_type, inputs, batch_id FROM runwire_execution WHERE created_by = {}",
        label,
    )
    assert len(executions) == 2 * slots
    assert {row["trigger_type"] for row in executions} == {"SUITE"}
    assert {json.loads(row["inputs"])["target"] for row in executions} == {"canary"}
    assert {row["batch_id"] for row in executions} == {row["batch_id"] for row in rows}

    latest = await two.suite_runs(schedule, 100)
    assert len(latest) == 20  # at most MAX_LAST_SUITE_RUNS, each read whole when listed
    assert [run.fire_at for run in latest] == [
        START + timedelta(seconds=slot) for slot in range(slots, slots - 20, -1)
    ]
    assert {(run.run.created_by, run.run.trigger_type) for run in latest} == {
        (label, TriggerType.SCHEDULE)
    }
    assert all(run.run.inputs == {"target": "canary"} for run in latest)
    # Its suite runs' executions are not its own runs.
    assert await one.runs(schedule, 100) == []


async def test_concurrent_suite_runs_with_one_key_start_one_run(
    cores: tuple[Core, Core],
) -> None:
    other = Actor(workspace_id="workspace-other", label="test", role=Role.ADMIN)
    first, second = cores
    for actor in (ADMIN, other):
        await first.scenarios.save(SCENARIO, actor)
        await first.suites.save(SUITE, actor)
    request = SuiteRunRequest(suite="nightly", inputs={"target": "x"}, idempotency_key="deploy-42")

    started = await asyncio.gather(
        *(core.suites.start_run(request, ADMIN) for core in cores for _ in range(5))
    )

    assert len({run.id for run in started}) == 1
    [run] = {run.id: run for run in started}.values()
    assert run.idempotency_key == "deploy-42"
    assert run.trigger_type is TriggerType.API
    counted = await first.database.fetch(
        "SELECT COUNT(*) AS n FROM runwire_execution WHERE batch_id = {}", run.batch_id
    )
    assert counted[0]["n"] == 2
    assert await second.suites.start_run(request, ADMIN) == run
    for different in (replace(request, repeat=2), replace(request, inputs={"target": "y"})):
        with pytest.raises(Invalid) as raised:
            await first.suites.start_run(different, ADMIN)
        assert [error.path for error in raised.value.errors] == ["idempotency_key"]
        assert run.id in raised.value.errors[0].message
    # A key names one start within its workspace: another workspace's is its own.
    elsewhere = await first.suites.start_run(request, other)
    assert elsewhere.id != run.id
    runs = await first.database.fetch(
        "SELECT COUNT(*) AS n FROM runwire_suite_run WHERE idempotency_key = 'deploy-42'"
    )
    assert runs[0]["n"] == 2


async def test_a_schedule_switches_between_a_scenario_and_a_suite(
    cores: tuple[Core, Core],
) -> None:
    first, _ = cores
    await first.scenarios.save(SCENARIO, ADMIN)
    await first.suites.save(SUITE, ADMIN)
    [service, _] = services(cores, Clock(START))
    schedule = await service.create(
        ScheduleInput(name="switch", scenario="ticker", inputs={"target": "x"}, cron="0 9 * * *"),
        ADMIN,
    )

    to_suite = await service.update(schedule.id, ScheduleInput(suite="nightly", inputs={}), ADMIN)

    assert (to_suite.scenario, to_suite.suite, to_suite.inputs) == (None, "nightly", {})
    stored = await service.get(schedule.id, ADMIN)
    assert (stored.scenario, stored.suite, stored.inputs) == (None, "nightly", {})
    started = await service.run_now(schedule.id, ADMIN)
    assert isinstance(started, SuiteRun)
    assert (started.created_by, started.trigger_type) == (
        schedule.trigger_label,
        TriggerType.SCHEDULE,
    )
    assert fire_time_of(started) is None
    [listed] = await service.suite_runs(to_suite, 10)
    assert (listed.run.id, listed.fire_at) == (started.id, None)
    members = await first.database.fetch(
        "SELECT created_by, trigger_type, inputs FROM runwire_execution WHERE batch_id = {}",
        started.batch_id,
    )
    assert sorted(json.loads(row["inputs"])["target"] for row in members) == ["prod", "staging"]
    assert {(row["created_by"], row["trigger_type"]) for row in members} == {
        (schedule.trigger_label, "SUITE")
    }
    # A scenario given replaces the suite; the inputs are the scenario's again.
    back = await service.update(
        schedule.id, ScheduleInput(scenario="ticker", inputs={"target": "y"}), ADMIN
    )
    assert (back.scenario, back.suite) == ("ticker", None)
    execution = await service.run_now(schedule.id, ADMIN)
    assert not isinstance(execution, SuiteRun)
    assert execution.trigger_type is TriggerType.SCHEDULE
    with pytest.raises(Invalid) as raised:
        await service.update(schedule.id, ScheduleInput(scenario="ticker", suite="nightly"), ADMIN)
    assert [error.path for error in raised.value.errors] == ["suite"]


async def test_a_schedule_whose_target_changed_under_it_can_still_be_paused(
    cores: tuple[Core, Core],
) -> None:
    first, _ = cores
    await first.scenarios.save(SCENARIO, ADMIN)
    await first.suites.save(SUITE, ADMIN)
    service = first.schedules
    by_scenario = await service.create(
        ScheduleInput(name="a", scenario="ticker", inputs={"target": "x"}, interval_seconds=60),
        ADMIN,
    )
    by_suite = await service.create(
        ScheduleInput(name="b", suite="nightly", interval_seconds=60), ADMIN
    )
    # A new version of the scenario needs an input neither schedule gives.
    changed = json.loads(SCENARIO)
    changed["inputs"]["region"] = {"type": "string"}
    await first.scenarios.save(json.dumps(changed), ADMIN)

    for schedule in (by_scenario, by_suite):
        paused = await service.set_enabled(schedule.id, False, ADMIN)
        assert (paused.enabled, paused.next_fire_at) == (False, None)
        renamed = await service.update(schedule.id, ScheduleInput(name="renamed"), ADMIN)
        assert renamed.name == "renamed"
    # Inputs given are checked against the target as it is now.
    with pytest.raises(Invalid) as raised:
        await service.update(by_scenario.id, ScheduleInput(inputs={"target": "y"}), ADMIN)
    assert [error.path for error in raised.value.errors] == ["inputs.region"]
    with pytest.raises(Invalid) as raised:
        await service.update(by_suite.id, ScheduleInput(inputs={}), ADMIN)
    assert {error.path for error in raised.value.errors} == {"suite"}
    fixed = await service.update(
        by_scenario.id, ScheduleInput(inputs={"target": "y", "region": "eu"}), ADMIN
    )
    assert fixed.inputs == {"target": "y", "region": "eu"}


SUITE_BAD_INPUT = [
    ({"scenario": "ticker"}, "suite"),  # both a scenario and a suite
    ({"suite": None}, "scenario"),  # neither
    ({"suite": "nope"}, "suite"),
    ({"inputs": {"extra": 1}}, "inputs.extra"),  # no case takes it
    ({"inputs": {"target": 3}}, "inputs.target"),
]


async def test_a_suite_schedule_refuses_what_its_run_would_refuse(
    cores: tuple[Core, Core],
) -> None:
    first, _ = cores
    await first.scenarios.save(SCENARIO, ADMIN)
    await first.suites.save(SUITE, ADMIN)
    for given, field in SUITE_BAD_INPUT:
        fields: dict[str, Any] = {"name": "bad", "suite": "nightly", "interval_seconds": 5}
        with pytest.raises(Invalid) as raised:
            await first.schedules.create(ScheduleInput(**{**fields, **given}), ADMIN)
        assert field in {error.path for error in raised.value.errors}, (given, raised.value)
    assert await first.schedules.in_workspace(ADMIN) == []


async def test_the_sqlite_migration_keeps_every_schedule_when_it_rebuilds_the_table(
    tmp_path: Path,
) -> None:
    async with Database.open(f"sqlite:///{tmp_path / 'db.sqlite'}", migrate=True) as database:
        # The table as the schedules migration made it: scenario NOT NULL, no suite column.
        await database.fetch("DROP TABLE runwire_schedule")
        for statement in backfill.STATEMENTS:
            if "runwire_schedule " in statement:
                await database.fetch(statement)
        kept = Schedule(
            id="s-1",
            workspace_id=WORKSPACE,
            name="kept",
            scenario="ticker",
            suite=None,
            inputs={"target": "x"},
            timing=Timing("0 9 * * *", None, "Europe/Berlin", START),
            missed=MissedFirePolicy.RUN_ONCE,
            enabled=True,
            next_fire_at=START + timedelta(hours=8),
            revision=3,
            created_at=START,
            created_by="user:ann",
            updated_at=START + timedelta(minutes=1),
        )
        await database.fetch(
            "INSERT INTO runwire_schedule (id, workspace_id, name, scenario, inputs, cron,"
            " interval_seconds, time_zone, anchor, missed, enabled, next_fire_at, revision,"
            " created_at, created_by, updated_at)"
            " VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
            kept.id,
            kept.workspace_id,
            kept.name,
            kept.scenario,
            json.dumps(kept.inputs),
            kept.timing.cron,
            None,
            kept.timing.time_zone,
            kept.timing.anchor,
            "RUN_ONCE",
            True,
            kept.next_fire_at,
            kept.revision,
            kept.created_at,
            kept.created_by,
            kept.updated_at,
        )

        for statement in suite_targets.SQLITE_SCHEDULES:
            await database.fetch(statement)

        store = ScheduleRepository(database)
        assert await store.schedules(WORKSPACE) == [kept]
        suite = replace(kept, id="s-2", scenario=None, suite="nightly")
        await store.insert_schedule(suite)
        assert await store.schedules(WORKSPACE) == [kept, suite]
        assert await store.due_schedules(START + timedelta(days=1), 10) == [kept, suite]
        indexes = await database.fetch(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runwire_schedule'"
            " AND sql IS NOT NULL"
        )
        assert {row["name"] for row in indexes} == {
            "runwire_schedule_workspace",
            "runwire_schedule_due",
        }
