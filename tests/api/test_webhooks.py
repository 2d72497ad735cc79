"""Webhooks against a real server and a real HTTP receiver on 127.0.0.1.

The receiver is a plain HTTP/1.1 server in a thread of the test process, told per path how to
answer: fail twice then succeed, always succeed, or hang. Signatures are checked here with the
secret createWebhook returned and the algorithm docs/webhooks.md documents.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.support.graphql import definition, execute, gated_step, start, wait_for_status
from tests.support.server import Server, database, running_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

# The outbox is claimed with SQL that differs per database (SKIP LOCKED, RETURNING).
SERVER_BACKENDS = ("sqlite", "postgres")
# Retries a few tenths of a second apart, and a short timeout for the hanging receiver.
SERVER_SETTINGS = {
    "RUNWIRE_WEBHOOK_ALLOW_PRIVATE": "true",
    "RUNWIRE_WEBHOOK_RETRY_SECONDS": "0.2",
    "RUNWIRE_WEBHOOK_TIMEOUT_SECONDS": "2",
    "RUNWIRE_WEBHOOK_MAX_ATTEMPTS": "4",
}

CREATE = """
mutation($input: CreateWebhookInput!) {
  createWebhook(input: $input) {
    __typename
    ... on CreateWebhookSuccess { secret webhook { id url events description enabled } }
    ... on Error { message }
    ... on ValidationError { fieldErrors { path message } }
  }
}
"""
UPDATE = """
mutation($input: UpdateWebhookInput!) {
  updateWebhook(input: $input) {
    __typename
    ... on UpdateWebhookSuccess { webhook { id events enabled } }
    ... on Error { message }
  }
}
"""
DELETE = """
mutation($id: ID!) {
  deleteWebhook(id: $id) { __typename ... on Error { message } }
}
"""
LIST = "{ webhooks { id url events description enabled createdBy } }"
DELIVERIES = """
query($id: ID!) {
  webhookDeliveries(webhookId: $id, first: 10) {
    id event executionId status attempts responseCode error deliveredAt redeliveryOf payload
    attemptLog { number responseCode error responseSnippet durationMs }
  }
}
"""
REDELIVER = """
mutation($id: ID!) {
  redeliverWebhookDelivery(id: $id) {
    __typename
    ... on RedeliverWebhookDeliverySuccess { delivery { id status redeliveryOf } }
    ... on Error { message }
  }
}
"""
STOP = """
mutation($id: ID!) {
  stopExecution(id: $id, reason: "not needed") { __typename ... on Error { message } }
}
"""
AUDIT = "{ activities(first: 20) { activity { action result } } }"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """What the receiver was sent, and how often each path has been called."""

    port: int
    received: list[Received] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    release_hang: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def to(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(port=0)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            path = self.path.split("?")[0]
            with lock:
                count = state.calls.get(path, 0) + 1
                state.calls[path] = count
                state.received.append(Received(path, dict(self.headers.items()), body))
            if path.startswith("/hang"):
                state.release_hang.wait(10)
            if path.startswith("/redirect"):
                self.send_response(302)
                self.send_header("Location", state.url("/ok"))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            code = 500 if path.startswith("/flaky") and count <= 2 else 200
            answer = b"not yet" if code == 500 else b"ok"
            self.send_response(code)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release_hang.set()
        server.shutdown()
        server.server_close()


def verified(secret: str, received: Received, tolerance: float = 300) -> bool:
    """The receiver's check, as docs/webhooks.md shows it."""
    timestamp = received.headers["Runwire-Timestamp"]
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + received.body, hashlib.sha256
    ).hexdigest()
    fresh = abs(time.time() - int(timestamp)) <= tolerance
    return fresh and hmac.compare_digest(received.headers["Runwire-Signature"], f"v1={expected}")


async def create(server: Server, url: str, events: list[str], token: str | None = None) -> Any:
    payload = {"url": url, "events": events, "description": "test"}
    return (await execute(server, CREATE, {"input": payload}, token=token))["createWebhook"]


async def run(server: Server, name: str, ok: bool = True) -> str:
    step = '{key: a, kind: shell, with: {argv: ["%s"]}}' % ("true" if ok else "false")
    execution_id = await start(server, definition=definition(step, name=name))
    await wait_for_status(server, execution_id, {"SUCCEEDED", "FAILED"})
    return execution_id


async def deliveries_of(
    server: Server, webhook_id: str, until: Any, timeout: float = 20
) -> list[dict[str, Any]]:
    async with asyncio.timeout(timeout):
        while True:
            found = (await execute(server, DELIVERIES, {"id": webhook_id}))["webhookDeliveries"]
            if until(found):
                return list(found)
            await asyncio.sleep(0.05)


async def test_a_receiver_failing_twice_gets_a_third_attempt_signed_with_the_secret(
    server: Server, receiver: Receiver
) -> None:
    created = await create(server, receiver.url("/flaky"), ["EXECUTION_SUCCEEDED"])
    assert created["__typename"] == "CreateWebhookSuccess", created
    secret, webhook = created["secret"], created["webhook"]
    assert secret.startswith("whsec_")
    assert len(secret) > 40
    listed = (await execute(server, LIST))["webhooks"]
    assert [w["id"] for w in listed if w["url"] == receiver.url("/flaky")] == [webhook["id"]]
    assert "secret" not in json.dumps(listed)

    execution_id = await run(server, "webhook-flaky")
    [delivery] = await deliveries_of(
        server, webhook["id"], lambda found: found and found[0]["status"] == "DELIVERED"
    )
    assert delivery["attempts"] == 3
    assert delivery["responseCode"] == 200
    assert delivery["executionId"] == execution_id
    assert delivery["event"] == "EXECUTION_SUCCEEDED"
    assert [(a["number"], a["responseCode"]) for a in delivery["attemptLog"]] == [
        (1, 500),
        (2, 500),
        (3, 200),
    ]
    assert delivery["attemptLog"][0]["error"] == "HTTP 500"
    assert delivery["attemptLog"][0]["responseSnippet"] == "not yet"

    sent = receiver.to("/flaky")
    assert len(sent) == 3
    assert all(verified(secret, r) for r in sent)
    assert not verified("whsec_wrong", sent[-1])
    assert {r.headers["Runwire-Delivery-Id"] for r in sent} == {delivery["id"]}
    assert sent[-1].headers["Runwire-Webhook-Id"] == webhook["id"]
    body = json.loads(sent[-1].body)
    assert body["type"] == "execution.succeeded"
    assert body["execution"]["id"] == execution_id
    assert body["execution"]["status"] == "SUCCEEDED"
    assert body["execution"]["name"] == "webhook-flaky"
    assert sent[-1].body.decode() == delivery["payload"]

    # A failed execution is not an event this webhook subscribed to.
    await run(server, "webhook-flaky-fails", ok=False)
    await asyncio.sleep(0.5)
    assert len(receiver.to("/flaky")) == 3

    # By hand: a new delivery of the same payload, with attempts of its own.
    again = (await execute(server, REDELIVER, {"id": delivery["id"]}))["redeliverWebhookDelivery"]
    assert again["__typename"] == "RedeliverWebhookDeliverySuccess", again
    assert again["delivery"]["redeliveryOf"] == delivery["id"]
    found = await deliveries_of(
        server,
        webhook["id"],
        lambda found: len(found) == 2 and found[0]["status"] == "DELIVERED",
    )
    assert found[0]["id"] == again["delivery"]["id"]
    assert found[0]["attempts"] == 1
    assert len(receiver.to("/flaky")) == 4
    assert verified(secret, receiver.to("/flaky")[-1])
    assert receiver.to("/flaky")[-1].body == sent[-1].body

    actions = [e["activity"]["action"] for e in (await execute(server, AUDIT))["activities"]]
    assert {"createWebhook", "redeliverWebhookDelivery"} <= set(actions)


async def test_a_hanging_receiver_does_not_delay_the_execution_and_times_out(
    server: Server, receiver: Receiver
) -> None:
    created = await create(server, receiver.url("/hang"), ["EXECUTION_SUCCEEDED"])
    webhook = created["webhook"]
    began = time.monotonic()
    execution_id = await start(
        server, definition=definition('{key: a, kind: shell, with: {argv: ["true"]}}')
    )
    await wait_for_status(server, execution_id, {"SUCCEEDED"})
    ended_in = time.monotonic() - began
    # The receiver holds the first post open for up to 10 s; the execution ends regardless.
    assert ended_in < 2.0, ended_in
    [delivery] = await deliveries_of(
        server, webhook["id"], lambda found: found and found[0]["attempts"] >= 1
    )
    assert delivery["attemptLog"][0]["error"] == "no answer within 2s"
    assert delivery["attemptLog"][0]["responseCode"] is None
    receiver.release_hang.set()
    await execute(server, UPDATE, {"input": {"id": webhook["id"], "enabled": False}})


async def test_a_redirect_is_not_followed_and_the_delivery_fails_after_its_last_attempt(
    server: Server, receiver: Receiver
) -> None:
    webhook = (await create(server, receiver.url("/redirect"), ["EXECUTION_SUCCEEDED"]))["webhook"]
    await run(server, "webhook-redirected")
    [delivery] = await deliveries_of(
        server, webhook["id"], lambda found: found and found[0]["status"] == "FAILED"
    )
    assert delivery["attempts"] == 4  # RUNWIRE_WEBHOOK_MAX_ATTEMPTS
    assert [a["responseCode"] for a in delivery["attemptLog"]] == [302] * 4
    assert delivery["error"] == "HTTP 302: redirects are not followed"
    assert delivery["deliveredAt"] is None
    assert len(receiver.to("/redirect")) == 4
    assert receiver.to("/ok") == []
    await execute(server, DELETE, {"id": webhook["id"]})


async def test_urls_that_are_not_http_or_reach_link_local_or_metadata_are_refused(
    server: Server,
) -> None:
    for url, says in (
        ("ftp://example.com/hook", "must be an http:// or https:// URL"),
        ("file:///etc/passwd", "must be an http:// or https:// URL"),
        ("http://169.254.169.254/latest/meta-data", "cloud metadata address"),
        ("http://[fd00:ec2::254]/", "cloud metadata address"),
        ("http://169.254.10.1/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "cloud metadata address"),
        ("http://0.0.0.0:8080/", "unspecified"),
        ("http://user:pw@example.com/", "must not carry credentials"),
        ("http://no-such-host.invalid/", "does not resolve"),
    ):
        refused = await create(server, url, ["EXECUTION_FAILED"])
        assert refused["__typename"] == "ValidationError", (url, refused)
        [error] = refused["fieldErrors"]
        assert error["path"] == "url"
        assert says in error["message"], (url, error)
    empty = await create(server, "http://127.0.0.1:9/", [])
    assert empty["fieldErrors"] == [{"path": "events", "message": "name at least one event"}]


def _cli(server: Server, *arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "runwire.cli", *arguments],
        env=server.env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


async def test_another_workspace_can_neither_list_nor_read_nor_redeliver(
    server: Server, receiver: Receiver
) -> None:
    created = await create(server, receiver.url("/ok"), ["EXECUTION_SUCCEEDED"])
    webhook = created["webhook"]
    await run(server, "webhook-ok")
    [delivery] = await deliveries_of(
        server, webhook["id"], lambda found: found and found[0]["status"] == "DELIVERED"
    )
    _cli(server, "workspace", "create", "hooks-b")
    token_b = _cli(
        server, "token", "create", "--workspace", "hooks-b", "--name", "b", "--role", "admin"
    )
    assert (await execute(server, LIST, token=token_b))["webhooks"] == []
    operator = _cli(server, "token", "create", "--name", "hooks-op", "--role", "operator")
    denied = await create(server, receiver.url("/ok"), ["EXECUTION_FAILED"], token=operator)
    assert denied["__typename"] == "PermissionDeniedError"
    redeliver = await execute(server, REDELIVER, {"id": delivery["id"]}, token=token_b)
    assert redeliver["redeliverWebhookDelivery"]["__typename"] == "NotFoundError"
    deleted = await execute(server, DELETE, {"id": webhook["id"]}, token=token_b)
    assert deleted["deleteWebhook"]["__typename"] == "NotFoundError"
    changed = await execute(server, UPDATE, {"input": {"id": webhook["id"]}}, token=token_b)
    assert changed["updateWebhook"]["__typename"] == "NotFoundError"
    # Like an id no workspace has: nothing.
    assert (await execute(server, DELIVERIES, {"id": webhook["id"]}, token=token_b)) == {
        "webhookDeliveries": []
    }
    # B's own executions do not reach A's webhook.
    execution_b = await start(
        server,
        token=token_b,
        definition=definition('{key: a, kind: shell, with: {argv: ["true"]}}'),
    )
    await wait_for_status(server, execution_b, {"SUCCEEDED"}, token=token_b)
    await asyncio.sleep(0.5)
    assert len(await deliveries_of(server, webhook["id"], lambda found: True)) == 1

    assert (await execute(server, DELETE, {"id": webhook["id"]}))["deleteWebhook"][
        "__typename"
    ] == "DeleteWebhookSuccess"
    assert webhook["id"] not in {w["id"] for w in (await execute(server, LIST))["webhooks"]}


async def test_an_execution_stopped_while_queued_is_delivered_as_cancelled(
    server: Server, receiver: Receiver, tmp_path: Path
) -> None:
    created = await create(server, receiver.url("/stopped"), ["EXECUTION_CANCELLED"])
    webhook, secret = created["webhook"], created["secret"]
    # One at a time: the second waits QUEUED behind the first, so stopping it is the service's
    # own transition (domain/control.py), not the runner's.
    text = definition(
        gated_step("a", tmp_path / "gate"),
        name="webhook-queued",
        extra=f'concurrency: {{key: "hooks-{tmp_path.name}", limit: 1}}',
    )
    first = await start(server, definition=text)
    await wait_for_status(server, first, {"RUNNING"})
    second = await start(server, definition=text)
    await wait_for_status(server, second, {"QUEUED"})
    stopped = (await execute(server, STOP, {"id": second}))["stopExecution"]
    assert stopped["__typename"] == "StopExecutionSuccess", stopped
    [delivery] = await deliveries_of(
        server, webhook["id"], lambda found: found and found[0]["status"] == "DELIVERED"
    )
    assert delivery["executionId"] == second
    assert delivery["event"] == "EXECUTION_CANCELLED"
    [sent] = receiver.to("/stopped")
    assert verified(secret, sent)
    assert json.loads(sent.body)["type"] == "execution.cancelled"
    (tmp_path / "gate").touch()
    await wait_for_status(server, first, {"SUCCEEDED"})
    # The secret went to the client once and to receivers as a key, never into the log.
    assert secret not in server.log.read_text()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """A runner process and an API-only one on one Postgres database; both run a sender."""
    with (
        database("postgres") as url,
        running_server("postgres", tmp_path / "a", SERVER_SETTINGS, database_url=url) as a,
        running_server(
            "postgres",
            tmp_path / "b",
            {**SERVER_SETTINGS, "RUNWIRE_RUNNER": "false"},
            database_url=url,
            token=a.token,
        ) as b,
    ):
        yield a, b


async def test_two_processes_sending_post_each_delivery_once(
    receiver: Receiver, pair: tuple[Server, Server]
) -> None:
    # Both processes claim from one Postgres outbox (FOR UPDATE SKIP LOCKED).
    a, b = pair
    created = await create(b, receiver.url("/pair"), ["EXECUTION_SUCCEEDED"])
    webhook = created["webhook"]
    step = '{key: a, kind: shell, with: {argv: ["true"]}}'
    started = [await start(a, definition=definition(step, name=f"pair-{i}")) for i in range(20)]
    async with asyncio.timeout(30):
        while len(receiver.to("/pair")) < 20:
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # a second post of any of them would arrive by now
    sent = receiver.to("/pair")
    assert len(sent) == 20
    assert len({r.headers["Runwire-Delivery-Id"] for r in sent}) == 20
    assert {json.loads(r.body)["execution"]["id"] for r in sent} == set(started)
    found = await deliveries_of(
        b,
        webhook["id"],
        lambda found: len(found) == 10 and all(d["status"] == "DELIVERED" for d in found),
    )
    assert all(d["attempts"] == 1 for d in found)


async def test_a_review_waiting_is_delivered_as_review_requested(
    server: Server, receiver: Receiver
) -> None:
    created = await create(server, receiver.url("/reviews"), ["REVIEW_REQUESTED"])
    assert created["__typename"] == "CreateWebhookSuccess", created
    secret, webhook_id = created["secret"], created["webhook"]["id"]
    gate = '{key: gate, kind: review, timeout: 600, with: {title: "Ship {{ inputs.v }}?"}}'
    execution_id = await start(
        server,
        definition=definition(gate, name="reviewed", extra="inputs:\n  v: {type: string}"),
        inputs={"v": "1.2"},
    )
    await wait_for_status(server, execution_id, {"WAITING"})
    [delivery] = await deliveries_of(server, webhook_id, lambda d: d and d[0]["deliveredAt"])
    assert (delivery["event"], delivery["executionId"]) == ("REVIEW_REQUESTED", execution_id)
    [posted] = receiver.to("/reviews")
    assert verified(secret, posted)
    body = json.loads(posted.body)
    assert body["type"] == "review.requested"
    assert body["execution"]["status"] == "WAITING"
    review = body["review"]
    assert (review["stepKey"], review["attempt"], review["title"]) == ("gate", 1, "Ship 1.2?")
    assert review["decisions"] == ["approve", "reject"]
    assert review["expiresAt"] is not None
    await execute(server, STOP, {"id": execution_id})
