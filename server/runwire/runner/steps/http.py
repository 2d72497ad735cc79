"""The `http` step: make one HTTP request and report the response."""

from __future__ import annotations

import asyncio
import codecs
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from runwire.domain.clock import utc_now
from runwire.domain.models import OutputStream
from runwire.runner import spans
from runwire.runner.steps.base import Observed, StepContext, StepResult
from runwire.runner.steps.params import Fields, is_template

METHODS = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"})
IDEMPOTENT_METHODS = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "PUT"})
"""RFC 9110's idempotent methods: sending one again does what sending it once did."""
TEXT_BYTES = 64 * 1024
"""How much of a non-JSON body the output keeps."""
JSON_BYTES = 1024 * 1024
"""The largest JSON body that is parsed (a larger one is kept as truncated text); also how much
of the body `expect:` assertions check."""

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True, slots=True)
class HttpParams:
    """One request; `content` is the encoded `json` or `body`; `timeout` may be a template."""

    url: str
    method: str = "GET"
    headers: Mapping[str, str] | None = None
    content: bytes | None = None
    is_json: bool = False
    timeout: float | str = 30.0


class HttpStep:
    """Send a request with httpx; whether the response passes is for `expect:` (2xx by default)."""

    name = "http"
    runs_processes = False  # who may start it inline: see ExecutionService.admit

    def idempotent(self, params: HttpParams) -> bool:
        return params.method in IDEMPOTENT_METHODS

    def parse(self, params: Any, path: str) -> HttpParams:
        fields = Fields(params, path, {"method", "url", "headers", "json", "body", "timeout"})
        method = (fields.string("method") or "GET").upper()
        if method not in METHODS:
            fields.error("method", f"expected one of: {', '.join(sorted(METHODS))}")
        fields.require("url")
        url = fields.string("url")
        if url is not None and not is_template(url) and not _is_http_url(url):
            fields.error("url", "expected an http or https URL")
        headers = fields.string_map("headers")
        for name, value in headers.items():
            # Only the name goes into errors: header values may carry secrets.
            if not _TOKEN.fullmatch(name):
                fields.error(f"headers.{name}", "not a valid header name")
            elif any(char in value for char in "\r\n\0"):
                fields.error(f"headers.{name}", "must not contain line breaks or NUL")
        content = None
        if fields.has("json"):
            if fields.has("body"):
                fields.error("body", "not allowed together with json")
            try:
                content = json.dumps(fields.values["json"], allow_nan=False).encode()
            except (TypeError, ValueError):
                fields.error("json", "expected a JSON value")
        elif (body := fields.string("body")) is not None:
            content = body.encode()
        timeout = fields.number("timeout", 30.0, positive=True)
        fields.check()
        return HttpParams(url or "", method, headers or None, content, fields.has("json"), timeout)

    async def run(self, params: HttpParams, context: StepContext) -> StepResult:
        if isinstance(params.timeout, str):
            return StepResult(error="timeout is an unrendered template")
        headers = dict(params.headers or {})
        if params.is_json and not any(name.lower() == "content-type" for name in headers):
            headers["content-type"] = "application/json"
        started = time.perf_counter()
        try:
            # One total deadline: httpx's own timeouts apply to each phase separately.
            async with (
                asyncio.timeout(params.timeout),
                httpx.AsyncClient(timeout=None) as client,
                client.stream(
                    params.method,
                    params.url,
                    headers=headers,
                    content=params.content,
                    extensions={"trace": _PhaseSpans(context)},
                ) as response,
            ):
                body, text = await _read_body(response)
        except TimeoutError:
            return StepResult(error=f"timed out after {params.timeout:g} s")
        except httpx.ConnectError as error:
            return StepResult(error=f"cannot connect: {error}")
        except httpx.LocalProtocolError:
            return StepResult(error="cannot send the request")  # details might quote a header
        except httpx.HTTPError as error:
            return StepResult(error=f"request failed: {type(error).__name__}: {error}")
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        status = response.status_code
        url = response.request.url
        # No query string in the log: it may carry tokens.
        context.output(
            OutputStream.LOG,
            f"{params.method} {url.scheme}://{url.netloc.decode()}{url.path} → {status}"
            f" in {latency_ms:.0f} ms",
        )
        return StepResult(
            output={
                "status": status,
                "latency_ms": latency_ms,
                "headers": dict(response.headers),
                "body": body,
            },
            attributes={"latency_ms": latency_ms, "status": status},
            observed=Observed(status=status, latency_ms=latency_ms, text=text),
        )


def _is_http_url(url: str) -> bool:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


async def _read_body(response: httpx.Response) -> tuple[Any, str]:
    """The body as JSON when it says so and is not too large, else as text capped at the start;
    and the text of its first JSON_BYTES, for `expect:` to check."""
    kept = bytearray()
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        kept += chunk[: JSON_BYTES - len(kept)]
    text = _decode(response, kept, final=total <= JSON_BYTES)
    media_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    if total <= JSON_BYTES and (media_type == "application/json" or media_type.endswith("+json")):
        try:
            return json.loads(kept), text
        except ValueError:
            pass  # says JSON but is not: report it as text
    body = _decode(response, kept[:TEXT_BYTES], final=total <= TEXT_BYTES)
    return body + (f"…[truncated {total - TEXT_BYTES} bytes]" if total > TEXT_BYTES else ""), text


def _decode(response: httpx.Response, data: bytes | bytearray, final: bool) -> str:
    try:
        decoder = codecs.getincrementaldecoder(response.encoding or "utf-8")(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    # Not final when cut: a character split by the cap is dropped instead of mangled.
    return decoder.decode(data, final)


# ---- HTTP phases as spans ----------------------------------------------------------------

_PHASES = {
    "connect_tcp": "connect",
    "connect_unix_socket": "connect",
    "start_tls": "tls",
    # Headers and body go out back to back; one "send request" span covers both.
    "send_request_headers": "send request",
    "send_request_body": "send request",
    "receive_response_headers": "wait for response",
    "receive_response_body": "read body",
}


class _PhaseSpans:
    """httpcore's `trace` extension: each phase's `.started` and `.complete`/`.failed` calls
    become one span of this step attempt."""

    def __init__(self, context: StepContext) -> None:
        self._context = context
        self._open: dict[str, tuple[datetime, dict[str, Any]]] = {}

    async def __call__(self, event: str, info: Mapping[str, Any]) -> None:
        # Cheap and never raising: httpcore awaits this inline, and an error would fail the request.
        _, _, operation_and_stage = event.partition(".")  # "http11.send_request_headers.started"
        operation, _, stage = operation_and_stage.rpartition(".")
        phase = _PHASES.get(operation)
        if phase is None:
            return
        now = utc_now()
        if stage == "started":
            attributes: dict[str, Any] = {}
            if phase == "connect" and "host" in info:
                attributes = {"host": info["host"], "port": info.get("port")}
            self._open.setdefault(phase, (now, attributes))
            return
        if operation == "send_request_headers" and stage == "complete":
            return  # the body follows within the same span
        started_at, attributes = self._open.pop(phase, (now, {}))
        if stage == "complete":
            status = spans.SUCCEEDED
            returned = info.get("return_value")
            if operation == "receive_response_headers" and isinstance(returned, tuple):
                attributes["status"] = returned[1]  # (http_version, status, reason, headers)
        else:
            cancelled = isinstance(info.get("exception"), asyncio.CancelledError)
            status = spans.CANCELLED if cancelled else spans.FAILED
        self._context.span(phase, "http", started_at, now, status, attributes)
