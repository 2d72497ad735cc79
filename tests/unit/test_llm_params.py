"""The llm step's `with:` checks, where its key may come from, and the request it makes."""

from __future__ import annotations

from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from runwire.domain.clock import utc_now
from runwire.errors import InvalidDefinition
from runwire.runner.steps import STEP_KINDS, LlmStep, step_kinds
from runwire.runner.steps.llm import request_of, retry_after_seconds
from runwire.scenarios.definition import parse_definition
from runwire.settings import Settings

BASE = {
    "base_url": "http://127.0.0.1:8089/v1",
    "model": "runwire-fake-chat",
    "messages": [{"role": "user", "content": "hi"}],
}


def errors_of(step: LlmStep, params: Any) -> dict[str, str]:
    with pytest.raises(InvalidDefinition) as caught:
        step.parse(params, "w")
    return {error.path: error.message for error in caught.value.errors}


def test_required_fields_and_wrong_types_are_named() -> None:
    found = errors_of(
        LlmStep(),
        {
            "messages": [{"content": "no role"}, "plain"],
            "temperature": "hot",
            "max_tokens": 0,
            "seed": 1.5,
            "stop": [1],
            "dialect": "cohere",
            "tools": {"a": 1},
            "extra_body": {"stream": False},
            "surprise": 1,
        },
    )
    assert set(found) == {
        "w.base_url",
        "w.model",
        "w.messages[0].role",
        "w.messages[1]",
        "w.temperature",
        "w.max_tokens",
        "w.seed",
        "w.stop",
        "w.dialect",
        "w.tools",
        "w.extra_body",
        "w.surprise",
    }
    assert found["w.extra_body"] == "set by the step itself: stream"


def test_a_base_url_with_a_query_is_refused_saying_why() -> None:
    # Azure's deployment URLs carry ?api-version=...; a query may also carry a key.
    azure = "https://r.openai.azure.com/openai/deployments/d?api-version=2024-10-21"
    found = errors_of(LlmStep(), {**BASE, "base_url": azure})
    assert found == {
        "w.base_url": "must not have a query (?...); for Azure OpenAI use its v1 API,"
        " https://RESOURCE.openai.azure.com/openai/v1, which needs no api-version"
    }
    assert errors_of(LlmStep(), {**BASE, "base_url": "ftp://h/v1"}) == {
        "w.base_url": "expected an http or https URL, e.g. http://127.0.0.1:8089/v1"
    }


def test_templates_are_left_for_the_run() -> None:
    params = STEP_KINDS["llm"].parse(
        {
            **BASE,
            "base_url": "{{ inputs.url }}",
            "messages": "{{ inputs.m }}",
            "temperature": "{{ inputs.t }}",
        },
        "w",
    )
    assert params.base_url == "{{ inputs.url }}"
    with pytest.raises(ValueError, match=r"with.temperature is an unrendered template"):
        request_of(params, None)


def test_a_key_variable_must_be_allowed_by_the_operator_and_set() -> None:
    step = LlmStep(("OPENAI_API_KEY", "GROQ_API_KEY"), {"OPENAI_API_KEY": "sk-live-123"})

    assert (
        step.parse({**BASE, "api_key_env": "OPENAI_API_KEY"}, "w").api_key_env == "OPENAI_API_KEY"
    )
    refused = errors_of(step, {**BASE, "api_key_env": "RUNWIRE_DATABASE_URL"})
    assert refused == {
        "w.api_key_env": "RUNWIRE_DATABASE_URL is not a variable this server lets steps use"
        " (RUNWIRE_LLM_KEY_VARS allows: OPENAI_API_KEY, GROQ_API_KEY)"
    }
    assert errors_of(step, {**BASE, "api_key_env": "GROQ_API_KEY"}) == {
        "w.api_key_env": "GROQ_API_KEY is not set on this server"
    }
    both = errors_of(step, {**BASE, "api_key_env": "OPENAI_API_KEY", "api_key_secret": "KEY"})
    assert both == {"w.api_key_env": "not allowed together with api_key_secret"}


def test_settings_read_only_the_allowed_key_variables() -> None:
    environ = {
        "RUNWIRE_LLM_KEY_VARS": "OPENAI_API_KEY, UNSET_KEY",
        "OPENAI_API_KEY": "sk-live-123",
        "OTHER": "x",
    }
    settings = Settings.from_env(environ)

    assert settings.llm_key_vars == ("OPENAI_API_KEY", "UNSET_KEY")
    assert dict(settings.llm_keys) == {"OPENAI_API_KEY": "sk-live-123"}
    assert "sk-live-123" not in repr(settings)
    llm = step_kinds(settings)["llm"]
    assert llm.parse({**BASE, "api_key_env": "OPENAI_API_KEY"}, "w").api_key_env
    with pytest.raises(ValueError, match="RUNWIRE_LLM_KEY_VARS: server settings stay private"):
        Settings.from_env({"RUNWIRE_LLM_KEY_VARS": "RUNWIRE_DATABASE_URL"})


def test_a_key_secret_must_be_listed_in_the_steps_secrets() -> None:
    step = {"key": "ask", "kind": "llm", "with": {**BASE, "api_key_secret": "OPENAI_KEY"}}

    with pytest.raises(InvalidDefinition) as caught:
        parse_definition({"name": "x", "steps": [step]}, STEP_KINDS)
    assert [(e.path, e.message) for e in caught.value.errors] == [
        ("steps[0].with.api_key_secret", "list OPENAI_KEY in steps[0].secrets too")
    ]
    listed = parse_definition(
        {"name": "x", "steps": [{**step, "secrets": ["OPENAI_KEY"]}]}, STEP_KINDS
    )
    assert listed.steps[0].secrets == ("OPENAI_KEY",)


def test_an_openai_request_streams_with_usage_and_sends_the_key_in_a_header_only() -> None:
    params = STEP_KINDS["llm"].parse(
        {
            **BASE,
            "base_url": "http://h/v1/",
            "system": "Be brief.",
            "temperature": 0,
            "seed": 7,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "tool_choice": "required",
            "extra_body": {"reasoning_effort": "low"},
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "tool", "tool_call_id": "c", "content": {"forecast": "sunny"}},
            ],
        },
        "w",
    )
    url, headers, body = request_of(params, "sk-secret")

    assert url == "http://h/v1/chat/completions"
    assert headers["authorization"] == "Bearer sk-secret"
    assert "sk-secret" not in str(body)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    # A JSON tool result (an http step's parsed body) goes as text, as providers take it.
    assert body["messages"][2]["content"] == '{"forecast": "sunny"}'
    assert (body["temperature"], body["seed"], body["reasoning_effort"]) == (0, 7, "low")
    assert body["tool_choice"] == "required"


def test_an_anthropic_request_hoists_system_and_converts_tools() -> None:
    params = STEP_KINDS["llm"].parse(
        {
            **BASE,
            "dialect": "anthropic",
            "seed": 1,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hi"},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {"name": "f", "description": "d", "parameters": {"type": "object"}},
                }
            ],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
        },
        "w",
    )
    url, headers, body = request_of(params, "sk-ant")

    assert url == "http://127.0.0.1:8089/v1/messages"
    assert headers["x-api-key"] == "sk-ant"
    assert "authorization" not in headers
    assert body["system"] == "Be brief."
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["max_tokens"] == 1024
    assert "seed" not in body
    assert body["tools"] == [{"name": "f", "input_schema": {"type": "object"}, "description": "d"}]
    assert body["tool_choice"] == {"type": "tool", "name": "f"}


def test_retry_after_is_seconds_or_an_http_date() -> None:
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("2.5") == 2.5
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds("soon") is None
    later = retry_after_seconds(format_datetime(utc_now() + timedelta(seconds=30), usegmt=True))
    assert later is not None
    assert 25 < later <= 30
