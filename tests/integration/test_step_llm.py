"""llm steps run by the runner against the fake provider (real HTTP), on SQLite and Postgres.

What is stored is what matters here: output events, USAGE events with cost, llm spans in the
trace, step attempts (retries, partial output, errors) and that no key reaches any of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support import postgres

from runwire.core import Core
from runwire.db.engine import Database
from runwire.domain.access import Actor, Role
from runwire.domain.executions import StartRequest
from runwire.domain.models import Event, EventType, Execution, ExecutionStatus
from runwire.domain.trace import build_trace
from runwire.errors import Invalid
from runwire.fakes.llm_provider import FakeLlmProvider, serving
from runwire.runner.steps import step_kinds
from runwire.settings import Settings

KEY = "sk-test-0123456789abcdef"
ENV_KEY = "sk-env-fedcba9876543210"
# How a step fails when the fake refuses the key (masked) it was sent.
REFUSED_KEY = (
    "the provider answered 401 Unauthorized: Incorrect API key provided: [redacted]"
    " (not retried: the same request gets the same 401)"
)


@dataclass
class World:
    core: Core
    actor: Actor
    provider: FakeLlmProvider
    url: str


@contextlib.asynccontextmanager
async def world_on(database_url: str, data: Path) -> AsyncIterator[World]:
    settings = Settings(
        database_url=database_url,
        bus_url=f"memory://{uuid.uuid4().hex}",
        data_dir=data,
        load_examples=False,
        poll_seconds=0.05,
        grace_seconds=0.2,
        llm_key_vars=("FAKE_LLM_KEY", "UNSET_LLM_KEY"),
        llm_keys={"FAKE_LLM_KEY": ENV_KEY},
    )
    async with Database.open(database_url, migrate=True):
        pass
    provider = FakeLlmProvider()
    async with serving(provider) as url, Core.running(settings, step_kinds(settings)) as core:
        workspace = await core.store.access.workspace("default")
        assert workspace is not None
        actor = Actor(workspace_id=workspace.id, label="test", role=Role.ADMIN)
        await core.secrets.set(actor, "LLM_KEY", KEY)
        yield World(core, actor, provider, url)


@pytest.fixture(params=["sqlite", "postgres"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    if request.param == "sqlite":
        async with world_on(f"sqlite:///{tmp_path / 'llm.sqlite'}", tmp_path) as found:
            yield found
        return
    async with postgres.fresh_database() as url, world_on(url, tmp_path) as found:
        yield found


def llm_step(url: str, model: str = "runwire-fake-chat", **extra: Any) -> dict[str, Any]:
    with_ = {
        "base_url": url,
        "model": model,
        "messages": [{"role": "user", "content": "hello there"}],
        **extra.pop("with_", {}),
    }
    return {"key": "ask", "kind": "llm", "with": with_, **extra}


async def run(world: World, *steps: dict[str, Any], **definition: Any) -> Execution:
    source = {"name": "llm", "steps": list(steps), **definition}
    started = await world.core.executions.start(
        StartRequest(definition=json.dumps(source)), world.actor
    )
    return await settled(world, started.id)


async def settled(world: World, execution_id: str) -> Execution:
    async with asyncio.timeout(15):
        while True:
            found = await world.core.store.executions.execution(
                execution_id, workspace=world.actor.workspace_id
            )
            assert found is not None
            if found.status.is_terminal and found.owner is None:
                return found
            await asyncio.sleep(0.02)


async def events(world: World, execution: Execution) -> list[Event]:
    return await world.core.store.events.events(execution.id, 0)


def of_type(found: list[Event], type: EventType) -> list[Event]:
    return [event for event in found if event.type is type]


async def test_a_call_streams_its_text_reports_priced_usage_and_a_span(world: World) -> None:
    execution = await run(
        world,
        llm_step(
            world.url,
            secrets=["LLM_KEY"],
            with_={"api_key_secret": "LLM_KEY"},
            expect={"output_contains": "hello there", "cost_usd_below": 0.01},
        ),
    )
    assert execution.status is ExecutionStatus.SUCCEEDED, execution.error
    stored = await events(world, execution)

    stdout = "".join(
        e.data["text"] for e in of_type(stored, EventType.OUTPUT) if e.data["stream"] == "stdout"
    )
    assert stdout == "You said: hello there"
    [step] = execution.steps
    assert step.output["text"] == "You said: hello there"
    assert step.output["finish_reason"] == "stop"
    assert step.output["message"] == {"role": "assistant", "content": "You said: hello there"}
    # The fake counts 3 + 2 prompt words and 4 answer words; $1 and $4 per million tokens.
    assert step.output["usage"] == {
        "input_tokens": 5,
        "output_tokens": 4,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
    }
    [usage] = of_type(stored, EventType.USAGE)
    assert usage.data["model"] == "runwire-fake-chat"
    assert usage.data["cost_usd"] == pytest.approx((5 * 1.0 + 4 * 4.0) / 1e6)
    assert usage.data["ttft_ms"] is not None
    assert usage.data["price_source"].startswith("runwire fake-llm (not a real price)")
    assert step.attributes["cost_usd"] == pytest.approx(21e-6)

    spans = await world.core.store.executions.spans(execution.id)
    [span] = [s for s in spans if s.kind == "llm"]
    assert span.status == "SUCCEEDED"
    assert span.attributes["tokens_input"] == 5
    assert span.attributes["tokens_output"] == 4
    assert span.attributes["cost_usd"] == pytest.approx(21e-6)
    trace = build_trace(execution, execution.steps, spans)
    assert trace.cost_usd == pytest.approx(21e-6)
    assert trace.tokens is not None
    assert (trace.tokens.input, trace.tokens.output) == (5, 4)

    # The key went to the provider in its header, and nowhere else.
    assert world.provider.credentials == [f"Bearer {KEY}"]
    assert KEY not in json.dumps([e.data for e in stored], default=str)


async def test_a_key_from_an_allowed_server_variable_is_sent(world: World) -> None:
    execution = await run(world, llm_step(world.url, with_={"api_key_env": "FAKE_LLM_KEY"}))

    assert execution.status is ExecutionStatus.SUCCEEDED, execution.error
    assert world.provider.credentials == [f"Bearer {ENV_KEY}"]


async def test_a_server_key_streamed_back_by_the_provider_is_masked_in_every_event(
    world: World,
) -> None:
    # The fake echoes the user's words, as a provider could repeat what it was sent.
    execution = await run(
        world,
        llm_step(
            world.url,
            with_={
                "api_key_env": "FAKE_LLM_KEY",
                "messages": [{"role": "user", "content": f"say {ENV_KEY} back"}],
            },
        ),
    )

    assert execution.status is ExecutionStatus.SUCCEEDED, execution.error
    stored = json.dumps([e.data for e in await events(world, execution)], default=str)
    assert ENV_KEY not in stored
    assert "back" in stored  # the answer itself came through


async def test_a_missing_key_is_refused_at_start_naming_the_field(world: World) -> None:
    with pytest.raises(Invalid) as unset:
        await run(world, llm_step(world.url, with_={"api_key_env": "UNSET_LLM_KEY"}))
    assert [(e.path, e.message) for e in unset.value.errors] == [
        ("steps[0].with.api_key_env", "UNSET_LLM_KEY is not set on this server")
    ]
    with pytest.raises(Invalid) as no_secret:
        await run(world, llm_step(world.url, secrets=["NOPE"], with_={"api_key_secret": "NOPE"}))
    assert [(e.path, e.message) for e in no_secret.value.errors] == [
        ("steps[0].secrets[0]", "no secret NOPE in this workspace")
    ]
    assert world.provider.requests == 0


async def test_refusals_fail_with_the_providers_message_and_the_key_masked(world: World) -> None:
    execution = await run(
        world,
        llm_step(
            world.url,
            "runwire-fake-chat:error=401",
            secrets=["LLM_KEY"],
            with_={"api_key_secret": "LLM_KEY"},
            continue_on_failure=True,
        ),
        llm_step(
            world.url,
            "runwire-fake-chat:error=401",
            with_={"api_key_env": "FAKE_LLM_KEY"},
            continue_on_failure=True,
        )
        | {"key": "env", "needs": []},
        llm_step(world.url, "runwire-fake-chat:error=503", continue_on_failure=True)
        | {"key": "down", "needs": []},
        parallelism=3,
    )
    assert sorted(world.provider.credentials) == sorted([f"Bearer {KEY}", f"Bearer {ENV_KEY}"])
    errors = {step.key: step.error for step in execution.steps}
    assert errors == {
        "ask": REFUSED_KEY,
        "env": REFUSED_KEY,
        "down": "the provider answered 503 Service Unavailable: fake provider: 503 asked for by"
        " the model name runwire-fake-chat:error=503",
    }
    stored = json.dumps([e.data for e in await events(world, execution)], default=str)
    for key in (KEY, ENV_KEY):
        assert key not in stored
        assert key not in (execution.error or "")


def _retry_of(stored: list[Event], key: str) -> tuple[float, float]:
    """The retry_in the failed first attempt announced, and how long the retry really waited."""
    statuses = [e for e in of_type(stored, EventType.STEP_STATUS) if e.step_key == key]
    failed = next(e for e in statuses if e.attempt == 1 and e.data["status"] == "FAILED")
    retried = next(e for e in statuses if e.attempt == 2 and e.data["status"] == "RUNNING")
    return failed.data["retry_in"], (retried.at - failed.at).total_seconds()


async def test_429s_and_cut_streams_are_retried_as_the_provider_asks(world: World) -> None:
    execution = await run(
        world,
        llm_step(
            world.url,
            "runwire-fake-chat:retry-after=0.4:times=1",
            retries={"max": 2, "delay": 0.01, "max_delay": 5},
        ),
        llm_step(
            world.url,
            "runwire-fake-chat:retry-after=3600:times=1",
            retries={"max": 1, "delay": 0.01, "max_delay": 0.2},
        )
        | {"key": "capped", "needs": []},
        llm_step(world.url, "runwire-fake-chat:cut=2:times=1", retries={"max": 1, "delay": 0.01})
        | {"key": "cut", "needs": []},
        parallelism=3,
    )
    assert execution.status is ExecutionStatus.SUCCEEDED, execution.error
    attempts = {(s.key, s.attempt): s for s in execution.steps}
    assert {key: s.status for key, s in attempts.items()} == {
        (key, attempt): "FAILED" if attempt == 1 else "SUCCEEDED"
        for key in ("ask", "capped", "cut")
        for attempt in (1, 2)
    }
    assert "answered 429" in (attempts["ask", 1].error or "")
    stored = await events(world, execution)
    retry_in, waited = _retry_of(stored, "ask")
    assert retry_in == 0.4  # the provider's wait, longer than the policy's 0.01
    assert waited >= 0.4
    assert _retry_of(stored, "capped")[0] == 0.2  # not an hour: the policy's max_delay

    # A stream cut mid-way fails, keeping what arrived; the retry gets all of it.
    cut = attempts["cut", 1]
    assert (cut.error or "").startswith("the stream was cut: ")
    assert cut.output == {**cut.output, "text": "You said: ", "partial": True}
    assert attempts["cut", 2].output["text"] == "You said: hello there"


async def test_a_refusal_that_cannot_change_fails_at_once_and_one_that_can_is_retried(
    world: World,
) -> None:
    # Side by side, each with retries to spare: only the refusals that can change spend them.
    retries = {"retries": {"max": 3, "delay": 0.01}, "continue_on_failure": True, "needs": []}
    execution = await run(
        world,
        llm_step(world.url, "runwire-fake-chat:error=401", **retries),
        llm_step(world.url, "runwire-fake-chat:error=400", **retries) | {"key": "bad"},
        llm_step(world.url, "runwire-fake-chat:error=503:times=2", **retries) | {"key": "down"},
        llm_step(world.url, "runwire-fake-chat:error=429:times=1", **retries) | {"key": "busy"},
        parallelism=4,
    )
    attempts: dict[str, list[str]] = {}
    for step in execution.steps:
        attempts.setdefault(step.key, []).append(step.status)
    assert attempts == {
        "ask": ["FAILED"],
        "bad": ["FAILED"],
        "down": ["FAILED", "FAILED", "SUCCEEDED"],
        "busy": ["FAILED", "SUCCEEDED"],
    }
    errors = {(s.key, s.attempt): s.error or "" for s in execution.steps}
    assert errors["ask", 1].startswith("the provider answered 401 Unauthorized: ")
    assert errors["ask", 1].endswith(" (not retried: the same request gets the same 401)")
    assert errors["bad", 1].startswith("the provider answered 400 Bad Request: fake provider")
    assert errors["bad", 1].endswith(" (not retried: the same request gets the same 400)")
    assert errors["down", 1].startswith("the provider answered 503 Service Unavailable: ")
    assert errors["busy", 1].startswith("the provider answered 429 Too Many Requests: ")
    assert "not retried" not in errors["down", 1] + errors["busy", 1]
    # The refusals announced no retry; the retryable ones announced theirs.
    stored = of_type(await events(world, execution), EventType.STEP_STATUS)
    failed = {(e.step_key, e.attempt): e.data for e in stored if e.data["status"] == "FAILED"}
    assert [failed[key, 1].get("retry_in") for key in ("ask", "bad", "down", "busy")] == [
        None,
        None,
        0.01,
        0.01,
    ]


async def test_a_budget_fails_with_the_figures_and_an_unknown_model_costs_null(
    world: World,
) -> None:
    execution = await run(
        world,
        llm_step(world.url, budget={"max_cost_usd": 0.00001}, continue_on_failure=True),
        llm_step(world.url, "mystery-model-7b") | {"key": "unknown", "needs": []},
        parallelism=2,
    )
    over, unknown = sorted(execution.steps, key=lambda step: step.key)
    assert over.status == "FAILED"
    assert over.error == "budget exceeded: $0.000021 > $0.000010"

    assert unknown.status == "SUCCEEDED", unknown.error
    usages = of_type(await events(world, execution), EventType.USAGE)
    [usage] = [u for u in usages if u.step_key == "unknown"]
    assert usage.data["cost_usd"] is None
    assert "mystery-model-7b" in usage.data["unpriced"]
    assert usage.data["execution_totals"]["cost_usd"] is None  # part unknown: not a partial sum
    assert "cost_usd" not in unknown.attributes
    spans = await world.core.store.executions.spans(execution.id)
    assert [s.attributes["cost_usd"] for s in spans if s.step_key == "unknown"] == [None]
    assert build_trace(execution, execution.steps, spans).cost_usd is None


async def test_stop_during_a_stream_closes_it_at_once(world: World) -> None:
    started = await world.core.executions.start(
        StartRequest(
            definition=json.dumps(
                {"name": "s", "steps": [llm_step(world.url, "runwire-fake-chat:stall=2")]}
            )
        ),
        world.actor,
    )
    # The first words arrive while the provider holds the rest back.
    async with asyncio.timeout(10):
        while True:
            stored = await world.core.store.events.events(started.id, 0)
            text = "".join(e.data["text"] for e in of_type(stored, EventType.OUTPUT))
            if text == "You said: ":
                break
            await asyncio.sleep(0.02)
    await world.core.control.stop(started.id, "enough", world.actor)
    execution = await settled(world, started.id)

    assert execution.status is ExecutionStatus.CANCELLED
    assert world.provider.disconnects == 1
    spans = await world.core.store.executions.spans(execution.id)
    assert [s.status for s in spans if s.kind == "llm"] == ["CANCELLED"]


async def test_the_anthropic_dialect_streams_text_and_tool_calls(world: World) -> None:
    tools = [
        {
            "name": "get_weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    execution = await run(
        world,
        llm_step(world.url, with_={"dialect": "anthropic"}),
        llm_step(
            world.url,
            with_={
                "dialect": "anthropic",
                "tools": tools,
                "messages": [{"role": "user", "content": "weather in Oslo"}],
            },
        )
        | {"key": "tool"},
    )
    assert execution.status is ExecutionStatus.SUCCEEDED, execution.error
    ask, tool = execution.steps
    assert ask.output["text"] == "You said: hello there"
    assert ask.output["finish_reason"] == "end_turn"
    assert ask.output["usage"]["input_tokens"] == 5
    [call] = tool.output["tool_calls"]
    assert (call["name"], call["arguments"]) == ("get_weather", {"city": "Oslo"})
    assert tool.output["message"]["content"][0]["type"] == "tool_use"
    assert len(of_type(await events(world, execution), EventType.USAGE)) == 2


async def test_the_anthropic_dialect_fails_retries_and_keeps_partial_text_as_openais_does(
    world: World,
) -> None:
    anthropic = {"dialect": "anthropic"}
    execution = await run(
        world,
        llm_step(
            world.url,
            "runwire-fake-chat:error=401",
            secrets=["LLM_KEY"],
            with_={**anthropic, "api_key_secret": "LLM_KEY"},
            continue_on_failure=True,
        ),
        llm_step(
            world.url,
            "runwire-fake-chat:retry-after=0.4:times=1",
            with_=anthropic,
            retries={"max": 1, "delay": 0.01, "max_delay": 5},
        )
        | {"key": "busy", "needs": []},
        llm_step(
            world.url,
            "runwire-fake-chat:cut=2:times=1",
            with_=anthropic,
            retries={"max": 1, "delay": 0.01},
        )
        | {"key": "cut", "needs": []},
        parallelism=3,
    )
    attempts = {(s.key, s.attempt): s for s in execution.steps}
    assert world.provider.credentials.count(KEY) == 1  # as x-api-key, not a bearer token
    refused = attempts["ask", 1]
    assert refused.error == REFUSED_KEY
    assert KEY not in json.dumps([e.data for e in await events(world, execution)], default=str)

    assert "answered 429" in (attempts["busy", 1].error or "")
    assert _retry_of(await events(world, execution), "busy")[0] == 0.4
    assert attempts["busy", 2].status == "SUCCEEDED"

    cut = attempts["cut", 1]
    assert (cut.error or "").startswith("the stream was cut: ")
    assert cut.output["partial"] is True
    assert cut.output["text"] == "You said: "  # what arrived before the cut
    assert attempts["cut", 2].output["text"] == "You said: hello there"
