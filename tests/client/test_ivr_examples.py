"""The example IVR scenarios as the README runs them: `runwire ivr-sim` as its own process, a real
server on SQLite and on Postgres, and the scenario started by `rw run … --follow`, by the Python
client and by a plain GraphQL request (what GraphiQL sends), over real SIP/RTP on loopback.

Marked `long` (`make test-long`, which CI runs): each call is real-time speech, a few seconds each,
and what these add over tests/integration/test_step_call.py and tests/api/test_call_steps.py is
that the shipped example files keep doing what their comments say.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from runwire_client import CallEventReported, CallEventType, ExecutionMode, RunwireClient
from tests.support.server import Server

pytestmark = pytest.mark.long

SERVER_BACKENDS = ("sqlite", "postgres")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BIN = Path(sys.executable).parent


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ivr_sim(menu: str) -> Iterator[str]:
    """`runwire ivr-sim --menu MENU` on a free port, once it answers; yields its SIP target."""
    port = _free_udp_port()
    process = subprocess.Popen(
        [str(BIN / "runwire"), "ivr-sim", "--menu", menu, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    try:
        seen: list[str] = []
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + 20
            while not any("answering" in line for line in seen):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"ivr-sim did not answer in time: {seen}"
                assert process.poll() is None, f"ivr-sim ended: {seen}"
                if selector.select(remaining):
                    seen.append(process.stdout.readline())
        yield f"sip:{menu}@127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()


@pytest.fixture(scope="module")
def bank() -> Iterator[str]:
    yield from _ivr_sim("bank")


@pytest.fixture(scope="module")
def broken_bank() -> Iterator[str]:
    yield from _ivr_sim("broken-bank")


def _rw(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
    env |= {"RUNWIRE_URL": server.url, "RUNWIRE_TOKEN": server.token}
    return subprocess.run(
        [str(BIN / "rw"), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_rw_follows_the_passing_example_as_a_transcript(server: Server, bank: str) -> None:
    done = _rw(server, "run", str(EXAMPLES / "ivr-bank.yaml"), "--follow", "-i", f"target={bank}")
    assert done.returncode == 0, done.stdout + done.stderr
    for line in (
        "IVR: press one for balances",
        "→ pressed 1",
        "✓ matched intent balance",
        "→ pressed 2 (in-band)",
        "your card is blocked",
        "hung up by us",
    ):
        assert line in done.stdout, done.stdout


def test_rw_fails_the_broken_example_saying_what_it_heard(server: Server, broken_bank: str) -> None:
    path = str(EXAMPLES / "ivr-broken-bank.yaml")
    done = _rw(server, "run", path, "--follow", "-i", f"target={broken_bank}")
    assert done.returncode == 1, done.stdout + done.stderr
    # The cards branch plays the balances prompt: the expectation names both.
    assert "for a lost card" in done.stdout, done.stdout
    assert "anything else" in done.stdout, done.stdout


async def test_the_python_client_follows_one_call_of_the_example(server: Server, bank: str) -> None:
    definition = (EXAMPLES / "ivr-bank.yaml").read_text()
    async with RunwireClient(server.url, server.token) as client:
        started = await client.start(
            definition=definition,
            inputs={"target": bank},
            mode=ExecutionMode.STEP,
            step_key="lost-card",
        )
        moments = [
            event.call
            async for event in client.follow(started.id)
            if isinstance(event, CallEventReported)
        ]
        assert str((await client.get(started.id)).status) == "SUCCEEDED"
    assert moments[:3] == [CallEventType.DIALING, CallEventType.RINGING, CallEventType.ANSWERED]
    assert moments.count(CallEventType.DTMF_SENT) == 2
    # The IVR hangs up right after its last prompt, which is recognized, and matched, after that.
    assert {CallEventType.MATCHED, CallEventType.HUNG_UP} <= set(moments), moments


def test_a_plain_graphql_request_runs_one_step_of_the_example(server: Server, bank: str) -> None:
    # What GraphiQL sends: startExecution over HTTP, the test panel's STEP mode on one call.
    start = """
    mutation($input: StartExecutionInput!) {
      startExecution(input: $input) {
        ... on StartExecutionSuccess { execution { id } }
        ... on ValidationError { message }
      }
    }"""
    given = {
        "definition": (EXAMPLES / "ivr-bank.yaml").read_text(),
        "inputs": {"target": bank},
        "mode": "STEP",
        "stepKey": "balances",
    }
    started = _graphql(server, start, input=given)["startExecution"]
    assert "execution" in started, started
    execution_id = started["execution"]["id"]
    read = """
    query($id: ID!) {
      execution(id: $id) {
        status
        events(first: 200) { type ... on CallEventReported { call transcript digits } }
      }
    }"""
    deadline = time.monotonic() + 60
    while (found := _graphql(server, read, id=execution_id)["execution"])["status"] not in (
        "SUCCEEDED",
        "FAILED",
    ):
        assert time.monotonic() < deadline, found["status"]
        time.sleep(0.2)
    assert found["status"] == "SUCCEEDED"
    calls = [event for event in found["events"] if event["type"] == "CALL"]
    assert [event["digits"] for event in calls if event["call"] == "DTMF_SENT"] == ["1"]
    assert any(event["transcript"] == "press one for balances" for event in calls)


def _graphql(server: Server, query: str, **variables: Any) -> dict[str, Any]:
    response = httpx.post(
        server.graphql_http,
        json={"query": query, "variables": variables},
        headers=server.headers,
        timeout=30,
    )
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]
