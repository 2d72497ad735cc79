"""Runners lost two ways, with two runner processes on Postgres: killed (SIGKILL), or stopped
for a deploy (SIGTERM). Their executions are resumed by the other runner at the interrupted step;
no event is lost, nothing stays owned, no finished step runs again. A subscription on the stopped
server ends with a close a client resumes from (1012, before any terminal event), and resuming it
with afterSeq on another server misses nothing.

The seconds from the signal to the resumption are printed: the figures the lease settings give
(tests/support/faults.py: lease 3 s, heartbeat 0.5 s, drain 1 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from datetime import datetime
from pathlib import Path

import asyncpg
from tests.support.faults import (
    FAULT_SETTINGS,
    TERMINAL,
    Cluster,
    Follower,
    check_no_success_repeated,
    check_nothing_lost,
    cluster,
    events_of,
    settled,
    stop,
)
from tests.support.graphql import FOLLOW, acknowledged, definition, follow, start
from tests.support.server import Server
from websockets.exceptions import ConnectionClosed

# Steps long enough that a stopped runner still runs them when its drain (1 s) ends, so it hands
# them over.
WORK = definition(
    "{key: a, kind: sleep, with: {seconds: 2}}",
    "{key: b, kind: sleep, with: {seconds: 2}}",
    "{key: c, kind: sleep, with: {seconds: 0.1}}",
    name="work",
)
# A killed runner is killed as soon as it runs the executions: their steps need only outlast that
# moment, and each second of them is waited out again after the takeover.
KILLED_WORK = definition(
    "{key: a, kind: sleep, with: {seconds: 1}}",
    "{key: b, kind: sleep, with: {seconds: 1}}",
    "{key: c, kind: sleep, with: {seconds: 0.1}}",
    name="work",
)
LEASE = float(FAULT_SETTINGS["RUNWIRE_LEASE_SECONDS"])
HEARTBEAT = float(FAULT_SETTINGS["RUNWIRE_HEARTBEAT_SECONDS"])


async def _running_on_one_runner(found: Cluster, ids: list[str]) -> tuple[int, list[str]]:
    """Wait until a runner holds running executions; its index and those executions."""
    async with asyncio.timeout(20):
        while True:
            connection = await asyncpg.connect(found.database_url)
            try:
                rows = await connection.fetch(
                    "SELECT id, owner FROM runwire_execution WHERE id = ANY($1)"
                    " AND status = 'RUNNING' AND owner IS NOT NULL",
                    ids,
                )
            finally:
                await connection.close()
            if rows:
                victim = found.runners.index(found.runner_by_owner(rows[0]["owner"]))
                owner = rows[0]["owner"]
                return victim, [row["id"] for row in rows if row["owner"] == owner]
            await asyncio.sleep(0.05)


async def _followed_until_closed(
    server: Server, execution_id: str, subscribed: asyncio.Event
) -> tuple[list[int], list[str], int | None]:
    """Follow on `server` until it closes the socket: the seqs and statuses got, the close code."""
    seqs: list[int] = []
    statuses: list[str] = []
    async with acknowledged(server) as ws:
        payload = {"query": FOLLOW, "variables": {"id": execution_id, "after": 0}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                message = json.loads(raw)
                assert message["type"] == "next", message  # complete: it ended on this server
                for event in message["payload"]["data"]["executionEvents"]["events"]:
                    seqs.append(event["seq"])
                    if event.get("status"):
                        statuses.append(event["status"])
                subscribed.set()
        return seqs, statuses, ws.close_code


async def _resumed_at(url: str, execution_id: str, reason: str) -> datetime:
    for event in await events_of(url, execution_id):
        if event["type"] == "EXECUTION_STATUS" and reason in event["data"]:
            data = event["data"]
            if '"RUNNING"' in data:
                return event["at"]  # type: ignore[no-any-return]
    raise AssertionError(f"execution {execution_id} was not resumed ({reason})")


async def test_a_killed_runners_executions_are_resumed_within_seconds(tmp_path: Path) -> None:
    async with cluster(tmp_path) as found:
        ids = [await start(found.api, definition=KILLED_WORK) for _ in range(4)]
        followers = [Follower(found.api, execution_id) for execution_id in ids]
        victim, held = await _running_on_one_runner(found, ids)

        killed_at = time.time()
        await asyncio.to_thread(stop, found.runners[victim], signal.SIGKILL)

        rows = await settled(found.database_url, ids, timeout=60)
        assert {row["status"] for row in rows.values()} == {"SUCCEEDED"}
        await check_nothing_lost(found.database_url, followers)
        await check_no_success_repeated(found.database_url, ids)
        detected = [
            (await _resumed_at(found.database_url, execution_id, "runner lost")).timestamp()
            - killed_at
            for execution_id in held
        ]
        print(
            f"\nSIGKILL: {len(held)} executions resumed by the other runner after"
            f" {min(detected):.1f}-{max(detected):.1f} s (lease {LEASE:g} s)"
        )
        # Expiry, the takeover margin and a heartbeat's poll: within lease + 3 heartbeats.
        assert max(detected) <= LEASE + 3 * HEARTBEAT + 2.0


async def test_a_runner_stopped_for_a_deploy_hands_its_executions_over(tmp_path: Path) -> None:
    async with cluster(tmp_path) as found:
        ids = [await start(found.api, definition=WORK) for _ in range(4)]
        followers = [Follower(found.api, execution_id) for execution_id in ids]
        victim, held = await _running_on_one_runner(found, ids)
        # A client of the stopped server itself, following one of the executions it runs.
        subscribed = asyncio.Event()
        on_victim = asyncio.ensure_future(
            _followed_until_closed(found.runners[victim], held[0], subscribed)
        )
        async with asyncio.timeout(10):
            await subscribed.wait()

        stopped_at = time.time()
        exit_seconds = await asyncio.to_thread(stop, found.runners[victim], signal.SIGTERM)

        rows = await settled(found.database_url, ids, timeout=60)
        assert {row["status"] for row in rows.values()} == {"SUCCEEDED"}
        await check_nothing_lost(found.database_url, followers)
        await check_no_success_repeated(found.database_url, ids)
        got, statuses, close_code = await on_victim
        assert close_code == 1012, close_code  # "service restart": try again, elsewhere
        assert not TERMINAL & set(statuses), statuses
        rest = await follow(found.api, held[0], after_seq=got[-1])
        stored = [e["seq"] for e in await events_of(found.database_url, held[0])]
        assert got + [e["seq"] for e in rest] == stored
        resumed = []
        for execution_id in held:
            statuses = [
                event
                for event in await events_of(found.database_url, execution_id)
                if event["type"] == "EXECUTION_STATUS"
            ]
            handed = next(i for i, e in enumerate(statuses) if "handed over" in e["data"])
            running_again = statuses[handed + 1]
            assert '"RUNNING"' in running_again["data"]
            resumed.append(running_again["at"].timestamp() - stopped_at)
        print(
            f"\nSIGTERM: the runner exited after {exit_seconds:.1f} s; {len(held)} executions"
            f" resumed by the other runner after {min(resumed):.1f}-{max(resumed):.1f} s"
        )
        drain = float(FAULT_SETTINGS["RUNWIRE_DRAIN_SECONDS"])
        grace = float(FAULT_SETTINGS["RUNWIRE_GRACE_SECONDS"])
        assert max(resumed) <= drain + grace + 3.0
