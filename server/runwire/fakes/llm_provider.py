"""A fake LLM provider for offline tests and examples: OpenAI- and Anthropic-compatible HTTP.

Not a model. It answers deterministically, so tests and examples can assert on what it says:

- a plain conversation: "You said: <the last user message>";
- tools offered (and tool_choice not "none") and the last message from the user: a call of the
  first tool whose name the user message mentions (else the first tool), its first string
  parameter set to the last word of the user message (other parameters get placeholder values);
- the last message a tool result: "The <tool> tool returned: <its content>".

It speaks the real wire formats: `POST /v1/chat/completions` (SSE `data: {chunk}` lines ending in
`data: [DONE]`, usage in a last chunk when `stream_options.include_usage` asks, or one JSON
object when not streaming), `POST /v1/messages` (Anthropic's named events), `GET /v1/models`, and
`GET /tools/weather?city=…`, a small tool endpoint for the agent example.

Faults are asked for in the model name, after a colon, several joined by colons:
`runwire-fake-chat:error=503:retry-after=1:times=2`.

- `error=<status>`: answer that status with the dialect's error body (a 401 quotes the key sent
  back, as real providers do, so tests see that the step masks it);
- `retry-after=<seconds>`: send Retry-After (with a 429 unless `error=` says otherwise);
- `times=<n>`: the fault holds for the first n requests naming this exact model, then it answers;
- `cut=<n>`: drop the connection after n content chunks (mid-stream);
- `stall=<n>`: after n content chunks, send nothing more until the client leaves;
- `delay=<ms>`: wait before answering;
- `tps=<n>`: stream n chunks (tokens) per second (default: the server's --tokens-per-second);
- `words=<n>`: answer n words ("word1 word2 …") instead of echoing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_PORT = 8089
MODELS = ("runwire-fake-chat", "runwire-fake-agent")
_WORD = re.compile(r"\S+\s*")


class _Dropped(Exception):
    """Raised to make the server drop the connection mid-response (the `cut=` fault)."""


@dataclass(frozen=True, slots=True)
class Faults:
    """What a model name asks the fake to do wrong."""

    error: int | None = None
    retry_after: str | None = None
    times: int | None = None
    cut: int | None = None
    stall: int | None = None
    delay_ms: float = 0.0
    tokens_per_second: float | None = None
    words: int | None = None

    @classmethod
    def of(cls, model: str) -> Faults:
        options: dict[str, str] = {}
        for part in model.split(":")[1:]:
            name, _, value = part.partition("=")
            options[name.strip()] = value.strip()

        def number(name: str) -> float | None:
            try:
                return float(options[name]) if name in options else None
            except ValueError:
                return None

        def whole(name: str) -> int | None:
            value = number(name)
            return None if value is None else int(value)

        error = whole("error")
        retry_after = options.get("retry-after")
        if retry_after is not None and error is None:
            error = 429
        return cls(
            error=error,
            retry_after=retry_after,
            times=whole("times"),
            cut=whole("cut"),
            stall=whole("stall"),
            delay_ms=number("delay") or 0.0,
            tokens_per_second=number("tps"),
            words=whole("words"),
        )


@dataclass(frozen=True, slots=True)
class Answer:
    """What the fake says: text pieces, or one tool call (name, arguments as JSON text)."""

    pieces: tuple[str, ...] = ()
    tool: str | None = None
    arguments: str = ""
    call_id: str = ""
    finish: str = "stop"


@dataclass
class FakeLlmProvider:
    """The ASGI app. Counters let tests see what reached it and who hung up."""

    tokens_per_second: float | None = None
    requests: int = 0
    # Streams the client closed before the fake finished sending (a stop, a timeout).
    disconnects: int = 0
    # The credentials requests carried (Authorization / x-api-key), for tests of key handling.
    credentials: list[str] = field(default_factory=list)
    _seen: dict[str, int] = field(default_factory=dict)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        body = await _body(receive)
        method, path = scope["method"], scope["path"].rstrip("/")
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if path == "/v1/models" and method == "GET":
            data = [{"id": m, "object": "model", "owned_by": "runwire-fake"} for m in MODELS]
            await _json(send, 200, {"object": "list", "data": data})
        elif path == "/tools/weather" and method == "GET":
            query = parse_qs(scope.get("query_string", b"").decode())
            await _json(send, 200, weather(query.get("city", ["nowhere"])[0]))
        elif path in ("/v1/chat/completions", "/v1/messages") and method == "POST":
            anthropic = path == "/v1/messages"
            for name in ("authorization", "x-api-key"):
                if name in headers:
                    self.credentials.append(headers[name])
            try:
                request = json.loads(body)
                if not isinstance(request, dict) or not isinstance(request.get("model"), str):
                    raise ValueError("model is required")
            except ValueError as error:
                await _error(send, 400, f"invalid request: {error}", anthropic)
                return
            key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix(
                "Bearer "
            )
            await self._complete(request, anthropic, key, receive, send)
        else:
            await _error(send, 404, f"no route {method} {path}", path.startswith("/v1/messages"))

    async def _complete(
        self, request: dict[str, Any], anthropic: bool, key: str, receive: Receive, send: Send
    ) -> None:
        self.requests += 1
        model: str = request["model"]
        faults = Faults.of(model)
        seen = self._seen[model] = self._seen.get(model, 0) + 1
        faulty = faults.times is None or seen <= faults.times
        if faults.delay_ms:
            await asyncio.sleep(faults.delay_ms / 1000)
        if faults.error is not None and faulty:
            extra = [] if faults.retry_after is None else [(b"retry-after", faults.retry_after)]
            message = f"fake provider: {faults.error} asked for by the model name {model}"
            if faults.error == 401:
                # As real providers do: the refused key quoted back (a client must mask it).
                message = f"Incorrect API key provided: {key or '(none)'}"
            await _error(send, faults.error, message, anthropic, extra)
            return
        answer = answer_to(request, anthropic, faults.words)
        max_tokens = request.get("max_tokens")
        if isinstance(max_tokens, int) and 0 < max_tokens < len(answer.pieces):
            answer = Answer(answer.pieces[:max_tokens], finish="length")
        usage = (_prompt_tokens(request), len(answer.pieces) or 1)
        if not request.get("stream"):
            document = (_anthropic_message if anthropic else _openai_completion)(
                model, answer, usage
            )
            await _json(send, 200, document)
            return
        options = request.get("stream_options") or {}
        include_usage = anthropic or bool(options.get("include_usage"))
        events = (_anthropic_events if anthropic else _openai_events)(
            model, answer, usage, include_usage
        )
        await self._stream(events, faults if faulty else Faults(), receive, send)

    async def _stream(
        self,
        events: Iterator[tuple[bytes, bool]],
        faults: Faults,
        receive: Receive,
        send: Send,
    ) -> None:
        """Send (event, is content) pairs at the pace asked, watching for the client leaving."""
        left = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            left.set()

        watcher = asyncio.create_task(watch())
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream"),
                        (b"cache-control", b"no-cache"),
                    ],
                }
            )
            rate = faults.tokens_per_second or self.tokens_per_second
            interval = 1 / rate if rate else 0.0
            loop = asyncio.get_running_loop()
            # Chunks are due on a schedule, not `interval` after the last one was sent: the
            # loop's timers are coarser than 1 ms, so waiting out each interval in turn would
            # stream well below the rate asked for at hundreds of chunks a second.
            due = loop.time()
            sent = 0
            for event, content in events:
                if content:
                    if faults.cut is not None and sent >= faults.cut:
                        raise _Dropped()
                    if faults.stall is not None and sent >= faults.stall:
                        await left.wait()
                    if interval:
                        due += interval
                        if due > loop.time():
                            with contextlib.suppress(TimeoutError):
                                async with asyncio.timeout_at(due):
                                    await left.wait()
                    sent += 1
                if left.is_set():
                    self.disconnects += 1
                    return
                await send({"type": "http.response.body", "body": event, "more_body": True})
                await asyncio.sleep(0)  # let the disconnect watcher see a hang-up
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


# ---- what it says -------------------------------------------------------------------------


def answer_to(request: Mapping[str, Any], anthropic: bool, words: int | None = None) -> Answer:
    """The deterministic answer to a request (see the module's docstring)."""
    messages = [m for m in request.get("messages") or () if isinstance(m, Mapping)]
    last = messages[-1] if messages else {}
    result = _tool_result(last, messages)
    if result is not None:
        tool, content = result
        return Answer(_pieces(f"The {tool} tool returned: {content}"))
    text = _text_of(last.get("content"))
    tools = [t for t in request.get("tools") or () if isinstance(t, Mapping)]
    if tools and request.get("tool_choice") not in ("none", {"type": "none"}):
        return _call(tools, text, request.get("model", ""))
    if words is not None:
        return Answer((*(f"word{i} " for i in range(1, words)), f"word{words}"))
    return Answer(_pieces(f"You said: {text}"))


def _pieces(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(text)) or (text,)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", "")) for part in content if isinstance(part, Mapping)
        ).strip()
    return "" if content is None else json.dumps(content)


def _tool_result(last: Mapping[str, Any], messages: list[Mapping[str, Any]]) -> Any:
    """(tool name, content) when the last message answers a tool call, else None."""
    if last.get("role") == "tool":
        return _called_name(messages, str(last.get("tool_call_id", ""))), _text_of(
            last.get("content")
        )
    content = last.get("content")
    if last.get("role") == "user" and isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "tool_result":
                name = _called_name(messages, str(part.get("tool_use_id", "")))
                return name, _text_of(part.get("content"))
    return None


def _called_name(messages: list[Mapping[str, Any]], call_id: str) -> str:
    for message in reversed(messages):
        for call in message.get("tool_calls") or ():
            if isinstance(call, Mapping) and call.get("id") == call_id:
                return str((call.get("function") or {}).get("name", "unknown"))
        content = message.get("content")
        for part in content if isinstance(content, list) else ():
            if isinstance(part, Mapping) and part.get("id") == call_id:
                return str(part.get("name", "unknown"))
    return "unknown"


def _call(tools: list[Mapping[str, Any]], text: str, model: str) -> Answer:
    def spec(tool: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
        function = tool.get("function")
        if isinstance(function, Mapping):  # OpenAI's shape
            return str(function.get("name", "tool")), function.get("parameters") or {}
        return str(tool.get("name", "tool")), tool.get("input_schema") or {}

    specs = [spec(tool) for tool in tools]
    name, schema = next((s for s in specs if s[0].lower() in text.lower()), specs[0])
    words = re.findall(r"[\w-]+", text)
    last_word = words[-1] if words else "something"
    arguments: dict[str, Any] = {}
    filled = False
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    for prop, prop_schema in (properties or {}).items():
        kind = prop_schema.get("type") if isinstance(prop_schema, Mapping) else None
        if kind == "string" and not filled:
            arguments[prop], filled = last_word, True
        else:
            arguments[prop] = {"integer": 1, "number": 1, "boolean": True}.get(str(kind), "x")
    raw = json.dumps(arguments)
    call_id = "call_" + hashlib.sha256(f"{model}|{name}|{raw}".encode()).hexdigest()[:16]
    return Answer(tool=name, arguments=raw, call_id=call_id, finish="tool_calls")


def _prompt_tokens(request: Mapping[str, Any]) -> int:
    messages = request.get("messages") or ()
    words = sum(len(_WORD.findall(_text_of(m.get("content")))) + 3 for m in messages if m)
    system = request.get("system")
    return words + (len(_WORD.findall(_text_of(system))) if system else 0)


def weather(city: str) -> dict[str, Any]:
    """The tool endpoint's deterministic forecast for `city`."""
    seed = int(hashlib.sha256(city.lower().encode()).hexdigest()[:8], 16)
    skies = ("sunny", "cloudy", "rainy", "windy")[seed % 4]
    return {"city": city, "forecast": skies, "temperature_c": 5 + seed % 25}


# ---- the wire formats ---------------------------------------------------------------------


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def _argument_pieces(raw: str) -> list[str]:
    """Arguments JSON streamed in small pieces, as providers do."""
    return [raw[i : i + 8] for i in range(0, len(raw), 8)] or [""]


def _openai_events(
    model: str, answer: Answer, usage: tuple[int, int], include_usage: bool
) -> Iterator[tuple[bytes, bool]]:
    ident = f"chatcmpl-fake-{hashlib.sha256(model.encode()).hexdigest()[:12]}"
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _sse(
            {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [choice],
            }
        )

    yield chunk({"role": "assistant", "content": ""}), False
    if answer.tool is not None:
        start = {"index": 0, "id": answer.call_id, "type": "function"}
        function = {"name": answer.tool, "arguments": ""}
        yield chunk({"tool_calls": [{**start, "function": function}]}), False
        for piece in _argument_pieces(answer.arguments):
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}), True
    for piece in answer.pieces:
        yield chunk({"content": piece}), True
    yield chunk({}, answer.finish), False
    if include_usage:
        prompt, completion = usage
        usage_data = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        yield (
            _sse(
                {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage_data,
                }
            ),
            False,
        )
    yield b"data: [DONE]\n\n", False


def _openai_completion(model: str, answer: Answer, usage: tuple[int, int]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": "".join(answer.pieces) or None}
    if answer.tool is not None:
        function = {"name": answer.tool, "arguments": answer.arguments}
        message["tool_calls"] = [{"id": answer.call_id, "type": "function", "function": function}]
    prompt, completion = usage
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": answer.finish}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _anthropic_events(
    model: str, answer: Answer, usage: tuple[int, int], include_usage: bool
) -> Iterator[tuple[bytes, bool]]:
    prompt, completion = usage
    message: dict[str, Any] = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": prompt, "output_tokens": 1},
    }
    yield _sse({"type": "message_start", "message": message}, "message_start"), False
    if answer.tool is not None:
        block = {"type": "tool_use", "id": answer.call_id, "name": answer.tool, "input": {}}
        start = {"type": "content_block_start", "index": 0, "content_block": block}
        yield _sse(start, "content_block_start"), False
        for piece in _argument_pieces(answer.arguments):
            delta = {"type": "input_json_delta", "partial_json": piece}
            data = {"type": "content_block_delta", "index": 0, "delta": delta}
            yield _sse(data, "content_block_delta"), True
    else:
        block = {"type": "text", "text": ""}
        start = {"type": "content_block_start", "index": 0, "content_block": block}
        yield _sse(start, "content_block_start"), False
        for piece in answer.pieces:
            delta = {"type": "text_delta", "text": piece}
            data = {"type": "content_block_delta", "index": 0, "delta": delta}
            yield _sse(data, "content_block_delta"), True
    yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"), False
    stop = {"stop_reason": _ANTHROPIC_STOP.get(answer.finish, "end_turn"), "stop_sequence": None}
    data = {"type": "message_delta", "delta": stop, "usage": {"output_tokens": completion}}
    yield _sse(data, "message_delta"), False
    yield _sse({"type": "message_stop"}, "message_stop"), False


def _anthropic_message(model: str, answer: Answer, usage: tuple[int, int]) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if answer.tool is not None:
        arguments = json.loads(answer.arguments)
        content.append(
            {"type": "tool_use", "id": answer.call_id, "name": answer.tool, "input": arguments}
        )
    else:
        content.append({"type": "text", "text": "".join(answer.pieces)})
    prompt, completion = usage
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _ANTHROPIC_STOP.get(answer.finish, "end_turn"),
        "usage": {"input_tokens": prompt, "output_tokens": completion},
    }


# ---- HTTP plumbing --------------------------------------------------------------------------


async def _body(receive: Receive) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    return bytes(body)


async def _json(
    send: Send, status: int, data: Any, headers: list[tuple[bytes, str]] | None = None
) -> None:
    body = json.dumps(data).encode()
    raw_headers = [(b"content-type", b"application/json")]
    raw_headers += [(name, value.encode()) for name, value in headers or ()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}


async def _error(
    send: Send,
    status: int,
    message: str,
    anthropic: bool,
    headers: list[tuple[bytes, str]] | None = None,
) -> None:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    if anthropic:
        data: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        data = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    await _json(send, status, data, headers)


def _quiet_drops(record: logging.LogRecord) -> bool:
    """A `cut=` fault is asked for: not an error of the server's to log."""
    return not (record.exc_info and isinstance(record.exc_info[1], _Dropped))


@contextlib.asynccontextmanager
async def serving(
    provider: FakeLlmProvider, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve `provider` with uvicorn in this event loop; its base URL (…/v1) for the block."""
    logging.getLogger("uvicorn.error").addFilter(_quiet_drops)
    config = uvicorn.Config(provider, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("the fake provider stopped while starting")
                await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()
        yield f"http://{bound[0]}:{bound[1]}/v1"
    finally:
        server.should_exit = True
        await task


async def run_forever(host: str, port: int, tokens_per_second: float | None) -> None:
    """`runwire fake-llm`: serve until interrupted (uvicorn handles SIGINT and SIGTERM)."""
    logging.getLogger("uvicorn.error").addFilter(_quiet_drops)
    provider = FakeLlmProvider(tokens_per_second=tokens_per_second)
    config = uvicorn.Config(provider, host=host, port=port, log_level="info", lifespan="on")
    print(
        f"Fake LLM provider for offline tests and examples (not a model): http://{host}:{port}/v1"
        f"\nModels: {', '.join(MODELS)}; faults in the model name, see `runwire fake-llm --help`",
        flush=True,
    )
    await uvicorn.Server(config).serve()
