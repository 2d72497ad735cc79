"""Whether queued work has a runner: the rule every surface shares, and the log said once."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from tests.support.domain import EDITOR, Domain

from runwire.domain.clock import utc_now
from runwire.domain.executions import StartRequest
from runwire.domain.runners import QueueHealth, QueueHealthService, RunnerPresence, Waiting
from runwire.health import Health

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
QUICK = "name: quick\nsteps:\n  - {key: nap, kind: sleep, with: {seconds: 0}}"
WARNING_END = "no runner is alive: start `runwire worker`, or a server with RUNWIRE_RUNNER=true"


def runner(alive_for: float, slots: int = 4, runner_id: str = "h:1:a") -> RunnerPresence:
    return RunnerPresence(
        id=runner_id,
        host="h",
        pid=1,
        started_at=NOW - timedelta(minutes=5),
        last_seen_at=NOW - timedelta(seconds=1),
        alive_until=NOW + timedelta(seconds=alive_for),
        slots=slots,
        busy=0,
    )


def waiting(count: int, age: float) -> Waiting:
    return Waiting(count, NOW - timedelta(seconds=age) if count else None)


def test_work_that_waited_a_lease_with_no_runner_is_warned_of() -> None:
    judged = QueueHealth.of([], waiting(2, 7), NOW, grace_seconds=6)

    assert judged.runners_alive == 0
    assert judged.oldest_queued_age_seconds == 7
    assert judged.warning == f"2 executions are queued (the oldest for 7s) and {WARNING_END}"


@pytest.mark.parametrize(
    ("runners", "queued", "runs_here"),
    [
        ([], waiting(1, 5), False),  # within the grace: a worker may be starting
        ([], waiting(0, 0), False),  # nothing waits
        ([runner(3)], waiting(1, 60), False),  # a runner is alive: it waits for a slot
        ([], waiting(1, 60), True),  # this process runs one
    ],
)
def test_no_warning(runners: list[RunnerPresence], queued: Waiting, runs_here: bool) -> None:
    assert QueueHealth.of(runners, queued, NOW, 6, runs_here).warning is None


def test_a_runner_whose_lease_passed_is_not_alive() -> None:
    judged = QueueHealth.of(
        [runner(-0.5), runner(2, slots=3, runner_id="b")], waiting(0, 0), NOW, 6
    )

    assert (judged.runners_alive, judged.runner_slots) == (1, 3)


async def database_answers() -> None:
    return None


async def test_the_warning_is_logged_once_when_it_starts_and_once_when_it_clears(
    domain: Domain, caplog: pytest.LogCaptureFixture
) -> None:
    store = domain.store
    # Judged 10 s on: what is queued now has waited 10 s by then.
    later = utc_now() + timedelta(seconds=10)
    service = QueueHealthService(store, store, 6, runs_here=False, now=lambda: later)
    health = Health({"database": database_answers}, service)
    caplog.set_level(logging.WARNING, logger="runwire.health")

    await health.check()
    await domain.executions.start(StartRequest(definition=QUICK), EDITOR)
    for _ in range(3):
        await health.check()
    assert health.runners == {"up": False, "alive": 0}
    assert health.warnings == [f"1 execution is queued (the oldest for 10s) and {WARNING_END}"]
    await store.record_runner(replace(runner(0), alive_until=later + timedelta(seconds=6)))
    for _ in range(3):
        await health.check()

    assert [record.getMessage() for record in caplog.records] == [
        f"queue: 1 execution is queued (the oldest for 10s) and {WARNING_END}",
        "queue: no longer waiting for a runner (1 alive, 1 queued)",
    ]
    assert health.runners == {"up": True, "alive": 1}
    assert health.warnings == []
    assert health.ready  # no runner never made it unready
