"""Call events in the Python client and `rw`: typed from the subscription, shown as a transcript.

The server runs a real call step with the simulated driver against the shipped bank menu.
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from runwire_client import CallEventReported, CallEventType, RunwireClient
from runwire_client.view import call_line
from tests.support.inprocess import Served, serving_in_thread

from runwire.app import create_app
from runwire.runner.steps import step_kinds
from runwire.settings import Settings

RW = Path(sys.executable).parent / "rw"
CALL = """
name: press-through
steps:
  - key: call
    kind: call
    with:
      dial: {target: bank}
      actions:
        - press: "1"
        - wait: 0.2
        - press: {digits: "2", method: inband}
        - hangup: true
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data = tmp_path_factory.mktemp("calls") / "data"
    # No driver named in the definition: the server's setting picks the simulated one.
    settings = Settings(data_dir=data, load_examples=False, call_driver="simulated")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # as in tests/contract/conftest.py
        app = create_app(settings, step_kinds(settings))
    with serving_in_thread(app, settings.admin_token_file) as found:
        yield found


async def test_follow_yields_typed_call_events(served: Served) -> None:
    async with RunwireClient(served.url, served.token) as client:
        started = await client.start(definition=CALL)
        events = [event async for event in client.follow(started.id)]
    calls = [event for event in events if isinstance(event, CallEventReported)]
    assert [event.call for event in calls] == [
        CallEventType.DIALING,
        CallEventType.RINGING,
        CallEventType.ANSWERED,
        CallEventType.DTMF_SENT,
        CallEventType.DTMF_SENT,
        CallEventType.HUNG_UP,
    ]
    assert (calls[4].digits, calls[4].method, calls[4].action) == ("2", "inband", 2)
    assert (calls[-1].by, calls[-1].cause) == ("US", "BYE")
    assert calls[-1].at_ms is not None
    assert calls[-1].at_ms > 200
    assert all(event.step_key == "call" for event in calls)


def test_rw_run_follow_shows_the_call_as_a_transcript(served: Served, tmp_path: Path) -> None:
    path = tmp_path / "call.yaml"
    path.write_text(CALL)
    env = {"PATH": "/usr/bin:/bin", "RUNWIRE_URL": served.url, "RUNWIRE_TOKEN": served.token}
    done = subprocess.run(
        [str(RW), "run", str(path), "--follow"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [re.sub(r"^\[\d+\] ", "", line) for line in done.stdout.splitlines()]
    assert [line for line in lines if line.startswith("call (call)")] == [
        "call (call) | dialing",
        "call (call) | ringing",
        "call (call) | answered",
        "call (call) | → pressed 1",
        "call (call) | → pressed 2 (in-band)",
        "call (call) | hung up by us (BYE)",
    ]


def moment(call: CallEventType | str, **fields: Any) -> CallEventReported:
    at = datetime(2026, 12, 2, tzinfo=UTC)
    return CallEventReported(seq=1, at=at, step_key="call", attempt=1, call=call, **fields)


def test_each_moment_reads_as_one_line() -> None:
    prompt = moment(
        CallEventType.PROMPT,
        transcript="welcome to example bank",
        confidence=0.8234,
        latency_ms=412,
    )
    assert call_line(prompt) == "IVR: welcome to example bank (0.82) after 0.41s"
    assert call_line(moment(CallEventType.SPEECH_SENT, text="agent")) == "→ said: agent"
    matched = moment(CallEventType.MATCHED, matched="intent balance", intent="balance")
    assert call_line(matched) == "✓ matched intent balance"
    contains = moment(CallEventType.MATCHED, matched="transcript contains 'welcome'")
    assert call_line(contains) == "✓ matched transcript contains 'welcome'"
    assert call_line(moment(CallEventType.NO_INPUT)) == "IVR: (silence: no input)"
    far_end = moment(CallEventType.HUNG_UP, by="FAR_END", cause="BYE")
    assert call_line(far_end) == "hung up by far end (BYE)"
    transferred = moment(CallEventType.TRANSFERRED, target="sip:agents@example.com")
    assert call_line(transferred) == "↪ transferred to sip:agents@example.com"
    failed = moment(CallEventType.FAILED, sip_status=486, reason="Busy Here")
    assert call_line(failed) == "call failed: 486 Busy Here"
    # A moment a newer server sends: its name, not an error.
    assert call_line(moment("ON_HOLD")) == "on hold"
