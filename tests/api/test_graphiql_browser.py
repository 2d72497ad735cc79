"""GraphiQL at /graphql as a newcomer meets it, in a real Chromium against a real server: the
docs load once the Authorization header is set, a subscription's results accumulate, and a
wrong token is reported at once rather than after the socket's retries."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.browser import Browser, Page
from tests.support.graphql import definition, gated_step, start
from tests.support.server import Server

# Far beyond what an answer takes, far below the ~45 s GraphiQL's stock socket client spent
# retrying a refused token before it said anything.
ANSWER_SECONDS = 20.0

EDITORS = "document.querySelectorAll('.graphiql-editor-tool .CodeMirror')"
QUERY_EDITOR = "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror"
RESULT = "document.querySelector('.result-window .CodeMirror').CodeMirror.getValue()"
DOCS = "document.querySelector('.graphiql-doc-explorer')"
FOLLOW = """subscription Follow($id: ID!) {
  executionEvents(executionId: $id) { lastSeq events { seq type } }
}"""


async def until(page: Page, expression: str, seconds: float = ANSWER_SECONDS) -> Any:
    """The expression's value once truthy (it is polled: the page changes on its own time)."""
    async with asyncio.timeout(seconds):
        while not (value := await page.evaluate(expression)):
            await asyncio.sleep(0.05)
    return value


async def click(page: Page, selector: str) -> None:
    await page.evaluate(f"document.querySelector({json.dumps(selector)}).click()")


async def set_headers(page: Page, headers: dict[str, str]) -> None:
    """Type the headers into the Headers pane (its editor's change is what GraphiQL sees)."""
    await page.evaluate(
        "Array.from(document.querySelectorAll('.graphiql-editor-tools button'))"
        ".find(b => b.textContent === 'Headers').click()"
    )
    await until(page, f"{EDITORS}.length === 2")
    await page.evaluate(f"{EDITORS}[1].CodeMirror.setValue({json.dumps(json.dumps(headers))})")


async def sign_in(page: Page, token: str) -> None:
    """Set the token in the Headers pane; GraphiQL fetches the schema again, which (its fetcher
    changing) would also end an operation started meanwhile: wait until the docs show it."""
    await set_headers(page, {"Authorization": f"Bearer {token}"})
    if not await page.evaluate(f"!!{DOCS}"):
        await click(page, "[aria-label='Show Documentation Explorer']")
    await until(page, f"!!{DOCS} && {DOCS}.textContent.includes('Subscription')")


async def run(page: Page, query: str, variables: dict[str, Any] | None = None) -> None:
    await page.evaluate(f"{QUERY_EDITOR}.setValue({json.dumps(query)})")
    await page.evaluate(
        f"{EDITORS}[0].CodeMirror.setValue({json.dumps(json.dumps(variables or {}))})"
    )
    await click(page, ".graphiql-execute-button")


async def result(page: Page, holds: str) -> Any:
    """The result pane's JSON once `holds` (a JS expression over `r`) is true of it."""
    expression = f"(() => {{ try {{ const r = JSON.parse({RESULT}); return ({holds}) ? r : null }}"
    expression += " catch (e) { return null } })()"
    return await until(page, expression)


@pytest.fixture
async def graphiql(server: Server, tmp_path: Path) -> AsyncIterator[Page]:
    """A fresh browser profile (no headers kept from an earlier test) showing /graphql."""
    async with Browser.running(tmp_path) as browser, browser.page(f"{server.url}/graphql") as page:
        await until(page, f"{EDITORS}.length > 0 && !!document.querySelector('.result-window')")
        yield page


async def test_the_docs_load_once_the_token_is_set(server: Server, graphiql: Page) -> None:
    await click(graphiql, "[aria-label='Show Documentation Explorer']")
    # Without a token the schema is refused; the result pane says why and what to do.
    await until(graphiql, f"!!{DOCS} && {DOCS}.textContent.includes('Error fetching schema')")
    refused = await result(graphiql, "r.errors && r.errors[0].message.includes('HTTP 401')")
    assert "in the Headers pane" in refused["errors"][0]["message"]

    await sign_in(graphiql, server.token)

    docs = await graphiql.evaluate(f"{DOCS}.textContent")
    assert "Query" in docs
    assert "Mutation" in docs
    assert "401" not in docs


async def test_a_subscriptions_results_accumulate(
    server: Server, graphiql: Page, tmp_path: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    execution_id = await start(
        server, definition=definition(gated_step("a", first), gated_step("b", second))
    )
    await sign_in(graphiql, server.token)

    await run(graphiql, FOLLOW, {"id": execution_id})
    # The backlog so far (queued, running, step a running) arrives first ...
    shown = await result(graphiql, "r.results && r.results.length >= 1")
    assert shown["results"][0]["data"]["executionEvents"]["events"][0]["seq"] == 1
    first.touch()
    # ... then what step a's end and step b's start wrote, below it rather than in its place.
    shown = await result(graphiql, "r.results && r.results.length >= 2")
    second.touch()
    shown = await result(
        graphiql,
        "r.results && r.results.some(m => m.data.executionEvents.events"
        ".some(e => e.seq === m.data.executionEvents.lastSeq && e.type === 'EXECUTION_STATUS'"
        " && m.data.executionEvents.lastSeq > 6))",
    )
    seqs = [
        event["seq"]
        for message in shown["results"]
        for event in message["data"]["executionEvents"]["events"]
    ]
    assert seqs == list(range(1, seqs[-1] + 1))
    assert shown["received"] == len(shown["results"]) >= 3


async def test_a_wrong_token_is_reported_at_once(server: Server, graphiql: Page) -> None:
    await set_headers(graphiql, {"Authorization": "Bearer rw_not-a-token"})
    # The schema is fetched again with it, and refused: the result pane says so.
    await result(graphiql, "r.errors && r.errors[0].message.includes('revoked or expired')")

    started = time.monotonic()
    await run(graphiql, FOLLOW, {"id": "any"})
    refused = await result(graphiql, "r.errors")
    over_socket = time.monotonic() - started
    assert "refused the token (4403 Forbidden)" in refused["errors"][0]["message"]
    assert '"Authorization": "Bearer <token>"' in refused["errors"][0]["message"]
    # The spinner stops with the answer.
    await until(graphiql, "!document.querySelector('.graphiql-spinner')")

    await run(graphiql, "{ viewer { label } }")
    refused = await result(graphiql, "r.errors && r.errors[0].message.includes('HTTP 401')")
    assert "the token is unknown, revoked or expired" in refused["errors"][0]["message"]
    # Generous bound: an answer takes well under a second; the stock client took ~45 s.
    assert over_socket < ANSWER_SECONDS
