"""Runners killed at random under load, and the invariants checked at the end.

Executions are started all along through the API process; every few seconds a random runner is
killed (SIGKILL) or stopped (SIGTERM), and a new one takes its place. Afterwards every execution
must have ended and been released, every follower must have received exactly the stored events
(1..last, once, in order), and no step may have run again after it succeeded.

The suite's run is short (a smoke run: one kill). The two-minute run is the `long` marker's
(`make test-long`, which CI runs after `make test`); `RUNWIRE_CHAOS_SECONDS` sets the length of
either.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path

import pytest
from tests.support.faults import (
    Follower,
    check_no_success_repeated,
    check_nothing_lost,
    cluster,
    settled,
    stop,
)
from tests.support.graphql import definition, start

SHORT_SECONDS = 5.0  # one kill: the smoke run; the long run is the test of it
# A kill every 3 s at most; 180 s made 13 kills and 77 executions on 2 busy cores.
LONG_SECONDS = 120.0
KILL_EVERY = 3.0
START_EVERY = 0.25
RUNNERS = 3


def _step(key: str) -> str:
    script = f"for i in 1 2 3 4 5 6 7 8 9 10; do echo {key} $i; sleep 0.05; done"
    argv = f'[sh, -c, "{script}"]'
    return f"{{key: {key}, kind: shell, on_runner_lost: retry, with: {{argv: {argv}}}}}"


WORK = definition(_step("a"), _step("b"), _step("c"), name="chaos")


def _seconds(default: float) -> float:
    return float(os.environ.get("RUNWIRE_CHAOS_SECONDS", default))


async def test_runners_killed_at_random_lose_nothing(tmp_path: Path) -> None:
    await _chaos(tmp_path, _seconds(SHORT_SECONDS))


@pytest.mark.long
async def test_runners_killed_at_random_for_minutes_lose_nothing(tmp_path: Path) -> None:
    await _chaos(tmp_path, _seconds(LONG_SECONDS))


async def _chaos(tmp_path: Path, seconds: float) -> None:
    chaos = random.Random(os.environ.get("RUNWIRE_CHAOS_SEED", "runwire"))
    async with cluster(tmp_path, runners=RUNNERS) as found:
        ids: list[str] = []
        followers: list[Follower] = []
        kills = {"SIGKILL": 0, "SIGTERM": 0}
        deadline = time.monotonic() + seconds
        next_kill = time.monotonic() + KILL_EVERY
        while time.monotonic() < deadline:
            execution_id = await start(found.api, definition=WORK)
            ids.append(execution_id)
            followers.append(Follower(found.api, execution_id))
            if time.monotonic() >= next_kill:
                live = [r for r in found.runners if not r.process.exited()]
                victim = chaos.choice(live)
                how = chaos.choice([signal.SIGKILL, signal.SIGTERM])
                kills[how.name] += 1
                await asyncio.to_thread(stop, victim, how)
                await asyncio.to_thread(found.start_runner)
                next_kill = time.monotonic() + KILL_EVERY
            await asyncio.sleep(START_EVERY)

        rows = await settled(found.database_url, ids, timeout=120)
        await check_nothing_lost(found.database_url, followers, timeout=120)
        await check_no_success_repeated(found.database_url, ids)
        statuses = {row["status"] for row in rows.values()}
        print(
            f"\nchaos: {seconds:g} s, {len(ids)} executions, {kills['SIGKILL']} runners killed"
            f" and {kills['SIGTERM']} stopped; ended {sorted(statuses)}"
        )
        # Every step may run again when its runner is lost: all of them succeed in the end.
        assert statuses == {"SUCCEEDED"}
