"""A database outage longer than the lease, with two runner processes on Postgres.

The database is set read-only and every session cut, for one and a half leases, then made writable
and cut again (sessions opened meanwhile stay read-only). Runners cannot renew their leases:
they give up their running steps before anyone could take them over, and resume them once the
database answers. What must hold afterwards: every execution ends and is released, no event is
lost, every step that finished did so once and is recorded (none ran to completion unrecorded,
none ran again), and during the outage the API answered "unavailable", not "internal error".
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from tests.support.faults import (
    FAULT_SETTINGS,
    Follower,
    check_no_success_repeated,
    check_nothing_lost,
    cluster,
    events_of,
    read_only,
    rows,
    settled,
)
from tests.support.graphql import START, definition, execute, start
from tests.support.server import Server

LEASE = float(FAULT_SETTINGS["RUNWIRE_LEASE_SECONDS"])
# A valid start: it must be written, which a read-only database refuses.
PROBE = definition("{key: a, kind: sleep, with: {seconds: 0}}", name="probe")


def _marked(key: str, markers: Path, seconds: float, extra: str = "") -> str:
    """A shell step that prints, waits, and records its completion in a marker file."""
    script = (
        f"for i in 1 2 3 4 5 6 7 8; do echo {key} $i; sleep {seconds / 8:g}; done;"
        f" echo done >> {markers}/{{{{ inputs.tag }}}}.{key}{extra}"
    )
    return (
        f'{{key: {key}, kind: shell, on_runner_lost: retry, with: {{argv: [sh, -c, "{script}"]}}}}'
    )


def _work(markers: Path) -> str:
    return definition(
        _marked("a", markers, 1.0),
        _marked("b", markers, 1.0),
        _marked("c", markers, 0.4),
        name="work",
        extra="inputs: {tag: {type: string}}",
    )


def _fails(markers: Path) -> str:
    return definition(
        _marked("a", markers, 1.0),
        '{key: b, kind: shell, with: {argv: [sh, -c, "exit 3"]}}',
        name="fails",
        extra="inputs: {tag: {type: string}}",
    )


async def _while_down(api: Server) -> tuple[int, list[str], dict[str, object]]:
    """What the API answers to a start and to /ready while the database is read-only."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            api.graphql_http,
            headers=api.headers,
            json={"query": START, "variables": {"input": {"definition": PROBE}}},
        )
        ready = await client.get(f"{api.url}/ready")
    body = (
        response.json()
        if response.headers.get("content-type", "").startswith("application/json")
        else {}
    )
    codes = [e.get("extensions", {}).get("code", "") for e in body.get("errors", [])]
    return response.status_code, codes, {"status": ready.status_code, **ready.json()}


async def test_an_outage_longer_than_the_lease_loses_nothing(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    async with cluster(tmp_path) as found:
        tags = [f"w{i}" for i in range(4)]
        ids = [
            await start(found.api, definition=_work(markers), inputs={"tag": tag}) for tag in tags
        ]
        failing = await start(found.api, definition=_fails(markers), inputs={"tag": "f"})
        everything = [*ids, failing]
        followers = [Follower(found.api, execution_id) for execution_id in everything]
        async with asyncio.timeout(20):
            while any(
                r["status"] != "RUNNING"
                for r in (await rows(found.database_url, everything)).values()
            ):
                await asyncio.sleep(0.05)

        async with read_only(found.database_url):
            await asyncio.sleep(LEASE / 2)
            status, codes, ready = await _while_down(found.api)
            # Down 1.5 leases in all: past the give-up (L - 2H) and past the lease's expiry.
            await asyncio.sleep(LEASE)

        settled_rows = await settled(found.database_url, everything, timeout=90)
        await check_nothing_lost(found.database_url, followers)
        await check_no_success_repeated(found.database_url, everything)
        # The one that failed (during the outage, most likely) is released: it can be retried.
        retried = await execute(
            found.api,
            'mutation($id: ID!) { retryStep(executionId: $id, stepKey: "b") { __typename } }',
            {"id": failing},
        )
        logs = found.logs()
        for execution_id, tag in zip(ids, tags, strict=True):
            for key in ("a", "b", "c"):
                completions = (markers / f"{tag}.{key}").read_text()
                if completions != "done\n":
                    events = [
                        (e["seq"], e["step_key"], e["attempt"], e["data"][:120])
                        for e in await events_of(found.database_url, execution_id)
                        if e["type"] != "OUTPUT"
                    ]
                    said = [line for line in logs.splitlines() if "runner:" in line]
                    raise AssertionError(
                        f"{tag}.{key} completed {completions!r}: {events}; the runners said:\n"
                        + "\n".join(said[-40:])
                    )

    assert {settled_rows[i]["status"] for i in ids} == {"SUCCEEDED"}
    assert settled_rows[failing]["status"] == "FAILED"
    assert retried["retryStep"]["__typename"] == "RetryStepSuccess"
    # Every finished step finished once: none ran to its end unrecorded, none again.
    for tag in tags:
        for key in ("a", "b", "c"):
            assert (markers / f"{tag}.{key}").read_text() == "done\n", (tag, key)
    # The API said "try again", never "internal error"; /ready named the database.
    assert status == 503 or codes == ["UNAVAILABLE"], (status, codes)
    assert ready["status"] == 503
    assert ready["components"]["database"]["up"] is False  # type: ignore[index]
    # Said once per change of state, not once per attempt: no traceback floods.
    assert "Traceback" not in logs
    assert logs.count("\n") < 400, logs[-4000:]
