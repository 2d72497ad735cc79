"""The `llm` step: one streamed model call to an OpenAI-compatible (or Anthropic) endpoint.

Text deltas become the step's stdout as they arrive; the step's output is the final message
(text, tool calls, finish reason, model, usage) for later steps; usage is priced and reported,
and the call is a span. The API key comes from a workspace secret the step lists or from a
server variable an operator allowed (RUNWIRE_LLM_KEY_VARS); it is sent in a header only, and
masked in whatever a provider says back.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from runwire.domain.agents import Usage
from runwire.domain.clock import utc_now
from runwire.domain.models import OutputStream
from runwire.runner import spans
from runwire.runner.steps.base import Observed, StepContext, StepResult
from runwire.runner.steps.llm_wire import (
    ANTHROPIC,
    DIALECTS,
    OPENAI,
    ProviderError,
    Reply,
    SseParser,
    assembler,
    error_message,
)
from runwire.runner.steps.params import Fields, finite_number, is_template
from runwire.scenarios.definition import SECRET_NAME, SECRET_NAME_RULE

ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_MAX_TOKENS = 1024  # the Messages API requires max_tokens; OpenAI's has a default
ERROR_BODY_BYTES = 64 * 1024
REDACTED = "[redacted]"
# The 4xx worth another attempt: a timeout, a conflict, too early, too many requests. Any other
# 4xx (bad request, bad key, no access, no such model, …) is refused again as it is sent, so it
# fails at once and spends no retries and no waiting; every 5xx may pass on another try.
RETRYABLE_4XX = frozenset({408, 409, 425, 429})

# Sampling parameters passed through as written: name -> what each must be.
_NUMBERS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
_INTEGERS = ("max_tokens", "seed", "top_k")
_FIELDS = {
    "base_url",
    "model",
    "messages",
    "system",
    "dialect",
    "stop",
    "tools",
    "tool_choice",
    "api_key_secret",
    "api_key_env",
    "timeout",
    "extra_body",
    *_NUMBERS,
    *_INTEGERS,
}
_OWN_BODY_FIELDS = frozenset({"model", "messages", "stream", "stream_options", "system", "tools"})


@dataclass(frozen=True, slots=True)
class LlmParams:
    """One call; `sampling` holds the sampling parameters given, `extra_body` provider options."""

    base_url: str
    model: str
    messages: Any
    dialect: str = OPENAI
    system: str | None = None
    sampling: Mapping[str, Any] | None = None
    tools: Any = None
    tool_choice: Any = None
    api_key_secret: str | None = None
    api_key_env: str | None = None
    timeout: float | str = 300.0
    extra_body: Mapping[str, Any] | None = None


class LlmStep:
    """Stream one chat completion; fail with the provider's own message when it refuses."""

    name = "llm"
    runs_processes = False  # who may start it inline: see ExecutionService.admit

    def __init__(
        self, key_vars: tuple[str, ...] = (), keys: Mapping[str, str] | None = None
    ) -> None:
        # The server variables definitions may name (RUNWIRE_LLM_KEY_VARS), and those set.
        self._key_vars = key_vars
        self._keys = dict(keys or {})

    def idempotent(self, params: LlmParams) -> bool:
        return True  # a model call changes nothing; running it again only costs again

    def secrets_used(self, params: LlmParams) -> tuple[tuple[str, str], ...]:
        """(field, secret) pairs the step's `secrets:` must list."""
        if params.api_key_secret is None:
            return ()
        return (("api_key_secret", params.api_key_secret),)

    def parse(self, params: Any, path: str) -> LlmParams:
        fields = Fields(params, path, _FIELDS)
        fields.require("base_url", "model", "messages")
        base_url = fields.string("base_url")
        if base_url is not None and not is_template(base_url):
            if not _is_http_url(base_url):
                fields.error(
                    "base_url", "expected an http or https URL, e.g. http://127.0.0.1:8089/v1"
                )
            elif httpx.URL(base_url).query:
                # A query may carry a key, and errors and logs show the URL: none is sent.
                fields.error(
                    "base_url",
                    "must not have a query (?...); for Azure OpenAI use its v1 API,"
                    " https://RESOURCE.openai.azure.com/openai/v1, which needs no api-version",
                )
        model = fields.string("model")
        if model is not None and not model.strip():
            fields.error("model", "must not be empty")
        dialect = fields.string("dialect") or OPENAI
        if dialect not in DIALECTS:
            fields.error("dialect", f"expected one of: {', '.join(DIALECTS)}")
        messages = fields.values.get("messages")
        _check_messages(fields, messages)
        system = fields.string("system")
        sampling = _sampling(fields)
        tools = fields.values.get("tools")
        if tools is not None and not is_template(tools) and not _is_list_of_mappings(tools):
            fields.error("tools", "expected a list of tool definitions")
        tool_choice = fields.values.get("tool_choice")
        if tool_choice is not None and not isinstance(tool_choice, str | Mapping):
            fields.error("tool_choice", 'expected "auto", "none", "required" or a mapping')
        extra_body = fields.values.get("extra_body")
        if extra_body is not None:
            if not isinstance(extra_body, Mapping):
                fields.error("extra_body", "expected a mapping")
                extra_body = None
            elif taken := sorted(_OWN_BODY_FIELDS & set(extra_body)):
                fields.error("extra_body", f"set by the step itself: {', '.join(taken)}")
        secret, env = self._key_fields(fields)
        timeout = fields.number("timeout", 300.0, positive=True)
        fields.check()
        return LlmParams(
            base_url=base_url or "",
            model=model or "",
            messages=messages,
            dialect=dialect,
            system=system,
            sampling=sampling or None,
            tools=tools,
            tool_choice=tool_choice,
            api_key_secret=secret,
            api_key_env=env,
            timeout=timeout,
            extra_body=extra_body,
        )

    def _key_fields(self, fields: Fields) -> tuple[str | None, str | None]:
        secret = fields.string("api_key_secret")
        env = fields.string("api_key_env")
        if secret is not None and env is not None:
            fields.error("api_key_env", "not allowed together with api_key_secret")
        if secret is not None and not SECRET_NAME.fullmatch(secret):
            # A literal name, never a template: which key goes where is the author's choice.
            fields.error("api_key_secret", f"a secret name is {SECRET_NAME_RULE}")
        if env is not None:
            # Only names: an error never shows a value, and names what may be used instead.
            if env not in self._key_vars:
                allowed = ", ".join(self._key_vars) or "none"
                fields.error(
                    "api_key_env",
                    f"{env} is not a variable this server lets steps use"
                    f" (RUNWIRE_LLM_KEY_VARS allows: {allowed})",
                )
            elif env not in self._keys:
                fields.error("api_key_env", f"{env} is not set on this server")
        return secret, env

    async def run(self, params: LlmParams, context: StepContext) -> StepResult:
        if isinstance(params.timeout, str):
            return StepResult(error="timeout is an unrendered template")
        key = None
        if params.api_key_secret is not None:
            key = context.secrets.get(params.api_key_secret)
            if key is None:
                return StepResult(
                    error=f"with.api_key_secret: secret {params.api_key_secret} was not given"
                    " to the step (list it in the step's secrets)"
                )
        elif params.api_key_env is not None:
            key = self._keys.get(params.api_key_env)
            if key is None:
                return StepResult(error=f"with.api_key_env: {params.api_key_env} is not set")
        try:
            url, headers, body = request_of(params, key)
        except ValueError as error:
            return StepResult(error=str(error))
        return await _Call(params, context, key).run(url, headers, body)


class _Call:
    """One request and its stream, reported as it goes."""

    def __init__(self, params: LlmParams, context: StepContext, key: str | None) -> None:
        self._params = params
        self._context = context
        self._key = key
        self._assembler = assembler(params.dialect)
        self._started_at = utc_now()
        self._started = time.perf_counter()
        self._ttft_ms: float | None = None

    def _ms(self) -> float:
        return round((time.perf_counter() - self._started) * 1000, 2)

    def _redact(self, text: str) -> str:
        return text.replace(self._key, REDACTED) if self._key else text

    async def run(self, url: str, headers: dict[str, str], body: dict[str, Any]) -> StepResult:
        params = self._params
        try:
            # One total deadline: httpx's own timeouts apply to each phase separately.
            async with (
                asyncio.timeout(params.timeout),  # type: ignore[arg-type]
                httpx.AsyncClient(timeout=None) as client,
                client.stream("POST", url, headers=headers, json=body) as response,
            ):
                if response.is_error:
                    return await self._refused(response)
                await self._read(response)
        except asyncio.CancelledError:
            # Stopped (or over budget): leaving the block above closed the connection already.
            self._span(spans.CANCELLED, {"error": "stopped"})
            raise
        except TimeoutError:
            return self._failed(f"timed out after {params.timeout:g} s")
        except httpx.ConnectError as error:
            return self._failed(f"cannot connect to {_origin(url)}: {self._redact(str(error))}")
        except ProviderError as error:
            return self._failed(f"the provider reported an error: {self._redact(str(error))}")
        except httpx.HTTPError as error:
            cut = f"{type(error).__name__}: {self._redact(str(error))}"
            return self._failed(f"the stream was cut: {cut}")
        reply = self._assembler.reply()
        if not self._assembler.done and reply.finish_reason is None:
            return self._failed("the stream ended before the provider finished its reply")
        return self._finished(reply)

    async def _refused(self, response: httpx.Response) -> StepResult:
        """A 4xx or 5xx: the provider's own message; when to try again if it says."""
        raw = bytearray()
        async for chunk in response.aiter_bytes():
            raw += chunk[: ERROR_BODY_BYTES - len(raw)]
        message = self._redact(error_message(raw.decode("utf-8", errors="replace")))
        status = response.status_code
        retry_after = None
        if status == 429 or status >= 500:
            retry_after = retry_after_seconds(response.headers.get("retry-after"))
        retryable = status >= 500 or status in RETRYABLE_4XX
        answered = f"{status} {httpx.codes.get_reason_phrase(status)}".rstrip()
        error = f"the provider answered {answered}: {message}"
        if not retryable:
            error += f" (not retried: the same request gets the same {status})"
        self._context.output(OutputStream.LOG, f"POST {_origin(str(response.url))} → {status}")
        self._span(spans.FAILED, {"status": status, "error": error})
        return StepResult(error=error, retry_after=retry_after, retryable=retryable)

    async def _read(self, response: httpx.Response) -> None:
        parser = SseParser()
        async for line in response.aiter_lines():
            event = parser.feed(line)
            if event is None:
                continue
            text = self._assembler.feed(event)
            if text:
                if self._ttft_ms is None:
                    self._ttft_ms = self._ms()
                self._context.output(OutputStream.STDOUT, text)
            if self._assembler.done:
                return
            if self._context.backlogged():
                await self._context.room()  # the socket's buffer holds the provider back
        if (event := parser.end()) is not None:
            self._assembler.feed(event)

    def _failed(self, error: str) -> StepResult:
        """The call could not complete: whatever streamed so far is kept as the output."""
        reply = self._assembler.reply()
        self._span(spans.FAILED, {"error": error})
        output = {**reply.as_output(), "partial": True} if reply.text or reply.tool_calls else None
        return StepResult(output=output, error=error)

    def _finished(self, reply: Reply) -> StepResult:
        duration_ms = self._ms()
        model = reply.model or self._params.model
        attributes: dict[str, Any] = {"model": model, "ttft_ms": self._ttft_ms}
        if reply.input_tokens is not None or reply.output_tokens is not None:
            priced = self._context.usage(
                Usage(
                    model=model,
                    input=reply.input_tokens or 0,
                    output=reply.output_tokens or 0,
                    cached=reply.cached_tokens,
                    reasoning=reply.reasoning_tokens,
                    ttft_ms=self._ttft_ms,
                    duration_ms=duration_ms,
                )
            )
            attributes.update(
                tokens_input=reply.input_tokens or 0,
                tokens_output=reply.output_tokens or 0,
                cost_usd=priced.cost_usd,
            )
            if priced.unpriced is not None:
                attributes["unpriced"] = priced.unpriced
        else:
            self._context.output(OutputStream.LOG, "the provider reported no token usage")
        attributes["finish_reason"] = reply.finish_reason
        self._span(spans.SUCCEEDED, attributes)
        self._context.output(
            OutputStream.LOG,
            f"{model}: {reply.finish_reason or 'done'}, {len(reply.tool_calls)} tool call(s)"
            f" in {duration_ms:.0f} ms",
        )
        return StepResult(
            output=reply.as_output(),
            attributes={"latency_ms": duration_ms, "model": model},
            observed=Observed(latency_ms=duration_ms, text=reply.text),
        )

    def _span(self, status: str, attributes: Mapping[str, Any]) -> None:
        self._context.span(
            f"{self._params.dialect} {self._params.model}",
            "llm",
            self._started_at,
            utc_now(),
            status,
            {"model": self._params.model, "ttft_ms": self._ttft_ms, **attributes},
        )


# ---- the request ---------------------------------------------------------------------------


def request_of(params: LlmParams, key: str | None) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL, headers and JSON body of the call (ValueError naming a field that did not render)."""
    for name, value in (params.sampling or {}).items():
        if isinstance(value, str) and name != "stop":
            raise ValueError(f"with.{name} is an unrendered template")
    messages = _messages(params.messages)
    base = params.base_url.rstrip("/")
    headers = {"accept": "text/event-stream"}
    body: dict[str, Any] = {"model": params.model, **(params.extra_body or {})}
    body.update(params.sampling or {})
    if params.dialect == ANTHROPIC:
        url = f"{base}/messages"
        headers["anthropic-version"] = ANTHROPIC_VERSION
        if key is not None:
            headers["x-api-key"] = key
        system = [m["content"] for m in messages if m.get("role") == "system"]
        if params.system is not None:
            system.insert(0, params.system)
        body["messages"] = [m for m in messages if m.get("role") != "system"]
        if system:
            body["system"] = "\n\n".join(str(part) for part in system)
        body.setdefault("max_tokens", ANTHROPIC_MAX_TOKENS)
        body.pop("seed", None)
        if params.tools:
            body["tools"] = [_anthropic_tool(tool) for tool in _list(params.tools, "tools")]
        if params.tool_choice is not None:
            body["tool_choice"] = _anthropic_tool_choice(params.tool_choice)
        body["stream"] = True
        return url, headers, body
    url = f"{base}/chat/completions"
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    if params.system is not None:
        messages.insert(0, {"role": "system", "content": params.system})
    body["messages"] = messages
    if params.tools:
        body["tools"] = _list(params.tools, "tools")
    if params.tool_choice is not None:
        body["tool_choice"] = params.tool_choice
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    return url, headers, body


def _messages(raw: Any) -> list[dict[str, Any]]:
    messages = []
    for i, message in enumerate(_list(raw, "messages")):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise ValueError(f"with.messages[{i}]: expected a mapping with a role")
        message = dict(message)
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            # An upstream step's JSON output as a tool result: providers take text.
            message["content"] = json.dumps(content)
        messages.append(message)
    return messages


def _list(raw: Any, name: str) -> list[Any]:
    if not isinstance(raw, list):
        raise ValueError(f"with.{name}: expected a list, got {type(raw).__name__}")
    return raw


def _anthropic_tool(tool: Any) -> Any:
    """An OpenAI function definition as an Anthropic tool (one already in that shape as is)."""
    function = tool.get("function") if isinstance(tool, Mapping) else None
    if not isinstance(function, Mapping):
        return tool
    converted = {"name": function.get("name"), "input_schema": function.get("parameters", {})}
    if "description" in function:
        converted["description"] = function["description"]
    return converted


def _anthropic_tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        return {"type": "tool", "name": choice["function"].get("name")}
    return choice


# ---- checks --------------------------------------------------------------------------------


def _check_messages(fields: Fields, messages: Any) -> None:
    if messages is None or is_template(messages):
        return  # required is checked apart; a template renders to the list at run time
    if not isinstance(messages, list) or not messages:
        fields.error("messages", "expected a non-empty list of {role, content} messages")
        return
    for i, message in enumerate(messages):
        if is_template(message):
            continue  # e.g. "{{ steps.plan.output.message }}"
        if not isinstance(message, Mapping):
            fields.error(f"messages[{i}]", "expected a mapping with role and content")
        elif not isinstance(message.get("role"), str):
            fields.error(f"messages[{i}].role", "required: system, user, assistant or tool")


def _sampling(fields: Fields) -> dict[str, Any]:
    sampling: dict[str, Any] = {}
    for name in _NUMBERS:
        if fields.has(name):
            value = fields.values[name]
            if not is_template(value) and finite_number(value) is None:
                fields.error(name, "expected a number")
            sampling[name] = value
    for name in _INTEGERS:
        if fields.has(name):
            value = fields.values[name]
            if not is_template(value) and (isinstance(value, bool) or not isinstance(value, int)):
                fields.error(name, "expected a whole number")
            elif name != "seed" and isinstance(value, int) and value <= 0:
                fields.error(name, "must be more than 0")
            sampling[name] = value
    if fields.has("stop"):
        stop = fields.values["stop"]
        if not isinstance(stop, str) and not (
            isinstance(stop, list) and all(isinstance(item, str) for item in stop)
        ):
            fields.error("stop", "expected a string or a list of strings")
        sampling["stop"] = stop
    return sampling


def _is_list_of_mappings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, Mapping) for item in value)


def _is_http_url(url: str) -> bool:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


def _origin(url: str) -> str:
    """scheme://host:port/path of a URL: never its query, which may carry a key."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "the provider"
    return f"{parsed.scheme}://{parsed.netloc.decode()}{parsed.path}"


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now, None if absent."""
    if value is None:
        return None
    number = finite_number(_float(value.strip()))
    if number is not None:
        return max(0.0, number)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - utc_now()).total_seconds())


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
