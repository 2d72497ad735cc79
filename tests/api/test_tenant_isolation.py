"""Tenant isolation: a token of workspace B can neither see nor touch anything of workspace A.

Workspace A is "default" (the server's admin token); B ("team-b") is made with the CLI. Every
operation that takes an id is sent A's ids with B's token over HTTP, WebSocket and SSE, and must
answer exactly as it answers a random id that exists nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pprint
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import graphql
import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from tests.support.graphql import definition, ws_transport
from tests.support.server import Server, running_pair, running_server

# SQL differs per database and bus notices travel differently: both must confine a workspace.
BACKENDS_HERE = ("sqlite", "postgres")
# Enough slots that A's held executions never keep B's (or A's quick ones) waiting.
# Private addresses allowed: A's webhook points at 127.0.0.1 (a closed port; nothing is sent).
SERVER_SETTINGS = {
    "RUNWIRE_RUNNER_SLOTS": "16",
    "RUNWIRE_GRACE_SECONDS": "0.2",
    "RUNWIRE_WEBHOOK_ALLOW_PRIVATE": "true",
}
# Concurrent probes: enough to keep the server busy, few enough for 2 cores.
PROBES_AT_ONCE = 8

QUICK = definition("{key: a, kind: sleep, with: {seconds: 0}}", name="quick")
# Held until the module ends (well past the module's runtime); stopped at teardown.
HOLD = definition("{key: a, kind: sleep, with: {seconds: 120}}", name="hold")
PAUSABLE = definition(
    "{key: a, kind: sleep, with: {seconds: 2}}",
    "{key: b, kind: sleep, with: {seconds: 120}}",
    name="pausable",
)
FAILING = definition('{key: a, kind: shell, with: {argv: ["sh", "-c", "exit 3"]}}', name="fails")


def _talking(who: str) -> str:
    script = f"for i in 1 2 3 4 5 6 7 8; do echo {who}-$i; sleep 0.1; done"
    return definition(
        f'{{key: a, kind: shell, with: {{argv: ["sh", "-c", "{script}"]}}}}', name="talk"
    )


# ---- raw GraphQL over HTTP: status code and body, nothing hidden -----------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any

    @property
    def data(self) -> dict[str, Any]:
        assert self.status == 200, self.body
        assert not self.body.get("errors"), self.body
        return dict(self.body["data"])


class Api:
    """GraphQL over one HTTP client, with one workspace's token."""

    def __init__(self, client: httpx.AsyncClient, server: Server) -> None:
        self.client = client
        self.server = server

    async def post(self, document: str, variables: dict[str, Any] | None = None) -> Reply:
        response = await self.client.post(
            self.server.graphql_http, json={"query": document, "variables": variables or {}}
        )
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return Reply(response.status_code, body)

    async def data(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return (await self.post(document, variables)).data

    async def start(self, **input: Any) -> str:
        found = (await self.data(START, {"input": input}))["startExecution"]
        assert found["__typename"] == "StartExecutionSuccess", found
        return str(found["execution"]["id"])

    async def status(self, execution_id: str) -> str | None:
        found = (await self.data(STATUS, {"id": execution_id}))["execution"]
        return None if found is None else str(found["status"])

    async def wait_for(self, execution_id: str, status: str, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while await self.status(execution_id) != status:
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def api(server: Server, token: str) -> AsyncIterator[Api]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        yield Api(client, server)


RESULT = """
    __typename
    ... on Error { message }
    ... on ValidationError { fieldErrors { path message } }
    ... on InvalidTransitionError { currentStatus stepKey stepStatus }
    ... on PermissionDeniedError { permission role }
"""
START = f"""
mutation($input: StartExecutionInput!) {{
  startExecution(input: $input) {{
    {RESULT} ... on StartExecutionSuccess {{ execution {{ id status }} }}
  }}
}}
"""
STATUS = "query($id: ID!) { execution(id: $id) { status } }"
STOP = "mutation($id: ID!) { stopExecution(id: $id) { __typename } }"
PAUSE = f"mutation($id: ID!) {{ pauseExecution(id: $id) {{ {RESULT} }} }}"

# Every root field that takes an id, each given the probed id; the coverage test checks this
# list against the schema, so a new id-taking operation fails until it is probed here.
PROBE_QUERY = """
query Probe($id: ID!) {
  execution(id: $id) { id name status labels triggeredBy }
  batch(id: $id) { id name total executions { id } }
  activities(executionId: $id, first: 200) {
    activity { action actor executionId result detail }
  }
  suiteRun(id: $id) { id suite total ended cases { name status } }
  compareSuiteRuns(head: $id, base: $id) {
    __typename ... on Error { message } ... on SuiteComparison { verdict }
  }
  webhookDeliveries(webhookId: $id, first: 5) { id status payload }
  reviews(executionId: $id) { executionId stepKey status title }
}
"""
PROBE_MUTATION = f"""
mutation Probe($id: ID!) {{
  stopExecution(id: $id, reason: "probe") {{
    {RESULT} ... on StopExecutionSuccess {{ execution {{ id status }} }}
  }}
  pauseExecution(id: $id, reason: "probe") {{
    {RESULT} ... on PauseExecutionSuccess {{ execution {{ id status }} }}
  }}
  resumeExecution(id: $id) {{
    {RESULT} ... on ResumeExecutionSuccess {{ execution {{ id status }} }}
  }}
  retryStep(executionId: $id, stepKey: "a") {{
    {RESULT} ... on RetryStepSuccess {{ execution {{ id status }} }}
  }}
  skipStep(executionId: $id, stepKey: "b") {{
    {RESULT} ... on SkipStepSuccess {{ execution {{ id status }} }}
  }}
  createEventStreamTicket(executionId: $id) {{
    {RESULT} ... on EventStreamTicketSuccess {{ ticket url }}
  }}
  stopBatch(id: $id, reason: "probe") {{
    {RESULT} ... on BatchSuccess {{ batch {{ id stoppedAt }} }}
  }}
  revokeApiToken(id: $id) {{
    {RESULT} ... on RevokeApiTokenSuccess {{ token {{ id name revokedAt }} }}
  }}
  retryFailedCases(run: $id) {{
    {RESULT} ... on SuiteRunSuccess {{ run {{ id total }} }}
  }}
  setSuiteBaseline(run: $id) {{
    {RESULT} ... on SetSuiteBaselineSuccess {{ baseline {{ run {{ id }} }} }}
  }}
  updateWebhook(input: {{id: $id, enabled: false}}) {{
    {RESULT} ... on UpdateWebhookSuccess {{ webhook {{ id enabled }} }}
  }}
  deleteWebhook(id: $id) {{ {RESULT} ... on DeleteWebhookSuccess {{ id }} }}
  redeliverWebhookDelivery(id: $id) {{
    {RESULT} ... on RedeliverWebhookDeliverySuccess {{ delivery {{ id }} }}
  }}
  deleteExecution(id: $id) {{
    {RESULT} ... on DeleteExecutionSuccess {{ id }}
  }}
  updateSchedule(input: {{id: $id, name: "probe"}}) {{
    {RESULT} ... on ScheduleSuccess {{ schedule {{ id name }} }}
  }}
  setScheduleEnabled(id: $id, enabled: false) {{
    {RESULT} ... on ScheduleSuccess {{ schedule {{ id enabled }} }}
  }}
  runScheduleNow(id: $id) {{
    {RESULT} ... on RunScheduleNowSuccess {{ execution {{ id }} }}
  }}
  deleteSchedule(id: $id) {{ {RESULT} ... on DeleteScheduleSuccess {{ id }} }}
  submitReview(executionId: $id, stepKey: "a", decision: "approve") {{
    {RESULT} ... on SubmitReviewSuccess {{ execution {{ id status }} }}
  }}
}}
"""
PROBE_SUBSCRIPTION = """
subscription Probe($id: ID!) {
  executionEvents(executionId: $id, afterSeq: 0) { lastSeq events { seq type stepKey } }
}
"""
PROBE_SUITE_RUN_SUBSCRIPTION = """
subscription Probe($id: ID!) { suiteRunUpdates(id: $id) { id total ended } }
"""

INTROSPECTION = """
fragment Ref on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }
query {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types {
      name kind
      fields { name args { name type { ...Ref } } }
      inputFields { name type { ...Ref } }
    }
  }
}
"""


# ---- the two workspaces -----------------------------------------------------------------------


@dataclass(frozen=True)
class Tenants:
    server: Server
    token_a: str
    token_b: str
    # Every id of A that is probed: executions in every state, the batch, the API tokens, the
    # suite run.
    ids_a: tuple[str, ...]
    executions_a: tuple[str, ...]
    batch_a: str
    held_a: tuple[str, ...]
    paused_a: str
    failed_a: str
    token_ids_a: tuple[str, ...]
    suite_a: str
    suite_run_a: str
    # Marks only A's data: the label of its batch runs and held executions, its scenario.
    label_a: str
    run_label_prefix_a: str
    scenario_a: str
    member_a: str
    # A's webhook (subscribed to failures) and the delivery of its failed execution.
    webhook_a: str
    delivery_a: str
    # A's yearly schedule, never fired.
    schedule_a: str
    since: datetime
    until: datetime
    # (token, execution id) of every held execution, stopped when the module ends.
    stop_at_end: list[tuple[str, str]] = field(default_factory=list)


def _cli(server: Server, *arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "runwire.cli", *arguments],
        env=server.env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def _workspace_b(server: Server) -> str:
    """Create workspace "team-b" with the CLI; the secret of an admin token in it."""
    _cli(server, "workspace", "create", "team-b")
    return _cli(
        server, "token", "create", "--workspace", "team-b", "--name", "b-admin", "--role", "admin"
    )


@pytest.fixture(scope="module", params=BACKENDS_HERE)
def tenants(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tenants]:
    """A server whose workspace A has 100+ executions, a batch, a scenario, tokens and a member."""
    with running_server(
        request.param, tmp_path_factory.mktemp(request.param), SERVER_SETTINGS
    ) as server:
        found = asyncio.run(_prepare(server))
        try:
            yield found
        finally:
            asyncio.run(_stop(server, found))


async def _prepare(server: Server) -> Tenants:
    """Workspace B made by the CLI (other processes, seconds of start-up) while A is populated."""
    making_b = asyncio.create_task(asyncio.to_thread(_workspace_b, server))
    try:
        return await _populate_a(server, making_b)
    finally:
        await making_b  # done, or its failure seen, before the fixture goes on


async def _populate_a(server: Server, making_b: Awaitable[str]) -> Tenants:
    tag = secrets.token_hex(4)
    label_a, prefix, scenario_a = f"a-only-{tag}", f"a-run-{tag}-", f"a-scenario-{tag}"
    since = datetime.now(UTC) - timedelta(minutes=1)
    async with api(server, server.token) as a:
        webhook_a = await _webhook_of_a(a)
        schedule_a = await _schedule_of_a(a, tag)
        started = (
            await a.data(
                f"""mutation($input: StartBatchInput!) {{
                  startBatch(input: $input) {{ {RESULT} ... on BatchSuccess {{ batch {{ id }} }} }}
                }}""",
                {
                    "input": {
                        "definition": QUICK,
                        "runs": [{"labels": [f"{prefix}{i}"]} for i in range(100)],
                        "labels": [label_a],
                        "concurrency": 12,
                        "name": f"a-batch-{tag}",
                    }
                },
            )
        )["startBatch"]
        assert started["__typename"] == "BatchSuccess", started
        batch_a = str(started["batch"]["id"])
        held = [await a.start(definition=HOLD, labels=[label_a]) for _ in range(3)]
        paused = await a.start(definition=PAUSABLE, labels=[label_a])
        # Paused at once: held in the queue if not yet claimed, else PAUSED when step a ends
        # (2 s later at most), never caught in the long step b.
        paused_now = (await a.data(PAUSE, {"id": paused}))["pauseExecution"]
        assert paused_now["__typename"] == "PauseExecutionSuccess", paused_now
        failed = await a.start(definition=FAILING, labels=[label_a])
        saved = (
            await a.data(
                f"mutation($d: String!) {{ createScenario(definition: $d) {{ {RESULT} }} }}",
                {"d": _scenario(scenario_a, "A's own")},
            )
        )["createScenario"]
        assert saved["__typename"] == "ScenarioSuccess", saved
        of_scenario = await a.start(scenario=scenario_a, labels=[label_a])
        for role in ("VIEWER", "OPERATOR", "ADMIN"):
            made = (
                await a.data(
                    f"""mutation($input: CreateApiTokenInput!) {{
                      createApiToken(input: $input) {{ {RESULT} }} }}""",
                    {"input": {"name": f"a-{role.lower()}", "role": role}},
                )
            )["createApiToken"]
            assert made["__typename"] == "CreateApiTokenSuccess", made
        member_a = f"alice-{tag}@team-a.example"
        added = (
            await a.data(
                f'mutation {{ setMemberRole(subject: "{member_a}", role: VIEWER) {{ {RESULT} }} }}'
            )
        )["setMemberRole"]
        assert added["__typename"] == "MemberSuccess", added

        await a.wait_for(paused, "PAUSED")
        await a.wait_for(failed, "FAILED")
        await a.wait_for(of_scenario, "SUCCEEDED")
        for execution_id in held:
            await a.wait_for(execution_id, "RUNNING")
        async with asyncio.timeout(60):
            while True:
                batch = (await a.data(BATCH, {"id": batch_a}))["batch"]
                if batch["succeeded"] == 100:
                    break
                await asyncio.sleep(0.1)
        batch_runs = [e["id"] for e in batch["executions"]]
        tokens = [t["id"] for t in (await a.data("{ apiTokens { id } }"))["apiTokens"]]
        suite_a, suite_run_a, suite_runs = await _suite_run_of_a(a, tag, label_a)
        delivery_a = await _delivery_of_a(a, webhook_a, failed)
    executions = (*batch_runs, *held, paused, failed, of_scenario, *suite_runs)
    assert len(batch_runs) == 100
    assert len(tokens) == 4
    return Tenants(
        server=server,
        token_a=server.token,
        token_b=await making_b,
        ids_a=(*executions, batch_a, *tokens, suite_run_a, webhook_a, delivery_a, schedule_a),
        executions_a=executions,
        batch_a=batch_a,
        held_a=tuple(held),
        paused_a=paused,
        failed_a=failed,
        token_ids_a=tuple(tokens),
        suite_a=suite_a,
        suite_run_a=suite_run_a,
        label_a=label_a,
        run_label_prefix_a=prefix,
        scenario_a=scenario_a,
        member_a=member_a,
        webhook_a=webhook_a,
        delivery_a=delivery_a,
        schedule_a=schedule_a,
        since=since,
        until=since + timedelta(days=1),
        stop_at_end=[(server.token, e) for e in (*held, paused)],
    )


async def _webhook_of_a(a: Api) -> str:
    """A webhook of A's, subscribed to failures, pointing at a closed port on loopback."""
    created = (
        await a.data(
            f"""mutation($input: CreateWebhookInput!) {{
              createWebhook(input: $input) {{
                {RESULT} ... on CreateWebhookSuccess {{ webhook {{ id }} }}
              }}
            }}""",
            {"input": {"url": "http://127.0.0.1:9/a-hook", "events": ["EXECUTION_FAILED"]}},
        )
    )["createWebhook"]
    assert created["__typename"] == "CreateWebhookSuccess", created
    return str(created["webhook"]["id"])


async def _schedule_of_a(a: Api, tag: str) -> str:
    """A schedule of A's: the shipped hello, yearly, so it never fires during the module."""
    created = (
        await a.data(
            f"""mutation($input: CreateScheduleInput!) {{
              createSchedule(input: $input) {{
                {RESULT} ... on ScheduleSuccess {{ schedule {{ id }} }}
              }}
            }}""",
            {"input": {"name": f"a-schedule-{tag}", "scenario": "hello", "cron": "0 0 1 1 *"}},
        )
    )["createSchedule"]
    assert created["__typename"] == "ScheduleSuccess", created
    return str(created["schedule"]["id"])


async def _delivery_of_a(a: Api, webhook: str, failed: str) -> str:
    """The id of the delivery A's failed execution queued for A's webhook."""
    query = "query($id: ID!) { webhookDeliveries(webhookId: $id) { id executionId } }"
    async with asyncio.timeout(30):
        while not (found := (await a.data(query, {"id": webhook}))["webhookDeliveries"]):
            await asyncio.sleep(0.1)
    assert [d["executionId"] for d in found] == [failed]
    return str(found[0]["id"])


async def _suite_run_of_a(a: Api, tag: str, label: str) -> tuple[str, str, list[str]]:
    """A's suite of two inline cases, run once to the end: (suite, run id, its executions)."""
    name = f"a-suite-{tag}"
    document = json.dumps(
        {"name": name, "cases": [{"name": n, "definition": QUICK} for n in ("one", "two")]}
    )
    saved = (
        await a.data(
            f"mutation($d: String!) {{ createSuite(definition: $d) {{ {RESULT} }} }}",
            {"d": document},
        )
    )["createSuite"]
    assert saved["__typename"] == "SuiteSuccess", saved
    started = (
        await a.data(
            f"""mutation($input: StartSuiteRunInput!) {{
              startSuiteRun(input: $input) {{ {RESULT} ... on SuiteRunSuccess {{ run {{ id }} }} }}
            }}""",
            {"input": {"suite": name, "labels": [label]}},
        )
    )["startSuiteRun"]
    assert started["__typename"] == "SuiteRunSuccess", started
    run_id = str(started["run"]["id"])
    query = "query($id: ID!) { suiteRun(id: $id) { complete cases { repeats { executionId } } } }"
    async with asyncio.timeout(60):
        while not (found := (await a.data(query, {"id": run_id}))["suiteRun"])["complete"]:
            await asyncio.sleep(0.1)
    return name, run_id, [r["executionId"] for case in found["cases"] for r in case["repeats"]]


async def _stop(server: Server, tenants: Tenants) -> None:
    for token, execution_id in tenants.stop_at_end:
        async with api(server, token) as client:
            await client.post(STOP, {"id": execution_id})


BATCH = """
query($id: ID!) {
  batch(id: $id) { id total succeeded stoppedAt executions(first: 1000) { id status } }
}
"""


def _scenario(name: str, description: str) -> str:
    return (
        f"name: {name}\ndescription: {description}\n"
        "steps:\n  - {key: a, kind: sleep, with: {seconds: 0}}"
    )


# ---- comparing a foreign id's answer with a missing id's --------------------------------------


def normalized(value: Any, secret: str) -> Any:
    """`value` with every occurrence of `secret` (the probed id or name) replaced by `<id>`."""
    if isinstance(value, str):
        return value.replace(secret, "<id>")
    if isinstance(value, list):
        return [normalized(item, secret) for item in value]
    if isinstance(value, dict):
        return {normalized(k, secret): normalized(v, secret) for k, v in value.items()}
    return value


def parts(reply: Reply) -> dict[str, Any]:
    """A reply split into what a client can observe: status, errors, and each root field."""
    body = reply.body if isinstance(reply.body, dict) else {"text": reply.body}
    found = {"status": reply.status, "errors": body.get("errors")}
    data = body.get("data") or {}
    found.update({f"data.{name}": value for name, value in data.items()})
    if "text" in body:
        found["text"] = body["text"]
    return found


@dataclass
class Comparison:
    """Pairs of (foreign, missing) answers; equal once each is normalized by its own id."""

    differences: list[tuple[str, str, Any, str, Any]] = field(default_factory=list)
    compared: int = 0

    def add(self, what: str, foreign_id: str, foreign: Any, missing_id: str, missing: Any) -> None:
        self.compared += 1
        if normalized(foreign, foreign_id) != normalized(missing, missing_id):
            self.differences.append((what, foreign_id, foreign, missing_id, missing))

    def add_parts(
        self, what: str, foreign_id: str, foreign: Reply, missing_id: str, missing: Reply
    ) -> None:
        mine, theirs = parts(foreign), parts(missing)
        for name in sorted(set(mine) | set(theirs)):
            self.add(f"{what} {name}", foreign_id, mine.get(name), missing_id, theirs.get(name))

    def assert_indistinguishable(self) -> None:
        if not self.differences:
            return
        what, foreign_id, foreign, missing_id, missing = self.differences[0]
        raise AssertionError(
            f"{len(self.differences)} of {self.compared} answers tell a foreign id from a missing"
            f" one; first: {what}\n-- foreign id {foreign_id}:\n{pprint.pformat(foreign)}"
            f"\n-- missing id {missing_id}:\n{pprint.pformat(missing)}"
        )


async def bounded(jobs: list[Callable[[], Awaitable[None]]]) -> None:
    """Run every job, at most PROBES_AT_ONCE at a time."""
    gate = asyncio.Semaphore(PROBES_AT_ONCE)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await job()

    await asyncio.gather(*(one(job) for job in jobs))


def pairs(ids: tuple[str, ...]) -> list[tuple[str, str]]:
    """Each id of A with a fresh random id that exists in no workspace."""
    return [(foreign, str(uuid.uuid4())) for foreign in ids]


# ---- tests ------------------------------------------------------------------------------------


async def test_every_id_taking_root_field_is_probed(tenants: Tenants) -> None:
    async with api(tenants.server, tenants.token_b) as b:
        schema = (await b.data(INTROSPECTION))["__schema"]
    types = {t["name"]: t for t in schema["types"]}
    roots = {
        "query": schema["queryType"]["name"],
        "mutation": schema["mutationType"]["name"],
        "subscription": schema["subscriptionType"]["name"],
    }

    def named(ref: dict[str, Any]) -> str:
        while ref.get("ofType"):
            ref = ref["ofType"]
        return str(ref["name"])

    def carries_id(type_name: str, seen: frozenset[str] = frozenset()) -> bool:
        # An ID inside an input object (at any depth) reaches the resolver just the same.
        if type_name == "ID":
            return True
        found = types.get(type_name) or {}
        if found.get("kind") != "INPUT_OBJECT" or type_name in seen:
            return False
        return any(
            carries_id(named(f["type"]), seen | {type_name}) for f in found["inputFields"] or ()
        )

    id_taking = {
        f"{operation}.{root_field['name']}"
        for operation, root in roots.items()
        for root_field in types[root]["fields"]
        if any(carries_id(named(argument["type"])) for argument in root_field["args"])
    }
    probed = {
        f"{definition_node.operation.value}.{selection.name.value}"
        for document in (
            PROBE_QUERY,
            PROBE_MUTATION,
            PROBE_SUBSCRIPTION,
            PROBE_SUITE_RUN_SUBSCRIPTION,
        )
        for definition_node in graphql.parse(document).definitions
        if isinstance(definition_node, graphql.OperationDefinitionNode)
        for selection in definition_node.selection_set.selections
        if isinstance(selection, graphql.FieldNode)
    }
    assert id_taking - probed == set(), "id-taking operations that no cross-tenant probe sends"
    assert probed - id_taking == set(), "probed operations that no longer take an id"


LISTS = """
query Lists(
  $since: DateTime!, $until: DateTime!, $label: String!, $search: String!, $batch: String!,
  $scenario: String!, $suite: String!
) {
  viewer { workspaceName }
  all: executions(first: 200) { edges { node { id } } }
  labelled: executions(filter: {label: $label}, first: 200) { edges { node { id } } }
  searched: executions(filter: {search: $search}, first: 200) { edges { node { id } } }
  batched: executions(filter: {batch: $batch}, first: 200) { edges { node { id } } }
  ofScenario: executions(filter: {scenario: $scenario}, first: 200) { edges { node { id } } }
  activeExecutions { id }
  queue { queued running }
  activeExecutionCounts { scenario queued running paused }
  metrics: executionMetrics(since: $since, until: $until) {
    finished measured counts { status count }
  }
  labelledMetrics: executionMetrics(since: $since, until: $until, labels: [$label]) { finished }
  scenarioMetrics: executionMetrics(since: $since, until: $until, scenario: $scenario) {
    finished
  }
  scenarios { name description }
  suites { name }
  suiteRuns(suite: $suite) { id }
  suiteTrend(suite: $suite) { runId }
  suite(name: $suite) { name }
  apiTokens { id name }
  members { subject }
  activities(first: 200) { activity { action actor executionId } }
  webhooks { id }
  schedules { id }
}
"""


def _list_variables(tenants: Tenants) -> dict[str, Any]:
    return {
        "since": tenants.since.isoformat(),
        "until": tenants.until.isoformat(),
        "label": tenants.label_a,
        "search": tenants.run_label_prefix_a,
        "batch": tenants.batch_a,
        "scenario": tenants.scenario_a,
        "suite": tenants.suite_a,
    }


def _ids(connection: dict[str, Any]) -> set[str]:
    return {edge["node"]["id"] for edge in connection["edges"]}


async def test_b_starts_empty_and_no_list_or_count_shows_a(tenants: Tenants) -> None:
    variables = _list_variables(tenants)
    async with (
        api(tenants.server, tenants.token_a) as a,
        api(tenants.server, tenants.token_b) as b,
    ):
        seen_by_a = await a.data(LISTS, variables)
        seen_by_b = await b.data(LISTS, variables)

    # What A sees proves every list below has A's data in it to leak.
    mine = set(tenants.executions_a)
    assert seen_by_a["viewer"]["workspaceName"] == "default"
    assert _ids(seen_by_a["all"]) == mine
    assert len(_ids(seen_by_a["labelled"])) == len(mine)
    assert len(_ids(seen_by_a["searched"])) == 100
    assert len(_ids(seen_by_a["batched"])) == 100
    assert len(_ids(seen_by_a["ofScenario"])) == 1
    assert {e["id"] for e in seen_by_a["activeExecutions"]} >= set(tenants.held_a)
    assert seen_by_a["queue"]["running"] >= len(tenants.held_a)
    assert seen_by_a["activeExecutionCounts"] != []
    assert seen_by_a["metrics"]["finished"] >= 102
    assert seen_by_a["labelledMetrics"]["finished"] >= 102
    assert seen_by_a["scenarioMetrics"]["finished"] == 1
    assert tenants.scenario_a in {s["name"] for s in seen_by_a["scenarios"]}
    assert [s["name"] for s in seen_by_a["suites"]] == [tenants.suite_a]
    assert [r["id"] for r in seen_by_a["suiteRuns"]] == [tenants.suite_run_a]
    assert [p["runId"] for p in seen_by_a["suiteTrend"]] == [tenants.suite_run_a]
    assert seen_by_a["suite"] == {"name": tenants.suite_a}
    assert {t["id"] for t in seen_by_a["apiTokens"]} == set(tenants.token_ids_a)
    assert [m["subject"] for m in seen_by_a["members"]] == [tenants.member_a]
    assert seen_by_a["activities"] != []
    assert [w["id"] for w in seen_by_a["webhooks"]] == [tenants.webhook_a]
    assert [s["id"] for s in seen_by_a["schedules"]] == [tenants.schedule_a]

    assert seen_by_b["viewer"]["workspaceName"] == "team-b"
    for name in ("all", "labelled", "searched", "batched", "ofScenario"):
        assert seen_by_b[name]["edges"] == [], name
    assert seen_by_b["activeExecutions"] == []
    assert seen_by_b["queue"] == {"queued": 0, "running": 0}
    assert seen_by_b["activeExecutionCounts"] == []
    assert seen_by_b["metrics"]["finished"] == 0
    assert seen_by_b["metrics"]["measured"] == 0
    assert {c["count"] for c in seen_by_b["metrics"]["counts"]} == {0}
    assert seen_by_b["labelledMetrics"]["finished"] == 0
    assert seen_by_b["scenarioMetrics"]["finished"] == 0
    assert seen_by_b["scenarios"] == []  # the shipped examples live in "default" only
    assert seen_by_b["suites"] == []
    assert seen_by_b["suiteRuns"] == []
    assert seen_by_b["suiteTrend"] == []
    assert seen_by_b["suite"] is None
    assert [t["name"] for t in seen_by_b["apiTokens"]] == ["b-admin"]
    assert seen_by_b["members"] == []
    assert seen_by_b["activities"] == []
    assert seen_by_b["webhooks"] == []
    assert seen_by_b["schedules"] == []


async def test_foreign_ids_answer_like_missing_ones_over_http(tenants: Tenants) -> None:
    comparison = Comparison()
    missing_answers: list[Reply] = []

    async with api(tenants.server, tenants.token_b) as b:

        def probe(foreign: str, missing: str) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                # Read, act, read again: the second read also shows B's own audit of the
                # refused mutations, which must look the same for both ids.
                for step, document in enumerate((PROBE_QUERY, PROBE_MUTATION, PROBE_QUERY)):
                    of_foreign, of_missing = await asyncio.gather(
                        b.post(document, {"id": foreign}), b.post(document, {"id": missing})
                    )
                    comparison.add_parts(f"http#{step}", foreign, of_foreign, missing, of_missing)
                    if step == 1:
                        missing_answers.append(of_missing)
                    elif step == 0:
                        assert of_missing.data == {
                            "execution": None,
                            "batch": None,
                            "activities": [],
                            "suiteRun": None,
                            "compareSuiteRuns": of_missing.data["compareSuiteRuns"],
                            "webhookDeliveries": [],
                            "reviews": [],
                        }
                        found = of_missing.data["compareSuiteRuns"]["__typename"]
                        assert found == "NotFoundError", of_missing.body

            return run

        await bounded([probe(foreign, missing) for foreign, missing in pairs(tenants.ids_a)])

    comparison.assert_indistinguishable()
    # Equal answers must also be the right ones: a missing id is simply not found.
    for reply in missing_answers:
        assert {r["__typename"] for r in reply.data.values()} == {"NotFoundError"}, reply.body
    await _assert_a_untouched(tenants)


async def _assert_a_untouched(tenants: Tenants) -> None:
    async with api(tenants.server, tenants.token_a) as a:
        for execution_id in tenants.held_a:
            assert await a.status(execution_id) == "RUNNING"
        assert await a.status(tenants.paused_a) == "PAUSED"
        assert await a.status(tenants.failed_a) == "FAILED"
        batch = (await a.data(BATCH, {"id": tenants.batch_a}))["batch"]
        assert batch["stoppedAt"] is None
        assert {e["status"] for e in batch["executions"]} == {"SUCCEEDED"}
        tokens = (await a.data("{ apiTokens { id revokedAt } }"))["apiTokens"]
        assert [t["revokedAt"] for t in tokens] == [None] * len(tenants.token_ids_a)
        suite = "query($name: String!) { suite(name: $name) { baseline { run { id } } } }"
        found = (await a.data(suite, {"name": tenants.suite_a}))["suite"]
        assert found == {"baseline": None}, found  # B's setSuiteBaseline did not take
        hooks = (await a.data("{ webhooks { id enabled } }"))["webhooks"]
        assert hooks == [{"id": tenants.webhook_a, "enabled": True}]  # nor updateWebhook, delete
        query = "query($id: ID!) { webhookDeliveries(webhookId: $id) { id } }"
        deliveries = (await a.data(query, {"id": tenants.webhook_a}))["webhookDeliveries"]
        assert [d["id"] for d in deliveries] == [tenants.delivery_a]  # nor a redelivery
        schedules = "{ schedules { id name enabled lastRuns { fireTime } } }"
        found_schedules = (await a.data(schedules))["schedules"]
        # Neither updateSchedule, setScheduleEnabled, runScheduleNow nor deleteSchedule took.
        assert [(s["id"], s["enabled"], s["lastRuns"]) for s in found_schedules] == [
            (tenants.schedule_a, True, [])
        ]
        assert found_schedules[0]["name"] != "probe"
        trail = (await a.data("{ activities(first: 200) { activity { actor } } }"))["activities"]
        assert "token:b-admin" not in {entry["activity"]["actor"] for entry in trail}


async def _ws_outcome(
    session: Any, probed_id: str, document: str = PROBE_SUBSCRIPTION
) -> dict[str, Any]:
    """What one subscription does: its error, or a first message (a leak)."""
    request = GraphQLRequest(document, variable_values={"id": probed_id})
    try:
        async with asyncio.timeout(10):
            async with contextlib.aclosing(session.subscribe(request)) as messages:
                async for message in messages:
                    return {"data": message}
        return {"completed": "without a message"}
    except TransportQueryError as error:
        return {"errors": error.errors, "data": error.data}
    except TimeoutError:
        return {"timeout": "no error and no message within 10 s"}


async def test_foreign_ids_answer_like_missing_ones_over_websocket(tenants: Tenants) -> None:
    comparison = Comparison()
    missing_outcomes: list[dict[str, Any]] = []
    suite_run_outcomes: list[dict[str, Any]] = []
    # One socket authenticated as B carries every probe.
    async with Client(transport=ws_transport(tenants.server, tenants.token_b)) as session:

        def probe(foreign: str, missing: str) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                of_foreign, of_missing = await asyncio.gather(
                    _ws_outcome(session, foreign), _ws_outcome(session, missing)
                )
                comparison.add("ws executionEvents", foreign, of_foreign, missing, of_missing)
                missing_outcomes.append(normalized(of_missing, missing))
                of_foreign, of_missing = await asyncio.gather(
                    _ws_outcome(session, foreign, PROBE_SUITE_RUN_SUBSCRIPTION),
                    _ws_outcome(session, missing, PROBE_SUITE_RUN_SUBSCRIPTION),
                )
                comparison.add("ws suiteRunUpdates", foreign, of_foreign, missing, of_missing)
                suite_run_outcomes.append(normalized(of_missing, missing))

            return run

        await bounded([probe(foreign, missing) for foreign, missing in pairs(tenants.ids_a)])

    comparison.assert_indistinguishable()
    for outcome in missing_outcomes:
        assert [e["message"] for e in outcome.get("errors") or ()] == [
            "execution <id> not found"
        ], outcome
    for outcome in suite_run_outcomes:
        assert "errors" in outcome, outcome  # not found: an error, never a message


async def _sse_outcome(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """An SSE request's status, type and body; for a stream (a leak), its first line."""
    async with asyncio.timeout(10), client.stream("GET", url) as response:
        outcome: dict[str, Any] = {
            "status": response.status_code,
            "type": response.headers.get("content-type"),
        }
        if response.status_code == 200:
            outcome["first line"] = await anext(response.aiter_lines(), None)
            return outcome
        body = (await response.aread()).decode()
        try:
            outcome["body"] = json.loads(body)
        except ValueError:
            outcome["body"] = body
        return outcome


async def _compare_sse(
    tenants: Tenants, headers: dict[str, str], query: str = ""
) -> tuple[Comparison, list[dict[str, Any]]]:
    comparison = Comparison()
    missing_outcomes: list[dict[str, Any]] = []
    async with httpx.AsyncClient(headers=headers, timeout=10) as client:

        def probe(foreign: str, missing: str) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                base = f"{tenants.server.url}/executions/"
                of_foreign, of_missing = await asyncio.gather(
                    _sse_outcome(client, f"{base}{foreign}/events{query}"),
                    _sse_outcome(client, f"{base}{missing}/events{query}"),
                )
                comparison.add(
                    "sse /executions/{id}/events", foreign, of_foreign, missing, of_missing
                )
                missing_outcomes.append(normalized(of_missing, missing))

            return run

        await bounded([probe(foreign, missing) for foreign, missing in pairs(tenants.ids_a)])
    return comparison, missing_outcomes


async def test_foreign_ids_answer_like_missing_ones_over_sse(tenants: Tenants) -> None:
    comparison, missing_outcomes = await _compare_sse(
        tenants, {"Authorization": f"Bearer {tenants.token_b}"}
    )
    comparison.assert_indistinguishable()
    for outcome in missing_outcomes:
        assert outcome["status"] == 404, outcome
        assert "execution <id> not found" in json.dumps(outcome["body"]), outcome


async def test_names_are_per_workspace(tenants: Tenants) -> None:
    name_a, missing = tenants.scenario_a, f"nowhere-{secrets.token_hex(4)}"
    scenario = "query($name: String!) { scenario(name: $name) { name version description } }"
    start_batch = f"""mutation($name: String!) {{
      startBatch(input: {{scenario: $name, runs: [{{}}]}}) {{ {RESULT} }}
    }}"""
    update = f"mutation($d: String!) {{ updateScenario(definition: $d) {{ {RESULT} }} }}"
    create = f"""mutation($d: String!) {{
      createScenario(definition: $d) {{
        {RESULT} ... on ScenarioSuccess {{ scenario {{ name version description }} }}
      }}
    }}"""
    remove = f"mutation($s: String!) {{ removeMember(subject: $s) {{ {RESULT} }} }}"
    comparison = Comparison()
    async with (
        api(tenants.server, tenants.token_a) as a,
        api(tenants.server, tenants.token_b) as b,
    ):
        for name in (name_a, "countdown"):  # A's own, and a shipped example of "default"
            found = await b.post(scenario, {"name": name})
            comparison.add_parts(
                "scenario", name, found, missing, await b.post(scenario, {"name": missing})
            )
            assert found.data == {"scenario": None}
            for what, document, variables in (
                ("startExecution", START, lambda n: {"input": {"scenario": n}}),
                ("startBatch", start_batch, lambda n: {"name": n}),
                ("updateScenario", update, lambda n: {"d": _scenario(n, "B's")}),
            ):
                of_name = await b.post(document, variables(name))
                of_missing = await b.post(document, variables(missing))
                comparison.add_parts(what, name, of_name, missing, of_missing)
                assert next(iter(of_missing.data.values()))["__typename"] == "NotFoundError"
        of_member = await b.post(remove, {"s": tenants.member_a})
        of_nobody = await b.post(remove, {"s": missing})
        comparison.add_parts("removeMember", tenants.member_a, of_member, missing, of_nobody)
        assert of_nobody.data["removeMember"]["__typename"] == "NotFoundError"
        comparison.assert_indistinguishable()

        # The same name in B is B's own scenario, independent of A's.
        made = (await b.data(create, {"d": _scenario(name_a, "B's own")}))["createScenario"]
        assert made["__typename"] == "ScenarioSuccess", made
        assert made["scenario"] == {"name": name_a, "version": 1, "description": "B's own"}
        theirs = (await a.data(scenario, {"name": name_a}))["scenario"]
        assert theirs == {"name": name_a, "version": 1, "description": "A's own"}
        assert (await b.data("{ scenarios { name } }"))["scenarios"] == [{"name": name_a}]
        # A member of A is nobody in B; making them one there leaves A's membership alone.
        assert (await b.data("{ members { subject } }"))["members"] == []
        assert (await a.data("{ members { subject role } }"))["members"] == [
            {"subject": tenants.member_a, "role": "VIEWER"}
        ]


async def test_secrets_are_per_workspace(tenants: Tenants) -> None:
    """B cannot list, use, delete or overwrite A's secret: its name answers like a missing one."""
    name, missing = f"A_SECRET_{secrets.token_hex(4).upper()}", "NOWHERE_SET"
    set_secret = f"""mutation($n: String!, $v: String!) {{
      setSecret(name: $n, value: $v) {{ {RESULT} }}
    }}"""
    delete = f"mutation($n: String!) {{ deleteSecret(name: $n) {{ {RESULT} }} }}"
    listing = "{ secrets { name updatedAt updatedBy } }"

    def naming(secret: str) -> dict[str, Any]:
        text = definition(f"{{key: a, kind: sleep, secrets: [{secret}], with: {{seconds: 0}}}}")
        return {"input": {"definition": text}}

    comparison = Comparison()
    async with (
        api(tenants.server, tenants.token_a) as a,
        api(tenants.server, tenants.token_b) as b,
    ):
        made = (await a.data(set_secret, {"n": name, "v": "a-value"}))["setSecret"]
        assert made["__typename"] == "SetSecretSuccess", made
        before = (await a.data(listing))["secrets"]
        assert name in {found["name"] for found in before}

        assert name not in {found["name"] for found in (await b.data(listing))["secrets"]}
        for what, document, variables in (
            ("startExecution", START, naming),
            ("deleteSecret", delete, lambda n: {"n": n}),
        ):
            of_name = await b.post(document, variables(name))
            of_missing = await b.post(document, variables(missing))
            comparison.add_parts(what, name, of_name, missing, of_missing)
            assert next(iter(of_name.data.values()))["__typename"] in {
                "ValidationError",
                "NotFoundError",
            }
        comparison.assert_indistinguishable()

        # The same name in B is B's own secret; A's is untouched.
        theirs = (await b.data(set_secret, {"n": name, "v": "b-value"}))["setSecret"]
        assert theirs["__typename"] == "SetSecretSuccess", theirs
        assert (await a.data(listing))["secrets"] == before


async def test_b_sees_exactly_its_own_executions_and_a_none_of_them(tenants: Tenants) -> None:
    variables = _list_variables(tenants)
    counts = "query($since: DateTime!, $until: DateTime!) { %s }"
    metrics = counts % "executionMetrics(since: $since, until: $until) { counts { status count } }"
    window = {"since": variables["since"], "until": variables["until"]}
    async with (
        api(tenants.server, tenants.token_a) as a,
        api(tenants.server, tenants.token_b) as b,
    ):
        a_before = await a.data(LISTS, variables)
        a_metrics_before = await a.data(metrics, window)
        label_b = f"b-only-{secrets.token_hex(3)}"
        mine = {await b.start(definition=HOLD, labels=[label_b]) for _ in range(2)}
        tenants.stop_at_end.extend((tenants.token_b, e) for e in mine)
        for execution_id in mine:
            await b.wait_for(execution_id, "RUNNING")

        seen = await b.data(LISTS, variables)
        assert _ids(seen["all"]) == mine
        assert {e["id"] for e in seen["activeExecutions"]} == mine
        assert seen["queue"] == {"queued": 0, "running": 2}
        assert seen["activeExecutionCounts"] == [
            {"scenario": None, "queued": 0, "running": 2, "paused": 0}
        ]
        for name in ("labelled", "searched", "batched", "ofScenario"):
            assert seen[name]["edges"] == [], name
        by_label = await b.data(
            "query($l: String!) { executions(filter: {label: $l}) { edges { node { id } } } }",
            {"l": label_b},
        )
        assert _ids(by_label["executions"]) == mine

        # The symmetric direction: A sees none of B's.
        a_now = await a.data(LISTS, variables)
        assert _ids(a_now["all"]) == _ids(a_before["all"])
        assert {e["id"] for e in a_now["activeExecutions"]} == {
            e["id"] for e in a_before["activeExecutions"]
        }
        assert a_now["queue"] == a_before["queue"]
        assert a_now["activeExecutionCounts"] == a_before["activeExecutionCounts"]
        for execution_id in mine:
            assert await a.status(execution_id) is None

        for execution_id in mine:
            stopped = (await b.data(STOP, {"id": execution_id}))["stopExecution"]
            assert stopped["__typename"] == "StopExecutionSuccess"
        for execution_id in mine:
            await b.wait_for(execution_id, "CANCELLED")
        b_metrics = (await b.data(metrics, window))["executionMetrics"]
        assert {c["status"]: c["count"] for c in b_metrics["counts"]}["CANCELLED"] == 2
        assert sum(c["count"] for c in b_metrics["counts"]) == 2
        # A's finished counts did not move: B's cancellations are not A's.
        assert (await a.data(metrics, window)) == a_metrics_before
        assert (await a.data(LISTS, variables))["activeExecutionCounts"] == a_before[
            "activeExecutionCounts"
        ]


UPDATES = """
subscription { executionUpdates { status kind execution { id name labels } } }
"""
EVENTS = """
subscription($id: ID!) {
  executionEvents(executionId: $id) {
    lastSeq
    events {
      seq type
      ... on OutputChunk { text }
      ... on ExecutionStatusChanged { status: executionStatus }
    }
  }
}
"""


async def _followers(server: Server) -> int:
    async with httpx.AsyncClient() as client:
        return int((await client.get(f"{server.url}/health")).json()["followers"])


@contextlib.asynccontextmanager
async def watching(server: Server, token: str) -> AsyncIterator[list[dict[str, Any]]]:
    """An executionUpdates subscription (no filter) with `token`, registered when this enters."""
    updates: list[dict[str, Any]] = []
    before = await _followers(server)

    async def run() -> None:
        async with Client(transport=ws_transport(server, token)) as session:
            async for message in session.subscribe(GraphQLRequest(UPDATES)):
                updates.append(message["executionUpdates"])

    task = asyncio.create_task(run())
    try:
        # No message confirms a subscription; the server's count of live followers does.
        async with asyncio.timeout(10):
            while await _followers(server) <= before:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        yield updates
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until_update(
    updates: list[dict[str, Any]], execution_id: str, status: str, timeout: float = 30
) -> None:
    async with asyncio.timeout(timeout):
        while not any(
            u["execution"]["id"] == execution_id and u["status"] == status for u in updates
        ):
            await asyncio.sleep(0.02)


async def test_live_updates_and_events_stay_in_their_workspace(tenants: Tenants) -> None:
    await _live_checks(tenants.server, tenants.token_a, tenants.token_b, tenants.label_a)


@dataclass(frozen=True)
class Pair:
    runner: Server
    api_only: Server
    token_b: str


@pytest.fixture(params=["postgres", "redis"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    """A runner process and an API-only process on one database and bus, with workspace B."""
    # A runner that polls rarely: starts reach it on the bus, as changes come back on it.
    with running_pair(request.param, tmp_path, {"RUNWIRE_POLL_SECONDS": "20"}) as (runner, other):
        yield Pair(runner, other, _workspace_b(runner))


async def test_bus_notices_reach_only_their_workspace_in_another_process(pair: Pair) -> None:
    # Subscribers on the API-only process get every change through the bus alone.
    await _live_checks(pair.api_only, pair.api_only.token, pair.token_b, "a-only")


async def _live_checks(server: Server, token_a: str, token_b: str, label_a: str) -> None:
    """B's live list and event stream carry B's changes and nothing of A's running alongside."""
    async with (
        api(server, token_a) as a,
        api(server, token_b) as b,
        watching(server, token_b) as seen_by_b,
        watching(server, token_a) as seen_by_a,
    ):
        started_a = [await a.start(definition=QUICK, labels=[label_a]) for _ in range(5)]
        for execution_id in started_a:
            # A's own subscriber receives them: there was something for B to leak.
            await _until_update(seen_by_a, execution_id, "SUCCEEDED")
        # Updates reach a subscriber in order, so any of A's would arrive before this one.
        marker = await b.start(definition=QUICK)
        await _until_update(seen_by_b, marker, "SUCCEEDED")
        assert {u["execution"]["id"] for u in seen_by_b} == {marker}, seen_by_b
        assert [u["status"] for u in seen_by_b] == ["QUEUED", "RUNNING", "SUCCEEDED"]
        assert marker not in {u["execution"]["id"] for u in seen_by_a}

        # B follows its own talking execution, live, while A's talk at the same time.
        talk_b = await b.start(definition=_talking("from-b"))
        talk_a = [await a.start(definition=_talking("from-a")) for _ in range(3)]
        events: list[dict[str, Any]] = []
        async with Client(transport=ws_transport(server, token_b)) as session:
            request = GraphQLRequest(EVENTS, variable_values={"id": talk_b})
            async with asyncio.timeout(30):
                async for message in session.subscribe(request):
                    events.extend(message["executionEvents"]["events"])
        for execution_id in talk_a:
            await a.wait_for(execution_id, "SUCCEEDED")
        stored = (
            await b.data(
                "query($id: ID!) { execution(id: $id) { lastSeq events(first: 1000) { seq } } }",
                {"id": talk_b},
            )
        )["execution"]
    text = "".join(e.get("text", "") for e in events)
    assert "from-a" not in text
    assert text == "".join(f"from-b-{i}\n" for i in range(1, 9))
    assert [e["seq"] for e in events] == [e["seq"] for e in stored["events"]]
    assert [e["seq"] for e in events] == list(range(1, stored["lastSeq"] + 1))
    assert events[-1]["status"] == "SUCCEEDED"


async def test_a_ticket_of_b_opens_no_stream_of_a(tenants: Tenants) -> None:
    async with api(tenants.server, tenants.token_b) as b:
        own = await b.start(definition=QUICK)
        await b.wait_for(own, "SUCCEEDED")
        issued = (
            await b.data(
                f"""mutation($id: ID!) {{ createEventStreamTicket(executionId: $id) {{
                  {RESULT} ... on EventStreamTicketSuccess {{ ticket }} }} }}""",
                {"id": own},
            )
        )["createEventStreamTicket"]
    assert issued["__typename"] == "EventStreamTicketSuccess", issued
    ticket = f"?ticket={issued['ticket']}"
    async with httpx.AsyncClient(timeout=10) as client:
        works = await _sse_outcome(client, f"{tenants.server.url}/executions/{own}/events{ticket}")
    assert works["status"] == 200  # the ticket is good, for its own execution
    comparison, missing_outcomes = await _compare_sse(tenants, {}, ticket)
    comparison.assert_indistinguishable()
    assert {outcome["status"] for outcome in missing_outcomes} == {401}


async def test_idempotency_keys_are_per_workspace(tenants: Tenants) -> None:
    key, other_key = f"shared-{secrets.token_hex(4)}", f"shared-{secrets.token_hex(4)}"
    async with (
        api(tenants.server, tenants.token_a) as a,
        api(tenants.server, tenants.token_b) as b,
    ):
        of_a = await a.start(definition=QUICK, idempotencyKey=key)
        of_b = await b.start(definition=QUICK, idempotencyKey=key)
        assert of_a != of_b
        assert await b.start(definition=QUICK, idempotencyKey=key) == of_b
        assert await a.start(definition=QUICK, idempotencyKey=key) == of_a
        # A key A used with another request is no conflict in B: B never sees A's request.
        await a.start(definition=QUICK, idempotencyKey=other_key)
        different = await b.start(definition=_scenario("other", "B's"), idempotencyKey=other_key)
        assert (
            await b.start(definition=_scenario("other", "B's"), idempotencyKey=other_key)
            == different
        )
        assert await a.status(of_b) is None
        assert await b.status(of_a) is None
        for execution_id in (of_b, different):
            await b.wait_for(execution_id, "SUCCEEDED")
        await a.wait_for(of_a, "SUCCEEDED")
