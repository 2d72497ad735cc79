"""What the benchmark scripts share: their failure, the calls they make, machine readings."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any, Final

import asyncpg
import httpx
from tests.support import postgres
from tests.support.server import Server

START: Final = """
mutation Start($definition: String!) {
  startExecution(input: {definition: $definition}) {
    __typename
    ... on StartExecutionSuccess { execution { id } }
    ... on Error { message }
  }
}
"""
FINISHED: Final = "query Finished($id: ID!) { execution(id: $id) { status lastSeq } }"


class BenchmarkFailed(Exception):
    """Events were lost, duplicated or reordered, an answer was wrong, or a run hung: no figure."""


def graphql(server: Server, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """One operation over HTTP as the server's admin; its data, or BenchmarkFailed."""
    response = httpx.post(
        server.graphql_http,
        json={"query": query, "variables": variables},
        headers=server.headers,
        timeout=30,
    )
    body = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise BenchmarkFailed(f"{query.split('(')[0]}: HTTP {response.status_code} {body}")
    return dict(body["data"])


def postgres_version() -> str:
    """The version of the Postgres server the benchmarks use."""

    async def version() -> str:
        connection = await asyncpg.connect(f"{postgres.POSTGRES_SERVER}/postgres")
        try:
            return str(await connection.fetchval("SHOW server_version"))
        finally:
            await connection.close()

    return asyncio.run(version())


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time the process itself has used so far (not its children; Linux)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    # The fields after the command name, which is in parentheses and may contain spaces.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree_cpu_seconds(pid: int, leave_out: Collection[int] = ()) -> float:
    """User + system CPU time of the process and its live descendants, except the trees under
    `leave_out` (Linux): a server's recognition workers are its children, and their CPU is the
    server's, but never reaped while it runs, so its own counters leave it out."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                children.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(
                    int(entry.name)
                )
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        if current in leave_out:
            continue
        with contextlib.suppress(OSError):
            total += process_cpu_seconds(current)
        pending.extend(children.get(current, ()))
    return total
