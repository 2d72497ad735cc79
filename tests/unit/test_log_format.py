"""The log formats and the ids they carry, and which GraphQL errors are the server's to log."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
from graphql import GraphQLError

from runwire import logs
from runwire.errors import NotFound
from runwire.graphql.schema.build import build_schema
from runwire.settings import Settings


@pytest.fixture
def captured(request: pytest.FixtureRequest) -> Iterator[tuple[io.StringIO, logging.Logger]]:
    """A logger writing through a server's handler (in the parameter's format) to a buffer."""
    stream = io.StringIO()
    logger = logging.getLogger(f"runwire.test.{request.param}")
    logger.addHandler(logs.handler(request.param, stream))
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield stream, logger
    finally:
        logger.handlers.clear()


@pytest.mark.parametrize("captured", ["json"], indirect=True)
async def test_json_lines_carry_the_ids_of_the_task_that_logged(
    captured: tuple[io.StringIO, logging.Logger],
) -> None:
    stream, logger = captured

    async def execution(execution_id: str) -> None:
        logs.execution_id.set(execution_id)
        logger.info("claimed")

        async def step() -> None:
            logs.step.set("build")
            logger.info("in a step")

        await asyncio.create_task(step())
        logger.info("ended")

    await asyncio.gather(asyncio.create_task(execution("e1")), asyncio.create_task(execution("e2")))
    logger.info("outside")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")

    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    ids = [(r["message"], r.get("execution_id"), r.get("step")) for r in records]
    assert sorted(ids[:6], key=lambda i: (i[1] or "", i[0])) == [
        ("claimed", "e1", None),
        ("ended", "e1", None),
        ("in a step", "e1", "build"),
        ("claimed", "e2", None),
        ("ended", "e2", None),
        ("in a step", "e2", "build"),
    ]
    assert ids[6] == ("outside", None, None)
    failed = records[7]
    assert (failed["level"], failed["logger"]) == ("ERROR", "runwire.test.json")
    assert "ValueError: boom" in failed["exception"]
    assert len(records) == 8  # the traceback stayed inside its one line


@pytest.mark.parametrize("captured", ["text"], indirect=True)
def test_text_lines_show_the_ids_compactly(captured: tuple[io.StringIO, logging.Logger]) -> None:
    stream, logger = captured
    token = logs.request_id.set("r1")
    try:
        logger.warning("slow")
    finally:
        logs.request_id.reset(token)
    logger.warning("plain")
    first, second = stream.getvalue().splitlines()
    assert first.endswith(" WARNING runwire.test.text [request=r1] slow")
    assert second.endswith(" WARNING runwire.test.text plain")


def test_log_settings_are_checked() -> None:
    assert Settings.from_env({"RUNWIRE_LOG_FORMAT": "JSON"}).log_format == "json"
    assert Settings.from_env({"RUNWIRE_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    with pytest.raises(ValueError, match="RUNWIRE_LOG_FORMAT: expected text or json"):
        Settings.from_env({"RUNWIRE_LOG_FORMAT": "xml"})
    with pytest.raises(ValueError, match="RUNWIRE_LOG_LEVEL: expected one of DEBUG"):
        Settings.from_env({"RUNWIRE_LOG_LEVEL": "loud"})


def test_only_unexpected_graphql_errors_are_logged_with_their_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    schema = build_schema()
    try:
        raise KeyError("a defect")
    except KeyError as defect:
        unexpected = GraphQLError("'a defect'", original_error=defect, path=["viewer"])
    expected = [
        GraphQLError("Syntax Error: Expected Name, found <EOF>."),
        GraphQLError("execution x not found", original_error=NotFound("execution x not found")),
    ]
    with caplog.at_level(logging.DEBUG):
        schema.process_errors([*expected, unexpected])
    loud = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [(r.name, r.exc_info and r.exc_info[1]) for r in loud] == [
        ("strawberry.execution", unexpected.original_error)
    ]
    quiet = [r.getMessage() for r in caplog.records if r.levelno < logging.INFO]
    assert quiet == [f"GraphQL error for the client: {e.message}" for e in expected]
