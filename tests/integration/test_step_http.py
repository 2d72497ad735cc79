"""The http step against a real local HTTP server."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.support.steps import RecordingContext

from runwire.domain.models import OutputStream
from runwire.runner.steps import STEP_KINDS, StepResult


class FakeHttpService:
    """A test double of an external HTTP service: one HTTP/1.1 request per connection, by path."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def __aenter__(self) -> FakeHttpService:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        for task in self.handlers:
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            request_line, *header_lines = head.split("\r\n")[:-2]
            method, path, _ = request_line.split(" ")
            headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
            body = await reader.readexactly(int(headers.get("content-length", 0)))
            if path == "/hang":
                await reader.read()  # until the client gives up and disconnects
                return
            status, content_type, content = self.route(method, path, headers, body)
            head = (
                f"HTTP/1.1 {status} Whatever\r\ncontent-type: {content_type}\r\n"
                f"content-length: {len(content)}\r\nx-service: fake\r\nconnection: close\r\n\r\n"
            )
            writer.write(head.encode() + content)
            await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()
            self.handlers.discard(task)

    def route(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, bytes]:
        if path.startswith("/status/"):
            return int(path.removeprefix("/status/")), "text/plain", b"status page"
        if path == "/json":
            return 200, "application/json; charset=utf-8", b'{"ok": true, "items": [1, 2]}'
        if path == "/big":
            return 200, "text/plain; charset=utf-8", b"y" * 70_000
        echo = {"method": method, "headers": headers, "body": body.decode()}
        return 200, "application/vnd.echo+json", json.dumps(echo).encode()


@pytest.fixture
async def service() -> AsyncIterator[FakeHttpService]:
    async with FakeHttpService() as service:
        yield service


async def request(params: dict[str, Any], context: RecordingContext | None = None) -> StepResult:
    http = STEP_KINDS["http"]
    return await http.run(http.parse(params, "with"), context or RecordingContext())


async def test_parses_a_json_response(service: FakeHttpService) -> None:
    context = RecordingContext()
    result = await request({"url": f"{service.url}/json"}, context)
    assert result.error is None
    assert result.output["status"] == 200
    assert result.output["body"] == {"ok": True, "items": [1, 2]}
    assert result.output["headers"]["x-service"] == "fake"
    assert result.output["latency_ms"] > 0
    assert result.attributes == {"status": 200, "latency_ms": result.output["latency_ms"]}
    assert context.calls == [
        (OutputStream.LOG, f"GET {service.url}/json → 200 in {result.output['latency_ms']:.0f} ms")
    ]


async def test_sends_method_headers_and_json(service: FakeHttpService) -> None:
    result = await request(
        {"method": "post", "url": f"{service.url}/echo", "headers": {"X-Token": "t"}, "json": [1]}
    )
    sent = result.output["body"]
    assert (sent["method"], sent["body"]) == ("POST", "[1]")
    assert sent["headers"]["content-type"] == "application/json"
    assert sent["headers"]["x-token"] == "t"


async def test_sends_a_text_body(service: FakeHttpService) -> None:
    result = await request({"method": "PUT", "url": f"{service.url}/echo", "body": "hello"})
    assert (result.output["body"]["method"], result.output["body"]["body"]) == ("PUT", "hello")


async def test_caps_a_text_body(service: FakeHttpService) -> None:
    result = await request({"url": f"{service.url}/big"})
    assert result.output["body"] == "y" * 65_536 + "…[truncated 4464 bytes]"


@pytest.mark.parametrize(
    ("expect", "error"),
    [
        (None, "expected a 2xx status, got 503"),
        ({"status": 200}, "expected status 200, got 503"),
        ({"status": [200, 201]}, "expected status 200 or 201, got 503"),
        ({"status": 503}, None),
        ({"status": [404, 503]}, None),
    ],
)
async def test_checks_the_status(
    service: FakeHttpService, expect: dict[str, Any] | None, error: str | None
) -> None:
    params: dict[str, Any] = {"url": f"{service.url}/status/503"}
    if expect is not None:
        params["expect"] = expect
    result = await request(params)
    assert (result.error, result.output["status"], result.output["body"]) == (
        error,
        503,
        "status page",
    )


async def test_connection_refused_is_an_error_without_header_values() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the request: nothing listens there
    result = await request(
        {"url": f"http://127.0.0.1:{port}/", "headers": {"Authorization": "Bearer s3cret"}}
    )
    assert result.error is not None
    assert result.error.startswith("cannot connect: ")
    assert "s3cret" not in result.error
    assert result.output is None


async def test_times_out(service: FakeHttpService) -> None:
    started = time.monotonic()
    result = await request({"url": f"{service.url}/hang", "timeout": 0.2})
    assert result.error == "timed out after 0.2 s"
    assert time.monotonic() - started < 1
