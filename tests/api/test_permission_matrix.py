"""Every root operation tried with every role: denied cells are denied, allowed cells work."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import graphql
import httpx
import pytest
import pytest_asyncio
import websockets
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from tests.support.graphql import definition, ws_transport
from tests.support.server import Server, running_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

SCHEMA_FILE = Path(__file__).parents[2] / "schema" / "schema.graphql"

ROLES = ("viewer", "reviewer", "operator", "editor", "admin")

# The policy as the issue states it, written here independently of the server's own table:
# viewer reads history and traces and subscribes; reviewer also decides review steps (nothing
# else: reviewers need not be operators); operator also starts and steers executions and
# batches; editor also saves scenarios, starts inline definitions that run commands and lists
# secret names; admin also manages tokens, members, secrets and the audit trail, and alone deletes
# executions (test:delete).
GRANTS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"execution:read"}),
    "reviewer": frozenset({"execution:read", "review:write"}),
    "operator": frozenset({"execution:read", "review:write", "execution:write"}),
    "editor": frozenset({"execution:read", "review:write", "execution:write", "scenario:write"}),
    "admin": frozenset(
        {
            "execution:read",
            "review:write",
            "execution:write",
            "scenario:write",
            "test:delete",
            "admin",
        }
    ),
}

READ, WRITE, SCENARIO, ADMIN = "execution:read", "execution:write", "scenario:write", "admin"
DELETE = "test:delete"
REVIEW = "review:write"

# Root field -> the permission it needs. A root field missing here fails
# test_every_root_field_is_in_the_matrix, so a new operation cannot escape the matrix.
EXPECTED_PERMISSION: dict[str, str] = {
    # queries
    "viewer": READ,
    "execution": READ,
    "executions": READ,
    "executionMetrics": READ,
    "activeExecutions": READ,
    "queue": READ,
    "runners": ADMIN,  # hosts, pids and load of the deployment, other workspaces' work included
    "activeExecutionCounts": READ,
    "batch": READ,
    "scenarios": READ,
    "scenario": READ,
    "suites": READ,
    "suite": READ,
    "suiteRun": READ,
    "suiteRuns": READ,
    "compareSuiteRuns": READ,
    "suiteTrend": READ,
    "apiTokens": ADMIN,
    "members": ADMIN,
    "activities": ADMIN,  # the audit trail
    "secrets": SCENARIO,  # names only: editors write the definitions that name them
    "webhooks": ADMIN,
    "webhookDeliveries": ADMIN,  # payloads name executions of the whole workspace
    "retentionPolicy": READ,  # how long history is kept: every reader may know
    # mutations
    "createEventStreamTicket": READ,
    "startExecution": WRITE,
    "stopExecution": WRITE,
    "pauseExecution": WRITE,
    "resumeExecution": WRITE,
    "retryStep": WRITE,
    "skipStep": WRITE,
    "startBatch": WRITE,
    "stopBatch": WRITE,
    "createScenario": SCENARIO,
    "updateScenario": SCENARIO,
    "createSuite": SCENARIO,
    "updateSuite": SCENARIO,
    "startSuiteRun": WRITE,
    "setSuiteBaseline": WRITE,
    "retryFailedCases": WRITE,
    "createApiToken": ADMIN,
    "revokeApiToken": ADMIN,
    "setMemberRole": ADMIN,
    "removeMember": ADMIN,
    "setSecret": ADMIN,
    "deleteSecret": ADMIN,
    "createWebhook": ADMIN,
    "updateWebhook": ADMIN,
    "deleteWebhook": ADMIN,
    "redeliverWebhookDelivery": ADMIN,
    "deleteExecution": DELETE,
    "setRetentionPolicy": ADMIN,
    "schedules": READ,
    "createSchedule": WRITE,  # what starting its executions needs
    "updateSchedule": WRITE,
    "setScheduleEnabled": WRITE,
    "deleteSchedule": WRITE,
    "runScheduleNow": WRITE,
    "reviews": READ,  # the review queue: every reader may see what waits for whom
    "submitReview": REVIEW,
    # subscriptions
    "reviewUpdates": READ,
    "executionEvents": READ,
    "executionUpdates": READ,
    "suiteRunUpdates": READ,
}

# A step that keeps an execution RUNNING until it is stopped.
SLEEPER = definition("{key: nap, kind: sleep, with: {seconds: 60}}", name="sleeper")
# Two short steps: a pause while the first runs takes effect when it ends.
TWO_NAPS = definition(
    "{key: first, kind: sleep, with: {seconds: 0.2}}",
    "{key: second, kind: sleep, with: {seconds: 0.05}}",
    name="two-naps",
)
REVIEWED = definition('{key: gate, kind: review, with: {title: "Go?"}}', name="reviewed")
FAILS = definition(
    '{key: fail, kind: shell, with: {argv: ["sh", "-c", "exit 3"]}}',
    '{key: after, kind: shell, with: {argv: ["true"]}}',
    name="fails",
)
QUICK = definition('{key: hi, kind: shell, with: {argv: ["echo", "hi"]}}', name="quick")

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"}


def root_fields_of_schema_file() -> dict[str, str]:
    """Root field name -> "query" | "mutation" | "subscription", from the exported contract."""
    schema = graphql.build_schema(SCHEMA_FILE.read_text())
    kinds: dict[str, str] = {}
    for kind, root in (
        ("query", schema.query_type),
        ("mutation", schema.mutation_type),
        ("subscription", schema.subscription_type),
    ):
        kinds.update({name: kind for name in (root.fields if root else {})})
    return kinds


# The cells are generated from the contract (drift-tested against the live schema), plus any
# name the table has, so a stale table entry shows up as failing cells too.
SCHEMA_FIELDS = root_fields_of_schema_file()
MATRIX_FIELDS = sorted(set(SCHEMA_FIELDS) | set(EXPECTED_PERMISSION))


@dataclass(frozen=True)
class World:
    """A server with one HTTP client per role and objects the cells refer to."""

    server: Server
    secrets: dict[str, str]
    clients: dict[str, httpx.AsyncClient]
    finished_id: str
    batch_id: str
    # An operator of workspace team-b (made with the CLI), for the isolation checks.
    team_b_secret: str = ""
    team_b: httpx.AsyncClient | None = None

    @property
    def admin(self) -> httpx.AsyncClient:
        return self.clients["admin"]


async def call(
    client: httpx.AsyncClient, document: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One GraphQL POST; the whole response body (data and errors)."""
    response = await client.post("/graphql", json={"query": document, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def data_of(
    client: httpx.AsyncClient, document: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The data of a response that must have no errors."""
    body = await call(client, document, variables)
    assert not body.get("errors"), body
    data: dict[str, Any] = body["data"]
    return data


def mutation(field_name: str, params: str, arguments: str, success: str) -> str:
    """A mutation document selecting the typed errors and a little of the success type."""
    header = f"mutation Cell({params})" if params else "mutation Cell"
    return f"""
{header} {{
  {field_name}({arguments}) {{
    __typename
    ... on Error {{ message }}
    ... on PermissionDeniedError {{ permission role }}
    {success}
  }}
}}
"""


START = mutation(
    "startExecution",
    "$input: StartExecutionInput!",
    "input: $input",
    "... on StartExecutionSuccess { execution { id status } }",
)
STOP = mutation(
    "stopExecution", "$id: ID!", "id: $id", "... on StopExecutionSuccess { execution { id } }"
)
PAUSE = mutation(
    "pauseExecution", "$id: ID!", "id: $id", "... on PauseExecutionSuccess { execution { id } }"
)
START_BATCH = mutation(
    "startBatch",
    "$input: StartBatchInput!",
    "input: $input",
    "... on BatchSuccess { batch { id } }",
)
STOP_BATCH = mutation("stopBatch", "$id: ID!", "id: $id", "... on BatchSuccess { batch { id } }")
CREATE_SCENARIO = mutation(
    "createScenario",
    "$definition: String!",
    "definition: $definition",
    "... on ScenarioSuccess { scenario { name version } }",
)
CREATE_TOKEN = mutation(
    "createApiToken",
    "$input: CreateApiTokenInput!",
    "input: $input",
    "... on CreateApiTokenSuccess { secret token { id name } }",
)
SET_MEMBER = mutation(
    "setMemberRole",
    "$subject: String!, $role: Role!",
    "subject: $subject, role: $role",
    "... on MemberSuccess { member { subject role } }",
)
STATUS = "query Status($id: ID!) { execution(id: $id) { id status } }"
SET_SECRET = mutation(
    "setSecret",
    "$name: String!, $value: String!",
    "name: $name, value: $value",
    "... on SetSecretSuccess { secret { name } }",
)
DELETE_SECRET = mutation(
    "deleteSecret", "$name: String!", "name: $name", "... on DeleteSecretSuccess { name }"
)


async def succeed(client: httpx.AsyncClient, document: str, variables: dict[str, Any]) -> Any:
    """Run a mutation that must return its success type; the payload."""
    payload = next(iter((await data_of(client, document, variables)).values()))
    assert payload["__typename"].endswith("Success"), payload
    return payload


async def start(client: httpx.AsyncClient, **input: Any) -> str:
    return str((await succeed(client, START, {"input": input}))["execution"]["id"])


async def status_of(client: httpx.AsyncClient, execution_id: str) -> str | None:
    found = (await data_of(client, STATUS, {"id": execution_id}))["execution"]
    return None if found is None else str(found["status"])


async def wait_for_status(
    client: httpx.AsyncClient, execution_id: str, statuses: set[str], timeout: float = 20
) -> str:
    async with asyncio.timeout(timeout):
        while (status := await status_of(client, execution_id)) not in statuses:
            await asyncio.sleep(0.03)
    assert status is not None
    return status


async def stop_quietly(client: httpx.AsyncClient, execution_id: str) -> None:
    """End a throwaway execution; it may have ended already."""
    payload = (await data_of(client, STOP, {"id": execution_id}))["stopExecution"]
    assert payload["__typename"] in {"StopExecutionSuccess", "InvalidTransitionError"}, payload


async def create_token(admin: httpx.AsyncClient, name: str, role: str) -> tuple[str, str]:
    """A new token of the admin's workspace: (id, secret)."""
    payload = await succeed(admin, CREATE_TOKEN, {"input": {"name": name, "role": role.upper()}})
    return str(payload["token"]["id"]), str(payload["secret"])


def scenario_text(name: str, seconds: float = 0) -> str:
    return definition(f"{{key: nap, kind: sleep, with: {{seconds: {seconds}}}}}", name=name)


async def build_world(server: Server, stack: contextlib.AsyncExitStack) -> World:
    def client(secret: str) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {secret}"}
        return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30)

    bootstrap = await stack.enter_async_context(client(server.token))
    secrets: dict[str, str] = {}
    for role in ROLES:
        secrets[role] = (await create_token(bootstrap, f"matrix-{role}", role))[1]
    clients = {role: await stack.enter_async_context(client(s)) for role, s in secrets.items()}
    admin = clients["admin"]
    finished_id = await start(admin, scenario="hello")
    await wait_for_status(admin, finished_id, {"SUCCEEDED"})
    batch = await succeed(admin, START_BATCH, {"input": {"scenario": "hello", "runs": [{}]}})
    return World(server, secrets, clients, finished_id, str(batch["batch"]["id"]))


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Permissions do not depend on the database: one SQLite server for the matrix."""
    # Private addresses allowed: the cells' webhooks point at a closed port on loopback.
    settings = {
        "RUNWIRE_RUNNER_SLOTS": "16",
        "RUNWIRE_GRACE_SECONDS": "0.2",
        "RUNWIRE_WEBHOOK_ALLOW_PRIVATE": "true",
    }
    with running_server("sqlite", tmp_path_factory.mktemp("matrix"), settings) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(sqlite_server: Server) -> AsyncIterator[World]:
    async with contextlib.AsyncExitStack() as stack:
        yield await build_world(sqlite_server, stack)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def tenant_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Workspace isolation is SQL, so it runs on both databases."""
    settings = {"RUNWIRE_GRACE_SECONDS": "0.2"}
    directory = tmp_path_factory.mktemp(f"tenants-{request.param}")
    with running_server(request.param, directory, settings) as server:
        yield server


@pytest.fixture(scope="module")
def team_b_secret(tenant_server: Server) -> str:
    """An operator token of a second workspace, team-b, made with the CLI as an operator would."""
    cli = [sys.executable, "-m", "runwire.cli"]
    env = tenant_server.env
    subprocess.run(
        [*cli, "workspace", "create", "team-b"], env=env, check=True, capture_output=True
    )
    created = subprocess.run(
        [*cli, "token", "create", "--workspace", "team-b", "--name", "x", "--role", "operator"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return created.stdout.strip()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tenants(tenant_server: Server, team_b_secret: str) -> AsyncIterator[World]:
    """The world plus a client of team-b's operator."""
    async with contextlib.AsyncExitStack() as stack:
        found = await build_world(tenant_server, stack)
        team_b = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=tenant_server.url,
                headers={"Authorization": f"Bearer {team_b_secret}"},
                timeout=30,
            )
        )
        yield World(
            found.server,
            found.secrets,
            found.clients,
            found.finished_id,
            found.batch_id,
            team_b_secret=team_b_secret,
            team_b=team_b,
        )


# --- the cells -------------------------------------------------------------------------------


@dataclass
class Prepared:
    """What one cell sends, and how to check and clean up around it (as the admin)."""

    variables: dict[str, Any] = field(default_factory=dict)
    # Asserts that a denied call changed nothing.
    untouched: Callable[[], Awaitable[None]] | None = None
    cleanup: Callable[[], Awaitable[None]] | None = None


Arrange = Callable[[World, str], Awaitable[Prepared]]


@dataclass(frozen=True)
class Case:
    """A small valid document for one root field, with sample arguments."""

    document: str
    arrange: Arrange
    # Mutations: the type an allowed caller gets; queries: checks on an allowed caller's data.
    success: str = ""
    check: Callable[[Any, str, World], None] | None = None


async def nothing(world: World, tag: str) -> Prepared:
    return Prepared()


def fixed(**variables: Any) -> Arrange:
    async def arrange(world: World, tag: str) -> Prepared:
        return Prepared(dict(variables))

    return arrange


def finished(name: str) -> Arrange:
    """The shared execution that already succeeded, under argument `name`."""

    async def arrange(world: World, tag: str) -> Prepared:
        return Prepared({name: world.finished_id})

    return arrange


async def shared_batch(world: World, tag: str) -> Prepared:
    return Prepared({"id": world.batch_id})


async def labelled_nothing_started(world: World, tag: str) -> None:
    found = await data_of(
        world.admin,
        "query($l: String!) { executions(filter: {label: $l}) { edges { node { id } } } }",
        {"l": tag},
    )
    assert found["executions"]["edges"] == [], "a denied start still queued an execution"


async def arrange_start(world: World, tag: str) -> Prepared:
    async def untouched() -> None:
        await labelled_nothing_started(world, tag)

    return Prepared({"input": {"scenario": "hello", "labels": [tag]}}, untouched)


def running_throwaway(variable: str, changed_statuses: set[str]) -> Arrange:
    """A sleeping execution of this cell's own, stopped afterwards."""

    async def arrange(world: World, tag: str) -> Prepared:
        execution_id = await start(world.admin, definition=SLEEPER, labels=[tag])
        await wait_for_status(world.admin, execution_id, {"RUNNING"})

        async def untouched() -> None:
            assert await status_of(world.admin, execution_id) not in changed_statuses

        async def cleanup() -> None:
            await stop_quietly(world.admin, execution_id)

        return Prepared({variable: execution_id}, untouched, cleanup)

    return arrange


async def arrange_paused(world: World, tag: str) -> Prepared:
    execution_id = await start(world.admin, definition=TWO_NAPS, labels=[tag])
    payload = await succeed(world.admin, PAUSE, {"id": execution_id})
    assert payload["__typename"] == "PauseExecutionSuccess"
    await wait_for_status(world.admin, execution_id, {"PAUSED"})

    async def untouched() -> None:
        assert await status_of(world.admin, execution_id) == "PAUSED"

    async def cleanup() -> None:
        await stop_quietly(world.admin, execution_id)

    return Prepared({"id": execution_id}, untouched, cleanup)


async def arrange_failed(world: World, tag: str) -> Prepared:
    execution_id = await start(world.admin, definition=FAILS, labels=[tag])
    await wait_for_status(world.admin, execution_id, TERMINAL)
    assert await status_of(world.admin, execution_id) == "FAILED"

    async def untouched() -> None:
        assert await status_of(world.admin, execution_id) == "FAILED"

    return Prepared({"executionId": execution_id, "stepKey": "fail"}, untouched)


async def arrange_waiting(world: World, tag: str) -> Prepared:
    """An execution of this cell's own, WAITING for its review step, stopped afterwards."""
    execution_id = await start(world.admin, definition=REVIEWED, labels=[tag])
    await wait_for_status(world.admin, execution_id, {"WAITING"})

    async def untouched() -> None:
        assert await status_of(world.admin, execution_id) == "WAITING"

    async def cleanup() -> None:
        await stop_quietly(world.admin, execution_id)

    return Prepared({"executionId": execution_id, "stepKey": "gate"}, untouched, cleanup)


async def arrange_start_batch(world: World, tag: str) -> Prepared:
    async def untouched() -> None:
        await labelled_nothing_started(world, tag)

    variables = {"input": {"scenario": "hello", "runs": [{}], "labels": [tag], "name": tag}}
    return Prepared(variables, untouched)


async def arrange_stop_batch(world: World, tag: str) -> Prepared:
    input = {"definition": SLEEPER, "runs": [{}], "name": tag}
    batch_id = str((await succeed(world.admin, START_BATCH, {"input": input}))["batch"]["id"])
    query = "query($id: ID!) { batch(id: $id) { stoppedAt } }"

    async def untouched() -> None:
        found = await data_of(world.admin, query, {"id": batch_id})
        assert found["batch"]["stoppedAt"] is None, "a denied stopBatch stopped the batch"

    async def cleanup() -> None:
        await succeed(world.admin, STOP_BATCH, {"id": batch_id})

    return Prepared({"id": batch_id}, untouched, cleanup)


def scenario_name(tag: str) -> str:
    return f"matrix-{tag}"


async def latest_version(world: World, name: str) -> int | None:
    query = "query($n: String!) { scenario(name: $n) { version } }"
    found = (await data_of(world.admin, query, {"n": name}))["scenario"]
    return None if found is None else int(found["version"])


async def arrange_create_scenario(world: World, tag: str) -> Prepared:
    name = scenario_name(tag)

    async def untouched() -> None:
        assert await latest_version(world, name) is None

    return Prepared({"definition": scenario_text(name)}, untouched)


async def arrange_update_scenario(world: World, tag: str) -> Prepared:
    name = scenario_name(tag)
    await succeed(world.admin, CREATE_SCENARIO, {"definition": scenario_text(name)})

    async def untouched() -> None:
        assert await latest_version(world, name) == 1

    # A different definition: saving the same one again is not a new version.
    return Prepared({"definition": scenario_text(name, seconds=0.01)}, untouched)


def suite_text(name: str, who: str = "matrix") -> str:
    return f"name: {name}\ncases: [{{scenario: hello, inputs: {{name: {who}}}}}]\n"


def suite_mutation(field_name: str) -> str:
    return mutation(
        field_name,
        "$definition: String!",
        "definition: $definition",
        "... on SuiteSuccess { suite { name version } }",
    )


async def latest_suite_version(world: World, name: str) -> int | None:
    query = "query($n: String!) { suite(name: $n) { version } }"
    found = (await data_of(world.admin, query, {"n": name}))["suite"]
    return None if found is None else int(found["version"])


async def arrange_create_suite(world: World, tag: str) -> Prepared:
    name = scenario_name(tag)

    async def untouched() -> None:
        assert await latest_suite_version(world, name) is None

    return Prepared({"definition": suite_text(name)}, untouched)


async def arrange_update_suite(world: World, tag: str) -> Prepared:
    name = scenario_name(tag)
    await succeed(world.admin, suite_mutation("createSuite"), {"definition": suite_text(name)})

    async def untouched() -> None:
        assert await latest_suite_version(world, name) == 1

    return Prepared({"definition": suite_text(name, who="other")}, untouched)


async def arrange_read_suite(world: World, tag: str) -> Prepared:
    name = scenario_name(tag)
    await succeed(world.admin, suite_mutation("createSuite"), {"definition": suite_text(name)})
    return Prepared({"name": name})


START_SUITE_RUN = mutation(
    "startSuiteRun",
    "$input: StartSuiteRunInput!",
    "input: $input",
    "... on SuiteRunSuccess { run { id total } }",
)


async def suite_run_ids(world: World, suite: str) -> list[str]:
    query = "query($s: String!) { suiteRuns(suite: $s) { id } }"
    return [run["id"] for run in (await data_of(world.admin, query, {"s": suite}))["suiteRuns"]]


async def arrange_start_suite_run(world: World, tag: str) -> Prepared:
    name = scenario_name(tag)
    await succeed(world.admin, suite_mutation("createSuite"), {"definition": suite_text(name)})

    async def untouched() -> None:
        assert await suite_run_ids(world, name) == []

    return Prepared({"input": {"suite": name}}, untouched)


async def arrange_suite_run(world: World, tag: str) -> Prepared:
    name = scenario_name(tag)
    await succeed(world.admin, suite_mutation("createSuite"), {"definition": suite_text(name)})
    run = await succeed(world.admin, START_SUITE_RUN, {"input": {"suite": name}})
    return Prepared({"id": run["run"]["id"], "suite": name})


async def arrange_compare(world: World, tag: str) -> Prepared:
    prepared = await arrange_suite_run(world, tag)
    return Prepared({"head": prepared.variables["id"], "base": prepared.variables["id"]})


async def arrange_set_baseline(world: World, tag: str) -> Prepared:
    prepared = await arrange_suite_run(world, tag)
    name = prepared.variables["suite"]
    query = "query($id: ID!) { suiteRun(id: $id) { complete } }"
    async with asyncio.timeout(20):
        while not (await data_of(world.admin, query, {"id": prepared.variables["id"]}))["suiteRun"][
            "complete"
        ]:
            await asyncio.sleep(0.03)

    async def untouched() -> None:
        history = "query($n: String!) { suite(name: $n) { baselineHistory { runId } } }"
        found = await data_of(world.admin, history, {"n": name})
        assert found["suite"]["baselineHistory"] == []

    return Prepared({"run": prepared.variables["id"]}, untouched)


async def arrange_retry_failed(world: World, tag: str) -> Prepared:
    name = scenario_name(tag)
    text = f"name: {name}\ncases: [{{name: fails, definition: {{name: fails, steps: [{{key: f,"
    text += ' kind: shell, with: {argv: ["false"]}}]}}]\n'
    await succeed(world.admin, suite_mutation("createSuite"), {"definition": text})
    run = await succeed(world.admin, START_SUITE_RUN, {"input": {"suite": name}})
    run_id = run["run"]["id"]
    query = "query($id: ID!) { suiteRun(id: $id) { complete batch { total } } }"
    async with asyncio.timeout(20):
        while not (await data_of(world.admin, query, {"id": run_id}))["suiteRun"]["complete"]:
            await asyncio.sleep(0.03)

    async def untouched() -> None:
        found = await data_of(world.admin, query, {"id": run_id})
        assert found["suiteRun"]["batch"]["total"] == 1, "a denied retry queued executions"

    return Prepared({"run": run_id}, untouched)


async def tokens_named(world: World, name: str) -> list[dict[str, Any]]:
    found = await data_of(world.admin, "{ apiTokens { id name revokedAt } }")
    return [token for token in found["apiTokens"] if token["name"] == name]


async def arrange_create_token(world: World, tag: str) -> Prepared:
    async def untouched() -> None:
        assert await tokens_named(world, tag) == []

    return Prepared({"input": {"name": tag, "role": "VIEWER"}}, untouched)


async def arrange_revoke_token(world: World, tag: str) -> Prepared:
    token_id, secret = await create_token(world.admin, tag, "viewer")

    async def untouched() -> None:
        assert [t["revokedAt"] for t in await tokens_named(world, tag)] == [None]
        async with httpx.AsyncClient(
            base_url=world.server.url, headers={"Authorization": f"Bearer {secret}"}
        ) as client:
            assert (await data_of(client, "{ viewer { role } }"))["viewer"]["role"] == "VIEWER"

    return Prepared({"id": token_id}, untouched)


async def member_subjects(world: World) -> set[str]:
    found = await data_of(world.admin, "{ members { subject } }")
    return {member["subject"] for member in found["members"]}


async def arrange_set_member(world: World, tag: str) -> Prepared:
    subject = f"user-{tag}"

    async def untouched() -> None:
        assert subject not in await member_subjects(world)

    return Prepared({"subject": subject, "role": "VIEWER"}, untouched)


async def arrange_remove_member(world: World, tag: str) -> Prepared:
    subject = f"user-{tag}"
    await succeed(world.admin, SET_MEMBER, {"subject": subject, "role": "VIEWER"})

    async def untouched() -> None:
        assert subject in await member_subjects(world)

    return Prepared({"subject": subject}, untouched)


def secret_name(tag: str) -> str:
    return "MATRIX_" + re.sub(r"[^A-Z0-9]", "_", tag.upper())


async def secret_names(world: World) -> set[str]:
    found = await data_of(world.admin, "{ secrets { name } }")
    return {secret["name"] for secret in found["secrets"]}


async def delete_secret_quietly(world: World, name: str) -> None:
    payload = (await data_of(world.admin, DELETE_SECRET, {"name": name}))["deleteSecret"]
    assert payload["__typename"] in {"DeleteSecretSuccess", "NotFoundError"}, payload


async def arrange_delete_execution(world: World, tag: str) -> Prepared:
    """An ended execution of this cell's own; a denied delete leaves it there."""
    execution_id = await start(world.admin, definition=QUICK, labels=[tag])
    await wait_for_status(world.admin, execution_id, TERMINAL)

    async def untouched() -> None:
        assert await status_of(world.admin, execution_id) in TERMINAL

    return Prepared({"id": execution_id}, untouched)


async def arrange_set_retention(world: World, tag: str) -> Prepared:
    """Keeps everything: an all-null policy, so no other cell's execution is swept away."""
    query = "{ retentionPolicy { updatedAt updatedBy } }"
    before = (await data_of(world.admin, query))["retentionPolicy"]

    async def untouched() -> None:
        assert (await data_of(world.admin, query))["retentionPolicy"] == before

    return Prepared({"input": {}}, untouched)


async def arrange_set_secret(world: World, tag: str) -> Prepared:
    name = secret_name(tag)

    async def untouched() -> None:
        assert name not in await secret_names(world)

    async def cleanup() -> None:
        await delete_secret_quietly(world, name)

    return Prepared({"name": name, "value": f"value-of-{tag}"}, untouched, cleanup)


async def arrange_delete_secret(world: World, tag: str) -> Prepared:
    name = secret_name(tag)
    await succeed(world.admin, SET_SECRET, {"name": name, "value": "v"})

    async def untouched() -> None:
        assert name in await secret_names(world)

    async def cleanup() -> None:
        await delete_secret_quietly(world, name)

    return Prepared({"name": name}, untouched, cleanup)


CREATE_WEBHOOK = mutation(
    "createWebhook",
    "$input: CreateWebhookInput!",
    "input: $input",
    "... on CreateWebhookSuccess { secret webhook { id } }",
)
UPDATE_WEBHOOK = mutation(
    "updateWebhook",
    "$input: UpdateWebhookInput!",
    "input: $input",
    "... on UpdateWebhookSuccess { webhook { id enabled } }",
)
DELETE_WEBHOOK = mutation(
    "deleteWebhook", "$id: ID!", "id: $id", "... on DeleteWebhookSuccess { id }"
)
REDELIVER = mutation(
    "redeliverWebhookDelivery",
    "$id: ID!",
    "id: $id",
    "... on RedeliverWebhookDeliverySuccess { delivery { id } }",
)
WEBHOOK_DELIVERIES = "query($id: ID!) { webhookDeliveries(webhookId: $id) { id } }"


def webhook_input(tag: str, events: list[str]) -> dict[str, Any]:
    return {"url": "http://127.0.0.1:9/matrix", "events": events, "description": tag}


async def webhooks_described(world: World, tag: str) -> list[dict[str, Any]]:
    found = await data_of(world.admin, "{ webhooks { id description enabled } }")
    return [w for w in found["webhooks"] if w["description"] == tag]


async def delete_webhooks_quietly(world: World, tag: str) -> None:
    for webhook in await webhooks_described(world, tag):
        await succeed(world.admin, DELETE_WEBHOOK, {"id": webhook["id"]})


async def new_webhook(world: World, tag: str, events: list[str]) -> str:
    created = await succeed(world.admin, CREATE_WEBHOOK, {"input": webhook_input(tag, events)})
    return str(created["webhook"]["id"])


async def arrange_create_webhook(world: World, tag: str) -> Prepared:
    async def untouched() -> None:
        assert await webhooks_described(world, tag) == []

    async def cleanup() -> None:
        await delete_webhooks_quietly(world, tag)

    variables = {"input": webhook_input(tag, ["EXECUTION_TIMED_OUT"])}
    return Prepared(variables, untouched, cleanup)


def arrange_webhook(variables: Callable[[str], dict[str, Any]]) -> Arrange:
    """A webhook of the workspace (subscribed to nothing that happens here), by its id."""

    async def arrange(world: World, tag: str) -> Prepared:
        webhook_id = await new_webhook(world, tag, ["EXECUTION_TIMED_OUT"])

        async def untouched() -> None:
            assert await webhooks_described(world, tag) == [
                {"id": webhook_id, "description": tag, "enabled": True}
            ]

        async def cleanup() -> None:
            await delete_webhooks_quietly(world, tag)

        return Prepared(variables(webhook_id), untouched, cleanup)

    return arrange


async def arrange_redeliver(world: World, tag: str) -> Prepared:
    """A delivery of a quick execution's success, its webhook disabled afterwards."""
    webhook_id = await new_webhook(world, tag, ["EXECUTION_SUCCEEDED"])
    execution_id = await start(world.admin, definition=QUICK)
    await wait_for_status(world.admin, execution_id, {"SUCCEEDED"})
    async with asyncio.timeout(20):
        while not (
            found := (await data_of(world.admin, WEBHOOK_DELIVERIES, {"id": webhook_id}))[
                "webhookDeliveries"
            ]
        ):
            await asyncio.sleep(0.05)
    disable = {"input": {"id": webhook_id, "enabled": False}}
    await succeed(world.admin, UPDATE_WEBHOOK, disable)  # no more deliveries from other cells
    delivery_ids = [d["id"] for d in found]

    async def untouched() -> None:
        deliveries = await data_of(world.admin, WEBHOOK_DELIVERIES, {"id": webhook_id})
        assert [d["id"] for d in deliveries["webhookDeliveries"]] == delivery_ids

    async def cleanup() -> None:
        await delete_webhooks_quietly(world, tag)

    return Prepared({"id": delivery_ids[-1]}, untouched, cleanup)


CREATE_SCHEDULE = mutation(
    "createSchedule",
    "$input: CreateScheduleInput!",
    "input: $input",
    "... on ScheduleSuccess { schedule { id name enabled } }",
)
DELETE_SCHEDULE = mutation(
    "deleteSchedule", "$id: ID!", "id: $id", "... on DeleteScheduleSuccess { id }"
)


def schedule_input(tag: str) -> dict[str, Any]:
    # Yearly, at New Year in Tokyo: nothing fires while the matrix runs.
    return {"name": tag, "scenario": "hello", "cron": "0 0 1 1 *", "timeZone": "Asia/Tokyo"}


async def schedules_named(world: World, tag: str) -> list[dict[str, Any]]:
    found = await data_of(world.admin, "{ schedules { id name enabled } }")
    return [s for s in found["schedules"] if s["name"] == tag]


async def delete_schedules_quietly(world: World, tag: str) -> None:
    for schedule in await schedules_named(world, tag):
        await succeed(world.admin, DELETE_SCHEDULE, {"id": schedule["id"]})


async def arrange_create_schedule(world: World, tag: str) -> Prepared:
    async def untouched() -> None:
        assert await schedules_named(world, tag) == []

    async def cleanup() -> None:
        await delete_schedules_quietly(world, tag)

    return Prepared({"input": schedule_input(tag)}, untouched, cleanup)


def arrange_schedule(variables: Callable[[str], dict[str, Any]]) -> Arrange:
    """A yearly schedule of the workspace, by its id; a denied call leaves it as it was."""

    async def arrange(world: World, tag: str) -> Prepared:
        created = await succeed(world.admin, CREATE_SCHEDULE, {"input": schedule_input(tag)})
        schedule_id = str(created["schedule"]["id"])
        runs = "query { schedules { id lastRuns { execution { id } } } }"

        async def untouched() -> None:
            assert await schedules_named(world, tag) == [
                {"id": schedule_id, "name": tag, "enabled": True}
            ]
            found = (await data_of(world.admin, runs))["schedules"]
            assert [s["lastRuns"] for s in found if s["id"] == schedule_id] == [[]]

        async def cleanup() -> None:
            await delete_schedules_quietly(world, tag)

        return Prepared(variables(schedule_id), untouched, cleanup)

    return arrange


def check_viewer(data: Any, role: str, world: World) -> None:
    assert data == {"role": role.upper(), "permissions": sorted(GRANTS[role])}


def check_finished(data: Any, role: str, world: World) -> None:
    assert data["id"] == world.finished_id


def check_batch(data: Any, role: str, world: World) -> None:
    assert data["id"] == world.batch_id


def check_hello(data: Any, role: str, world: World) -> None:
    assert data["name"] == "hello"


def check_nonempty_history(data: Any, role: str, world: World) -> None:
    assert data["edges"], "the history lost the shared execution"


def check_lists_tokens(data: Any, role: str, world: World) -> None:
    assert {f"matrix-{role}" for role in ROLES} <= {token["name"] for token in data}


def check_comparison(data: Any, role: str, world: World) -> None:
    assert data["__typename"] == "SuiteComparison", data


def check_metrics(data: Any, role: str, world: World) -> None:
    assert data["finished"] >= 1


CASES: dict[str, Case] = {
    # queries
    "viewer": Case("{ viewer { role permissions } }", nothing, check=check_viewer),
    "execution": Case(
        "query($id: ID!) { execution(id: $id) { id status } }",
        finished("id"),
        check=check_finished,
    ),
    "executions": Case(
        "{ executions(first: 5) { edges { node { id } } pageInfo { hasNextPage } } }",
        nothing,
        check=check_nonempty_history,
    ),
    "executionMetrics": Case(
        "query($since: DateTime!, $until: DateTime!) {"
        " executionMetrics(since: $since, until: $until) { finished counts { status count } } }",
        fixed(
            since=(datetime.now(UTC) - timedelta(hours=1)).isoformat(),
            until=(datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        ),
        check=check_metrics,
    ),
    "activeExecutions": Case("{ activeExecutions { id status } }", nothing),
    "queue": Case("{ queue { queued running slots runnersAlive warning } }", nothing),
    "runners": Case("{ runners { id host pid startedAt lastSeenAt slots busy } }", nothing),
    "activeExecutionCounts": Case(
        "{ activeExecutionCounts { scenario queued running paused } }", nothing
    ),
    "batch": Case(
        "query($id: ID!) { batch(id: $id) { id total } }",
        shared_batch,
        check=check_batch,
    ),
    "scenarios": Case("{ scenarios { name version } }", nothing),
    "scenario": Case('{ scenario(name: "hello") { name version } }', nothing, check=check_hello),
    "suites": Case("{ suites { name version cases { name } } }", nothing),
    "suiteRun": Case(
        "query($id: ID!) { suiteRun(id: $id) { id total cases { name status } } }",
        arrange_suite_run,
    ),
    "suiteRuns": Case(
        "query($suite: String!) { suiteRuns(suite: $suite) { id total } }", arrange_suite_run
    ),
    "suiteTrend": Case(
        "query($suite: String!) { suiteTrend(suite: $suite) { runId passRate } }",
        arrange_suite_run,
    ),
    "compareSuiteRuns": Case(
        "query($head: ID!, $base: ID) { compareSuiteRuns(head: $head, base: $base) {"
        " __typename ... on SuiteComparison { verdict } } }",
        arrange_compare,
        check=check_comparison,
    ),
    "suite": Case(
        "query($name: String!) { suite(name: $name) { name cases { name } } }", arrange_read_suite
    ),
    "apiTokens": Case("{ apiTokens { id name role } }", nothing, check=check_lists_tokens),
    "members": Case("{ members { subject role } }", nothing),
    "secrets": Case("{ secrets { name updatedAt } }", nothing),
    "activities": Case("{ activities(first: 5) { id activity { action result } } }", nothing),
    # mutations
    "createEventStreamTicket": Case(
        mutation(
            "createEventStreamTicket",
            "$executionId: ID!",
            "executionId: $executionId",
            "... on EventStreamTicketSuccess { url }",
        ),
        finished("executionId"),
        success="EventStreamTicketSuccess",
    ),
    "startExecution": Case(START, arrange_start, success="StartExecutionSuccess"),
    "stopExecution": Case(
        STOP,
        running_throwaway("id", {"STOPPING", "CANCELLED"}),
        success="StopExecutionSuccess",
    ),
    "pauseExecution": Case(
        PAUSE,
        running_throwaway("id", {"PAUSING", "PAUSED"}),
        success="PauseExecutionSuccess",
    ),
    "resumeExecution": Case(
        mutation(
            "resumeExecution",
            "$id: ID!",
            "id: $id",
            "... on ResumeExecutionSuccess { execution { id } }",
        ),
        arrange_paused,
        success="ResumeExecutionSuccess",
    ),
    "retryStep": Case(
        mutation(
            "retryStep",
            "$executionId: ID!, $stepKey: String!",
            "executionId: $executionId, stepKey: $stepKey",
            "... on RetryStepSuccess { execution { id } }",
        ),
        arrange_failed,
        success="RetryStepSuccess",
    ),
    "skipStep": Case(
        mutation(
            "skipStep",
            "$executionId: ID!, $stepKey: String!",
            "executionId: $executionId, stepKey: $stepKey",
            "... on SkipStepSuccess { execution { id } }",
        ),
        arrange_failed,
        success="SkipStepSuccess",
    ),
    "startBatch": Case(START_BATCH, arrange_start_batch, success="BatchSuccess"),
    "stopBatch": Case(STOP_BATCH, arrange_stop_batch, success="BatchSuccess"),
    "createScenario": Case(CREATE_SCENARIO, arrange_create_scenario, success="ScenarioSuccess"),
    "updateScenario": Case(
        mutation(
            "updateScenario",
            "$definition: String!",
            "definition: $definition",
            "... on ScenarioSuccess { scenario { name version } }",
        ),
        arrange_update_scenario,
        success="ScenarioSuccess",
    ),
    "createSuite": Case(
        suite_mutation("createSuite"), arrange_create_suite, success="SuiteSuccess"
    ),
    "updateSuite": Case(
        suite_mutation("updateSuite"), arrange_update_suite, success="SuiteSuccess"
    ),
    "startSuiteRun": Case(START_SUITE_RUN, arrange_start_suite_run, success="SuiteRunSuccess"),
    "retryFailedCases": Case(
        mutation(
            "retryFailedCases",
            "$run: ID!",
            "run: $run",
            "... on SuiteRunSuccess { run { id } }",
        ),
        arrange_retry_failed,
        success="SuiteRunSuccess",
    ),
    "setSuiteBaseline": Case(
        mutation(
            "setSuiteBaseline",
            "$run: ID!",
            "run: $run",
            "... on SetSuiteBaselineSuccess { baseline { runId } }",
        ),
        arrange_set_baseline,
        success="SetSuiteBaselineSuccess",
    ),
    "createApiToken": Case(CREATE_TOKEN, arrange_create_token, success="CreateApiTokenSuccess"),
    "revokeApiToken": Case(
        mutation(
            "revokeApiToken",
            "$id: ID!",
            "id: $id",
            "... on RevokeApiTokenSuccess { token { id revokedAt } }",
        ),
        arrange_revoke_token,
        success="RevokeApiTokenSuccess",
    ),
    "setMemberRole": Case(SET_MEMBER, arrange_set_member, success="MemberSuccess"),
    "removeMember": Case(
        mutation(
            "removeMember",
            "$subject: String!",
            "subject: $subject",
            "... on RemoveMemberSuccess { subject }",
        ),
        arrange_remove_member,
        success="RemoveMemberSuccess",
    ),
    "setSecret": Case(SET_SECRET, arrange_set_secret, success="SetSecretSuccess"),
    "deleteSecret": Case(DELETE_SECRET, arrange_delete_secret, success="DeleteSecretSuccess"),
    "webhooks": Case("{ webhooks { id url events } }", nothing),
    "webhookDeliveries": Case(
        WEBHOOK_DELIVERIES, arrange_webhook(lambda webhook_id: {"id": webhook_id})
    ),
    "createWebhook": Case(CREATE_WEBHOOK, arrange_create_webhook, success="CreateWebhookSuccess"),
    "updateWebhook": Case(
        UPDATE_WEBHOOK,
        arrange_webhook(lambda webhook_id: {"input": {"id": webhook_id, "enabled": False}}),
        success="UpdateWebhookSuccess",
    ),
    "deleteWebhook": Case(
        DELETE_WEBHOOK,
        arrange_webhook(lambda webhook_id: {"id": webhook_id}),
        success="DeleteWebhookSuccess",
    ),
    "redeliverWebhookDelivery": Case(
        REDELIVER, arrange_redeliver, success="RedeliverWebhookDeliverySuccess"
    ),
    "retentionPolicy": Case("{ retentionPolicy { keepDays keepExecutions } }", nothing),
    "setRetentionPolicy": Case(
        mutation(
            "setRetentionPolicy",
            "$input: RetentionPolicyInput!",
            "input: $input",
            "... on SetRetentionPolicySuccess { policy { keepDays } }",
        ),
        arrange_set_retention,
        success="SetRetentionPolicySuccess",
    ),
    "deleteExecution": Case(
        mutation("deleteExecution", "$id: ID!", "id: $id", "... on DeleteExecutionSuccess { id }"),
        arrange_delete_execution,
        success="DeleteExecutionSuccess",
    ),
    "schedules": Case("{ schedules { id nextFireTimes(count: 2) } }", nothing),
    "createSchedule": Case(CREATE_SCHEDULE, arrange_create_schedule, success="ScheduleSuccess"),
    "updateSchedule": Case(
        mutation(
            "updateSchedule",
            "$input: UpdateScheduleInput!",
            "input: $input",
            "... on ScheduleSuccess { schedule { id } }",
        ),
        arrange_schedule(lambda id_: {"input": {"id": id_, "cron": "0 0 2 1 *"}}),
        success="ScheduleSuccess",
    ),
    "setScheduleEnabled": Case(
        mutation(
            "setScheduleEnabled",
            "$id: ID!",
            "id: $id, enabled: false",
            "... on ScheduleSuccess { schedule { id enabled } }",
        ),
        arrange_schedule(lambda id_: {"id": id_}),
        success="ScheduleSuccess",
    ),
    "deleteSchedule": Case(
        DELETE_SCHEDULE, arrange_schedule(lambda id_: {"id": id_}), success="DeleteScheduleSuccess"
    ),
    "runScheduleNow": Case(
        mutation(
            "runScheduleNow",
            "$id: ID!",
            "id: $id",
            "... on RunScheduleNowSuccess { execution { id triggeredBy } }",
        ),
        arrange_schedule(lambda id_: {"id": id_}),
        success="RunScheduleNowSuccess",
    ),
    "reviews": Case("{ reviews(status: PENDING) { executionId stepKey title } }", nothing),
    "submitReview": Case(
        mutation(
            "submitReview",
            "$executionId: ID!, $stepKey: String!",
            'executionId: $executionId, stepKey: $stepKey, decision: "approve"',
            "... on SubmitReviewSuccess { execution { id } }",
        ),
        arrange_waiting,
        success="SubmitReviewSuccess",
    ),
    # subscriptions
    "reviewUpdates": Case("subscription { reviewUpdates { executionId } }", nothing),
    "executionEvents": Case(
        "subscription($id: ID!) {"
        " executionEvents(executionId: $id, afterSeq: 0) { lastSeq events { seq type } } }",
        finished("id"),
    ),
    "executionUpdates": Case(
        "subscription { executionUpdates { kind status execution { id } } }", nothing
    ),
    "suiteRunUpdates": Case(
        "subscription($id: ID!) { suiteRunUpdates(id: $id) { id total } }", arrange_suite_run
    ),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("field_name", MATRIX_FIELDS)
async def test_cell(world: World, field_name: str, role: str) -> None:
    """One root field called with one role's token: denied exactly when the role lacks it."""
    assert field_name in EXPECTED_PERMISSION, f"{field_name} is not in EXPECTED_PERMISSION"
    assert field_name in CASES, f"{field_name} has no sample document in CASES"
    assert field_name in SCHEMA_FIELDS, f"{field_name} is not a root field of the schema"
    permission = EXPECTED_PERMISSION[field_name]
    allowed = permission in GRANTS[role]
    case = CASES[field_name]
    prepared = await case.arrange(world, f"{field_name}-{role}")
    try:
        kind = SCHEMA_FIELDS[field_name]
        if kind == "subscription":
            await subscription_cell(world, case, prepared, field_name, role, permission, allowed)
            return
        body = await call(world.clients[role], case.document, prepared.variables)
        if kind == "mutation":
            assert not body.get("errors"), body
            payload = body["data"][field_name]
            if allowed:
                assert payload["__typename"] == case.success, payload
            else:
                assert payload == {
                    "__typename": "PermissionDeniedError",
                    "message": payload["message"],
                    "permission": permission,
                    "role": role,
                }, payload
                assert permission in payload["message"]
        elif allowed:
            assert not body.get("errors"), body
            data = body["data"][field_name]
            assert data is not None
            if case.check:
                case.check(data, role, world)
        else:
            assert_forbidden(body, field_name, permission)
        if not allowed and prepared.untouched:
            await prepared.untouched()
    finally:
        if prepared.cleanup:
            await prepared.cleanup()


# Who may run a command they wrote: an inline definition with a step that runs a process needs
# scenario:write on top of execution:write; a saved scenario (an editor wrote it) or an inline
# definition without process steps needs only execution:write.
INLINE_COMMAND = definition('{key: c, kind: shell, with: {argv: ["id"]}}', name="inline-command")
INLINE_STARTS = {
    "inline command": ({"definition": INLINE_COMMAND}, {WRITE, SCENARIO}),
    "inline sleep": ({"definition": scenario_text("inline-sleep")}, {WRITE}),
    "saved command": ({"scenario": "hello"}, {WRITE}),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("what", sorted(INLINE_STARTS))
async def test_who_may_run_an_inline_command(world: World, what: str, role: str) -> None:
    input, needs = INLINE_STARTS[what]
    tag = f"inline-{what.replace(' ', '-')}-{role}"
    lacking = sorted(needs - GRANTS[role])
    for document, field_name, variables in (
        (START, "startExecution", {"input": {**input, "labels": [tag]}}),
        (START_BATCH, "startBatch", {"input": {**input, "runs": [{}], "labels": [tag]}}),
    ):
        payload = (await data_of(world.clients[role], document, variables))[field_name]
        if not lacking:
            assert payload["__typename"].endswith("Success"), payload
            continue
        # The first permission missing is the one named: execution:write before scenario:write.
        expected = WRITE if WRITE in lacking else SCENARIO
        assert payload["__typename"] == "PermissionDeniedError", payload
        assert (payload["permission"], payload["role"]) == (expected, role), payload
    if lacking:
        await labelled_nothing_started(world, tag)


def assert_forbidden(body: dict[str, Any], field_name: str, permission: str) -> None:
    """A query's denial: a FORBIDDEN error at the field, and no data for it."""
    errors = body.get("errors") or []
    assert [error["path"] for error in errors] == [[field_name]], body
    assert errors[0]["extensions"]["code"] == "FORBIDDEN", body
    assert errors[0]["extensions"]["permission"] == permission, body
    assert (body.get("data") or {}).get(field_name) is None, body


async def subscription_cell(
    world: World,
    case: Case,
    prepared: Prepared,
    field_name: str,
    role: str,
    permission: str,
    allowed: bool,
) -> None:
    """Subscribe over graphql-transport-ws with the role's token in connection_init."""
    request = GraphQLRequest(case.document, variable_values=prepared.variables)
    async with Client(transport=ws_transport(world.server, world.secrets[role])) as session:
        messages = session.subscribe(request)
        try:
            if not allowed:
                with pytest.raises(TransportQueryError) as denied:
                    await anext(messages)
                assert denied.value.errors, denied.value
                assert denied.value.errors[0]["extensions"]["code"] == "FORBIDDEN"
                assert denied.value.errors[0]["extensions"]["permission"] == permission
                return
            if field_name == "executionEvents":
                seqs = [
                    event["seq"]
                    async for batch in messages
                    for event in batch[field_name]["events"]
                ]
                assert seqs, "no events for a finished execution"
                assert seqs == list(range(1, len(seqs) + 1)), seqs
                return
            if field_name == "suiteRunUpdates":
                # The run as it stands comes at once, whatever it is doing.
                assert (await anext(messages))[field_name]["id"] == prepared.variables["id"]
                return
            if field_name == "reviewUpdates":
                # Executions that wait for a review (left waiting: they hold no runner slot).
                first = await first_update(world, messages, REVIEWED)
                assert first[field_name]["executionId"]
                return
            first = await first_update(world, messages)
            assert first[field_name]["execution"]["id"]
        finally:
            await messages.aclose()


async def first_update(
    world: World, messages: AsyncIterator[dict[str, Any]], started: str = ""
) -> dict[str, Any]:
    """The first live update, starting executions (of `started`, or QUICK) until one arrives
    (the socket may lag)."""
    receiving = asyncio.ensure_future(anext(messages))
    try:
        async with asyncio.timeout(15):
            while not receiving.done():
                await start(world.admin, definition=started or QUICK)
                await asyncio.wait({receiving}, timeout=0.3)
        return receiving.result()
    finally:
        # The generator cannot be closed while this read is still pending on it.
        receiving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiving


INTROSPECT_ROOTS = """
{
  __schema {
    queryType { fields { name } }
    mutationType { fields { name type { kind ofType { kind name possibleTypes { name } } } } }
    subscriptionType { fields { name } }
  }
}
"""


async def test_every_root_field_is_in_the_matrix(world: World) -> None:
    """The live schema's root fields and the table name the same operations."""
    schema = (await data_of(world.admin, INTROSPECT_ROOTS))["__schema"]
    live = {
        root_field["name"]
        for root in ("queryType", "mutationType", "subscriptionType")
        for root_field in schema[root]["fields"]
    }
    assert sorted(live - set(EXPECTED_PERMISSION)) == [], "root fields missing from the matrix"
    assert sorted(set(EXPECTED_PERMISSION) - live) == [], "the matrix names fields the schema lacks"
    assert set(CASES) == set(EXPECTED_PERMISSION)
    assert set(SCHEMA_FIELDS) == live, "schema/schema.graphql is not the live schema"


async def test_every_mutation_result_can_carry_permission_denied(world: World) -> None:
    """A union without PermissionDeniedError would make a denial untyped."""
    schema = (await data_of(world.admin, INTROSPECT_ROOTS))["__schema"]
    lacking = []
    for mutation_field in schema["mutationType"]["fields"]:
        result = mutation_field["type"]
        assert result["kind"] == "NON_NULL", mutation_field
        union = result["ofType"]
        assert union["kind"] == "UNION", mutation_field
        if "PermissionDeniedError" not in {t["name"] for t in union["possibleTypes"]}:
            lacking.append(f"{mutation_field['name']}: {union['name']}")
    assert lacking == []


@pytest.mark.parametrize(
    "init_payload",
    [{"Authorization": "Bearer rw_not_a_real_token"}, {"token": "rw_nope"}, None],
    ids=["invalid-bearer", "invalid-token", "absent"],
)
async def test_socket_without_a_valid_token_is_closed_4403(
    world: World, init_payload: dict[str, str] | None
) -> None:
    """connection_init without a valid credential ends the socket with 4403."""
    async with websockets.connect(
        world.server.graphql_ws, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    ) as socket:
        message: dict[str, Any] = {"type": "connection_init"}
        if init_payload is not None:
            message["payload"] = init_payload
        await socket.send(json.dumps(message))
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(10):
                await socket.recv()
        assert socket.close_code == 4403, socket.close_reason


# --- the issue's "Done when" -----------------------------------------------------------------

DASHBOARD = """
query Dashboard($since: DateTime!, $until: DateTime!, $labels: [String!]) {
  activeExecutions { id status }
  executionMetrics(since: $since, until: $until, labels: $labels) {
    finished counts { status count }
  }
  queue { queued running slots }
  activeExecutionCounts { scenario queued running paused }
  executions(first: 200) { edges { node { id } } }
}
"""


async def dashboard(client: httpx.AsyncClient, labels: list[str] | None = None) -> dict[str, Any]:
    now = datetime.now(UTC)
    window = {
        "since": (now - timedelta(hours=1)).isoformat(),
        "until": (now + timedelta(hours=1)).isoformat(),
        "labels": labels,
    }
    return await data_of(client, DASHBOARD, window)


def history(view: dict[str, Any]) -> set[str]:
    return {edge["node"]["id"] for edge in view["executions"]["edges"]}


async def test_operator_works_viewer_is_refused_and_workspaces_stay_apart(
    tenants: World,
) -> None:
    """The issue's "Done when": operator starts and watches; viewer is told; no workspace leaks."""
    operator, viewer, team_b = (
        tenants.clients["operator"],
        tenants.clients["viewer"],
        tenants.team_b,
    )
    assert team_b is not None
    running = await start(operator, definition=SLEEPER, labels=["team-default"])
    done = await start(operator, scenario="hello", labels=["team-default"])
    b_running = await start(team_b, definition=SLEEPER, labels=["team-b"])
    # An operator runs no inline command (that needs scenario:write); a sleep is no command.
    b_done = await start(team_b, definition=scenario_text("b-done"), labels=["team-b"])
    try:
        await asyncio.gather(
            wait_for_status(operator, running, {"RUNNING"}),
            wait_for_status(operator, done, {"SUCCEEDED"}),
            wait_for_status(team_b, b_running, {"RUNNING"}),
            wait_for_status(team_b, b_done, {"SUCCEEDED"}),
        )
        ours, theirs = await asyncio.gather(dashboard(operator), dashboard(team_b))

        # The operator sees its active executions, metrics and queue, without a 403.
        assert running in {e["id"] for e in ours["activeExecutions"]}
        assert ours["executionMetrics"]["finished"] >= 2  # the fixture's hello run, and `done`
        assert ours["queue"]["running"] >= 1

        # Neither workspace sees the other's executions, in any of the views.
        default_ids = {tenants.finished_id, running, done}
        assert default_ids <= history(ours)
        assert history(ours).isdisjoint({b_running, b_done})
        assert history(theirs) == {b_running, b_done}
        assert [e["id"] for e in theirs["activeExecutions"]] == [b_running]
        assert b_running not in {e["id"] for e in ours["activeExecutions"]}
        assert theirs["executionMetrics"]["finished"] == 1
        assert sum(c["count"] for c in theirs["executionMetrics"]["counts"]) == 1
        assert (theirs["queue"]["queued"], theirs["queue"]["running"]) == (0, 1)
        assert theirs["activeExecutionCounts"] == [
            {"scenario": None, "queued": 0, "running": 1, "paused": 0}
        ]
        # `running` is default's only active inline execution (the fixture's runs are of hello),
        # so a leak of team-b's inline sleeper would show as 2 here.
        inline = [c for c in ours["activeExecutionCounts"] if c["scenario"] is None]
        assert inline == [{"scenario": None, "queued": 0, "running": 1, "paused": 0}]
        assert (await dashboard(operator, ["team-b"]))["executionMetrics"]["finished"] == 0
        assert (await dashboard(team_b, ["team-default"]))["executionMetrics"]["finished"] == 0
        assert (await data_of(operator, STATUS, {"id": b_running}))["execution"] is None
        assert (await data_of(team_b, STATUS, {"id": running}))["execution"] is None
        foreign_stop = (await data_of(team_b, STOP, {"id": running}))["stopExecution"]
        assert foreign_stop["__typename"] == "NotFoundError", foreign_stop
        assert await status_of(operator, running) == "RUNNING"

        # The viewer gets a typed, readable refusal naming the permission it lacks.
        refused = (await data_of(viewer, START, {"input": {"scenario": "hello"}}))["startExecution"]
        assert refused["__typename"] == "PermissionDeniedError", refused
        assert (refused["permission"], refused["role"]) == ("execution:write", "viewer")
        assert "execution:write" in refused["message"]
    finally:
        await stop_quietly(operator, running)
        await stop_quietly(team_b, b_running)
