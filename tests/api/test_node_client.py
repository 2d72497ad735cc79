"""The frontend contract is not Python-specific: a Node client speaking graphql-transport-ws.

tests/node/contract.mjs (the npm `graphql-ws` client on `ws`, the documents in
schema/operations/) drives a real server and prints what it saw as JSON lines; the assertions are
here. Without Node 20+ or its installed packages the test skips, or fails when
RUNWIRE_REQUIRE_POSTGRES=1 (CI), so CI cannot pass by skipping it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from tests.support import postgres
from tests.support.graphql import definition, execute
from tests.support.server import Server, running_server

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
SCRIPT = NODE_DIR / "contract.mjs"
INSTALL = "cd tests/node && npm ci --no-audit --no-fund"
MIN_NODE_MAJOR = 20
# Ten lines a tenth of a second apart: one output event each, and a second subscriber has about
# a second to join while the execution still runs.
TALKING = definition(
    '{key: talk, kind: shell, with: {argv: ["sh", "-c",'
    ' "for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; sleep 0.1; done"]}}',
    name="node-contract",
)
BAD_TOKEN = "rw_not-a-real-token"
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"}


def _missing(reason: str) -> NoReturn:
    """Skip, or fail under RUNWIRE_REQUIRE_POSTGRES=1, as unreachable Postgres does."""
    if os.environ.get(postgres.REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({postgres.REQUIRE_ENV}=1)")
    pytest.skip(reason)


def _node() -> str:
    """The node executable, once it and the client's packages are known to be there."""
    node = shutil.which("node")
    if node is None:
        _missing(f"node (>= {MIN_NODE_MAJOR}) is not on PATH")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = re.match(r"v(\d+)\.", version.stdout.strip())
    if major is None or int(major.group(1)) < MIN_NODE_MAJOR:
        _missing(f"node {version.stdout.strip()} is too old: need {MIN_NODE_MAJOR} or later")
    for package in ("graphql-ws", "ws", "graphql"):
        if not (NODE_DIR / "node_modules" / package / "package.json").is_file():
            _missing(f"the Node client's packages are not installed: run `{INSTALL}`")
    return node


@pytest.fixture(scope="module", name="node")
def node_fixture() -> str:
    return _node()


# One backend is enough here: the contract is the same on each (the other API tests cover them).
# Postgres, as in production. `node` first: without it, no server is started for nothing.
@pytest.fixture(scope="module", params=["postgres"])
def server(
    node: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with running_server(request.param, tmp_path_factory.mktemp(request.param)) as found:
        yield found


@pytest.fixture(scope="module")
def seen(node: str, server: Server) -> dict[str, dict[str, Any]]:
    """What the Node client observed, by check name; it runs once per server."""
    env = {
        **os.environ,
        "RUNWIRE_URL": server.url,
        # The token travels in the environment, never in argv (visible in `ps`) or a URL.
        "RUNWIRE_TOKEN": server.token,
        "RUNWIRE_BAD_TOKEN": BAD_TOKEN,
        "RUNWIRE_DEFINITION": TALKING,
    }
    finished = subprocess.run(
        [node, str(SCRIPT)], env=env, cwd=NODE_DIR, capture_output=True, text=True, timeout=90
    )
    lines = [json.loads(line) for line in finished.stdout.splitlines() if line.strip()]
    assert finished.returncode == 0, f"node failed:\n{finished.stdout}\n{finished.stderr}"
    observed = {line.pop("check"): line for line in lines}
    assert "fatal" not in observed, observed["fatal"]
    return observed


async def _stored(server: Server, execution_id: str) -> dict[str, Any]:
    """The execution as the server stores it, read by the Python client, not by Node."""
    query = "query($id: ID!) { execution(id: $id) { status lastSeq } }"
    found = (await execute(server, query, {"id": execution_id}))["execution"]
    assert found is not None
    return dict(found)


def _seqs(followed: dict[str, Any]) -> list[int]:
    """Every seq delivered, in delivery order; each batch's lastSeq is its last event's seq."""
    seqs: list[int] = []
    for batch in followed["batches"]:
        assert batch["seqs"], batch
        assert batch["lastSeq"] == batch["seqs"][-1], batch
        seqs.extend(batch["seqs"])
    return seqs


def _execution_id(seen: dict[str, dict[str, Any]]) -> str:
    return str(seen["start"]["result"]["execution"]["id"])


def test_start_execution_over_http_from_node(seen: dict[str, dict[str, Any]]) -> None:
    started = seen["start"]
    assert started["status"] == 200
    assert started["result"]["__typename"] == "StartExecutionSuccess"
    assert started["result"]["execution"]["name"] == "node-contract"
    assert started["result"]["execution"]["status"] == "QUEUED"


async def test_follow_from_zero_gets_each_seq_once_in_order_then_complete(
    server: Server, seen: dict[str, dict[str, Any]]
) -> None:
    stored = await _stored(server, _execution_id(seen))
    assert stored["status"] == "SUCCEEDED"
    followed = seen["follow"]
    assert followed["ended"] == "complete"
    assert _seqs(followed) == list(range(1, stored["lastSeq"] + 1))
    # Ten lines of output, each its own event, and the terminal status last of all.
    assert sum(b["types"].count("OutputChunk") for b in followed["batches"]) == 10
    assert followed["batches"][-1]["types"][-1] == "ExecutionStatusChanged"
    assert followed["batches"][-1]["executionStatuses"][-1] == "SUCCEEDED"
    assert seen["get"] == {"status": 200, "execution": stored}


async def test_late_join_while_running_gets_only_later_seqs(
    server: Server, seen: dict[str, dict[str, Any]]
) -> None:
    last_seq = (await _stored(server, _execution_id(seen)))["lastSeq"]
    joined = seen["late_join"]
    assert joined["terminalSeenBeforeJoin"] is False, "joined after the end, not while running"
    after = joined["afterSeq"]
    assert 5 <= after < last_seq - 2
    assert joined["ended"] == "complete"
    assert _seqs(joined) == list(range(after + 1, last_seq + 1))
    assert joined["batches"][-1]["executionStatuses"][-1] == "SUCCEEDED"


async def test_resume_after_the_end_gets_only_what_was_missed(
    server: Server, seen: dict[str, dict[str, Any]]
) -> None:
    last_seq = (await _stored(server, _execution_id(seen)))["lastSeq"]
    resumed = seen["resume_after_end"]
    assert resumed["afterSeq"] == last_seq - 3
    assert resumed["ended"] == "complete"
    assert _seqs(resumed) == [last_seq - 2, last_seq - 1, last_seq]
    # Resuming at the last seq: nothing more to send, the subscription completes at once.
    assert seen["resume_at_end"] == {"afterSeq": last_seq, "ended": "complete", "batches": []}


async def test_a_dropped_socket_resumes_where_it_left_off(
    server: Server, seen: dict[str, dict[str, Any]]
) -> None:
    reconnect = seen["reconnect"]
    last_seq = (await _stored(server, reconnect["executionId"]))["lastSeq"]
    # The proxy cut the connection mid-output; graphql-ws reconnected and sent the subscription
    # again with afterSeq kept current: every seq arrived once, none replayed.
    assert reconnect["connections"] == 2
    assert 5 <= reconnect["cutAfterSeq"] < last_seq - 2
    assert reconnect["ended"] == "complete"
    assert reconnect["received"] == list(range(1, last_seq + 1))


def test_server_answers_keepalive_pings(seen: dict[str, dict[str, Any]]) -> None:
    assert seen["ping_pong"]["pongs"] >= 1


def test_expected_failures_are_typed_results(seen: dict[str, dict[str, Any]]) -> None:
    unknown = seen["unknown_scenario"]
    assert unknown["status"] == 200
    assert unknown["result"] == {
        "__typename": "NotFoundError",
        "message": "scenario does-not-exist not found",
    }
    assert "Traceback" not in unknown["raw"]


def test_following_a_missing_execution_is_a_clear_error(seen: dict[str, dict[str, Any]]) -> None:
    missing = seen["follow_missing"]
    # A GraphQL error in a `next` message, then `complete`: the message names the id, the code
    # says what it is, and no trace.
    not_found = {
        "message": "execution no-such-execution not found",
        "extensions": {"code": "NOT_FOUND"},
    }
    assert missing == {"afterSeq": 0, "ended": "complete", "batches": [{"errors": [not_found]}]}


def test_a_bad_token_is_refused(seen: dict[str, dict[str, Any]]) -> None:
    socket = seen["bad_token_socket"]
    assert socket["ended"] == "error"
    assert socket["batches"] == []
    assert socket["error"]["closeCode"] == 4403
    over_http = seen["bad_token_http"]
    assert over_http["status"] == 401
    assert "unknown, revoked or expired" in over_http["raw"]
    assert BAD_TOKEN not in over_http["raw"]


def test_a_document_that_cannot_run_ends_in_error(seen: dict[str, dict[str, Any]]) -> None:
    # A document that cannot run ends in `error` with the server's words, not a bare complete.
    syntax = seen["syntax_error"]
    assert syntax["ended"] == "error", syntax
    [error] = syntax["error"]["graphqlErrors"]
    assert error["message"] == "Syntax Error: Expected Name, found <EOF>.", syntax
    empty = seen["empty_query"]
    assert empty["ended"] == "error", empty
    assert empty["error"]["graphqlErrors"] == [
        {"message": "No GraphQL query found in the request"}
    ], empty
