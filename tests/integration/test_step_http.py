"""The http step against a real local HTTP server."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.support.http_service import FakeHttpService
from tests.support.steps import RecordingContext

from runwire.domain.models import OutputStream
from runwire.runner.steps import STEP_KINDS, StepResult
from runwire.scenarios.results import Observed


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


async def test_any_status_is_a_completed_request_for_expect_to_judge(
    service: FakeHttpService,
) -> None:
    # Whether 503 fails the step is decided by expectations.assess (2xx unless `expect:` says).
    result = await request({"url": f"{service.url}/status/503"})
    assert (result.error, result.output["status"], result.output["body"]) == (
        None,
        503,
        "status page",
    )
    assert result.observed == Observed(
        status=503, latency_ms=result.output["latency_ms"], text="status page"
    )


async def test_observes_the_body_text_of_a_json_response(service: FakeHttpService) -> None:
    result = await request({"url": f"{service.url}/json"})
    assert result.observed is not None
    assert result.observed.text == '{"ok": true, "items": [1, 2]}'


async def test_observes_more_of_a_long_body_than_the_output_keeps(
    service: FakeHttpService,
) -> None:
    result = await request({"url": f"{service.url}/big"})
    assert result.observed is not None
    assert result.observed.text == "y" * 70_000


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
    assert result.observed is None  # nothing completed, so there is nothing for expect to check


async def test_times_out(service: FakeHttpService) -> None:
    started = time.monotonic()
    result = await request({"url": f"{service.url}/hang", "timeout": 0.2})
    assert result.error == "timed out after 0.2 s"
    assert time.monotonic() - started < 10  # the server hangs: only the timeout ended it
